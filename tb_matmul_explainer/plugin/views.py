"""The plugin's views: each data route's JSON body, as a dict, from a `reader.Reader`.

Views know nothing of werkzeug or HTTP (the routes parse and check the request parameters and respond), so they
can be called and tested over any data provider. Bodies are as `http_api.md` documents them. Errors are
TensorBoard's `errors.NotFoundError` (404) and `errors.InvalidArgumentError` (400). JSON has no NaN or infinity:
those values are null.
"""

import math

import numpy as np
from tensorboard import errors

from tb_matmul_explainer import explain, metadata
from tb_matmul_explainer.plugin import digest as digest_lib
from tb_matmul_explainer.plugin import not_recorded as not_recorded_lib


def runs(reader):
    """/runs: every run holding our summaries, its layers and roles, and what cannot be read or was not recorded."""
    result = []
    not_recorded = reader.not_recorded()
    partly_recorded = reader.not_recorded(not_recorded_lib.PARTLY_RECORDED_PREFIX)
    for run, index in reader.index().items():
        layers, unreadable = [], list(index.unreadable)
        for layer in index.ordered_layers():
            roles = {}
            for role in (r for r in metadata.ROLES if r in layer.roles):
                series = layer.roles[role]
                digest = reader.cached_digest(series)  # known once the tag has been read
                if digest is not None and digest.skipped:
                    unreadable.append({"tag": series.tag, "reason": digest_lib.skipped_reason(digest.skipped)})
                roles[role] = _series_json(series)
            first = layer.roles.get("forward") or next(iter(layer.roles.values()))
            layers.append(
                {
                    "name": layer.name,
                    "index": layer.index,
                    "op": first.meta.op,
                    "units": first.meta.units,
                    "roles": roles,
                }
            )
        result.append(
            {
                "run": run,
                "roles": index.roles(),
                "layers": layers,
                "unreadable": unreadable,
                "notRecorded": not_recorded.get(run, []),
                "partlyRecorded": partly_recorded.get(run, []),
            }
        )
    return {"version": metadata.CONTRACT_VERSION, "runs": result}


def _series_json(series):
    meta = series.meta
    return {
        "last_step": series.max_step,
        "units": meta.units,
        "confidence": meta.confidence,
        "operands": list(meta.operands),
        "thresholds": [None if t is None else json_float(t) for t in meta.thresholds],
        "tag": series.tag,
        "activation": meta.activation,
        "producer": meta.producer,
        "producer_kind": meta.producer_kind,
        "zeroed_by": list(meta.zeroed_by),
        "group": meta.group,
        "loss_reads_logits": meta.loss_reads_logits,
    }


def overview(reader, run, role, step):
    """/overview: every layer's totals at `step` (each layer's latest record if None)."""
    index = reader.run(run)
    index.require_role(role)
    entries, top = _overview_entries(reader, index, role, step)
    if not entries:
        raise errors.NotFoundError("run %r, role %r has no record at or before step %s" % (index.name, role, step))
    return {"run": index.name, "role": role, "step": top, "layers": list(entries.values())}


def _overview_entries(reader, index, role, step):
    """({layer name: entry}, top-level step or None) of the layers holding `role`."""
    entries, latest = {}, None
    for layer in index.ordered_layers(role):
        series = layer.roles[role]
        digest = reader.digest(series)
        i = digest.table.index_at(step)
        if i < 0:
            continue
        entries[layer.name] = {
            **_overview_entry(layer, series, digest, i),
            "inactive_fraction": _inactive_fraction(reader, layer, digest.table.steps[i]),
        }
        latest = max(latest or 0, int(digest.steps[-1]))
    return entries, (step if step is not None else latest)


def _overview_entry(layer, series, digest, i):
    t = digest.table
    return {
        "name": layer.name,
        "index": layer.index,
        "op": series.meta.op,
        "units": digest.units,
        "step": int(t.steps[i]),
        **_pair_json(t, i),
        "cells": json_float(t.cells[i]),
        "near_zero_cells": json_float(t.near_zero_cells[i]),
        "near_zero_fraction": json_float(t.near_zero_fraction[i]),
        "dead_units": explain.dead_count(t.totals_at(i))[0],
        "thresholds": json_floats(t.thresholds[i]),
        "nonfinite": json_floats(t.nonfinite[i]),
    }


def _inactive_fraction(reader, layer, step):
    """The share of the layer's activation cells that are inactive (its activation record's near-zero fraction) at
    its latest activation record at or before `step`; None without one."""
    series = layer.roles.get("activation")
    if series is None:
        return None
    try:
        t = reader.digest(series).table
    except errors.PublicError:
        return None  # unreadable: /runs lists why
    i = t.index_at(int(step))
    return None if i < 0 else json_float(t.near_zero_fraction[i])


def _pair_json(t, i=slice(None)):
    """The four pair fields of a table, or of a record (row i, or all rows)."""
    return {
        "counts": json_floats(t.counts[i]),
        "sums": json_floats(t.sums[i]),
        "near_zero_counts": json_floats(t.near_zero_counts[i]),
        "near_zero_sums": json_floats(t.near_zero_sums[i]),
    }


def timeline(reader, run, role, layer):
    """/timeline: one layer's totals at every step."""
    index = reader.run(run)
    return _timeline(reader, index, role, index.series(role, layer))


def _timeline(reader, index, role, series):
    t = reader.digest(series).table
    return {
        "run": index.name,
        "role": role,
        "layer": series.meta.layer,
        "steps": t.steps.tolist(),
        **_pair_json(t),
        "cells": json_floats(t.cells),
        "near_zero_cells": json_floats(t.near_zero_cells),
        "near_zero_fraction": json_floats(t.near_zero_fraction),
    }


def heatmap(reader, run, role):
    """/heatmap: the near-zero fraction of every layer (rows) at every step any of them recorded (columns)."""
    index = reader.run(run)
    index.require_role(role)
    names, steps, rows = _heatmap_rows(reader, index, role)
    return {"run": index.name, "role": role, "layers": names, "steps": steps, "values": [rows[n] for n in names]}


def _heatmap_rows(reader, index, role):
    """([layer names], [steps], {layer name: [value or None per step]})."""
    tables = {l.name: reader.digest(l.roles[role]).table for l in index.ordered_layers(role)}
    steps = np.unique(np.concatenate([t.steps for t in tables.values()])) if tables else np.zeros(0, np.int64)
    rows = {}
    for name, t in tables.items():
        values = np.full(len(steps), np.nan)
        values[np.searchsorted(steps, t.steps)] = t.near_zero_fraction
        rows[name] = json_floats(values)
    return list(tables), steps.tolist(), rows


def units(reader, run, role, layer, step):
    """/units: one record's per-unit rows (the latest with unit detail at or before `step`; the latest if None)."""
    at, r = reader.record_at(reader.run(run).series(role, layer), step, detail=True)
    return {
        "run": run,
        "role": role,
        "layer": layer,
        "step": at,
        "units": r.units,
        "group_size": r.group_size,
        **_pair_json(r),
        "cells": json_floats(r.cells),
        "near_zero_cells": json_floats(r.near_zero_cells),
        "near_zero_fraction": json_floats(explain.near_zero_fraction(r.near_zero_cells, r.cells)),
    }


def unit_heatmap(reader, run, role, layer):
    """/unit_heatmap (JSON): each stored row's near-zero fraction at every step."""
    d = reader.digest(reader.run(run).series(role, layer))
    return {
        "run": run,
        "role": role,
        "layer": layer,
        "steps": d.steps.tolist(),
        "rows": d.row_fraction.shape[0],
        "units": d.units,
        "group_size": d.group_size,
        "values": json_floats(d.row_fraction),
    }


def unit_heatmap_f32(reader, run, role, layer):
    """/unit_heatmap?format=f32: (little-endian float32 [rows, steps] bytes, [(header, value)])."""
    d = reader.digest(reader.run(run).series(role, layer))
    body = np.ascontiguousarray(d.row_fraction, dtype="<f4").tobytes()
    return body, [
        ("X-Rows", str(d.row_fraction.shape[0])),
        ("X-Steps", ",".join(map(str, d.steps.tolist()))),
        ("X-Group-Size", str(d.group_size)),
    ]


def compare(reader, view, runs, role, step, layer):
    """/compare: `view` ("overview", "heatmap" or "timeline") of each of `runs`, over the union of their layers."""
    indexes = reader.index(runs=sorted(set(runs)))
    missing = [r for r in runs if r not in indexes]
    if missing:
        raise errors.NotFoundError("no Matmul Explainer data for run %r" % missing[0][:200])
    order = {}
    for run in runs:
        for layer_obj in indexes[run].ordered_layers(role):
            key = (layer_obj.index, layer_obj.name)
            order[layer_obj.name] = min(order.get(layer_obj.name, key), key)
    names = sorted(order, key=lambda n: order[n])
    return {
        "view": view,
        "role": role,
        "runs": runs,
        "layers": names,
        "results": [_compared(reader, view, indexes[run], role, step, layer, names) for run in runs],
    }


def _compared(reader, view, index, role, step, layer, names):
    """One run's /compare result, its layers in the order of `names` (null where it lacks one)."""
    if view == "overview":
        entries, top = _overview_entries(reader, index, role, step)
        return {"run": index.name, "role": role, "step": top, "layers": [entries.get(n) for n in names]}
    if view == "heatmap":
        _, steps, rows = _heatmap_rows(reader, index, role)
        return {
            "run": index.name,
            "role": role,
            "layers": names,
            "steps": steps,
            "values": [rows.get(n) for n in names],
        }
    layer_obj = index.layers.get(layer)
    if layer_obj is None or role not in layer_obj.roles:
        return None
    return _timeline(reader, index, role, layer_obj.roles[role])


def diagnosis(reader, run, role, layer, step):
    """/diagnosis: the plain-language diagnosis of one layer at `step` (its latest record if None)."""
    index = reader.run(run)
    index.series(role, layer)  # 404/400 for an unknown or unreadable layer
    # The rules across layers and roles (vanishing gradients, dead inputs named at their producer, gradients
    # blocked by a dead layer after this one) read the whole run, so the text is the one /alerts gives.
    diagnoses, _ = explain.diagnose_run(layer_views(reader, index, lambda name, r: True), step)
    found = [d for d in diagnoses if (d.layer, d.role) == (layer, role)]
    if not found:
        raise errors.NotFoundError(
            "run %r, layer %r, role %r has no record at or before step %s" % (run, layer[:200], role, step)
        )
    d = found[0]
    return {
        "run": run,
        "role": role,
        "layer": layer,
        "step": d.step,
        "text": d.text,
        "causes": {k: json_float(v) for k, v in d.causes.items()},
        "near_zero_fraction": json_float(d.near_zero_fraction),
        "dead_rows": d.dead_rows,
        "starved": bool(d.starved),
        "alerts": [alert_json(a, index) for a in d.alerts],
    }


def alerts(reader, run, step):
    """/alerts: every layer's alerts at `step`, ranked worst first, and each (layer, role)'s diagnosis."""
    index = reader.run(run)
    diagnoses, ranked = explain.diagnose_run(layer_views(reader, index, lambda name, r: True), step)
    return {
        "run": run,
        "step": step,
        "alerts": [alert_json(a, index) for a in ranked],
        "diagnoses": [
            {"layer": d.layer, "role": d.role, "step": d.step, "text": d.text, "starved": bool(d.starved)}
            for d in diagnoses
        ],
    }


class LayerView:
    """One tag as `explain.diagnose_run` reads it: its metadata and its digest's summary table."""

    def __init__(self, reader, series):
        self._reader, self._series = reader, series
        self.info = series.meta

    def record_at(self, step):
        """(step, `explain.Totals`) of the latest record at or before `step` (the latest if None), or None."""
        try:
            table = self._reader.digest(self._series).table
        except errors.NotFoundError:
            return None
        return table.record_at(step)

    def history(self, step):
        """The `explain.StepSummary`s of the records before `step`."""
        return self._reader.digest(self._series).table.history(step)


def layer_views(reader, index, keep):
    """{(layer, role): LayerView} in model order, for the (layer name, role) pairs `keep` accepts."""
    return {
        (layer.name, role): LayerView(reader, layer.roles[role])
        for layer in index.ordered_layers()
        for role in metadata.ROLES
        if role in layer.roles and keep(layer.name, role)
    }


def alert_json(alert, index=None):
    """An alert as the routes give it; `index` (the run's `RunIndex`) adds `open`, where the tab can show it."""
    out = {
        "kind": alert.kind,
        "layer": alert.layer,
        "role": alert.role,
        "first_step": int(alert.first_step),
        "severity": json_float(alert.severity),
        "message": alert.message,
        "seen_in": alert.seen_in or None,
    }
    if index is not None:
        out["open"] = alert_target(index, alert)
    return out


def alert_target(index, alert):
    """{"layer", "role", "tag"} of the records that show `alert`: its own layer's, or, for a producer without
    records of its own (an Activation or BatchNormalization layer), those of the layer whose input showed it
    (`seen_in`); None if neither is in the run."""
    for layer in (alert.layer, alert.seen_in):
        found = index.layers.get(layer) if layer else None
        if found is not None and alert.role in found.roles:
            return {"layer": layer, "role": alert.role, "tag": found.roles[alert.role].tag}
    return None


def json_floats(array):
    """A nested list of floats, with NaN and +-inf as None."""
    array = np.asarray(array, np.float64)
    finite = np.isfinite(array)
    if finite.all():
        return array.tolist()
    out = array.astype(object)
    out[~finite] = None
    return out.tolist()


def json_float(x):
    """`x` as a float, None for NaN and +-inf."""
    x = float(x)
    return x if math.isfinite(x) else None
