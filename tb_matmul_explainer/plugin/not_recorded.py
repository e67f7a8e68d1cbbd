"""Layers the writer could not record, or recorded only in part, as /runs lists them (`notRecorded`,
`partlyRecorded`).

The Keras callback writes, once per run and layer, a standard TensorBoard text summary `NOT_RECORDED_PREFIX + layer
name` (or `PARTLY_RECORDED_PREFIX + layer name`) holding the reason (a scalar string). They are read through the
data provider's "text" plugin data: the latest value of each such tag, listed and read at most once per
`cache.LISTING_TTL_S`, a value read once per tag version.
"""

import numpy as np
from tensorboard.data import provider

#: Tag prefix of the text summaries naming a layer the writer could not record (the rest of the tag is its name).
NOT_RECORDED_PREFIX = "matmul_explainer/not_recorded/"
#: Tag prefix of the text summaries naming a layer whose records miss part of a step (called twice, no gradient).
PARTLY_RECORDED_PREFIX = "matmul_explainer/partly_recorded/"
TEXT_PLUGIN = "text"
MAX_REASON_CHARS = 2000
UNREADABLE_REASON = "not recorded (its reason could not be read: the text summary is not a single string)"


def read(data_provider, ctx, eid, reasons, prefix=NOT_RECORDED_PREFIX):
    """{run: [{"layer": name, "reason": text}]} (sorted by layer) from the text summaries tagged `prefix` + name.

    `reasons`: a `cache.Cache` of reason texts by (eid, run, tag, max_step, max_wall_time), read only when missing.
    """
    mapping = data_provider.list_tensors(ctx, experiment_id=eid, plugin_name=TEXT_PLUGIN)
    keys = {}  # (run, tag) -> reasons key
    for run, tags in mapping.items():
        for tag, ts in (tags or {}).items():
            if tag.startswith(prefix) and len(tag) > len(prefix):
                keys[run, tag] = (eid, run, tag, int(ts.max_step), float(ts.max_wall_time))
    values = {k: v for k, v in ((k, reasons.get(k)) for k in keys.values()) if v is not None}
    missing = [(run, tag) for (run, tag), k in keys.items() if k not in values]
    if missing:
        data = data_provider.read_tensors(
            ctx,
            experiment_id=eid,
            plugin_name=TEXT_PLUGIN,
            downsample=1,
            run_tag_filter=provider.RunTagFilter(
                runs=sorted({r for r, _ in missing}), tags=sorted({t for _, t in missing})
            ),
        )
        for run, tag in missing:
            points = (data.get(run) or {}).get(tag)
            if points:
                values[keys[run, tag]] = reason(points[-1].numpy)
                reasons.put(keys[run, tag], values[keys[run, tag]])
    result = {}
    for (run, tag), k in sorted(keys.items()):
        if k in values:
            result.setdefault(run, []).append({"layer": tag[len(prefix) :], "reason": values[k]})
    return result


def reason(array):
    """The reason text of a not-recorded note (a scalar string tensor), or `UNREADABLE_REASON`."""
    try:
        value = np.asarray(array)
        item = value.item() if value.shape == () else None
    except Exception:  # anything a data provider could hand over that is not an array
        item = None
    if isinstance(item, bytes):
        item = item.decode("utf-8", errors="replace")
    if not isinstance(item, str):
        return UNREADABLE_REASON
    return item[:MAX_REASON_CHARS]
