"""The Matmul Explainer plugin for TensorBoard: the `TBPlugin` serving the tab and its data routes.

See `http_api.md` (in `tb_matmul_explainer/`) for the routes. Each route reads its request parameters (`web`),
asks a view for its body (`views`, reading through a per-request `reader.Reader`) and responds; the static
files of the tab are served from `tb_matmul_explainer/static/`. Every route is GET only.
"""

from tensorboard import errors, plugin_util
from tensorboard.backend import http_util
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

from tb_matmul_explainer import metadata
from tb_matmul_explainer.plugin import cache, reader, views, web

#: Records kept per tag when the user gave no `--samples_per_plugin` for our plugin.
DEFAULT_SAMPLES_PER_TAG = 500
#: Default size of the plugin's in-memory caches (`--matmul_explainer_cache_mb`).
DEFAULT_CACHE_MB = 256
_MAX_COMPARE_RUNS = 8
_COMPARE_VIEWS = ("overview", "heatmap", "timeline")


class MatmulExplainerPlugin(base_plugin.TBPlugin):
    """Serves the Matmul Explainer tab and its data routes (see `http_api.md`)."""

    plugin_name = metadata.PLUGIN_NAME

    def __init__(self, context):
        """Instantiates the plugin via TensorBoard core (`context`: a `base_plugin.TBContext`)."""
        self._data_provider = context.data_provider
        samples = (context.sampling_hints or {}).get(self.plugin_name, DEFAULT_SAMPLES_PER_TAG)
        self._downsample = reader.READ_ALL if not samples or samples <= 0 else int(samples)
        cache_mb = getattr(context.flags, "matmul_explainer_cache_mb", DEFAULT_CACHE_MB)
        self._caches = cache.PluginCaches(max(0, int(cache_mb)) * 2**20)

    def get_plugin_apps(self):
        apps = {
            "/runs": self.runs_route,
            "/overview": self.overview_route,
            "/timeline": self.timeline_route,
            "/heatmap": self.heatmap_route,
            "/units": self.units_route,
            "/unit_heatmap": self.unit_heatmap_route,
            "/compare": self.compare_route,
            "/diagnosis": self.diagnosis_route,
            "/alerts": self.alerts_route,
            "/*": wrappers.Request.application(web.serve_static),
        }
        return {route: web.get_only(app) for route, app in apps.items()}

    def is_active(self):
        return False  # `list_plugins` as called by TB core suffices (our summaries set DATA_CLASS_TENSOR)

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="Matmul Explainer")

    def reader(self, ctx, experiment):
        """A `reader.Reader` for one request's context and experiment id."""
        return reader.Reader(self._data_provider, self._caches, self._downsample, ctx, experiment)

    def _reader_of(self, request):
        return self.reader(plugin_util.context(request.environ), plugin_util.experiment_id(request.environ))

    def _respond(self, request, view, *params):
        """200 with the JSON body that `view(reader, *params)` gives for the request."""
        return web.respond_json(request, view(self._reader_of(request), *params))

    @wrappers.Request.application
    def runs_route(self, request):
        return self._respond(request, views.runs)

    @wrappers.Request.application
    def overview_route(self, request):
        run, role, step = web.param(request, "run"), web.role_param(request), web.step_param(request)
        return self._respond(request, views.overview, run, role, step)

    @wrappers.Request.application
    def timeline_route(self, request):
        return self._respond(request, views.timeline, *web.layer_params(request))

    @wrappers.Request.application
    def heatmap_route(self, request):
        return self._respond(request, views.heatmap, web.param(request, "run"), web.role_param(request))

    @wrappers.Request.application
    def units_route(self, request):
        return self._respond(request, views.units, *web.layer_params(request), web.step_param(request))

    @wrappers.Request.application
    def unit_heatmap_route(self, request):
        params = web.layer_params(request)
        fmt = web.param(request, "format", required=False) or "json"
        if fmt not in ("json", "f32"):
            raise errors.InvalidArgumentError("parameter 'format' must be 'json' or 'f32', got %r" % fmt[:40])
        if fmt == "json":
            return self._respond(request, views.unit_heatmap, *params)
        body, headers = views.unit_heatmap_f32(self._reader_of(request), *params)
        return http_util.Respond(request, body, "application/octet-stream", headers=headers)

    @wrappers.Request.application
    def compare_route(self, request):
        view = web.param(request, "view")
        if view not in _COMPARE_VIEWS:
            raise errors.InvalidArgumentError(
                "parameter 'view' must be overview, heatmap or timeline, got %r" % view[:40]
            )
        runs = web.args(request).getlist("run")
        if not 1 <= len(runs) <= _MAX_COMPARE_RUNS:
            raise errors.InvalidArgumentError("give 1 to %d 'run' parameters, got %d" % (_MAX_COMPARE_RUNS, len(runs)))
        role, step = web.role_param(request, default="forward"), web.step_param(request)
        layer = web.param(request, "layer", required=(view == "timeline"))
        return self._respond(request, views.compare, view, runs, role, step, layer)

    @wrappers.Request.application
    def diagnosis_route(self, request):
        return self._respond(request, views.diagnosis, *web.layer_params(request), web.step_param(request))

    @wrappers.Request.application
    def alerts_route(self, request):
        return self._respond(request, views.alerts, web.param(request, "run"), web.step_param(request))
