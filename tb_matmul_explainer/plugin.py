"""The TensorBoard backend of the "Matmul Explainer" tab.

A `TBPlugin` that answers the routes documented in `http_api.md` (next to this file), reading only through
TensorBoard's data provider (`list_tensors` / `read_tensors`), so it works under both loaders: the default Rust
data server and `--load_fast=false`. The record layout it reads is the contract in `metadata.py`.

`MatmulExplainerLoader` is the `tensorboard_plugins` entry point. Its `fix_flags` gives our plugin a default
retention of `DEFAULT_SAMPLES_PER_TAG` records per tag (TensorBoard keeps only 10 or 100 samples of a
third-party tensor summary otherwise) unless the user passed `--samples_per_plugin=matmul_explainer=N`
(N = 0 keeps all).

Reading strategy: requests share one listing of our tags (one `list_tensors` call, reused for `LISTING_TTL_S`
seconds, metadata parsed once), and read only the tags they need, one tag per `read_tensors` call. Each tag read is
reduced to a `_Digest` (per-step totals over units, per-row near-zero fractions, and per step what the diagnosis
rules read of a record: `explain.Totals` and `explain.StepSummary`) that is cached under the tag's
(max_step, max_wall_time) from `list_tensors`, so new data invalidates it. /diagnosis and /alerts are answered
from digests alone, at any step. Only the per-unit view (/units) needs a whole record: the latest one is read
alone (`downsample=1`) and kept per tag; one at an earlier step needs the tag's records again (the data provider
has no step filter), which are kept in an LRU cache that gets whatever part of the cache budget the digests leave.

Layers the writer could not record: the Keras callback writes, once per run, a standard TensorBoard text summary
`NOT_RECORDED_PREFIX + layer name` holding the reason (a scalar string). `/runs` lists them per run as
`notRecorded`, read through the data provider's "text" plugin data (latest value of each such tag; listed and read
at most once per `LISTING_TTL_S`, a value read once per tag version).
"""

import collections
import dataclasses
import json
import math
import mimetypes
import os
import threading
import time

import numpy as np
from werkzeug import wrappers

from tensorboard import context as tb_context
from tensorboard import errors
from tensorboard import plugin_util
from tensorboard.backend import http_util
from tensorboard.data import provider
from tensorboard.plugins import base_plugin

from tb_matmul_explainer import explain, metadata

PLUGIN_NAME = metadata.PLUGIN_NAME
#: Records kept per tag when the user gave no `--samples_per_plugin` for our plugin.
DEFAULT_SAMPLES_PER_TAG = 500
#: Default size of the plugin's in-memory caches (`--matmul_explainer_cache_mb`).
DEFAULT_CACHE_MB = 256
#: Seconds a tag listing is reused across requests (TensorBoard reloads logs every 5 s by default; each call to
#: the Rust data server costs ~40 ms however small, so the requests of one page view share one listing).
LISTING_TTL_S = 2.0
#: `downsample` passed to `read_tensors` when every record is kept (never 0: that returns nothing).
_READ_ALL = 10**9
#: Upper bound on the bytes one `read_tensors` call may return (the data server's gRPC channel takes 256 MiB).
_MAX_READ_BYTES = 192 * 2**20
_MAX_STEP = 2**63 - 1
_MAX_COMPARE_RUNS = 8
_STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
_ROUTE_PREFIX = "/data/plugin/%s/" % PLUGIN_NAME
_CONTENT_TYPES = {
    ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".html": "text/html",
    ".json": "application/json", ".map": "application/json", ".svg": "image/svg+xml", ".png": "image/png",
    ".woff2": "font/woff2", ".woff": "font/woff", ".txt": "text/plain", ".wasm": "application/wasm",
}
_JSON = "application/json; charset=utf-8"
#: Tag prefix of the text summaries naming a layer the writer could not record (the rest of the tag is its name).
NOT_RECORDED_PREFIX = "matmul_explainer/not_recorded/"
_TEXT_PLUGIN = "text"
_MAX_REASON_CHARS = 2000
_UNREADABLE_REASON = "not recorded (its reason could not be read: the text summary is not a single string)"


# --------------------------------------------------------------------------------------------- loader / flags

class MatmulExplainerLoader(base_plugin.TBLoader):
    """Registers the plugin, its flag, and our default retention."""

    def define_flags(self, parser):
        group = parser.add_argument_group("matmul_explainer plugin")
        group.add_argument(
            "--matmul_explainer_cache_mb", metavar="MB", type=int, default=DEFAULT_CACHE_MB,
            help="Memory the Matmul Explainer plugin may use to cache digests of read records and the records "
                 "of recently viewed layers (default: %(default)s; 0 disables caching).")

    def fix_flags(self, flags):
        flags.samples_per_plugin = with_default_retention(getattr(flags, "samples_per_plugin", None))
        cache_mb = getattr(flags, "matmul_explainer_cache_mb", DEFAULT_CACHE_MB)
        if not isinstance(cache_mb, int) or cache_mb < 0:
            raise base_plugin.FlagsError("--matmul_explainer_cache_mb must be a non-negative integer, got %r"
                                         % (cache_mb,))

    def load(self, context):
        return MatmulExplainerPlugin(context)


def with_default_retention(samples_per_plugin):
    """`--samples_per_plugin` (a dict, its string form, or None) with our default added when the user gave none."""
    if samples_per_plugin is None or samples_per_plugin == "":
        result = {}
    elif isinstance(samples_per_plugin, str):
        result = {}
        for token in samples_per_plugin.split(","):
            if token.strip():
                key, _, value = token.strip().partition("=")
                try:
                    result[key.strip()] = int(value)
                except ValueError:
                    raise base_plugin.FlagsError("--samples_per_plugin: %r is not NAME=INT" % token) from None
    else:
        result = dict(samples_per_plugin)
    result.setdefault(PLUGIN_NAME, DEFAULT_SAMPLES_PER_TAG)
    return result


# --------------------------------------------------------------------------------------------- index of tags

@dataclasses.dataclass(frozen=True)
class _Series:
    """One readable tag: a (run, layer, role) time series."""
    run: str
    tag: str
    meta: metadata.PluginMetadata
    max_step: int
    max_wall_time: float


@dataclasses.dataclass
class _Layer:
    name: str
    index: int
    roles: dict  # role -> _Series


@dataclasses.dataclass
class _RunIndex:
    name: str
    layers: dict = dataclasses.field(default_factory=dict)       # name -> _Layer
    unreadable: list = dataclasses.field(default_factory=list)   # {"tag", "reason"}
    unreadable_keys: dict = dataclasses.field(default_factory=dict)  # (layer, role) -> reason

    def ordered_layers(self, role=None):
        layers = [l for l in self.layers.values() if role is None or role in l.roles]
        return sorted(layers, key=lambda l: (l.index, l.name))

    def roles(self):
        present = {r for l in self.layers.values() for r in l.roles}
        return [r for r in metadata.ROLES if r in present]


def _best_effort_key(content):
    """(layer, role) from metadata content we cannot parse, to name it in errors; None if unknown."""
    try:
        raw = json.loads(content.decode("utf-8"))
        return (str(raw["layer"]), str(raw["role"]))
    except Exception:  # any malformed content: we just cannot name it
        return None


def _not_recorded_reason(array):
    """The reason text of a not-recorded note (a scalar string tensor), or `_UNREADABLE_REASON`."""
    try:
        value = np.asarray(array)
        item = value.item() if value.shape == () else None
    except Exception:  # anything a data provider could hand over that is not an array
        item = None
    if isinstance(item, bytes):
        item = item.decode("utf-8", errors="replace")
    if not isinstance(item, str):
        return _UNREADABLE_REASON
    return item[:_MAX_REASON_CHARS]


def _alert_json(alert):
    return {"kind": alert.kind, "layer": alert.layer, "role": alert.role, "first_step": int(alert.first_step),
            "severity": _float(alert.severity), "message": alert.message}


class _LayerView:
    """One tag as `explain.diagnose_run` reads it, over the plugin's cached reads and digests."""

    def __init__(self, plugin, ctx, eid, series):
        self._plugin, self._ctx, self._eid, self._series = plugin, ctx, eid, series
        self.info = series.meta

    def _digest(self):
        return self._plugin._digest(self._ctx, self._eid, self._series)

    def record_at(self, step):
        """(step, `explain.Totals`) of the latest record at or before `step` (latest if None), from the digest."""
        try:
            d = self._digest()
        except errors.NotFoundError:
            return None
        i = d.index_at(step)
        return None if i < 0 else (int(d.steps[i]), d.diagnosis_totals(i))

    def history(self, step):
        d = self._digest()
        return list(d.summaries[:int(np.searchsorted(d.steps, step, side="left"))])


# --------------------------------------------------------------------------------------------- digests

@dataclasses.dataclass(frozen=True)
class _Digest:
    """One tag's records reduced over units. S = records (ascending steps, one per step), R = stored rows."""
    steps: np.ndarray        # [S] int64
    totals: np.ndarray       # [S, 38] rows summed over units (columns as in the record rows)
    thresholds: np.ndarray   # [S, 3]
    nonfinite: np.ndarray    # [S, 3]
    dead_units: np.ndarray   # [S] int64: dead rows (`explain.dead_rows`)
    row_fraction: np.ndarray  # [R, S] float32 near-zero fraction per row (NaN: no cells or another row count)
    units: int               # of the latest record
    group_size: int          # of the latest record
    skipped: tuple = ()      # (step, reason) of records that do not follow the contract (left out above)
    # What the diagnosis reads of each record, exactly as `explain.totals(record)` computed it:
    diag_pairs: np.ndarray = None   # [S, 4, 9] counts, sums, near-zero counts, near-zero sums summed over units
    diag_cells: np.ndarray = None   # [S, 2] cells, near-zero cells
    diag_rows: np.ndarray = None    # [S, 2] int64 stored rows, group size
    dead_rows: tuple = ()           # [S] tuples of dead row indices
    summaries: tuple = ()           # [S] `explain.StepSummary` (`explain.summarise`)

    @property
    def nbytes(self):
        return (sum(a.nbytes for a in (self.steps, self.totals, self.thresholds, self.nonfinite, self.dead_units,
                                       self.row_fraction, self.diag_pairs, self.diag_cells, self.diag_rows))
                + 8 * int(self.dead_units.sum()) + 150 * len(self.summaries) + 200)

    def index_at(self, step):
        """Index of the latest record at or before `step` (the latest if None); -1 if none."""
        if step is None:
            return len(self.steps) - 1
        return int(np.searchsorted(self.steps, step, side="right")) - 1

    def diagnosis_totals(self, i):
        """The `explain.Totals` of record i."""
        pairs = self.diag_pairs[i]
        return explain.Totals(counts=pairs[0], sums=pairs[1], near_zero_counts=pairs[2], near_zero_sums=pairs[3],
                              cells=self.diag_cells[i, 0], near_zero_cells=self.diag_cells[i, 1],
                              thresholds=self.thresholds[i], nonfinite=self.nonfinite[i],
                              rows=int(self.diag_rows[i, 0]), group_size=int(self.diag_rows[i, 1]),
                              dead_rows=self.dead_rows[i])


def _sorted_unique(data):
    """TensorDatum list -> (steps, arrays), ascending by step, the last-written record kept for a repeated step."""
    by_step = {}
    for datum in data:
        by_step[int(datum.step)] = datum.numpy
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


def _readable(series, steps, arrays):
    """(steps, arrays, records) of the records that follow the contract, and [(step, reason)] of the others.

    A record the contract does not describe (e.g. appended by a newer writer to a tag whose first record set its
    metadata) is left out rather than hiding the tag's readable records; a tag with none readable is a 400."""
    kept_steps, kept_arrays, records, skipped = [], [], [], []
    for step, array in zip(steps, arrays):
        try:
            records.append(metadata.unpack_record(array))
        except metadata.ContractError as e:
            skipped.append((int(step), str(e)))
            continue
        kept_steps.append(step)
        kept_arrays.append(array)
    if skipped and not records:
        raise errors.InvalidArgumentError("run %r, tag %r: %s" % (series.run, series.tag, skipped[-1][1]))
    return kept_steps, kept_arrays, records, skipped


def _skipped_reason(skipped):
    steps = [step for step, _ in skipped]
    shown = ", ".join(map(str, steps[:10])) + (", ..." if len(steps) > 10 else "")
    return "%d of its records (step %s) cannot be read: %s; its other records are shown" % (
        len(steps), shown, skipped[-1][1])


def _digest(series, data):
    steps, arrays = _sorted_unique(data)
    steps, arrays, records, skipped = _readable(series, steps, arrays)
    n = len(records)
    totals = np.zeros((n, metadata.COLUMNS), np.float64)
    thresholds = np.zeros((n, 3), np.float64)
    nonfinite = np.zeros((n, 3), np.float64)
    dead = np.zeros(n, np.int64)
    rows = arrays[-1].shape[0] - 1 if n else 0
    fraction = np.full((rows, n), np.nan, np.float32)
    diag_pairs = np.zeros((n, 4, 9), np.float64)
    diag_cells = np.zeros((n, 2), np.float64)
    diag_rows = np.zeros((n, 2), np.int64)
    dead_rows, summaries = [], []
    for i, (step, array, record) in enumerate(zip(steps, arrays, records)):
        body = np.asarray(array, np.float64)[1:]
        totals[i] = body.sum(axis=0)
        thresholds[i] = record.thresholds
        nonfinite[i] = record.nonfinite
        cells, near = record.cells, record.near_zero_cells
        # `explain.totals(record)`, without its per-record overhead: summing a record's [rows, 9] pair columns
        # over rows adds the same values in the same (row) order as summing its whole [rows, 38] body, so the
        # pairs are bit-identical (tests/test_plugin.py checks every record against `explain.totals`).
        diag_pairs[i] = totals[i, :36].reshape(4, 9)
        total_cells, total_near = cells.sum(), near.sum()
        diag_cells[i] = (total_cells, total_near)
        diag_rows[i] = (len(cells), record.group_size)
        dead_rows.append(tuple(explain.dead_rows(record)))
        summaries.append(explain.step_summary(step, len(dead_rows[-1]), len(cells), total_cells, total_near,
                                              record.nonfinite))
        dead[i] = len(dead_rows[-1])
        if body.shape[0] == rows:
            with np.errstate(divide="ignore", invalid="ignore"):
                fraction[:, i] = np.where(cells > 0, near / np.where(cells > 0, cells, 1), np.nan)
    return _Digest(steps=np.asarray(steps, np.int64), totals=totals, thresholds=thresholds, nonfinite=nonfinite,
                   dead_units=dead, row_fraction=fraction, units=records[-1].units if n else 0,
                   group_size=records[-1].group_size if n else 1, skipped=tuple(skipped), diag_pairs=diag_pairs,
                   diag_cells=diag_cells, diag_rows=diag_rows, dead_rows=tuple(dead_rows),
                   summaries=tuple(summaries))


class _LruBytes:
    """A thread-safe LRU cache bounded by the bytes of its values (`nbytes` of each value)."""

    def __init__(self, max_bytes):
        self._max = max_bytes
        self._items = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    @property
    def nbytes(self):
        return self._bytes

    def put(self, key, value, nbytes, max_bytes=None):
        """Adds `value`, evicting the least recently used values beyond `max_bytes` (default: the cache's bound)."""
        limit = self._max if max_bytes is None else min(self._max, max_bytes)
        if nbytes > limit:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (value, nbytes)
            self._bytes += nbytes
            self._evict(limit)

    def shrink(self, max_bytes):
        """Evicts the least recently used values until at most `max_bytes` are held."""
        with self._lock:
            self._evict(max_bytes)

    def _evict(self, limit):
        while self._bytes > max(0, limit) and self._items:
            _, (_, size) = self._items.popitem(last=False)
            self._bytes -= size

    def get_value(self, key):
        item = self.get(key)
        return None if item is None else item[0]


# --------------------------------------------------------------------------------------------- JSON helpers

def _floats(array):
    """A nested list of floats, with NaN and +-inf as None (JSON has no NaN)."""
    array = np.asarray(array, np.float64)
    finite = np.isfinite(array)
    if finite.all():
        return array.tolist()
    out = array.astype(object)
    out[~finite] = None
    return out.tolist()


def _float(x):
    x = float(x)
    return x if math.isfinite(x) else None


def _fraction(near, cells):
    near, cells = float(near), float(cells)
    if not cells > 0 or not math.isfinite(near) or not math.isfinite(cells):
        return None
    return near / cells


def _fractions(near, cells):
    near = np.asarray(near, np.float64)
    cells = np.asarray(cells, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(cells > 0, near / np.where(cells > 0, cells, 1.0), np.nan)
    return _floats(out)


def _respond_json(request, obj):
    # ASCII escapes keep any str valid, even run names with lone surrogates from non-UTF-8 directory names.
    body = json.dumps(obj, separators=(",", ":"), allow_nan=False, ensure_ascii=True)
    return http_util.Respond(request, body.encode("ascii"), _JSON)


# --------------------------------------------------------------------------------------------- parameters

class _MethodNotAllowedError(errors.PublicError):
    """405 for any method but GET and HEAD (TensorBoard's error middleware answers it, with an Allow header)."""

    http_code = 405

    def __init__(self, method):
        super().__init__("method %s is not allowed: the Matmul Explainer routes are GET only" % method[:20])
        self.headers = [("Allow", "GET, HEAD")]


def _get_only(app):
    """Wraps a route's WSGI app so that only GET and HEAD reach it (every route is read-only)."""
    def get_only(environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            raise _MethodNotAllowedError(method)
        return app(environ, start_response)

    return get_only


def _args(request):
    """The query parameters; a 400 (not a 500) when the raw query string is not UTF-8 (werkzeug decodes strictly)."""
    try:
        return request.args
    except UnicodeDecodeError:
        raise errors.InvalidArgumentError("the query string is not valid UTF-8 (percent-encode it)") from None


def _param(request, name, required=True):
    values = _args(request).getlist(name)
    if len(values) > 1:
        raise errors.InvalidArgumentError("parameter %r must be given once, got %d values" % (name, len(values)))
    if not values:
        if required:
            raise errors.InvalidArgumentError("missing parameter %r" % name)
        return None
    return values[0]


def _step_param(request):
    value = _param(request, "step", required=False)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 19 or int(value) > _MAX_STEP:
        raise errors.InvalidArgumentError(
            "parameter 'step' must be a non-negative integer below 2**63, got %r" % value[:40])
    return int(value)


def _role_param(request, default=None):
    role = _param(request, "role", required=default is None)
    if role is None:
        return default
    if role not in metadata.ROLES:
        raise errors.InvalidArgumentError(
            "parameter 'role' must be one of %s, got %r" % (", ".join(metadata.ROLES), role[:60]))
    return role


# --------------------------------------------------------------------------------------------- the plugin

class _PerExperiment:
    """Values computed per experiment id and reused for `ttl` seconds (thread-safe; at most 64 experiments kept).
    Two requests that miss at once may both compute; the later value wins."""

    def __init__(self, ttl):
        self._ttl = ttl
        self._items = {}  # experiment id -> (monotonic time, value)
        self._lock = threading.Lock()

    def get(self, eid, compute):
        now = time.monotonic()
        with self._lock:
            hit = self._items.get(eid)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        value = compute()
        with self._lock:
            if len(self._items) > 64:
                self._items.clear()
            self._items[eid] = (now, value)
        return value


class MatmulExplainerPlugin(base_plugin.TBPlugin):
    """Serves the Matmul Explainer tab and its data routes (see `http_api.md`)."""

    plugin_name = PLUGIN_NAME

    def __init__(self, context):
        self._data_provider = context.data_provider
        hints = context.sampling_hints or {}
        samples = hints.get(PLUGIN_NAME, DEFAULT_SAMPLES_PER_TAG)
        self._downsample = _READ_ALL if not samples or samples <= 0 else int(samples)
        cache_mb = getattr(context.flags, "matmul_explainer_cache_mb", DEFAULT_CACHE_MB)
        cache_bytes = max(0, int(cache_mb)) * 2**20
        # Digests (every view needs them) may take 3/4 of the budget, each tag's latest record (/units) 1/16;
        # whole tags' records (/units at an earlier step) get what those two leave.
        self._digests = _LruBytes(cache_bytes * 3 // 4)
        self._latest = _LruBytes(cache_bytes // 16)
        self._records_budget = cache_bytes - cache_bytes // 16
        self._records = _LruBytes(self._records_budget)
        self._meta_memo = {}
        self._meta_lock = threading.Lock()
        self._listings = _PerExperiment(LISTING_TTL_S)  # {run: _RunIndex}
        self._notes = _PerExperiment(LISTING_TTL_S)  # {run: [{"layer", "reason"}]}
        self._note_values = {}  # (eid, run, tag, max_step, max_wall_time) -> reason
        self._note_lock = threading.Lock()

    # ------------------------------------------------------------------ TBPlugin interface

    def get_plugin_apps(self):
        apps = {
            "/runs": self._serve_runs,
            "/overview": self._serve_overview,
            "/timeline": self._serve_timeline,
            "/heatmap": self._serve_heatmap,
            "/units": self._serve_units,
            "/unit_heatmap": self._serve_unit_heatmap,
            "/compare": self._serve_compare,
            "/diagnosis": self._serve_diagnosis,
            "/alerts": self._serve_alerts,
            "/*": self._serve_static,
        }
        return {route: _get_only(app) for route, app in apps.items()}

    def is_active(self):
        if self._data_provider is None:
            return False
        mapping = self._data_provider.list_tensors(
            tb_context.RequestContext(), experiment_id="", plugin_name=PLUGIN_NAME)
        return any(mapping.values())

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="Matmul Explainer")

    # ------------------------------------------------------------------ reading

    def _parse(self, content):
        """Memoised `parse_plugin_metadata`: PluginMetadata, or the ContractError message."""
        with self._meta_lock:
            hit = self._meta_memo.get(content)
        if hit is not None:
            return hit
        try:
            result = metadata.parse_plugin_metadata(bytes(content))
        except metadata.ContractError as e:
            result = str(e)
        with self._meta_lock:
            if len(self._meta_memo) > 50_000:
                self._meta_memo.clear()
            self._meta_memo[content] = result
        return result

    def _index(self, ctx, eid, runs=None):
        """{run: _RunIndex} for runs holding our summaries (restricted to `runs` if given)."""
        full = self._listings.get(eid, lambda: self._list(ctx, eid))
        return full if runs is None else {r: full[r] for r in runs if r in full}

    def _list(self, ctx, eid):
        mapping = self._data_provider.list_tensors(ctx, experiment_id=eid, plugin_name=PLUGIN_NAME)
        result = {}
        for run in sorted(mapping):
            tags = mapping[run]
            if not tags:
                continue
            index = _RunIndex(name=run)
            for tag in sorted(tags):
                ts = tags[tag]
                parsed = self._parse(ts.plugin_content)
                if isinstance(parsed, str):
                    index.unreadable.append({"tag": tag, "reason": parsed})
                    key = _best_effort_key(ts.plugin_content)
                    if key is not None:
                        index.unreadable_keys.setdefault(key, "tag %r: %s" % (tag, parsed))
                    continue
                layer = index.layers.get(parsed.layer)
                if layer is None:
                    layer = index.layers[parsed.layer] = _Layer(parsed.layer, parsed.index, {})
                if parsed.role in layer.roles:
                    reason = "tag %r holds the same layer %r and role %r as tag %r; it is not shown" % (
                        tag, parsed.layer, parsed.role, layer.roles[parsed.role].tag)
                    index.unreadable.append({"tag": tag, "reason": reason})
                    continue
                layer.index = min(layer.index, parsed.index)
                layer.roles[parsed.role] = _Series(run, tag, parsed, int(ts.max_step), float(ts.max_wall_time))
            result[run] = index
        return result

    def _not_recorded(self, ctx, eid):
        """{run: [{"layer": name, "reason": text}]} from the not-recorded text summaries (sorted by layer)."""
        return self._notes.get(eid, lambda: self._read_not_recorded(ctx, eid))

    def _read_not_recorded(self, ctx, eid):
        mapping = self._data_provider.list_tensors(ctx, experiment_id=eid, plugin_name=_TEXT_PLUGIN)
        notes = {}  # (run, tag) -> memo key
        for run, tags in mapping.items():
            for tag, ts in (tags or {}).items():
                if tag.startswith(NOT_RECORDED_PREFIX) and len(tag) > len(NOT_RECORDED_PREFIX):
                    notes[run, tag] = (eid, run, tag, int(ts.max_step), float(ts.max_wall_time))
        with self._note_lock:
            values = {k: self._note_values[k] for k in notes.values() if k in self._note_values}
        missing = [(run, tag) for (run, tag), k in notes.items() if k not in values]
        if missing:
            data = self._data_provider.read_tensors(
                ctx, experiment_id=eid, plugin_name=_TEXT_PLUGIN, downsample=1,
                run_tag_filter=provider.RunTagFilter(runs=sorted({r for r, _ in missing}),
                                                     tags=sorted({t for _, t in missing})))
            for run, tag in missing:
                points = (data.get(run) or {}).get(tag)
                if points:
                    values[notes[run, tag]] = _not_recorded_reason(points[-1].numpy)
            with self._note_lock:
                if len(self._note_values) > 10_000:
                    self._note_values.clear()
                self._note_values.update(values)
        result = {}
        for (run, tag), k in sorted(notes.items()):
            if k in values:
                result.setdefault(run, []).append({"layer": tag[len(NOT_RECORDED_PREFIX):], "reason": values[k]})
        return result

    def _run(self, ctx, eid, run):
        index = self._index(ctx, eid, runs=[run]).get(run)
        if index is None:
            raise errors.NotFoundError("no Matmul Explainer data for run %r" % run[:200])
        return index

    @staticmethod
    def _series(index, role, layer_name):
        layer = index.layers.get(layer_name)
        if layer is not None and role in layer.roles:
            return layer.roles[role]
        reason = index.unreadable_keys.get((layer_name, role))
        if reason is not None:
            raise errors.InvalidArgumentError("run %r, layer %r, role %r: %s" % (index.name, layer_name, role, reason))
        if layer is None:
            raise errors.NotFoundError("run %r has no layer %r" % (index.name, layer_name[:200]))
        raise errors.NotFoundError("run %r has no %r records for layer %r" % (index.name, role, layer_name))

    @staticmethod
    def _require_role(index, role):
        if role in index.roles():
            return
        for (_, r), reason in index.unreadable_keys.items():
            if r == role:
                raise errors.InvalidArgumentError("run %r, role %r: %s" % (index.name, role, reason))
        raise errors.NotFoundError("run %r has no %r records" % (index.name, role))

    def _read(self, ctx, eid, series, latest_only=False):
        """The tag's data points from the data provider (one `read_tensors` call); only the last if `latest_only`."""
        per_record = metadata.record_bytes(max(1, series.meta.units))
        downsample = 1 if latest_only else max(1, min(self._downsample, _MAX_READ_BYTES // per_record))
        data = self._data_provider.read_tensors(
            ctx, experiment_id=eid, plugin_name=PLUGIN_NAME, downsample=downsample,
            run_tag_filter=provider.RunTagFilter(runs=[series.run], tags=[series.tag]))
        points = data.get(series.run, {}).get(series.tag)
        if not points:
            raise errors.NotFoundError("run %r, tag %r has no records" % (series.run, series.tag))
        return points

    @staticmethod
    def _key(eid, series):
        return (eid, series.run, series.tag, series.max_step, series.max_wall_time)

    def _digest(self, ctx, eid, series):
        key = self._key(eid, series)
        digest = self._digests.get_value(key)
        if digest is None:
            digest = self._digest_of(series, key, self._read(ctx, eid, series))
        return digest

    def _digest_of(self, series, key, points):
        digest = _digest(series, points)
        self._digests.put(key, digest, digest.nbytes)
        self._records.shrink(self._records_budget - self._digests.nbytes)
        return digest

    def _record_at(self, ctx, eid, series, step):
        """(step, Record) of the latest record at or before `step` (latest if None)."""
        key = self._key(eid, series)
        cached = self._records.get_value(key)
        if cached is None and (step is None or step >= series.max_step):
            # the latest record: `downsample=1` returns exactly it (the data provider always keeps the last)
            latest = self._latest.get_value(key)
            if latest is None:
                (point,) = self._read(ctx, eid, series, latest_only=True)[-1:]
                latest = (int(point.step), point.numpy)
                self._latest.put(key, latest, point.numpy.nbytes + 200)
            if step is None or latest[0] <= step:  # (newer data than the listing: read them all below)
                try:
                    return latest[0], metadata.unpack_record(latest[1])
                except metadata.ContractError:
                    pass  # an unreadable latest record: the latest readable one is found below
        if cached is None:
            points = self._read(ctx, eid, series)
            if self._digests.get_value(key) is None:
                self._digest_of(series, key, points)
            steps, arrays, _, _ = _readable(series, *_sorted_unique(points))
            cached = (np.asarray(steps, np.int64), arrays)
            self._records.put(key, cached, sum(a.nbytes for a in arrays) + 8 * len(steps) + 200,
                              max_bytes=self._records_budget - self._digests.nbytes)
        steps, arrays = cached
        i = len(steps) - 1 if step is None else int(np.searchsorted(steps, step, side="right")) - 1
        if i < 0:
            raise errors.NotFoundError("run %r, layer %r, role %r has no record at or before step %d (first: %d)"
                                       % (series.run, series.meta.layer, series.meta.role, step, steps[0]))
        return int(steps[i]), metadata.unpack_record(arrays[i])  # readable: `_readable` kept it

    # ------------------------------------------------------------------ views (return JSON-ready dicts)

    def _runs_view(self, ctx, eid):
        runs = []
        not_recorded = self._not_recorded(ctx, eid)
        for run, index in self._index(ctx, eid).items():
            layers = []
            unreadable = list(index.unreadable)
            for layer in index.ordered_layers():
                roles = {}
                for role in metadata.ROLES:
                    s = layer.roles.get(role)
                    if s is None:
                        continue
                    digest = self._digests.get_value(self._key(eid, s))  # known once the tag has been read
                    if digest is not None and digest.skipped:
                        unreadable.append({"tag": s.tag, "reason": _skipped_reason(digest.skipped)})
                    roles[role] = {"last_step": s.max_step, "units": s.meta.units, "confidence": s.meta.confidence,
                                   "operands": list(s.meta.operands), "thresholds": [
                                       None if t is None else _float(t) for t in s.meta.thresholds],
                                   "tag": s.tag}
                first = layer.roles.get("forward") or next(iter(layer.roles.values()))
                layers.append({"name": layer.name, "index": layer.index, "op": first.meta.op,
                               "units": first.meta.units, "roles": roles})
            runs.append({"run": run, "roles": index.roles(), "layers": layers, "unreadable": unreadable,
                         "notRecorded": not_recorded.get(run, [])})
        return {"version": metadata.CONTRACT_VERSION, "runs": runs}

    @staticmethod
    def _overview_entry(layer, series, digest, i):
        t = digest.totals[i]
        return {
            "name": layer.name, "index": layer.index, "op": series.meta.op, "units": digest.units,
            "step": int(digest.steps[i]),
            "counts": _floats(t[metadata.COUNTS]), "sums": _floats(t[metadata.SUMS]),
            "near_zero_counts": _floats(t[metadata.NEAR_ZERO_COUNTS]),
            "near_zero_sums": _floats(t[metadata.NEAR_ZERO_SUMS]),
            "cells": _float(t[metadata.CELLS]), "near_zero_cells": _float(t[metadata.NEAR_ZERO_CELLS]),
            "near_zero_fraction": _fraction(t[metadata.NEAR_ZERO_CELLS], t[metadata.CELLS]),
            "dead_units": int(digest.dead_units[i]),
            "thresholds": _floats(digest.thresholds[i]), "nonfinite": _floats(digest.nonfinite[i]),
        }

    def _overview_entries(self, ctx, eid, index, role, step):
        """({layer name: entry}, top-level step or None)."""
        entries, latest = {}, None
        for layer in index.ordered_layers(role):
            series = layer.roles[role]
            digest = self._digest(ctx, eid, series)
            if not len(digest.steps):
                continue
            i = len(digest.steps) - 1 if step is None else int(np.searchsorted(digest.steps, step, "right")) - 1
            if i < 0:
                continue
            entries[layer.name] = self._overview_entry(layer, series, digest, i)
            latest = max(latest or 0, int(digest.steps[-1]))
        return entries, (step if step is not None else latest)

    def _overview_view(self, ctx, eid, index, role, step):
        self._require_role(index, role)
        entries, top = self._overview_entries(ctx, eid, index, role, step)
        if not entries:
            raise errors.NotFoundError("run %r, role %r has no record at or before step %s"
                                       % (index.name, role, step))
        return {"run": index.name, "role": role, "step": top, "layers": list(entries.values())}

    def _timeline_view(self, ctx, eid, index, role, series):
        d = self._digest(ctx, eid, series)
        t = d.totals
        return {
            "run": index.name, "role": role, "layer": series.meta.layer, "steps": d.steps.tolist(),
            "counts": _floats(t[:, metadata.COUNTS]), "sums": _floats(t[:, metadata.SUMS]),
            "near_zero_counts": _floats(t[:, metadata.NEAR_ZERO_COUNTS]),
            "near_zero_sums": _floats(t[:, metadata.NEAR_ZERO_SUMS]),
            "cells": _floats(t[:, metadata.CELLS]), "near_zero_cells": _floats(t[:, metadata.NEAR_ZERO_CELLS]),
            "near_zero_fraction": _fractions(t[:, metadata.NEAR_ZERO_CELLS], t[:, metadata.CELLS]),
        }

    def _heatmap_rows(self, ctx, eid, index, role):
        """([layer names], [steps], {layer name: [value or None per step]})."""
        digests = {l.name: self._digest(ctx, eid, l.roles[role]) for l in index.ordered_layers(role)}
        steps = np.unique(np.concatenate([d.steps for d in digests.values()])) if digests else np.zeros(0, np.int64)
        rows = {}
        for name, d in digests.items():
            values = np.full(len(steps), np.nan)
            with np.errstate(divide="ignore", invalid="ignore"):
                cells, near = d.totals[:, metadata.CELLS], d.totals[:, metadata.NEAR_ZERO_CELLS]
                values[np.searchsorted(steps, d.steps)] = np.where(cells > 0, near / np.where(cells > 0, cells, 1),
                                                                   np.nan)
            rows[name] = _floats(values)
        return list(digests), steps.tolist(), rows

    def _heatmap_view(self, ctx, eid, index, role):
        self._require_role(index, role)
        names, steps, rows = self._heatmap_rows(ctx, eid, index, role)
        return {"run": index.name, "role": role, "layers": names, "steps": steps,
                "values": [rows[n] for n in names]}

    def _layer_views(self, ctx, eid, index, keep):
        """{(layer, role): _LayerView} in model order, for the (layer name, role) pairs `keep` accepts."""
        return {(layer.name, role): _LayerView(self, ctx, eid, layer.roles[role])
                for layer in index.ordered_layers() for role in metadata.ROLES
                if role in layer.roles and keep(layer.name, role)}

    # ------------------------------------------------------------------ routes

    @staticmethod
    def _request(request):
        return plugin_util.context(request.environ), plugin_util.experiment_id(request.environ)

    @wrappers.Request.application
    def _serve_runs(self, request):
        ctx, eid = self._request(request)
        return _respond_json(request, self._runs_view(ctx, eid))

    @wrappers.Request.application
    def _serve_overview(self, request):
        ctx, eid = self._request(request)
        run, role, step = _param(request, "run"), _role_param(request), _step_param(request)
        return _respond_json(request, self._overview_view(ctx, eid, self._run(ctx, eid, run), role, step))

    @wrappers.Request.application
    def _serve_timeline(self, request):
        ctx, eid = self._request(request)
        run, role, layer = _param(request, "run"), _role_param(request), _param(request, "layer")
        index = self._run(ctx, eid, run)
        return _respond_json(request, self._timeline_view(ctx, eid, index, role, self._series(index, role, layer)))

    @wrappers.Request.application
    def _serve_heatmap(self, request):
        ctx, eid = self._request(request)
        run, role = _param(request, "run"), _role_param(request)
        return _respond_json(request, self._heatmap_view(ctx, eid, self._run(ctx, eid, run), role))

    @wrappers.Request.application
    def _serve_units(self, request):
        ctx, eid = self._request(request)
        run, role, layer = _param(request, "run"), _role_param(request), _param(request, "layer")
        step = _step_param(request)
        series = self._series(self._run(ctx, eid, run), role, layer)
        at, r = self._record_at(ctx, eid, series, step)
        return _respond_json(request, {
            "run": run, "role": role, "layer": layer, "step": at, "units": r.units, "group_size": r.group_size,
            "counts": _floats(r.counts), "sums": _floats(r.sums), "near_zero_counts": _floats(r.near_zero_counts),
            "near_zero_sums": _floats(r.near_zero_sums), "cells": _floats(r.cells),
            "near_zero_cells": _floats(r.near_zero_cells),
            "near_zero_fraction": _fractions(r.near_zero_cells, r.cells),
        })

    @wrappers.Request.application
    def _serve_unit_heatmap(self, request):
        ctx, eid = self._request(request)
        run, role, layer = _param(request, "run"), _role_param(request), _param(request, "layer")
        fmt = _param(request, "format", required=False) or "json"
        if fmt not in ("json", "f32"):
            raise errors.InvalidArgumentError("parameter 'format' must be 'json' or 'f32', got %r" % fmt[:40])
        d = self._digest(ctx, eid, self._series(self._run(ctx, eid, run), role, layer))
        if fmt == "f32":
            body = np.ascontiguousarray(d.row_fraction, dtype="<f4").tobytes()
            headers = [("X-Rows", str(d.row_fraction.shape[0])), ("X-Steps", ",".join(map(str, d.steps.tolist()))),
                       ("X-Group-Size", str(d.group_size))]
            return http_util.Respond(request, body, "application/octet-stream", headers=headers)
        return _respond_json(request, {
            "run": run, "role": role, "layer": layer, "steps": d.steps.tolist(), "rows": d.row_fraction.shape[0],
            "units": d.units, "group_size": d.group_size, "values": _floats(d.row_fraction)})

    @wrappers.Request.application
    def _serve_compare(self, request):
        ctx, eid = self._request(request)
        view = _param(request, "view")
        if view not in ("overview", "heatmap", "timeline"):
            raise errors.InvalidArgumentError(
                "parameter 'view' must be overview, heatmap or timeline, got %r" % view[:40])
        runs = _args(request).getlist("run")
        if not 1 <= len(runs) <= _MAX_COMPARE_RUNS:
            raise errors.InvalidArgumentError("give 1 to %d 'run' parameters, got %d" % (_MAX_COMPARE_RUNS, len(runs)))
        role = _role_param(request, default="forward")
        step = _step_param(request)
        layer = _param(request, "layer", required=(view == "timeline"))
        indexes = self._index(ctx, eid, runs=sorted(set(runs)))
        missing = [r for r in runs if r not in indexes]
        if missing:
            raise errors.NotFoundError("no Matmul Explainer data for run %r" % missing[0][:200])
        order = {}
        for run in runs:
            for layer_obj in indexes[run].ordered_layers(role):
                key = (layer_obj.index, layer_obj.name)
                order[layer_obj.name] = min(order.get(layer_obj.name, key), key)
        names = sorted(order, key=lambda n: order[n])
        results = []
        for run in runs:
            index = indexes[run]
            if view == "overview":
                entries, top = self._overview_entries(ctx, eid, index, role, step)
                results.append({"run": run, "role": role, "step": top,
                                "layers": [entries.get(n) for n in names]})
            elif view == "heatmap":
                _, steps, rows = self._heatmap_rows(ctx, eid, index, role)
                results.append({"run": run, "role": role, "layers": names, "steps": steps,
                                "values": [rows.get(n) for n in names]})
            else:
                layer_obj = index.layers.get(layer)
                if layer_obj is None or role not in layer_obj.roles:
                    results.append(None)
                else:
                    results.append(self._timeline_view(ctx, eid, index, role, layer_obj.roles[role]))
        return _respond_json(request, {"view": view, "role": role, "runs": runs, "layers": names,
                                       "results": results})

    @wrappers.Request.application
    def _serve_diagnosis(self, request):
        ctx, eid = self._request(request)
        run, role, layer = _param(request, "run"), _role_param(request), _param(request, "layer")
        step = _step_param(request)
        index = self._run(ctx, eid, run)
        self._series(index, role, layer)  # 404/400 for an unknown or unreadable layer
        # Vanishing gradients compare a layer's kernel gradient with the other layers'.
        views = self._layer_views(ctx, eid, index, lambda name, r: r == role and (
            name == layer or role == "kernel_gradient"))
        diagnoses, _ = explain.diagnose_run(views, step)
        found = [d for d in diagnoses if d.layer == layer]
        if not found:
            raise errors.NotFoundError("run %r, layer %r, role %r has no record at or before step %s"
                                       % (run, layer[:200], role, step))
        d = found[0]
        return _respond_json(request, {
            "run": run, "role": role, "layer": layer, "step": d.step, "text": d.text,
            "causes": {k: _float(v) for k, v in d.causes.items()}, "near_zero_fraction": _float(d.near_zero_fraction),
            "dead_rows": d.dead_rows, "alerts": [_alert_json(a) for a in d.alerts]})

    @wrappers.Request.application
    def _serve_alerts(self, request):
        ctx, eid = self._request(request)
        run, step = _param(request, "run"), _step_param(request)
        index = self._run(ctx, eid, run)
        diagnoses, alerts = explain.diagnose_run(self._layer_views(ctx, eid, index, lambda name, r: True), step)
        return _respond_json(request, {
            "run": run, "step": step, "alerts": [_alert_json(a) for a in alerts],
            "diagnoses": [{"layer": d.layer, "role": d.role, "step": d.step, "text": d.text} for d in diagnoses]})

    @wrappers.Request.application
    def _serve_static(self, request):
        path = request.path
        if not path.startswith(_ROUTE_PREFIX):
            raise errors.NotFoundError("no such file")
        relative = path[len(_ROUTE_PREFIX):]
        if not relative or "\x00" in relative or "\\" in relative:
            raise errors.NotFoundError("no such file")
        root = os.path.realpath(_STATIC_DIR)
        target = os.path.realpath(os.path.join(root, relative))
        if os.path.commonpath([root, target]) != root or not os.path.isfile(target):
            raise errors.NotFoundError("no such file")
        extension = os.path.splitext(target)[1].lower()
        content_type = (_CONTENT_TYPES.get(extension) or mimetypes.guess_type(target)[0]
                        or "application/octet-stream")
        with open(target, "rb") as f:
            body = f.read()
        return http_util.Respond(request, body, content_type)
