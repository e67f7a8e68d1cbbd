"""Reading our data for one request: the run index, per-tag digests and records, and the not-recorded notes,
through TensorBoard's data provider (`list_tensors` / `read_tensors` only, so both loaders work: the Rust data
server and `--load_fast=false`) and the plugin's caches. Views read through a `Reader`; a `Reader` reads through
the data provider.

Requests share one listing of our tags (one `list_tensors` call per `cache.LISTING_TTL_S`, metadata parsed once)
and read only the tags they need, one tag per `read_tensors` call, reduced to a digest that is cached under the
tag's version. Only /units needs a whole record: the latest one is read alone (`downsample=1`); one at an earlier
step needs the tag's records again (the data provider has no step filter), which are then cached too.
"""

import numpy as np
from tensorboard import errors
from tensorboard.data import provider

from tb_matmul_explainer import metadata
from tb_matmul_explainer.plugin import digest as digest_lib
from tb_matmul_explainer.plugin import not_recorded, run_index

#: `downsample` passed to `read_tensors` when every record is kept (never 0: that returns nothing).
READ_ALL = 10**9
#: Upper bound on the bytes one `read_tensors` call may return (the data server's gRPC channel takes 256 MiB).
_MAX_READ_BYTES = 192 * 2**20


class Reader:
    """The plugin's reads for one request: context `ctx`, experiment id `eid`, over the plugin's `PluginCaches`;
    `downsample`: records per tag to read (`READ_ALL` for all)."""

    def __init__(self, data_provider, caches, downsample, ctx, eid):
        self._provider, self._caches, self._downsample = data_provider, caches, downsample
        self._ctx, self._eid = ctx, eid

    def index(self, runs=None):
        """{run: `run_index.RunIndex`} of the runs holding our summaries (restricted to `runs` if given)."""
        full = self._caches.listings.get_or_compute(self._eid, self._list)
        return full if runs is None else {r: full[r] for r in runs if r in full}

    def run(self, name):
        """The `RunIndex` of run `name`; 404 if it holds none of our summaries."""
        index = self.index(runs=[name]).get(name)
        if index is None:
            raise errors.NotFoundError("no Matmul Explainer data for run %r" % name[:200])
        return index

    def not_recorded(self, prefix=not_recorded.NOT_RECORDED_PREFIX):
        """{run: [{"layer": name, "reason": text}]}: the layers the writer could not record (or, with
        `not_recorded.PARTLY_RECORDED_PREFIX`, recorded only in part)."""
        return self._caches.notes.get_or_compute(
            (self._eid, prefix),
            lambda: not_recorded.read(self._provider, self._ctx, self._eid, self._caches.note_reasons, prefix),
        )

    def digest(self, series):
        """The `digest.Digest` of a `run_index.Series` (its tag is read unless cached)."""
        cached = self.cached_digest(series)
        return cached if cached is not None else self._store_digest(series, self._read(series))

    def cached_digest(self, series):
        """The tag's digest if it is cached (the tag has been read), else None."""
        return self._caches.data.get(("digest",) + series.key(self._eid))

    def record_at(self, series, step, detail=False):
        """(step, `metadata.Record`) of the latest record at or before `step` (the latest if None), `detail`: the
        latest of those with unit detail; 404 if none."""
        records = self._caches.data.get(("records",) + series.key(self._eid))
        if records is None and (step is None or step >= series.max_step):
            found = self._latest_record(series, step)
            if found is not None and (found[1].detail or not detail):
                return found
        if records is None:
            records = self._records(series)
        found = records.at(step, detail)
        if found is None:
            what = "record with unit detail" if detail else "record"
            raise errors.NotFoundError(
                "run %r, layer %r, role %r has no %s at or before step %s (first record: step %d; unit detail is "
                "kept every unit_detail_every-th recorded step)"
                % (series.run, series.meta.layer, series.meta.role, what, step, records.steps[0])
            )
        return found

    def _latest_record(self, series, step):
        """The latest record, read alone and cached, if it is at or before `step` and readable; else None."""
        key = ("latest",) + series.key(self._eid)
        latest = self._caches.data.get_or_compute(key, lambda: self._read_latest(series))
        if step is not None and latest.steps[0] > step:
            return None  # newer data than the listing: the caller reads them all
        try:
            return latest.at(None)
        except metadata.ContractError:
            return None  # an unreadable latest record: the caller finds the latest readable one

    def _read_latest(self, series):
        # `downsample=1` returns exactly the latest record (the data provider always keeps the last)
        (point,) = self._read(series, latest_only=True)[-1:]
        return digest_lib.Records(steps=np.array([point.step], np.int64), arrays=[point.numpy])

    def _records(self, series):
        """The tag's `digest.Records`, read (its digest stored on the way) and cached."""
        points = self._read(series)
        if self.cached_digest(series) is None:
            self._store_digest(series, points)
        records = digest_lib.records(series, points)
        self._caches.data.put(("records",) + series.key(self._eid), records)
        return records

    def _store_digest(self, series, points):
        result = digest_lib.digest(series, points)
        self._caches.data.put(("digest",) + series.key(self._eid), result)
        return result

    def _list(self):
        mapping = self._provider.list_tensors(self._ctx, experiment_id=self._eid, plugin_name=metadata.PLUGIN_NAME)
        return run_index.build(mapping, self._parse)

    def _parse(self, content):
        return self._caches.metadata.get_or_compute(content, lambda: run_index.parse_metadata(content))

    def _read(self, series, latest_only=False):
        """The tag's data points (one `read_tensors` call); only the last if `latest_only`."""
        per_record = metadata.record_bytes(max(1, series.meta.units))
        downsample = 1 if latest_only else max(1, min(self._downsample, _MAX_READ_BYTES // per_record))
        data = self._provider.read_tensors(
            self._ctx,
            experiment_id=self._eid,
            plugin_name=metadata.PLUGIN_NAME,
            downsample=downsample,
            run_tag_filter=provider.RunTagFilter(runs=[series.run], tags=[series.tag]),
        )
        points = data.get(series.run, {}).get(series.tag)
        if not points:
            raise errors.NotFoundError("run %r, tag %r has no records" % (series.run, series.tag))
        return points
