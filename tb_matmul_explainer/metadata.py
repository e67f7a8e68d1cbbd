"""The on-disk contract: plugin name, summary metadata and the record layout (contract version 3; 1 and 2 are read).

One tag per (layer, role). Every recorded step writes one float64 tensor. Its values are defined on the per-unit
ROWS of 40 columns below (one row per group of g consecutive units; g = 1 up to `max_units` units):

  [0..8]   counts of the nine pairs, all cells           (pair order = `TERMS`)
  [9..17]  sums of the nine pairs, all cells
  [18..26] counts of the nine pairs, near-zero result cells only
  [27..35] sums of the nine pairs, near-zero result cells only
  [36]     result cells of the row's units   [37] near-zero result cells
  [38]     sum of |result| over the row's cells (NaN: not recorded)
  [39]     role-specific reference (`REFERENCE` below; 0 where the role has none)

Version 3 is one flat vector of `65 + 2 R` values (R = stored rows), `65 + 40 R` with unit detail:

  [0..15]  header: [0] threshold of the first operand   [1] threshold of the second operand
                   [2] threshold of the result          [3..5] non-finite values in first, second, result
                   [6] units (the layer's true number)   [7] group size g (units summed per row)
                   [8] padding-only result cells (kernel_gradient of a SAME convolution: kernel entries whose
                       taps only ever meet padding, summed over units; 0 otherwise)
                   [9] activation: the threshold of the activation output a = f(z) (0 otherwise)
                   [10] R   [11] 1 if the record carries unit detail, else 0
                   [12] 1 if [13] holds the dead units (0 in records written before it did)
                   [13] dead units, counted unit by unit before grouping (cells > 0 and near-zero cells >=
                        `DEAD_CELLS` x cells): a dead unit in a group of live ones still counts   [14..15] zero
  [16..55] the layer totals: the 40 columns summed over all rows (exactly the per-unit rows' sum)
  [56..64] near-zero counts of the nine pairs summed over the DEAD rows only (cells > 0 and near-zero cells
           >= `DEAD_CELLS` x cells)
  without unit detail:  [65 .. 65+R) cells per row (column 36), [65+R .. 65+2R) near-zero cells per row (column 37)
  with unit detail:     [65 .. 65+40R) the R rows of 40 columns, row-major (their cells among them)

Every record keeps what the diagnosis, the overview and the unit heatmap read at every step (layer totals, dead
rows, per-row near-zero fractions); the full per-unit pair table (/units) is kept only in records with unit detail
(`ExplainerCallback(unit_detail_every=N)`: every N-th recorded step and each fit's first; the `summary` ops
always). 4.6 kB per 256-unit record without unit detail, 82.4 kB with it.

Versions 1 and 2 are 2-D, `[rows + 1, 38]` and `[rows + 1, 40]`: row 0 is the header ([0..9] as above, version 1:
[0..7]), rows 1..R the per-unit rows (version 1: columns 0..37). They stay readable (every record with unit
detail); version 1's columns 38..39 and header 8..9 read as NaN (unknown), and the diagnosis treats them as before.

Beyond `max_units` units, consecutive units are summed in groups of `g = ceil(units / max_units)` (the last
group may be smaller), so `R = ceil(units / g) <= max_units`. Counts are exact integers in float64 (up to 2**53).

Pairs are `PP PZ PN ZP ZZ ZN NP NZ NN`, first letter = first operand. Roles and their operands:
  forward              first = layer input, second = kernel, result = input @ kernel (no bias); units = output
                       units; [39] = 0
  kernel_gradient      first = layer input, second = d(loss)/d(result), result = kernel gradient; units = output
                       units; [39] = sum of |kernel| over the row's kernel entries (the weights the gradient
                       updates, for |dW| / |W|)
  input_gradient       first = d(loss)/d(result), second = kernel, result = input gradient; units = input
                       features; [39] = 0
  activation           z = m + b, a = f(z) (layers with a non-linear activation of their own): first = matmul
                       part m (input @ kernel), second = bias b (0 without one), result = pre-activation z;
                       units = output units. A cell's pair is (class of m, class of b); its count is 1 and its
                       "sum" is z, so the nine sums add up to sum(z). The "near-zero" columns [18..35], [37]
                       count the cells where the activation is INACTIVE (`activations.py`: |f'(z)| <= 1% of its
                       largest slope), not near-zero z. [39] = activation outputs a in class Z (threshold:
                       header [9]). Header [2] = 0 (z has no threshold).
  activation_gradient  first = d(loss)/d(a), second = f'(z), result = d(loss)/dz = first * second, elementwise
                       (the semantics of `ops.multiply_classify`, one product per cell); units = output units;
                       [39] = 0. f'(z) is in class Z exactly where the activation is inactive (header [1]: the
                       next float32 above 1% of its largest slope). Elementwise activations only (no softmax).
  input_features       the layer input x alone, per input feature (the last axis; EinsumDense: its contracted
                       axes flattened): units = input features; columns [0..35] are 0; [36] = values of the
                       feature seen (batch rows x positions), [37] = those in class Z (x's threshold, header [0],
                       the forward record's), [38] = sum |x|, [39] = those exactly zero. Header [1], [2] = 0.
Ops `attention_scores` and `attention_values` (the einsums of MultiHeadAttention, GroupQueryAttention, Attention and
AdditiveAttention, `layers/attention.py`) are matmuls between two activations with one unit per (query) head (one for
Attention and AdditiveAttention), for the three matmul roles; their operands are named in `OP_OPERANDS` (the second
operand, K or V, takes the kernel's place; [39] of kernel_gradient = sum |K| or |V|).

The SummaryMetadata content (written with every event, so kept tiny) is compact UTF-8 JSON:
  {"v": 3, "role": ..., "op": ..., "operands": [first, second], "layer": name, "index": position in the model,
   "units": int, "confidence": float, "thresholds": [first, second, result] (null = derived),
   "group": position of the outermost layer that is not a Model and holds this one (MultiHeadAttention for its
            query/key/value/output projections; the layer itself otherwise): layers of one group read the same
            input at the same depth,
   "activation": Keras name of f (activation roles; else absent),
   "producer": name of the layer that produced the input (input_features; null if not resolved),
   "producer_kind": "input" (the model's input, or a lookup/encoding layer of it), "activation" (a layer that
                    applies a non-linear activation, its own or as an Activation/ReLU/... layer), "join" (several
                    inputs: Concatenate, Add, ...) or "layer" (any other, e.g. BatchNormalization),
   "zeroed_by": input_features: the layers between the producer and this layer that set values to exactly zero
                (Dropout while training, SpatialDropout, ZeroPadding), producer side first; absent when none,
   "loss_reads_logits": activation role: true when the loss differentiated the layer's pre-activation z
                    directly, so that no gradient passed through f (Keras' cross-entropy reads the logits of a
                    sigmoid or softmax output); false when dJ/da was seen; absent when not known (no gradient role
                    recorded, or written before this field existed)}
Layers that only move or pool values (Flatten, Reshape, Dropout, padding, pooling, ...) are looked through: the
producer is the layer before them.
"""

import dataclasses
import json
import math
from typing import NamedTuple

import numpy as np

PLUGIN_NAME = "matmul_explainer"
CONTRACT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
TERMS = ("PP", "PZ", "PN", "ZP", "ZZ", "ZN", "NP", "NZ", "NN")
ROLES = ("forward", "kernel_gradient", "input_gradient", "activation", "activation_gradient", "input_features")
MATMUL_ROLES = ROLES[:3]
OPS = (
    "dense",
    "einsum_dense",
    "conv1d",
    "conv2d",
    "conv3d",
    "depthwise_conv1d",
    "depthwise_conv2d",
    "conv1d_transpose",
    "conv2d_transpose",
    "conv3d_transpose",
    "simple_rnn",
    "lstm",
    "gru",
    "attention_scores",
    "attention_values",
)
# Recurrent ops: a layer's records (`<path>/kernel`, `<path>/recurrent_kernel`) have the kernels' columns as units
# (forward, kernel_gradient), gate k holding units k*U .. (k+1)*U - 1 in this (Keras') order. (GRU with
# reset_after=False: `recurrent_kernel` holds update and reset, `recurrent_kernel_candidate` the candidate.)
GATES = {
    "simple_rnn": ("state",),
    "lstm": ("input", "forget", "cell", "output"),
    "gru": ("update", "reset", "candidate"),
}
OPERANDS = {
    "forward": ("input", "kernel"),
    "kernel_gradient": ("input", "output_gradient"),
    "input_gradient": ("output_gradient", "kernel"),
    "activation": ("matmul", "bias"),
    "activation_gradient": ("activation_output_gradient", "activation_derivative"),
    "input_features": ("input", "none"),
}
# The matmuls between two activations name their operands (`layers/attention.py`): query = the scaled query.
OP_OPERANDS = {
    "attention_scores": {
        "forward": ("query", "key"),
        "kernel_gradient": ("query", "output_gradient"),
        "input_gradient": ("output_gradient", "key"),
    },
    "attention_values": {
        "forward": ("attention", "value"),
        "kernel_gradient": ("attention", "output_gradient"),
        "input_gradient": ("output_gradient", "value"),
    },
}

DEFAULT_MAX_UNITS = 256
COLUMNS = 40
V1_COLUMNS = 38
COUNTS = slice(0, 9)
SUMS = slice(9, 18)
NEAR_ZERO_COUNTS = slice(18, 27)
NEAR_ZERO_SUMS = slice(27, 36)
CELLS = 36
NEAR_ZERO_CELLS = 37
RESULT_MAGNITUDE = 38
REFERENCE = 39
HEADER_THRESHOLDS = slice(0, 3)
HEADER_NONFINITE = slice(3, 6)
HEADER_UNITS = 6
HEADER_GROUP_SIZE = 7
HEADER_PADDING_ONLY = 8
HEADER_OUTPUT_THRESHOLD = 9
HEADER_ROWS = 10
HEADER_DETAIL = 11
HEADER_HAS_DEAD_UNITS = 12
HEADER_DEAD_UNITS = 13
HEADER_SIZE = 16  # version 3: the header's length, then the layer totals and the dead rows' near-zero counts
TOTALS = slice(HEADER_SIZE, HEADER_SIZE + COLUMNS)
DEAD_NEAR_ZERO_COUNTS = slice(TOTALS.stop, TOTALS.stop + 9)
PER_ROW = DEAD_NEAR_ZERO_COUNTS.stop  # version 3: cells per row start here
#: A stored row is dead when its results are near zero in at least this share of its cells.
DEAD_CELLS = 0.99


class ContractError(ValueError):
    """Data that does not follow a contract version this code understands."""


@dataclasses.dataclass(frozen=True)
class PluginMetadata:
    """Parsed metadata content of one tag."""

    role: str
    op: str
    operands: tuple
    layer: str
    index: int
    units: int
    confidence: float
    thresholds: tuple
    version: int = CONTRACT_VERSION
    activation: str = None  # activation roles: the Keras name of f
    producer: str = None  # input_features: the layer that produced the input (None: not resolved)
    producer_kind: str = None  # "input", "activation", "join" or "layer"
    zeroed_by: tuple = ()  # input_features: layers between producer and layer that zero values (Dropout, ...)
    group: int = None  # the outermost non-Model layer holding this one (None: the layer itself)
    loss_reads_logits: bool = None  # activation: the loss differentiated z directly (None: not known)


def group_size(units, max_units=DEFAULT_MAX_UNITS):
    """Units summed per stored row."""
    if max_units < 1:
        raise ValueError(f"max_units must be >= 1, got {max_units}")
    return max(1, math.ceil(units / max_units))


def record_bytes(units, max_units=DEFAULT_MAX_UNITS, detail=True):
    """Bytes of one (version 3) record's tensor values, with or without unit detail."""
    rows = math.ceil(units / group_size(units, max_units))
    return (PER_ROW + (COLUMNS if detail else 2) * rows) * 8


def create_summary_metadata(
    display_name,
    description,
    *,
    role,
    op,
    layer,
    index,
    units,
    confidence,
    thresholds=(None, None, None),
    activation=None,
    producer=None,
    producer_kind=None,
    zeroed_by=(),
    group=None,
):
    """A `SummaryMetadata` proto for one (layer, role) tag, with `data_class=DATA_CLASS_TENSOR`."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    if op not in OPS:
        raise ValueError(f"op must be one of {OPS}, got {op!r}")
    content = {
        "v": CONTRACT_VERSION,
        "role": role,
        "op": op,
        "operands": list(OP_OPERANDS.get(op, OPERANDS).get(role, OPERANDS[role])),
        "layer": str(layer),
        "index": int(index),
        "units": int(units),
        "confidence": float(confidence),
        "thresholds": [None if t is None else float(t) for t in thresholds],
    }
    if group is not None:
        content["group"] = int(group)
    if activation is not None:
        content["activation"] = str(activation)
    if role == "input_features":
        content["producer"] = None if producer is None else str(producer)
        content["producer_kind"] = None if producer_kind is None else str(producer_kind)
        if zeroed_by:
            content["zeroed_by"] = [str(name) for name in zeroed_by]
    return _summary_metadata(display_name, description, content)


def with_loss_reads_logits(summary_metadata, reads):
    """A copy of an activation record's `SummaryMetadata` whose content says whether the loss differentiated the
    layer's pre-activation directly (`loss_reads_logits`; known only when the step is traced)."""
    content = json.loads(summary_metadata.plugin_data.content.decode("utf-8"))
    content["loss_reads_logits"] = bool(reads)
    return _summary_metadata(summary_metadata.display_name, summary_metadata.summary_description, content)


def _summary_metadata(display_name, description, content):
    from tensorboard.compat.proto import summary_pb2

    return summary_pb2.SummaryMetadata(
        display_name=display_name or "",
        summary_description=description or "",
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME, content=json.dumps(content, separators=(",", ":")).encode("utf-8")
        ),
        data_class=summary_pb2.DATA_CLASS_TENSOR,
    )


def parse_plugin_metadata(content):
    """Parses metadata content bytes into `PluginMetadata`; raises `ContractError` for unknown versions."""
    if not isinstance(content, bytes):
        raise TypeError(f"content must be bytes, got {type(content).__name__}")
    try:
        raw = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ContractError(f"metadata content is not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise ContractError("metadata content must be a JSON object")
    zeroed_by = raw.get("zeroed_by") or []
    if not isinstance(zeroed_by, list) or not all(isinstance(name, str) for name in zeroed_by):
        raise ContractError(f"metadata field zeroed_by must be a list of layer names, got {zeroed_by!r}")
    version = raw.get("v")
    if version not in READABLE_VERSIONS:
        raise ContractError(
            f"summaries written with contract version {version!r}; this version of "
            f"tb-matmul-explainer reads versions {READABLE_VERSIONS} (upgrade the package)"
        )
    try:
        return PluginMetadata(
            role=str(raw["role"]),
            op=str(raw["op"]),
            operands=tuple(raw["operands"]),
            layer=str(raw["layer"]),
            index=int(raw["index"]),
            units=int(raw["units"]),
            confidence=float(raw["confidence"]),
            thresholds=tuple(raw["thresholds"]),
            version=version,
            activation=None if raw.get("activation") is None else str(raw["activation"]),
            producer=None if raw.get("producer") is None else str(raw["producer"]),
            producer_kind=None if raw.get("producer_kind") is None else str(raw["producer_kind"]),
            zeroed_by=tuple(zeroed_by),
            group=None if raw.get("group") is None else int(raw["group"]),
            loss_reads_logits=None if raw.get("loss_reads_logits") is None else bool(raw["loss_reads_logits"]),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ContractError(f"metadata content is missing or has a malformed field: {e!r}") from None


class RecordExtras(NamedTuple):
    """What version 2 adds to `aggregates.UnitTotals` (TensorFlow tensors; see the layout above)."""

    result_magnitude: object  # [U] sum of |result| per unit (NaN: not recorded)
    reference: object  # [U] the role's reference column [39]
    padding_only: object  # [] padding-only result cells, summed over units (header [8])
    output_threshold: object  # [] activation: the threshold of a = f(z) (header [9])


def no_extras(units):
    """`RecordExtras` for a record that has none: magnitudes not recorded (NaN), the rest 0."""
    import tensorflow as tf

    return RecordExtras(
        tf.fill([units], tf.constant(math.nan, tf.float64)),
        tf.zeros([units], tf.float64),
        tf.constant(0.0, tf.float64),
        tf.constant(0.0, tf.float64),
    )


def pack_record(totals, max_units=DEFAULT_MAX_UNITS, extras=None, detail=True):
    """Packs `aggregates.UnitTotals` (and `RecordExtras`, default `no_extras`) into the version-3 record vector
    (TensorFlow ops); `detail` (a bool or bool tensor): keep the per-unit rows (unit detail). The pair blocks
    (counts, sums, near-zero counts and sums) are per unit, `[U, 9]`, or already summed per stored row,
    `[ceil(U / group_size), 9]` (the elementwise records count them so); the other fields are per unit."""
    import tensorflow as tf

    units = totals.cells.shape[0]
    if units is None:
        raise ValueError("the number of units must be known when the summary is traced")
    if extras is None:
        extras = no_extras(units)
    g = group_size(units, max_units)
    stored = math.ceil(units / g)
    f64 = lambda t: tf.cast(t, tf.float64)  # noqa: E731
    # Few ops per record (a recording step packs hundreds): one concat of the pair blocks and one stack of the
    # per-unit columns, and the cells read back with one split.
    pairs = [f64(t) for t in (totals.counts, totals.sums, totals.near_zero_counts, totals.near_zero_sums)]
    columns = tf.stack(
        [f64(t) for t in (totals.cells, totals.near_zero_cells, extras.result_magnitude, extras.reference)], 1
    )
    if g == 1:
        rows = tf.concat([*pairs, columns], axis=1)
    elif totals.counts.shape[0] == stored:  # the pair blocks already summed per stored row
        rows = tf.concat([*pairs, tf.math.segment_sum(columns, tf.range(units) // g)], axis=1)
    else:
        rows = tf.math.segment_sum(tf.concat([*pairs, columns], axis=1), tf.range(units) // g)
    _, near_zero_counts, _, cells_and_near_zero, _ = tf.split(
        rows, [NEAR_ZERO_COUNTS.start, 9, CELLS - NEAR_ZERO_COUNTS.stop, 2, COLUMNS - NEAR_ZERO_CELLS - 1], axis=1
    )
    cells, near_zero_cells = tf.unstack(cells_and_near_zero, axis=1)
    dead = tf.cast((cells > 0) & (near_zero_cells >= DEAD_CELLS * cells), tf.float64)
    dead_counts = tf.linalg.matvec(near_zero_counts, dead, transpose_a=True)
    unit_cells = f64(totals.cells)
    dead_units = tf.reduce_sum(
        tf.cast((unit_cells > 0) & (f64(totals.near_zero_cells) >= DEAD_CELLS * unit_cells), tf.float64)
    )

    static = isinstance(detail, bool)
    flag = tf.constant(float(detail), tf.float64) if static else tf.cast(detail, tf.float64)
    header = tf.concat(
        [
            f64(totals.thresholds),
            f64(totals.nonfinite),
            tf.stack(
                [
                    float(units),
                    float(g),
                    f64(extras.padding_only),
                    f64(extras.output_threshold),
                    float(stored),
                    flag,
                    1.0,
                    dead_units,
                ]
            ),
            np.zeros(HEADER_SIZE - HEADER_DEAD_UNITS - 1),
        ],
        axis=0,
    )
    # Unit detail: the rows themselves; else each row's cells and near-zero cells. A bool tensor picks one by
    # slicing both laid end to end (no conditional in the recording step's graph).
    detailed, compact = tf.reshape(rows, [-1]), tf.reshape(tf.transpose(cells_and_near_zero), [-1])
    if static:
        body = detailed if detail else compact
    else:
        # [begin, size] of the compact part, moved to the detailed part when `detail` holds.
        begin_size = np.array([COLUMNS * stored, 2 * stored]) + tf.cast(detail, tf.int64) * np.array(
            [-COLUMNS * stored, (COLUMNS - 2) * stored]
        )
        begin, size = tf.split(begin_size, 2)
        body = tf.slice(tf.concat([detailed, compact], 0), begin, size)
    return tf.concat([header, tf.reduce_sum(rows, 0), dead_counts, body], axis=0)


@dataclasses.dataclass(frozen=True)
class Record:
    """One unpacked record (NumPy arrays; R = stored rows). Version-1 records have NaN in the version-2 fields.
    A version-3 record without unit detail (`detail` False) has None in its per-unit pair fields (counts, sums,
    near_zero_counts, near_zero_sums, result_magnitude, reference); `cells` and `near_zero_cells` are always
    per row. `totals` is the layer totals row ([40] columns summed over the rows) and `dead_near_zero_counts` the
    near-zero counts of the dead rows; both are derived from the rows when not given."""

    counts: np.ndarray  # [R, 9] (None: no unit detail)
    sums: np.ndarray  # [R, 9]
    near_zero_counts: np.ndarray  # [R, 9]
    near_zero_sums: np.ndarray  # [R, 9]
    cells: np.ndarray  # [R]
    near_zero_cells: np.ndarray  # [R]
    thresholds: np.ndarray  # [3] first, second, result
    nonfinite: np.ndarray  # [3]
    units: int
    group_size: int
    result_magnitude: np.ndarray = None  # [R] sum of |result| (NaN: unknown)
    reference: np.ndarray = None  # [R] the role's reference column
    padding_only: float = math.nan  # padding-only result cells (kernel_gradient)
    output_threshold: float = math.nan  # activation: threshold of a = f(z)
    detail: bool = True  # the per-unit pair fields are present
    totals: np.ndarray = None  # [COLUMNS] the rows summed over units
    dead_near_zero_counts: np.ndarray = None  # [9] near-zero counts summed over the dead rows
    dead_units: float = math.nan  # dead units counted unit by unit (header [13]; NaN: not recorded)

    def __post_init__(self):
        if self.detail and self.result_magnitude is None:
            nan = np.full(len(self.cells), np.nan)
            object.__setattr__(self, "result_magnitude", nan)
            object.__setattr__(self, "reference", nan.copy())
        if self.totals is None or self.dead_near_zero_counts is None:
            if not self.detail:
                raise ValueError("a record without unit detail needs its totals and dead_near_zero_counts")
            rows = _rows_of(self)
            if self.totals is None:
                object.__setattr__(self, "totals", rows.sum(axis=0))
            if self.dead_near_zero_counts is None:
                object.__setattr__(self, "dead_near_zero_counts", rows[dead_rows(self), NEAR_ZERO_COUNTS].sum(axis=0))


ROW_FIELDS = {
    "counts": COUNTS,
    "sums": SUMS,
    "near_zero_counts": NEAR_ZERO_COUNTS,
    "near_zero_sums": NEAR_ZERO_SUMS,
    "cells": CELLS,
    "near_zero_cells": NEAR_ZERO_CELLS,
    "result_magnitude": RESULT_MAGNITUDE,
    "reference": REFERENCE,
}


_PAIR_FIELDS = ("counts", "sums", "near_zero_counts", "near_zero_sums", "result_magnitude", "reference")


def _rows_of(record):
    """A record's per-unit rows as a `[R, COLUMNS]` array (its unit detail)."""
    rows = np.zeros((len(record.cells), COLUMNS))
    for field, columns in ROW_FIELDS.items():
        rows[:, columns] = getattr(record, field)
    return rows


def dead_rows(record):
    """Indices of stored rows whose results are near zero in at least DEAD_CELLS of their cells."""
    return np.flatnonzero(_dead(record.cells, record.near_zero_cells))


def _dead(cells, near_zero_cells):
    return (cells > 0) & (near_zero_cells >= DEAD_CELLS * cells)


def unpack_record(array):
    """Parses a record array of version 3 (a vector), 2 (`[rows + 1, 40]`) or 1 (`[rows + 1, 38]`, the version-2
    fields NaN); raises `ContractError` for any other layout."""
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 1:
        return _unpack_compact(array)
    if array.ndim != 2 or array.shape[1] not in (COLUMNS, V1_COLUMNS) or array.shape[0] < 1:
        raise ContractError(
            f"record must be a vector (version 3) or have shape [rows + 1, {COLUMNS}] (or [rows + 1, "
            f"{V1_COLUMNS}] for version 1), got {list(array.shape)}"
        )
    if array.shape[1] == V1_COLUMNS:
        array = np.concatenate([array, np.full((array.shape[0], COLUMNS - V1_COLUMNS), np.nan)], axis=1)
        array[0, HEADER_PADDING_ONLY : HEADER_OUTPUT_THRESHOLD + 1] = np.nan
    header, rows = array[0, :HEADER_HAS_DEAD_UNITS], array[1:]  # (versions 1 and 2 hold no dead-unit count)
    _check_rows(header, rows.shape[0])
    cells, near_zero_cells = rows[:, CELLS], rows[:, NEAR_ZERO_CELLS]
    dead = _dead(cells, near_zero_cells)
    return _record(header, cells, near_zero_cells, rows, rows.sum(axis=0), rows[dead, NEAR_ZERO_COUNTS].sum(axis=0))


def has_unit_detail(array):
    """Whether a readable record array carries unit detail (versions 1 and 2 always do)."""
    array = np.asarray(array)
    return array.ndim == 2 or bool(array[HEADER_DETAIL] == 1)


def _whole(x):
    """Whether x is a finite whole number >= 0."""
    return bool(np.isfinite(x) and x >= 0 and x == int(x))


def _check_rows(header, rows):
    units, g = header[HEADER_UNITS], header[HEADER_GROUP_SIZE]
    if not (_whole(units) and _whole(g) and g >= 1 and rows == math.ceil(units / g)):
        raise ContractError(f"record header says {units:g} units in groups of {g:g}, but it has {rows} rows")


def _unpack_compact(array):
    if array.shape[0] < PER_ROW:
        raise ContractError(f"a version-3 record has at least {PER_ROW} values, got {array.shape[0]}")
    header = array[:HEADER_SIZE]
    rows, detail = header[HEADER_ROWS], header[HEADER_DETAIL]
    if not (_whole(rows) and detail in (0, 1)):
        raise ContractError(f"record header says {rows} rows, unit detail {detail}: not a version-3 header")
    rows, detail = int(rows), bool(detail)
    _check_rows(header, rows)
    size = PER_ROW + (COLUMNS if detail else 2) * rows
    if array.shape[0] != size:
        raise ContractError(f"a version-3 record of {rows} rows has {size} values, got {array.shape[0]}")
    body = array[PER_ROW:].reshape((rows, COLUMNS) if detail else (2, rows))
    cells, near_zero_cells = (body[:, CELLS], body[:, NEAR_ZERO_CELLS]) if detail else body
    return _record(
        header, cells, near_zero_cells, body if detail else None, array[TOTALS], array[DEAD_NEAR_ZERO_COUNTS]
    )


def _dead_units(header):
    """Header [13] where [12] says it is recorded (a version-3 header of this code), else NaN."""
    if len(header) > HEADER_DEAD_UNITS and header[HEADER_HAS_DEAD_UNITS] == 1:
        return float(header[HEADER_DEAD_UNITS])
    return math.nan


def _record(header, cells, near_zero_cells, rows, totals, dead_counts):
    """A `Record` from a header, the per-row cells, the unit-detail rows (None: none) and the totals."""
    pairs = {f: None if rows is None else rows[:, c] for f, c in ROW_FIELDS.items() if f in _PAIR_FIELDS}
    return Record(
        cells=cells,
        near_zero_cells=near_zero_cells,
        thresholds=header[HEADER_THRESHOLDS],
        nonfinite=header[HEADER_NONFINITE],
        units=int(header[HEADER_UNITS]),
        group_size=int(header[HEADER_GROUP_SIZE]),
        padding_only=float(header[HEADER_PADDING_ONLY]),
        output_threshold=float(header[HEADER_OUTPUT_THRESHOLD]),
        detail=rows is not None,
        totals=totals,
        dead_near_zero_counts=dead_counts,
        dead_units=_dead_units(header),
        **pairs,
    )
