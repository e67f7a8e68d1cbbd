"""Reads a log directory back through TensorBoard's own multiplexer and data provider (test helper)."""

from tensorboard import context
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer

from tb_matmul_explainer import metadata


def provider_for(logdir):
    """A `MultiplexerDataProvider` over `logdir` that keeps every sample."""
    mux = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={metadata.PLUGIN_NAME: 0, "scalars": 0})
    mux.AddRunsFromDirectory(logdir)
    mux.Reload()
    return data_provider.MultiplexerDataProvider(mux, logdir)


def read_records(logdir, plugin_name=metadata.PLUGIN_NAME):
    """{run: {tag: (time series metadata, [TensorDatum...])}} for one plugin."""
    provider = provider_for(logdir)
    ctx = context.RequestContext()
    listing = provider.list_tensors(ctx, experiment_id="", plugin_name=plugin_name)
    data = provider.read_tensors(ctx, experiment_id="", plugin_name=plugin_name, downsample=10**6)
    return {run: {tag: (listing[run][tag], data[run][tag]) for tag in tags} for run, tags in listing.items()}


def read_scalars(logdir):
    """{run: {tag: [(step, value)...]}} of the Scalars dashboard's data."""
    provider = provider_for(logdir)
    ctx = context.RequestContext()
    data = provider.read_scalars(ctx, experiment_id="", plugin_name="scalars", downsample=10**6)
    return {
        run: {tag: [(d.step, d.value) for d in points] for tag, points in tags.items()} for run, tags in data.items()
    }
