"""Reads our summaries from a log directory into plain arrays, without starting TensorBoard.

    result = loader.load(logdir)            # result.runs: {run: {(layer, role): LayerSeries}}
    frame = loader.to_dataframe(series)     # one row per (run, layer, role, step, pair) if pandas is installed

Uses TensorBoard's own event multiplexer, keeping every record. Tags written by an unknown contract version are
not dropped silently: they are listed in `LoadResult.unreadable` with the reason. The matmuls the writer could not
record (the text summaries `matmul_explainer/not_recorded/<path>`) are in `LoadResult.not_recorded`, the layers it
recorded only in part (`matmul_explainer/partly_recorded/<layer>`) in `LoadResult.partly_recorded`.
"""

import dataclasses
import functools
import os

import numpy as np

from tb_matmul_explainer import explain, metadata


@dataclasses.dataclass
class LayerSeries:
    """One (layer, role) tag of a run: its metadata and its records in step order."""

    tag: str
    info: metadata.PluginMetadata
    steps: list
    records: list  # metadata.Record per step

    @functools.cached_property
    def table(self):
        """The records' layer totals per step (`explain.SeriesTable`; computed once)."""
        return explain.SeriesTable.of_records(self.steps, self.records)

    def record_at(self, step=None):
        """(step, Record) of the latest record at or before `step` (the latest if None), or None."""
        i = self.table.index_at(step)
        return (self.steps[i], self.records[i]) if i >= 0 else None

    def history(self, step):
        """`explain.StepSummary` of every record before `step`."""
        return self.table.history(step)

    def layer_totals(self, field):
        """[steps, ...] array of a Record field summed over units (e.g. "near_zero_counts" -> [steps, 9])."""
        if not self.records:
            return np.zeros((0,))
        if field in explain.table.SUMMED_FIELDS:
            return getattr(self.table, field)
        return np.stack([getattr(r, field).sum(axis=0) for r in self.records])


NOT_RECORDED_PREFIX = "matmul_explainer/not_recorded/"  # (the keras recorder's NOT_RECORDED_TAG_PREFIX)
PARTLY_RECORDED_PREFIX = "matmul_explainer/partly_recorded/"  # (its PARTLY_RECORDED_TAG_PREFIX)


@dataclasses.dataclass
class LoadResult:
    runs: dict  # {run: {(layer, role): LayerSeries}}, layers in model order
    unreadable: list  # [(run, tag, reason)]
    not_recorded: dict = dataclasses.field(default_factory=dict)  # {run: [(path, reason)]}, in the order written
    partly_recorded: dict = dataclasses.field(default_factory=dict)  # {run: [(layer, what is missing)]}, likewise


def _notes(mux, tensor_util, prefix):
    """{run: [(path, reason)]} of the text summaries tagged `prefix` + path (the not-recorded and partly-recorded
    notes), in the order the writer wrote them (model order), each its latest value."""
    out = {}
    for run, tags in sorted(mux.PluginRunToTagToContent("text").items()):
        for tag in tags:
            if tag.startswith(prefix) and len(tag) > len(prefix):
                events = mux.Tensors(run, tag)
                value = tensor_util.make_ndarray(events[-1].tensor_proto).item() if events else b""
                reason = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
                out.setdefault(run, []).append((tag[len(prefix) :], reason))
    return out


def load(logdir):
    """Loads every run under `logdir` that holds matmul-explainer summaries.

    Raises FileNotFoundError if `logdir` does not exist and ValueError if it holds no such summaries.
    """
    from tensorboard.backend.event_processing import plugin_event_multiplexer
    from tensorboard.util import tensor_util

    if not os.path.isdir(logdir):
        raise FileNotFoundError(f"logdir {logdir!r} is not a directory")
    mux = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={metadata.PLUGIN_NAME: 0, "text": 1})
    mux.AddRunsFromDirectory(logdir)
    mux.Reload()
    runs, unreadable = {}, []
    for run, tag_contents in sorted(mux.PluginRunToTagToContent(metadata.PLUGIN_NAME).items()):
        series = []
        for tag, content in sorted(tag_contents.items()):
            try:
                info = metadata.parse_plugin_metadata(content)
                events = mux.Tensors(run, tag)
                records = [metadata.unpack_record(tensor_util.make_ndarray(e.tensor_proto)) for e in events]
            except metadata.ContractError as e:
                unreadable.append((run, tag, str(e)))
                continue
            series.append(LayerSeries(tag, info, [e.step for e in events], records))
        if series:
            series.sort(key=lambda s: (s.info.index, s.info.layer, metadata.ROLES.index(s.info.role)))
            runs[run] = {(s.info.layer, s.info.role): s for s in series}
    not_recorded = _notes(mux, tensor_util, NOT_RECORDED_PREFIX)
    partly_recorded = _notes(mux, tensor_util, PARTLY_RECORDED_PREFIX)
    if not runs and not unreadable:
        raise ValueError(
            f"logdir {logdir!r} holds no matmul-explainer summaries (record some with "
            f"tb_matmul_explainer.keras.ExplainerCallback or tb_matmul_explainer.summary)"
        )
    return LoadResult(runs, unreadable, not_recorded, partly_recorded)


def to_dataframe(result):
    """A long pandas DataFrame: run, layer, index, role, step, pair, count, sum, near_zero_count, near_zero_sum,
    cells, near_zero_cells, result_magnitude (sum of |result|), reference (the role's reference column,
    `metadata.py`) (layer totals; the last two NaN for version-1 records). Raises ImportError naming pandas if it
    is not installed."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("to_dataframe needs pandas: pip install pandas") from None
    rows = []
    for run, layers in result.runs.items():
        for (layer, role), s in layers.items():
            t = s.table
            for i, step in enumerate(s.steps):
                pairs = [t.counts[i], t.sums[i], t.near_zero_counts[i], t.near_zero_sums[i]]
                for j, pair in enumerate(metadata.TERMS):
                    rows.append(
                        (
                            run,
                            layer,
                            s.info.index,
                            role,
                            step,
                            pair,
                            *(p[j] for p in pairs),
                            t.cells[i],
                            t.near_zero_cells[i],
                            t.result_magnitude[i],
                            t.reference[i],
                        )
                    )
    return pd.DataFrame(
        rows,
        columns=[
            "run",
            "layer",
            "index",
            "role",
            "step",
            "pair",
            "count",
            "sum",
            "near_zero_count",
            "near_zero_sum",
            "cells",
            "near_zero_cells",
            "result_magnitude",
            "reference",
        ],
    )
