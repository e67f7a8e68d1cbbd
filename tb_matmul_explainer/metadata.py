"""The on-disk contract: plugin name, summary metadata and the record layout (contract version 1).

One tag per (layer, role). Every recorded step writes one float64 tensor of shape `[rows + 1, 38]`:

  row 0 (header):  [0] threshold of the first operand   [1] threshold of the second operand
                   [2] threshold of the result          [3..5] non-finite values in first, second, result
                   [6] units (the layer's true number)   [7] group size g (units summed per row)
                   [8..37] zero
  rows 1..rows:    one row per group of g consecutive units (g = 1 up to `max_units` units):
                   [0..8]   counts of the nine pairs, all cells           (pair order = `TERMS`)
                   [9..17]  sums of the nine pairs, all cells
                   [18..26] counts of the nine pairs, near-zero result cells only
                   [27..35] sums of the nine pairs, near-zero result cells only
                   [36]     result cells of the row's units   [37] near-zero result cells

Beyond `max_units` units, consecutive units are summed in groups of `g = ceil(units / max_units)` (the last
group may be smaller), so `rows = ceil(units / g) <= max_units` and a record is at most
`(max_units + 1) * 38 * 8` bytes: 78,128 bytes at the default `max_units=256`. Counts are exact integers in
float64 (up to 2**53).

Pairs are `PP PZ PN ZP ZZ ZN NP NZ NN`, first letter = first operand. Roles and their operands:
  forward          first = layer input, second = kernel, result = input @ kernel (no bias); units = output units
  kernel_gradient  first = layer input, second = d(loss)/d(result), result = kernel gradient; units = output units
  input_gradient   first = d(loss)/d(result), second = kernel, result = input gradient; units = input features

The SummaryMetadata content (written with every event, so kept tiny) is compact UTF-8 JSON:
  {"v": 1, "role": ..., "op": ..., "operands": [first, second], "layer": name, "index": position in the model,
   "units": int, "confidence": float, "thresholds": [first, second, result] (null = derived)}
"""

import dataclasses
import json
import math

import numpy as np

PLUGIN_NAME = "matmul_explainer"
CONTRACT_VERSION = 1
TERMS = ("PP", "PZ", "PN", "ZP", "ZZ", "ZN", "NP", "NZ", "NN")
ROLES = ("forward", "kernel_gradient", "input_gradient")
OPS = ("dense", "einsum_dense", "conv1d", "conv2d", "conv3d")
OPERANDS = {
    "forward": ("input", "kernel"),
    "kernel_gradient": ("input", "output_gradient"),
    "input_gradient": ("output_gradient", "kernel"),
}

DEFAULT_MAX_UNITS = 256
COLUMNS = 38
COUNTS = slice(0, 9)
SUMS = slice(9, 18)
NEAR_ZERO_COUNTS = slice(18, 27)
NEAR_ZERO_SUMS = slice(27, 36)
CELLS = 36
NEAR_ZERO_CELLS = 37
HEADER_THRESHOLDS = slice(0, 3)
HEADER_NONFINITE = slice(3, 6)
HEADER_UNITS = 6
HEADER_GROUP_SIZE = 7


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


def group_size(units, max_units=DEFAULT_MAX_UNITS):
    """Units summed per stored row."""
    if max_units < 1:
        raise ValueError(f"max_units must be >= 1, got {max_units}")
    return max(1, math.ceil(units / max_units))


def record_bytes(units, max_units=DEFAULT_MAX_UNITS):
    """Bytes of one record's tensor values."""
    return (math.ceil(units / group_size(units, max_units)) + 1) * COLUMNS * 8


def create_summary_metadata(display_name, description, *, role, op, layer, index, units, confidence,
                            thresholds=(None, None, None)):
    """A `SummaryMetadata` proto for one (layer, role) tag, with `data_class=DATA_CLASS_TENSOR`."""
    from tensorboard.compat.proto import summary_pb2

    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    if op not in OPS:
        raise ValueError(f"op must be one of {OPS}, got {op!r}")
    content = {
        "v": CONTRACT_VERSION, "role": role, "op": op, "operands": list(OPERANDS[role]), "layer": str(layer),
        "index": int(index), "units": int(units), "confidence": float(confidence),
        "thresholds": [None if t is None else float(t) for t in thresholds],
    }
    return summary_pb2.SummaryMetadata(
        display_name=display_name or "",
        summary_description=description or "",
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME, content=json.dumps(content, separators=(",", ":")).encode("utf-8")),
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
    version = raw.get("v")
    if version != CONTRACT_VERSION:
        raise ContractError(f"summaries written with contract version {version!r}; this version of "
                            f"tb-matmul-explainer reads version {CONTRACT_VERSION} (upgrade the package)")
    try:
        return PluginMetadata(
            role=str(raw["role"]), op=str(raw["op"]), operands=tuple(raw["operands"]), layer=str(raw["layer"]),
            index=int(raw["index"]), units=int(raw["units"]), confidence=float(raw["confidence"]),
            thresholds=tuple(raw["thresholds"]), version=version)
    except (KeyError, TypeError, ValueError) as e:
        raise ContractError(f"metadata content is missing or has a malformed field: {e!r}") from None


def pack_record(totals, max_units=DEFAULT_MAX_UNITS):
    """Packs `aggregates.UnitTotals` into the `[rows + 1, 38]` float64 record tensor (TensorFlow ops)."""
    import tensorflow as tf

    units = totals.counts.shape[0]
    if units is None:
        raise ValueError("the number of units must be known when the summary is traced")
    g = group_size(units, max_units)
    rows = tf.concat([
        tf.cast(totals.counts, tf.float64), tf.cast(totals.sums, tf.float64),
        tf.cast(totals.near_zero_counts, tf.float64), tf.cast(totals.near_zero_sums, tf.float64),
        tf.cast(totals.cells, tf.float64)[:, None], tf.cast(totals.near_zero_cells, tf.float64)[:, None],
    ], axis=1)
    if g > 1:
        rows = tf.math.segment_sum(rows, tf.range(units) // g)
    header = tf.concat([
        tf.cast(totals.thresholds, tf.float64), tf.cast(totals.nonfinite, tf.float64),
        tf.constant([units, g], tf.float64), tf.zeros([COLUMNS - 8], tf.float64),
    ], axis=0)
    return tf.concat([header[None, :], rows], axis=0)


@dataclasses.dataclass(frozen=True)
class Record:
    """One unpacked record (NumPy arrays; R = stored rows)."""
    counts: np.ndarray            # [R, 9]
    sums: np.ndarray              # [R, 9]
    near_zero_counts: np.ndarray  # [R, 9]
    near_zero_sums: np.ndarray    # [R, 9]
    cells: np.ndarray             # [R]
    near_zero_cells: np.ndarray   # [R]
    thresholds: np.ndarray        # [3] first, second, result
    nonfinite: np.ndarray         # [3]
    units: int
    group_size: int


def unpack_record(array):
    """Parses a record array; raises `ContractError` if it does not have the version-1 layout."""
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != COLUMNS or array.shape[0] < 1:
        raise ContractError(f"record must have shape [rows + 1, {COLUMNS}], got {list(array.shape)}")
    header, rows = array[0], array[1:]
    units, g = header[HEADER_UNITS], header[HEADER_GROUP_SIZE]
    if not (units >= 0 and g >= 1 and units == int(units) and g == int(g)
            and rows.shape[0] == math.ceil(units / g)):
        raise ContractError(f"record header says {units} units in groups of {g}, but it has {rows.shape[0]} rows")
    return Record(counts=rows[:, COUNTS], sums=rows[:, SUMS], near_zero_counts=rows[:, NEAR_ZERO_COUNTS],
                  near_zero_sums=rows[:, NEAR_ZERO_SUMS], cells=rows[:, CELLS], near_zero_cells=rows[:, NEAR_ZERO_CELLS],
                  thresholds=header[HEADER_THRESHOLDS], nonfinite=header[HEADER_NONFINITE], units=int(units),
                  group_size=int(g))
