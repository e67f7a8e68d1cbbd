"""Writer ops and the on-disk contract, read back through TensorBoard's own multiplexer and data provider."""

import json

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.compat.proto import summary_pb2

from tb_matmul_explainer import aggregates, metadata, ops, summary
from tests import tb_reader


def operands(seed=0, n=12, k=6, m=5):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, k)).astype(np.float32)
    x[x < 0] = 0  # ReLU-like input: half exact zeros
    return x, rng.normal(size=(k, m)).astype(np.float32)


def per_unit_from_classifier(x, kernel, confidence):
    """The per-cell route: classify every cell, then reduce over each unit's cells."""
    counts, sums = ops.matmul_classify(x, kernel, confidence=confidence)
    return np.sum(counts, axis=0), np.sum(sums, axis=0)


def test_dense_record_reads_back_through_tensorboard(tmp_path):
    x, kernel = operands()
    with tf.summary.create_file_writer(str(tmp_path / "run")).as_default():
        for step in (0, 5):
            assert summary.dense(
                "dense_1/forward",
                x,
                kernel,
                step=step,
                layer="dense_1",
                layer_index=2,
                threshold_method="exact",
                confidence=0.9,
            )
    records = tb_reader.read_records(str(tmp_path))
    assert list(records) == ["run"]
    series, data = records["run"]["dense_1/forward"]
    assert [d.step for d in data] == [0, 5]
    parsed = metadata.parse_plugin_metadata(series.plugin_content)
    assert (parsed.role, parsed.op, parsed.layer, parsed.index, parsed.units) == ("forward", "dense", "dense_1", 2, 5)
    assert parsed.operands == ("input", "kernel") and parsed.confidence == 0.9
    record = metadata.unpack_record(data[0].numpy)
    counts, sums = per_unit_from_classifier(x, kernel, 0.9)
    np.testing.assert_array_equal(record.counts, counts)
    np.testing.assert_allclose(record.sums, sums, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(record.cells, np.full(5, 12))
    assert record.units == 5 and record.group_size == 1
    np.testing.assert_allclose(np.sum(record.sums, axis=1), np.sum(x @ kernel, axis=0), rtol=1e-5, atol=1e-5)


def test_scalars_show_in_the_scalars_dashboard(tmp_path):
    x, kernel = operands()
    with tf.summary.create_file_writer(str(tmp_path / "run")).as_default():
        summary.dense("layer/forward", x, kernel, step=3, thresholds=(None, None, 0.0))
    scalars = tb_reader.read_scalars(str(tmp_path))["run"]
    assert set(scalars) == {"layer/forward/near_zero_fraction", "layer/forward/dead_unit_fraction"}
    # With a result threshold of 0 only exact zeros are near zero.
    expected = np.mean(x @ kernel == 0)
    assert scalars["layer/forward/near_zero_fraction"] == [(3, pytest.approx(expected))]


def test_scalars_follow_the_record_tag_inside_tf_function(tmp_path):
    """Inside `tf.function` the scalars are `<record tag>/...` too (tf.summary.scalar there would put the graph's
    name scopes into them: `layer/forward/cond/near_zero_fraction`, `layer/forward_1/...`)."""
    x, kernel = operands()

    @tf.function
    def record(step):
        summary.dense("layer/forward", x, kernel, step=step)
        with tf.name_scope("outer"):
            summary.dense("inner", x, kernel, step=step)

    with tf.summary.create_file_writer(str(tmp_path / "run")).as_default():
        record(tf.constant(0, tf.int64))
        record(tf.constant(1, tf.int64))
    scalars = tb_reader.read_scalars(str(tmp_path))["run"]
    assert set(scalars) == {
        f"{tag}/{name}"
        for tag in ("layer/forward", "outer/inner")
        for name in ("near_zero_fraction", "dead_unit_fraction")
    }
    assert [step for step, _ in scalars["layer/forward/near_zero_fraction"]] == [0, 1]
    assert set(tb_reader.read_records(str(tmp_path))["run"]) == {"layer/forward", "outer/inner"}


def test_write_totals_writes_what_tf_summary_scalar_would(tmp_path):
    totals = aggregates.UnitTotals(
        *[
            tf.constant(v, tf.float64)
            for v in (
                np.ones((2, 9)),
                np.ones((2, 9)),
                np.zeros((2, 9)),
                np.zeros((2, 9)),
                [4.0, 0.0],
                [4.0, 0.0],
                [0.1, 0.2, 0.3],
                [0.0, 0.0, 0.0],
            )
        ]
    )
    md = metadata.create_summary_metadata(
        "t",
        None,
        role="forward",
        op="dense",
        layer="t",
        index=0,
        units=2,
        confidence=0.95,
        thresholds=[None, None, None],
    )
    with tf.summary.create_file_writer(str(tmp_path / "ours")).as_default():
        assert bool(summary.write_totals("t", totals, 5, md))
    with tf.summary.create_file_writer(str(tmp_path / "tf")).as_default():
        tf.summary.scalar("t/near_zero_fraction", 1.0, step=5)
        tf.summary.scalar("t/dead_unit_fraction", 0.5, step=5)
    scalars = tb_reader.read_scalars(str(tmp_path))
    assert scalars["ours"] == scalars["tf"] == {"t/near_zero_fraction": [(5, 1.0)], "t/dead_unit_fraction": [(5, 0.5)]}
    record = metadata.unpack_record(tb_reader.read_records(str(tmp_path))["ours"]["t"][1][0].numpy)
    np.testing.assert_array_equal(record.cells, [4.0, 0.0])
    with tf.summary.create_file_writer(str(tmp_path / "off")).as_default(), tf.summary.record_if(False):
        assert not bool(summary.write_totals("t", totals, 5, md))


def test_scalars_can_be_turned_off(tmp_path):
    x, kernel = operands()
    with tf.summary.create_file_writer(str(tmp_path / "run")).as_default():
        summary.dense("layer/forward", x, kernel, step=0, scalars=False)
    assert tb_reader.read_scalars(str(tmp_path)) in ({}, {"run": {}})


def test_dead_unit_fraction_counts_units_that_are_always_near_zero(tmp_path):
    x, kernel = operands()
    kernel[:, :2] = 0  # two dead output units
    with tf.summary.create_file_writer(str(tmp_path / "run")).as_default():
        summary.dense("layer/forward", x, kernel, step=0, thresholds=(None, None, 1e-6))
    scalars = tb_reader.read_scalars(str(tmp_path))["run"]
    assert scalars["layer/forward/dead_unit_fraction"] == [(0, pytest.approx(2 / 5))]


def test_dead_units_are_counted_unit_by_unit_before_grouping(tmp_path):
    x, kernel = operands(m=10)
    kernel[:, [0, 4, 5]] = 0  # three dead units: none of the groups of 3 (0-2, 3-5, 6-8, 9) is dead
    with tf.summary.create_file_writer(str(tmp_path / "run")).as_default():
        summary.dense("layer/forward", x, kernel, step=0, max_units=4, thresholds=(None, None, 1e-6))
    _, data = tb_reader.read_records(str(tmp_path))["run"]["layer/forward"]
    record = metadata.unpack_record(data[0].numpy)
    assert (record.group_size, list(metadata.dead_rows(record)), record.dead_units) == (3, [], 3.0)
    older = data[0].numpy.copy()
    older[metadata.HEADER_HAS_DEAD_UNITS : metadata.HEADER_DEAD_UNITS + 1] = 0  # as written before the count was
    assert np.isnan(metadata.unpack_record(older).dead_units)


class CountingAggregates:
    """Counts calls of the aggregate kernels (Python-side: eager calls or traces)."""

    def __init__(self, monkeypatch):
        self.calls = 0
        original = aggregates.dense

        def counted(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(aggregates, "dense", counted)


def test_nothing_is_computed_unless_recording(tmp_path, monkeypatch):
    counter = CountingAggregates(monkeypatch)
    x, kernel = operands()
    assert summary.dense("no_writer", x, kernel, step=0) is not True  # no default writer
    with tf.summary.create_file_writer(str(tmp_path / "run")).as_default():
        with tf.summary.record_if(False):
            assert not summary.dense("layer/forward", x, kernel, step=0)
        assert counter.calls == 0
        assert summary.dense("layer/forward", x, kernel, step=1)
    assert counter.calls == 1


def test_kernels_never_run_in_a_graph_under_record_if_false(tmp_path):
    runs = tf.Variable(0)
    original = aggregates.dense

    def counted(*args, **kwargs):
        with tf.control_dependencies([runs.assign_add(1)]):
            totals = original(*args, **kwargs)
        return aggregates.UnitTotals(*[tf.identity(t) for t in totals])

    x, kernel = operands()
    writer = tf.summary.create_file_writer(str(tmp_path / "run"))

    @tf.function
    def step_fn(step, record):
        with writer.as_default(), tf.summary.record_if(record):
            return summary.dense("layer/forward", x, kernel, step=step)

    aggregates_dense, aggregates.dense = aggregates.dense, counted
    try:
        for step in range(6):
            step_fn(tf.constant(step, tf.int64), tf.constant(step % 3 == 0))
    finally:
        aggregates.dense = aggregates_dense
    writer.flush()
    assert int(runs.numpy()) == 2
    _, data = tb_reader.read_records(str(tmp_path))["run"]["layer/forward"]
    assert [d.step for d in data] == [0, 3]


def test_units_beyond_max_units_are_grouped(tmp_path):
    x, kernel = operands(m=10)
    with tf.summary.create_file_writer(str(tmp_path / "run")).as_default():
        summary.dense("layer/forward", x, kernel, step=0, max_units=4, threshold_method="exact")
    _, data = tb_reader.read_records(str(tmp_path))["run"]["layer/forward"]
    record = metadata.unpack_record(data[0].numpy)
    assert (record.units, record.group_size, record.counts.shape) == (10, 3, (4, 9))
    counts, _ = per_unit_from_classifier(x, kernel, 0.95)
    np.testing.assert_array_equal(
        record.counts, [counts[0:3].sum(0), counts[3:6].sum(0), counts[6:9].sum(0), counts[9:].sum(0)]
    )
    assert data[0].numpy.nbytes <= metadata.record_bytes(10, 4)


def test_all_roles_write_their_records(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 6, 6, 3)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
    d_out = rng.normal(size=(2, 6, 6, 4)).astype(np.float32)
    xd, kd = operands()
    dd = rng.normal(size=(12, 5)).astype(np.float32)
    with tf.summary.create_file_writer(str(tmp_path / "run")).as_default():
        assert summary.conv("c/forward", x, kernel, padding="same", step=0, layer="c", layer_index=0)
        assert summary.conv_kernel_gradient(
            "c/kernel_gradient", x, d_out, kernel.shape, padding="SAME", step=0, layer="c"
        )
        assert summary.conv_input_gradient(
            "c/input_gradient", d_out, kernel, x.shape, padding="SAME", step=0, layer="c"
        )
        assert summary.dense_kernel_gradient("d/kernel_gradient", xd, dd, step=0, layer="d", layer_index=1)
        assert summary.dense_input_gradient("d/input_gradient", dd, kd, step=0, layer="d", layer_index=1)
    records = tb_reader.read_records(str(tmp_path))["run"]
    expected = {
        "c/forward": ("forward", "conv2d", 4),
        "c/kernel_gradient": ("kernel_gradient", "conv2d", 4),
        "c/input_gradient": ("input_gradient", "conv2d", 3),
        "d/kernel_gradient": ("kernel_gradient", "dense", 5),
        "d/input_gradient": ("input_gradient", "dense", 6),
    }
    for tag, (role, op, units) in expected.items():
        series, data = records[tag]
        parsed = metadata.parse_plugin_metadata(series.plugin_content)
        assert (parsed.role, parsed.op, parsed.units) == (role, op, units), tag
        assert metadata.unpack_record(data[0].numpy).units == units
    # The convolution's kernel gradient totals add up to the gradient itself.
    record = metadata.unpack_record(records["c/kernel_gradient"][1][0].numpy)
    _, sums = ops.conv_backprop_filter_classify(x, d_out, kernel.shape, padding="SAME")
    np.testing.assert_allclose(record.sums, np.sum(sums, axis=(0, 1, 2)), rtol=1e-4, atol=1e-4)


def test_metadata_is_tiny_tensor_class_and_versioned():
    md = metadata.create_summary_metadata(
        "d", None, role="forward", op="dense", layer="d", index=0, units=8, confidence=0.95
    )
    assert md.data_class == summary_pb2.DATA_CLASS_TENSOR
    assert md.plugin_data.plugin_name == "matmul_explainer"
    assert len(md.plugin_data.content) < 200
    newer = json.loads(md.plugin_data.content)
    assert newer["v"] == metadata.CONTRACT_VERSION == 3
    newer["v"] = 4
    with pytest.raises(metadata.ContractError, match="contract version 4"):
        metadata.parse_plugin_metadata(json.dumps(newer).encode())
    with pytest.raises(metadata.ContractError, match="JSON"):
        metadata.parse_plugin_metadata(b"\xff")
    for bad in ("drop", [1], {"a": 1}):  # (a string would read as one layer per letter)
        with pytest.raises(metadata.ContractError, match="zeroed_by must be a list of layer names"):
            metadata.parse_plugin_metadata(json.dumps({**newer, "v": 3, "zeroed_by": bad}).encode())
    assert metadata.parse_plugin_metadata(json.dumps({**newer, "v": 3, "zeroed_by": ["drop"]}).encode()).zeroed_by == (
        "drop",
    )
    with pytest.raises(ValueError, match="role"):
        metadata.create_summary_metadata(
            "d", None, role="sideways", op="dense", layer="d", index=0, units=1, confidence=0.9
        )


def test_unpack_rejects_malformed_records():
    with pytest.raises(metadata.ContractError, match="shape"):
        metadata.unpack_record(np.zeros((3, 5)))
    bad = np.zeros((3, metadata.COLUMNS))
    bad[0, metadata.HEADER_UNITS], bad[0, metadata.HEADER_GROUP_SIZE] = 5, 1
    with pytest.raises(metadata.ContractError, match="rows"):
        metadata.unpack_record(bad)
    with pytest.raises(metadata.ContractError, match="at least 65 values"):
        metadata.unpack_record(np.zeros(10))
    compact = np.zeros(metadata.PER_ROW + 2 * 3)
    compact[metadata.HEADER_UNITS], compact[metadata.HEADER_GROUP_SIZE], compact[metadata.HEADER_ROWS] = 3, 1, 3
    assert not metadata.unpack_record(compact).detail
    compact[metadata.HEADER_DETAIL] = 1  # says unit detail, but has none
    with pytest.raises(metadata.ContractError, match="has 185 values, got 71"):
        metadata.unpack_record(compact)
    compact[metadata.HEADER_DETAIL] = 0.5
    with pytest.raises(metadata.ContractError, match="not a version-3 header"):
        metadata.unpack_record(compact)
    compact[metadata.HEADER_DETAIL], compact[metadata.HEADER_ROWS] = 0, 4
    with pytest.raises(metadata.ContractError, match="3 units in groups of 1, but it has 4 rows"):
        metadata.unpack_record(compact)


def test_bad_arguments_are_named():
    x, kernel = operands()
    with pytest.raises(ValueError, match="max_units"):
        summary.dense("a", x, kernel, step=0, max_units=0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        summary.dense("a", x, kernel, step=0, confidance=0.9)


def test_options_are_the_aggregates_options(tmp_path):
    """The ops take every `aggregates.Options` field (near_zero_sample_size and jit too) and reject what it
    rejects, with the argument named, whether or not they record."""
    x, kernel = operands()
    with tf.summary.create_file_writer(str(tmp_path / "run")).as_default():
        assert summary.dense(
            "layer/forward", x, kernel, step=0, near_zero="sampled", near_zero_sample_size=4, seed=1, jit=False
        )
    _, data = tb_reader.read_records(str(tmp_path))["run"]["layer/forward"]
    assert [d.step for d in data] == [0]
    for name, value in [
        ("near_zero_sample_size", 0),
        ("threshold_method", "median"),
        ("seed", 1.5),
        ("sample_size", -1),
        ("thresholds", (0.1, 0.2)),
    ]:
        with pytest.raises(ValueError, match=name):
            summary.dense("a", x, kernel, step=0, **{name: value})  # no default writer: not recording
    with pytest.raises(TypeError, match="jit"):
        summary.dense("a", x, kernel, step=0, jit="no")


def _random_totals(rng, units):
    """`aggregates.UnitTotals` and `RecordExtras` of integer counts and real sums; some units dead (all cells near
    zero), one with no cells."""
    counts = rng.integers(0, 50, size=(units, 9)).astype(np.float64)
    cells = np.full(units, 40.0)
    cells[-1] = 0.0
    near = np.minimum(cells, rng.integers(0, 40, size=units).astype(np.float64))
    near[: units // 2] = cells[: units // 2]  # dead units (whole groups of them)
    totals = aggregates.UnitTotals(
        counts=counts,
        sums=rng.normal(size=(units, 9)) * 10.0 ** rng.uniform(-4, 4, (units, 9)),
        near_zero_counts=np.floor(counts / 2),
        near_zero_sums=rng.normal(size=(units, 9)),
        cells=cells,
        near_zero_cells=near,
        thresholds=np.array([0.1, 0.2, 0.3]),
        nonfinite=np.array([1.0, 0.0, 2.0]),
    )
    extras = metadata.RecordExtras(rng.uniform(size=units), rng.uniform(size=units), 7.0, 0.5)
    return totals, extras


@pytest.mark.parametrize("units, max_units", [(10, 256), (10, 4), (300, 256)])
def test_compact_records_keep_totals_dead_rows_and_per_row_shares(units, max_units):
    """Version 3: a record without unit detail holds exactly the detailed record's layer totals, dead rows'
    near-zero counts, per-row cells and header; its size is `record_bytes(..., detail=False)`."""
    totals, extras = _random_totals(np.random.default_rng(units), units)
    detailed = metadata.pack_record(totals, max_units, extras, detail=True).numpy()
    compact = metadata.pack_record(totals, max_units, extras, detail=False).numpy()
    assert detailed.nbytes == metadata.record_bytes(units, max_units)
    assert compact.nbytes == metadata.record_bytes(units, max_units, detail=False) < detailed.nbytes
    if units > 100:
        assert compact.nbytes < detailed.nbytes / 10
    full, small = metadata.unpack_record(detailed), metadata.unpack_record(compact)
    assert full.detail and not small.detail and small.counts is None and small.result_magnitude is None
    g = metadata.group_size(units, max_units)
    groups = np.arange(units) // g
    np.testing.assert_array_equal(
        full.counts, np.stack([totals.counts[groups == i].sum(0) for i in range(groups[-1] + 1)])
    )
    for record in (full, small):
        assert (record.units, record.group_size, record.padding_only, record.output_threshold) == (units, g, 7.0, 0.5)
        np.testing.assert_array_equal(record.thresholds, totals.thresholds)
        np.testing.assert_array_equal(record.nonfinite, totals.nonfinite)
        np.testing.assert_array_equal(record.cells, full.cells)
        np.testing.assert_array_equal(record.near_zero_cells, full.near_zero_cells)
        dead = metadata.dead_rows(full)
        assert len(dead) > 0
        np.testing.assert_array_equal(record.dead_near_zero_counts, full.near_zero_counts[dead].sum(0))
        np.testing.assert_array_equal(record.totals[metadata.COUNTS], totals.counts.sum(0))
        np.testing.assert_allclose(record.totals[metadata.SUMS], totals.sums.sum(0), rtol=1e-12)
        np.testing.assert_allclose(record.totals[metadata.REFERENCE], extras.reference.sum(), rtol=1e-12)
    # The stored totals are the detailed rows' own sum (what a version-2 reader would have summed).
    header = np.zeros(metadata.COLUMNS)
    header[metadata.HEADER_UNITS], header[metadata.HEADER_GROUP_SIZE] = units, g
    np.testing.assert_allclose(full.totals, metadata.unpack_record(np.vstack([header, _v2_rows(full)])).totals)


def _v2_rows(record):
    return np.concatenate(
        [record.counts, record.sums, record.near_zero_counts, record.near_zero_sums]
        + [v[:, None] for v in (record.cells, record.near_zero_cells, record.result_magnitude, record.reference)],
        axis=1,
    )


def test_unit_detail_follows_a_bool_tensor_inside_tf_function():
    totals, extras = _random_totals(np.random.default_rng(3), 6)
    pack = tf.function(lambda detail: metadata.pack_record(totals, 256, extras, detail))
    assert metadata.unpack_record(pack(tf.constant(True)).numpy()).detail
    assert not metadata.unpack_record(pack(tf.constant(False)).numpy()).detail
    assert metadata.has_unit_detail(pack(tf.constant(True)).numpy())


@pytest.mark.parametrize("value", [np.inf, np.nan, -1.0, 2.5])
def test_unpack_rejects_non_whole_header_fields(value):
    """Units, group size and rows that are not finite whole numbers are a ContractError, never a crash."""
    compact = np.zeros(metadata.PER_ROW + 2)
    compact[metadata.HEADER_UNITS], compact[metadata.HEADER_GROUP_SIZE], compact[metadata.HEADER_ROWS] = 1, 1, 1
    assert metadata.unpack_record(compact).units == 1
    for field in (metadata.HEADER_UNITS, metadata.HEADER_GROUP_SIZE, metadata.HEADER_ROWS):
        bad = compact.copy()
        bad[field] = value
        with pytest.raises(metadata.ContractError, match="record header says"):
            metadata.unpack_record(bad)
        v2 = np.zeros((2, metadata.COLUMNS))
        v2[0, metadata.HEADER_UNITS], v2[0, metadata.HEADER_GROUP_SIZE] = 1, 1
        if field != metadata.HEADER_ROWS:
            v2[0, field] = value
            with pytest.raises(metadata.ContractError, match="record header says"):
                metadata.unpack_record(v2)


@pytest.mark.parametrize("units, max_units", [(10, 4), (300, 256), (7, 256)])
def test_pair_blocks_summed_per_stored_row_pack_as_per_unit_ones(units, max_units):
    """The elementwise records count their pair blocks per stored row (`[ceil(U / g), 9]`): packed, they read
    back exactly as the same blocks given per unit."""
    totals, extras = _random_totals(np.random.default_rng(units + 1), units)
    g = metadata.group_size(units, max_units)
    groups = np.arange(units) // g
    summed = lambda t: np.stack([t[groups == i].sum(0) for i in range(groups[-1] + 1)])  # noqa: E731
    grouped = totals._replace(
        counts=summed(totals.counts),
        sums=summed(totals.sums),
        near_zero_counts=summed(totals.near_zero_counts),
        near_zero_sums=summed(totals.near_zero_sums),
    )
    for detail in (True, False):
        per_unit = metadata.unpack_record(metadata.pack_record(totals, max_units, extras, detail).numpy())
        per_row = metadata.unpack_record(metadata.pack_record(grouped, max_units, extras, detail).numpy())
        for field in ("cells", "near_zero_cells", "dead_near_zero_counts", "dead_units", "units", "group_size"):
            np.testing.assert_array_equal(getattr(per_row, field), getattr(per_unit, field))
        np.testing.assert_allclose(per_row.totals, per_unit.totals, rtol=1e-12)
        if detail:
            np.testing.assert_array_equal(per_row.counts, per_unit.counts)
            np.testing.assert_allclose(per_row.sums, per_unit.sums, rtol=1e-12)
