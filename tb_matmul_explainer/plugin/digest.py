"""The per-tag digest: one tag's records reduced to what the views read, so that no view re-reads them.

A `Digest` is the tag's summary table (`explain.SeriesTable`: layer totals per step, which /overview, /timeline,
/heatmap, /compare, /diagnosis and /alerts read at any step) plus, per stored row, the near-zero fraction over
steps (/unit_heatmap). `Records` holds a tag's readable record arrays themselves (/units at an earlier step).
Records that do not follow the contract are left out of both and listed as `skipped`.
"""

import dataclasses

import numpy as np
from tensorboard import errors

from tb_matmul_explainer import explain, metadata


@dataclasses.dataclass(frozen=True)
class Digest:
    """One tag's S readable records (ascending steps, one per step) reduced over units; R = the latest's rows."""

    table: explain.SeriesTable  # layer totals per step
    row_fraction: np.ndarray  # [R, S] float32 near-zero fraction per row (NaN: no cells, or another row count)
    units: int  # of the latest record
    group_size: int  # of the latest record
    skipped: tuple = ()  # (step, reason) of the records that do not follow the contract

    @property
    def steps(self):
        return self.table.steps

    @property
    def nbytes(self):
        return self.table.nbytes + self.row_fraction.nbytes + 200


@dataclasses.dataclass(frozen=True)
class Records:
    """One tag's readable records: ascending steps [S] int64 and their record arrays."""

    steps: np.ndarray
    arrays: list

    @property
    def nbytes(self):
        return sum(a.nbytes for a in self.arrays) + 8 * len(self.steps) + 200

    def at(self, step, detail=False):
        """(step, `metadata.Record`) of the latest record at or before `step` (the latest if None), or None;
        `detail`: the latest of those with unit detail."""
        i = explain.index_at(self.steps, step)
        while detail and i >= 0 and not metadata.has_unit_detail(self.arrays[i]):
            i -= 1
        return None if i < 0 else (int(self.steps[i]), metadata.unpack_record(self.arrays[i]))


def digest(series, points):
    """The `Digest` of a tag's data points (`provider.TensorDatum`s); `series`: its `run_index.Series`."""
    steps, arrays, records, skipped = readable(series, points)
    table = explain.SeriesTable.of_records(steps, records)
    rows = len(records[-1].cells) if records else 0
    fraction = np.full((rows, len(records)), np.nan, np.float32)
    same = [i for i, r in enumerate(records) if len(r.cells) == rows]
    if same:
        near = np.stack([records[i].near_zero_cells for i in same], axis=1)
        fraction[:, same] = explain.near_zero_fraction(near, np.stack([records[i].cells for i in same], axis=1))
    return Digest(
        table=table,
        row_fraction=fraction,
        units=records[-1].units if records else 0,
        group_size=records[-1].group_size if records else 1,
        skipped=tuple(skipped),
    )


def records(series, points):
    """The `Records` of a tag's data points."""
    steps, arrays, _, _ = readable(series, points)
    return Records(np.asarray(steps, np.int64), arrays)


def readable(series, points):
    """(steps, arrays, records, skipped) of a tag's data points: ascending steps (the last-written record kept for
    a repeated step), the arrays and `metadata.Record`s of those that follow the contract, and [(step, reason)] of
    the others.

    A record the contract does not describe (e.g. appended by a newer writer to a tag whose first record set its
    metadata) is left out rather than hiding the tag's readable records; a tag with none readable is a 400."""
    by_step = {int(p.step): p.numpy for p in points}
    steps, arrays, records, skipped = [], [], [], []
    for step in sorted(by_step):
        try:
            records.append(metadata.unpack_record(by_step[step]))
        except metadata.ContractError as e:
            skipped.append((step, str(e)))
            continue
        steps.append(step)
        arrays.append(by_step[step])
    if skipped and not records:
        raise errors.InvalidArgumentError("run %r, tag %r: %s" % (series.run, series.tag, skipped[-1][1]))
    return steps, arrays, records, skipped


def skipped_reason(skipped):
    """The text /runs gives for a tag's skipped records."""
    steps = [step for step, _ in skipped]
    shown = ", ".join(map(str, steps[:10])) + (", ..." if len(steps) > 10 else "")
    return "%d of its records (step %s) cannot be read: %s; its other records are shown" % (
        len(steps),
        shown,
        skipped[-1][1],
    )
