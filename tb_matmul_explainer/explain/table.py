"""The summary table of a layer's records: what every reader keeps of a record, one row per step.

A record (`metadata.Record`) holds per-unit rows. What the diagnosis, the loader and the TensorBoard plugin read of
it are its layer totals: the rows summed over units, the thresholds and non-finite counts, and which stored rows
are dead. This module is the one place that computes them:

  * `SeriesTable`: the layer totals of one (layer, role) tag's S records, as arrays over steps ([S, 9], [S], ...);
  * `Totals`: one row of it (`SeriesTable.totals_at(i)`, or `totals(record)` for a lone record);
  * `StepSummary`: what the "since which step" rules read of an earlier row (`SeriesTable.history`);
  * `near_zero_fraction`: near-zero result cells / result cells, elementwise;
  * `index_at`: the latest record at or before a step.

Totals are each record's own layer totals (`metadata.Record.totals`: stored in version 3, one sum over the rows of
versions 1 and 2), so two readers holding the same records (the loader's, the plugin's digest) hold bit-identical
totals and give identical diagnoses.
"""

import dataclasses
import functools

import numpy as np

from tb_matmul_explainer import metadata

#: A stored row is dead when its results are near zero in at least this share of its cells.
DEAD_CELLS = metadata.DEAD_CELLS
#: The Record fields a table sums over units (each [S, ...] in the table), and their columns in a record's rows.
_COLUMNS = metadata.ROW_FIELDS
SUMMED_FIELDS = tuple(_COLUMNS)


def near_zero_fraction(near_zero_cells, cells, empty=np.nan):
    """`near_zero_cells / cells` elementwise (float64, any matching shapes), `empty` where `cells` is not > 0."""
    near = np.asarray(near_zero_cells, np.float64)
    cells = np.asarray(cells, np.float64)
    has_cells = cells > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(has_cells, near / np.where(has_cells, cells, 1.0), empty)


def index_at(steps, step):
    """Index of the latest of ascending `steps` at or before `step` (the last if `step` is None); -1 if none."""
    if step is None:
        return len(steps) - 1
    return int(np.searchsorted(steps, step, side="right")) - 1


def dead_rows(record):
    """Indices of stored rows whose results are near zero in at least DEAD_CELLS of their cells."""
    return [int(i) for i in metadata.dead_rows(record)]


@dataclasses.dataclass(frozen=True)
class Totals:
    """What the diagnosis reads of one record (`totals(record)`): its rows summed over units, and its dead rows."""

    counts: np.ndarray  # [9] products per pair, all cells
    sums: np.ndarray  # [9]
    near_zero_counts: np.ndarray  # [9] products per pair, near-zero result cells
    near_zero_sums: np.ndarray  # [9]
    cells: np.float64  # result cells
    near_zero_cells: np.float64  # near-zero result cells
    thresholds: np.ndarray  # [3] first, second, result
    nonfinite: np.ndarray  # [3]
    rows: int  # stored rows
    group_size: int
    dead_rows: tuple  # `dead_rows(record)`
    result_magnitude: np.float64 = np.nan  # sum of |result| (NaN: not recorded, version 1)
    reference: np.float64 = np.nan  # the role's reference column, summed (metadata.py)
    padding_only: np.float64 = np.nan  # padding-only result cells (kernel_gradient)
    output_threshold: np.float64 = np.nan  # activation: threshold of a = f(z)
    dead_near_zero_counts: np.ndarray = None  # [9] near-zero counts of the dead rows only
    units: int = 0  # the layer's units (0: not known)
    dead_units: np.float64 = np.nan  # dead units counted unit by unit (NaN: not recorded; `dead_count`)


def dead_count(t):
    """(dead, of, what) of a `Totals`: its dead units of its units, counted unit by unit where the record holds
    that count (a dead unit among live ones in a stored group counts), else its dead stored rows of its rows
    (`what`: "units", or "groups of g units")."""
    if np.isfinite(t.dead_units) and t.units > 0:
        return int(t.dead_units), t.units, "units"
    return len(t.dead_rows), t.rows, "units" if t.group_size == 1 else f"groups of {t.group_size} units"


def dead_share(t):
    """Dead units (or rows, `dead_count`) / units (rows), 0 without any."""
    dead, of, _ = dead_count(t)
    return dead / of if of else 0.0


@dataclasses.dataclass(frozen=True)
class StepSummary:
    """What the "since which step" rules need of an earlier record."""

    step: int
    dead_share: float  # `dead_share`: dead units / units (dead stored rows / rows where not recorded)
    near_zero_fraction: float  # near-zero result cells / result cells
    non_finite: bool = False  # any non-finite value in an operand or the result
    non_finite_results: float = 0.0  # non-finite result cells / result cells (`non_finite_results`)
    totals: object = dataclasses.field(default=None, compare=False)  # the record's `Totals` (rules that judge
    #                                                                   earlier records their own way)


def totals(record):
    """The `Totals` of a `metadata.Record` (a `Totals` is returned as it is)."""
    if isinstance(record, Totals):
        return record
    return SeriesTable.of_records([0], [record]).totals_at(0)


def summarise(step, record):
    """The `StepSummary` of a record (or of its `Totals`)."""
    t = totals(record)
    dead, of, _ = dead_count(t)
    return dataclasses.replace(step_summary(step, dead, of, t.cells, t.near_zero_cells, t.nonfinite), totals=t)


def step_summary(step, dead, rows, cells, near_zero_cells, nonfinite=(0.0, 0.0, 0.0)):
    """The `StepSummary` of a record with `dead` dead rows of `rows`, these result cell totals and its non-finite
    counts (first, second, result)."""
    return StepSummary(
        int(step),
        dead / rows if rows else 0.0,
        float(near_zero_fraction(near_zero_cells, cells, empty=0.0)),
        any_non_finite(nonfinite),
        non_finite_results(nonfinite, cells),
    )


def any_non_finite(nonfinite):
    """Whether a record's non-finite counts name any value (a NaN count, as with near_zero="off", names none)."""
    return bool(np.any(np.asarray(nonfinite, np.float64) > 0))


def non_finite_results(nonfinite, cells):
    """Non-finite result cells / result cells, in [0, 1] (0 for an unknown, NaN, count)."""
    count = float(nonfinite[2])
    return min(1.0, count / float(cells)) if cells > 0 and count > 0 else 0.0


@dataclasses.dataclass(frozen=True)
class SeriesTable:
    """The layer totals of one tag's S records, one row per record in the order given (the step lookups need
    ascending steps). Pair columns are in `metadata.TERMS` order."""

    steps: np.ndarray  # [S] int64
    counts: np.ndarray  # [S, 9] products per pair, all cells, summed over units
    sums: np.ndarray  # [S, 9]
    near_zero_counts: np.ndarray  # [S, 9] products per pair in near-zero result cells
    near_zero_sums: np.ndarray  # [S, 9]
    cells: np.ndarray  # [S] result cells
    near_zero_cells: np.ndarray  # [S] near-zero result cells
    thresholds: np.ndarray  # [S, 3] first, second, result
    nonfinite: np.ndarray  # [S, 3] non-finite values in first, second, result
    rows: np.ndarray  # [S] int64 stored rows
    group_size: np.ndarray  # [S] int64 units per stored row
    dead_rows: tuple  # [S] tuples of dead stored row indices (`dead_rows`)
    result_magnitude: np.ndarray  # [S] sum of |result| (NaN: not recorded)
    reference: np.ndarray  # [S] the role's reference column, summed over units
    padding_only: np.ndarray  # [S] padding-only result cells (NaN: version 1)
    output_threshold: np.ndarray  # [S] activation: threshold of a = f(z) (NaN: version 1)
    dead_near_zero_counts: np.ndarray  # [S, 9] near-zero counts summed over the dead rows only
    units: np.ndarray  # [S] int64 the layer's units
    dead_units: np.ndarray  # [S] dead units counted unit by unit (NaN: not recorded)

    @classmethod
    def of_records(cls, steps, records):
        """The table of `records` (`metadata.Record`s) recorded at `steps` (same length)."""
        if len(steps) != len(records):
            raise ValueError(f"steps and records must have the same length, got {len(steps)} and {len(records)}")
        sums = np.array([r.totals for r in records], np.float64).reshape(len(records), metadata.COLUMNS)
        return cls(
            steps=np.asarray(steps, np.int64),
            **{f: sums[:, c] for f, c in _COLUMNS.items()},
            thresholds=np.array([r.thresholds for r in records], np.float64),
            nonfinite=np.array([r.nonfinite for r in records], np.float64),
            rows=np.array([len(r.cells) for r in records], np.int64),
            group_size=np.array([r.group_size for r in records], np.int64),
            dead_rows=tuple(tuple(dead_rows(r)) for r in records),
            padding_only=np.array([r.padding_only for r in records], np.float64),
            output_threshold=np.array([r.output_threshold for r in records], np.float64),
            dead_near_zero_counts=np.array([r.dead_near_zero_counts for r in records], np.float64).reshape(
                len(records), 9
            ),
            units=np.array([r.units for r in records], np.int64),
            dead_units=np.array([r.dead_units for r in records], np.float64),
        )

    def __len__(self):
        return len(self.steps)

    @property
    def nbytes(self):
        arrays = [getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "dead_rows"]
        return sum(a.nbytes for a in arrays) + sum(8 * len(d) + 56 for d in self.dead_rows) + 150 * len(self) + 200

    @property
    def near_zero_fraction(self):
        """[S] near-zero result cells / result cells (NaN for a record without cells)."""
        return near_zero_fraction(self.near_zero_cells, self.cells)

    def index_at(self, step):
        """Index of the latest record at or before `step` (the latest if None); -1 if none."""
        return index_at(self.steps, step)

    def totals_at(self, i):
        """The `Totals` of record i."""
        return Totals(
            counts=self.counts[i],
            sums=self.sums[i],
            near_zero_counts=self.near_zero_counts[i],
            near_zero_sums=self.near_zero_sums[i],
            cells=self.cells[i],
            near_zero_cells=self.near_zero_cells[i],
            thresholds=self.thresholds[i],
            nonfinite=self.nonfinite[i],
            rows=int(self.rows[i]),
            group_size=int(self.group_size[i]),
            dead_rows=self.dead_rows[i],
            result_magnitude=self.result_magnitude[i],
            reference=self.reference[i],
            padding_only=self.padding_only[i],
            output_threshold=self.output_threshold[i],
            dead_near_zero_counts=self.dead_near_zero_counts[i],
            units=int(self.units[i]),
            dead_units=self.dead_units[i],
        )

    def record_at(self, step):
        """(step, `Totals`) of the latest record at or before `step` (the latest if None), or None."""
        i = self.index_at(step)
        return None if i < 0 else (int(self.steps[i]), self.totals_at(i))

    @functools.cached_property
    def summaries(self):
        """[S] `StepSummary` of each record."""
        return tuple(summarise(self.steps[i], self.totals_at(i)) for i in range(len(self)))

    def history(self, step):
        """The `StepSummary`s of the records before `step`."""
        return list(self.summaries[: int(np.searchsorted(self.steps, step, side="left"))])
