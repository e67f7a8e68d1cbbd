"""The summary table (`explain.table`): the one place that sums a layer's records over units, finds the latest
record at or before a step and divides near-zero cells by cells."""

import numpy as np

from tb_matmul_explainer import metadata
from tb_matmul_explainer.explain import table


def _records(rng, rows, steps):
    """Record arrays with arbitrary (non-integer, wide-ranging) values, so any change of summation order shows."""
    arrays = []
    for _ in steps:
        a = rng.normal(size=(rows + 1, metadata.COLUMNS)) * 10.0 ** rng.uniform(-6, 6, (rows + 1, metadata.COLUMNS))
        a[0, metadata.HEADER_UNITS], a[0, metadata.HEADER_GROUP_SIZE] = rows, 1
        arrays.append(a)
    return arrays, [metadata.unpack_record(a) for a in arrays]


def test_totals_are_each_records_row_sum_whatever_else_the_table_holds():
    rng = np.random.default_rng(0)
    steps = [0, 5, 9]
    arrays, records = _records(rng, 300, steps)
    without = table.SeriesTable.of_records(steps, records)
    for i, (array, record) in enumerate(zip(arrays, records)):
        lone = table.totals(record)
        body = array[1:].sum(axis=0)
        for field, columns in (
            ("counts", metadata.COUNTS),
            ("sums", metadata.SUMS),
            ("near_zero_counts", metadata.NEAR_ZERO_COUNTS),
            ("near_zero_sums", metadata.NEAR_ZERO_SUMS),
            ("cells", metadata.CELLS),
            ("near_zero_cells", metadata.NEAR_ZERO_CELLS),
        ):
            np.testing.assert_array_equal(getattr(without, field)[i], body[columns])
            alone = table.SeriesTable.of_records([steps[i]], [record])
            np.testing.assert_array_equal(getattr(alone, field)[0], body[columns])
            np.testing.assert_array_equal(getattr(lone, field), body[columns])
        np.testing.assert_array_equal(without.thresholds[i], array[0, metadata.HEADER_THRESHOLDS])
        assert without.totals_at(i).dead_rows == lone.dead_rows == tuple(table.dead_rows(record))
        assert without.summaries[i] == table.summarise(steps[i], record)


def test_step_lookup_and_history():
    rng = np.random.default_rng(1)
    steps = [10, 20, 30]
    _, records = _records(rng, 4, steps)
    t = table.SeriesTable.of_records(steps, records)
    assert [t.index_at(s) for s in (None, 0, 9, 10, 19, 20, 30, 10**12)] == [2, -1, -1, 0, 0, 1, 2, 2]
    assert t.record_at(9) is None and t.record_at(25)[0] == 20 and t.record_at(None)[0] == 30
    assert [h.step for h in t.history(30)] == [10, 20] and t.history(10) == []
    assert table.index_at([], None) == table.index_at([], 5) == -1


def test_near_zero_fraction_is_nan_or_empty_without_cells():
    fraction = table.near_zero_fraction([1.0, 0.0, 3.0, 2.0], [4.0, 0.0, -1.0, np.nan])
    np.testing.assert_array_equal(fraction[:1], [0.25])
    assert np.isnan(fraction[1:]).all()
    assert float(table.near_zero_fraction(2.0, 0.0, empty=0.0)) == 0.0
