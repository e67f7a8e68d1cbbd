"""The TensorBoard backend of the "Matmul Explainer" tab (entry point: `MatmulExplainerLoader`).

Modules, one job each (a request flows route -> view -> reader -> data provider):
  flags                    the `tensorboard_plugins` entry point: TBLoader, the cache flag, default retention
  matmul_explainer_plugin  the TBPlugin: thin routes (parameters in, a view's body out)
  web                      the HTTP edge: query parameters, the GET-only guard, JSON responses, static files
  views                    each route's body as a dict, from a reader (no werkzeug)
  reader                   one request's reads through the data provider and the caches
  run_index                which (run, layer, role) tags exist, from one `list_tensors` listing
  digest                   a tag's records reduced to its summary table (`explain.SeriesTable`) and row fractions
  not_recorded             the layers the writer could not record (text summaries)
  cache                    the one cache abstraction, and the caches the plugin keeps

The record layout it reads is the contract in `metadata.py`; the routes are documented in `http_api.md`.
"""

from tb_matmul_explainer.metadata import PLUGIN_NAME  # noqa: F401
from tb_matmul_explainer.plugin.cache import LISTING_TTL_S  # noqa: F401
from tb_matmul_explainer.plugin.flags import MatmulExplainerLoader, with_default_retention  # noqa: F401
from tb_matmul_explainer.plugin.matmul_explainer_plugin import (  # noqa: F401
    DEFAULT_CACHE_MB,
    DEFAULT_SAMPLES_PER_TAG,
    MatmulExplainerPlugin,
)
from tb_matmul_explainer.plugin.not_recorded import NOT_RECORDED_PREFIX, PARTLY_RECORDED_PREFIX  # noqa: F401
