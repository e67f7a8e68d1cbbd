"""The `tensorboard_plugins` entry point: `MatmulExplainerLoader`, the plugin's flag and its default retention.

`fix_flags` gives our plugin a default retention of `DEFAULT_SAMPLES_PER_TAG` records per tag (TensorBoard keeps
only 10 or 100 samples of a third-party tensor summary otherwise) unless the user passed
`--samples_per_plugin=matmul_explainer=N` (N = 0 keeps all). It runs before TensorBoard makes the data provider.
"""

from tensorboard.plugins import base_plugin

from tb_matmul_explainer import metadata
from tb_matmul_explainer.plugin.matmul_explainer_plugin import (
    DEFAULT_CACHE_MB,
    DEFAULT_SAMPLES_PER_TAG,
    MatmulExplainerPlugin,
)


class MatmulExplainerLoader(base_plugin.TBLoader):
    """Registers the plugin, its flag, and our default retention."""

    def define_flags(self, parser):
        group = parser.add_argument_group("matmul_explainer plugin")
        group.add_argument(
            "--matmul_explainer_cache_mb",
            metavar="MB",
            type=int,
            default=DEFAULT_CACHE_MB,
            help="Memory the Matmul Explainer plugin may use to cache digests of read records and the records "
            "of recently viewed layers (default: %(default)s; 0 disables caching).",
        )

    def fix_flags(self, flags):
        flags.samples_per_plugin = with_default_retention(getattr(flags, "samples_per_plugin", None))
        cache_mb = getattr(flags, "matmul_explainer_cache_mb", DEFAULT_CACHE_MB)
        if not isinstance(cache_mb, int) or cache_mb < 0:
            raise base_plugin.FlagsError(
                "--matmul_explainer_cache_mb must be a non-negative integer, got %r" % (cache_mb,)
            )

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
    result.setdefault(metadata.PLUGIN_NAME, DEFAULT_SAMPLES_PER_TAG)
    return result
