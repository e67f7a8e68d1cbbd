"""The plugin's one cache abstraction, `Cache`, and the caches the plugin keeps (`PluginCaches`).

`Cache` is a thread-safe least-recently-used map whose entries' sizes add up to at most a limit, with an optional
time to live. The plugin keeps in it:
  * data, bounded in bytes by `--matmul_explainer_cache_mb`: per-tag digests, each tag's latest record, and the
    records of tags viewed at an earlier step, under keys that name the tag's (max_step, max_wall_time) from
    `list_tensors`, so new data is read afresh;
  * bookkeeping, bounded in entries: parsed metadata, and per experiment the tag listing and the not-recorded
    notes, reused for `LISTING_TTL_S` seconds.
"""

import collections
import threading
import time

#: Seconds a tag listing is reused across requests (TensorBoard reloads logs every 5 s by default; each call to
#: the Rust data server costs ~40 ms however small, so the requests of one page view share one listing).
LISTING_TTL_S = 2.0


def _one(value):
    return 1


class Cache:
    """A thread-safe LRU map whose entries' sizes add up to at most `limit`.

    `size(value)` is an entry's size (default 1: `limit` counts entries); a value larger than `limit` is not kept.
    With `ttl_s`, an entry older than `ttl_s` seconds is not returned. Values are never None (None means a miss).
    """

    def __init__(self, limit, *, size=_one, ttl_s=None):
        self._limit, self._size, self._ttl_s = limit, size, ttl_s
        self._items = collections.OrderedDict()  # key -> (value, size, monotonic time stored)
        self._total = 0
        self._lock = threading.Lock()

    def get(self, key):
        """The value stored under `key`, or None."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if self._ttl_s is not None and time.monotonic() - item[2] >= self._ttl_s:
                self._remove(key)
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key, value):
        """Stores `value` under `key`, evicting the least recently used entries beyond the limit."""
        size = self._size(value)
        if size > self._limit:
            return
        with self._lock:
            self._remove(key)
            self._items[key] = (value, size, time.monotonic())
            self._total += size
            while self._total > self._limit:
                self._remove(next(iter(self._items)))

    def get_or_compute(self, key, compute):
        """The value under `key`, or `compute()` stored there. Two callers that miss at once may both compute (the
        lock is not held while computing); the later value is kept."""
        value = self.get(key)
        if value is None:
            value = compute()
            self.put(key, value)
        return value

    def _remove(self, key):
        item = self._items.pop(key, None)
        if item is not None:
            self._total -= item[1]


def _nbytes(value):
    return value.nbytes


class PluginCaches:
    """The caches of one plugin instance; `cache_bytes` bounds the data (`--matmul_explainer_cache_mb`, 0: none)."""

    def __init__(self, cache_bytes):
        self.data = Cache(cache_bytes, size=_nbytes)  # values with `nbytes`: digests, records
        self.metadata = Cache(50_000)  # metadata content -> PluginMetadata or error text
        self.listings = Cache(64, ttl_s=LISTING_TTL_S)  # experiment id -> {run: RunIndex}
        self.notes = Cache(64, ttl_s=LISTING_TTL_S)  # (experiment id, tag prefix) -> {run: [{"layer", "reason"}]}
        self.note_reasons = Cache(10_000)  # (eid, run, tag, max_step, max_wall_time) -> reason text
