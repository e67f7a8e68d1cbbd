"""Which layers of a model are recorded, under which names, and which matmuls are not (with the reason).

`walk(model)` lists every layer below the model depth-first in model order (parents before their sublayers), each
with its Keras path: the names of its ancestors below the model and its own, joined by '/'
(`block_2/multi_head_attention_1/query`). Paths are unique (a repeated one gets `_2`, `_3`, ... in model order)
and stable across runs of the same model code: they hold no walk index. `resolve(...)` turns the walk into the
recorded `Target`s, tagged `<path>/<role>`, and the not-recorded `{path: reason}` (each warned about with an
`UnsupportedLayerWarning`): layers with a kernel that no adapter takes or that their adapter refuses, and the
matmuls inside layers that are not layers (an adapter's `not_recorded`, as `<path>/<suffix>`).
"""

import dataclasses
import warnings

import keras

from tb_matmul_explainer import activations, graph, internals, layers, metadata
from tb_matmul_explainer.keras.options import UnsupportedLayerWarning


@dataclasses.dataclass
class Entry:
    """One layer of the walk."""

    layer: object
    index: int  # position in the walk (model order)
    path: str  # Keras path, unique in the model
    group: int  # index of the outermost non-Model layer holding it (itself if none): an attention layer's parts


@dataclasses.dataclass
class Target:
    """One recorded layer."""

    layer: object
    index: int
    name: str  # tag prefix: the layer's Keras path (`<path>/<part>` for one of a layer's several parts)
    adapter: object  # its `layers.base.Adapter`
    op: str  # metadata op
    metadata: dict  # role -> SummaryMetadata
    plan: object = None  # the adapter's per-layer data (`Adapter.plan`)
    activation: object = None  # activations.Activation of the layer's own activation (None: linear)
    roles: tuple = ()  # the roles recorded (`roles_of`)
    units: dict = None  # role -> units of its record
    producer: tuple = (None, None)  # (name, kind) of the layer that produced the input (`graph.producer_of`)
    zeroed_by: tuple = ()  # layers between the producer and this one that zero values (`graph.zeroed_by`)
    part: str = None  # which of the layer's explanations (`Adapter.parts`; None: its only one)
    sources: tuple = ()  # a layer called several times: the model inputs its first-run call reads
    parts: dict = None  # part -> Target, for every part of the layer in `Adapter.parts` order (shared by them)

    @property
    def kind(self):
        return self.adapter.kind


@dataclasses.dataclass(frozen=True)
class _WalkContext:
    """What a walk to a layer's producer needs of the model: the nested models' inputs (`graph.nested_inputs`),
    every walked layer's Keras path, by id, the walked layers by index (an entry's `group`) and the order Keras
    runs the calls in (`graph.call_ranks`)."""

    owners: dict
    paths: dict
    by_index: dict
    ranks: dict


# Wrappers whose inner layer reads the wrapper's one input (time step by time step, or in both directions): the
# inner layer is called in no graph of its own, so its producer is the wrapper's.
_SAME_INPUT_WRAPPERS = (keras.layers.Bidirectional, keras.layers.TimeDistributed)


def walk(model):
    """[Entry] of every layer below `model` (InputLayers excluded); a layer that is not a Model comes first."""
    out, seen, paths = [], {id(model)}, set()

    def add(layer, parent_path, group):
        path = layer.name if not parent_path else f"{parent_path}/{layer.name}"
        unique, n = path, 1
        while unique in paths:
            n += 1
            unique = f"{path}_{n}"
        paths.add(unique)
        index = len(out)
        entry = Entry(layer, index, unique, index if group is None else group)
        out.append(entry)
        return entry

    def visit(layer, parent_path, group):
        for child in internals.sublayers(layer):
            if id(child) in seen or isinstance(child, keras.layers.InputLayer):
                continue
            seen.add(id(child))
            entry = add(child, parent_path, group)
            visit(child, entry.path, None if isinstance(child, keras.Model) else entry.group)

    if isinstance(model, keras.Model):
        visit(model, "", None)
    else:
        root = add(model, "", None)
        visit(model, root.path, root.group)
    return out


def _chosen(entries, wanted):
    """The ids of the layers `wanted` names (names, paths or layer objects); None for all."""
    if wanted is None:
        return None
    wanted = [wanted] if isinstance(wanted, (str, keras.layers.Layer)) else list(wanted)
    by_name = {}
    for e in entries:
        by_name.setdefault(e.path, e.layer)
        by_name.setdefault(e.layer.name, e.layer)
    chosen = set()
    for item in wanted:
        if isinstance(item, str):
            if item not in by_name:
                raise ValueError(f"no layer named {item!r} in the model; its layers are {[e.path for e in entries]}")
            chosen.add(id(by_name[item]))
        elif isinstance(item, keras.layers.Layer):
            if not any(e.layer is item for e in entries):
                raise ValueError(f"layer {item.name!r} is not part of the model")
            chosen.add(id(item))
        else:
            raise TypeError(f"layers must hold layer names or layer objects, got {type(item).__name__}")
    return chosen


def refusal(layer, adapter, chosen):
    """Why `layer` is not recorded, or None if it is (or if it has nothing to record and was not asked for)."""
    if adapter is None:
        if layers.kernels_of(layer):
            return f"layer type {type(layer).__name__} is not supported (supported: {layers.SUPPORTED})"
        if chosen:
            return f"layer type {type(layer).__name__} has no kernel to explain (supported: {layers.SUPPORTED})"
        return None
    return adapter.refusal(layer)


def roles_of(activation, roles):
    """The roles recorded for a layer: the activation roles only with a non-linear activation of its own
    (activation_gradient only for an elementwise one)."""
    return tuple(
        r
        for r in roles
        if (r != "activation" or activation is not None)
        and (r != "activation_gradient" or (activation is not None and activation.elementwise))
    )


def _targets(entry, adapter, roles, confidence, thresholds, walk_context):
    """The layer's `Target`s, one per part (`Adapter.parts`: each part's own adapter), sharing their `parts` dict;
    a later part's input is the part before it (its producer)."""
    layer = entry.layer
    if not layer.built:
        raise ValueError(f"layer {entry.path!r} is not built yet: build or call the model first")
    parts, producer = {}, None
    for part, part_adapter in adapter.parts(layer):
        part_roles = part_adapter.roles(layer, part, roles)
        parts[part] = _target(entry, part_adapter, part, part_roles, confidence, thresholds, walk_context, producer)
        parts[part].parts = parts
        producer = (parts[part].name, "layer")
    return list(parts.values())


def _attention_output_producer(entry, holder, walk_context):
    """(`<attention path>/attention_values`, "layer") for an attention layer's output projection, which reads that
    einsum's output (called from the attention's Python code: no graph says so); None for any other layer."""
    if holder is None or holder is entry.layer or not entry.path.endswith("/attention_output"):
        return None
    adapter = layers.adapter_for(holder)
    if adapter is None or "attention_values" not in [part for part, _ in adapter.parts(holder)]:
        return None
    return (f"{walk_context.paths[id(holder)]}/attention_values", "layer")


def _target(entry, adapter, part, roles, confidence, thresholds, walk_context, producer=None):
    layer = entry.layer
    act = activations.describe(adapter.activation(layer))
    holder = walk_context.by_index.get(entry.group)
    read_from = holder if isinstance(holder, _SAME_INPUT_WRAPPERS) and holder is not layer else layer
    producer = producer or _attention_output_producer(entry, holder, walk_context)
    target = Target(
        layer=layer,
        index=entry.index,
        name=entry.path if part is None else f"{entry.path}/{part}",
        adapter=adapter,
        op=adapter.part_op(layer, part),
        metadata={},
        plan=adapter.plan(layer),
        activation=act,
        roles=roles_of(act, roles),
        producer=producer or graph.producer_of(read_from, walk_context.owners, walk_context.paths, walk_context.ranks),
        zeroed_by=() if producer else graph.zeroed_by(read_from, walk_context.owners, walk_context.ranks),
        sources=internals.first_call_sources(layer, walk_context.ranks),
        part=part,
    )
    target.units = {role: adapter.units(layer, role, part) for role in target.roles}
    for role in target.roles:
        target.metadata[role] = metadata.create_summary_metadata(
            f"{target.name}/{role}",
            None,
            role=role,
            op=target.op,
            layer=target.name,
            index=entry.index,
            units=target.units[role],
            confidence=confidence,
            thresholds=thresholds if role in metadata.MATMUL_ROLES else (None, None, None),
            activation=act.name if role.startswith("activation") else None,
            producer=target.producer[0],
            producer_kind=target.producer[1],
            zeroed_by=target.zeroed_by,
            group=entry.group,
        )
    return target


def _warn(name, layer, reason):
    warnings.warn(
        f"tb_matmul_explainer: layer {name!r} ({type(layer).__name__}) is not recorded: {reason}. "
        "The other layers are still recorded.",
        UnsupportedLayerWarning,
        stacklevel=4,
    )


def resolve(model, wanted, roles, confidence, thresholds):
    """(targets, skipped, entries): the recorded `Target`s in model order, {path: reason} of what is not recorded
    (each warned about), and the walk."""
    entries = walk(model)
    chosen = _chosen(entries, wanted)
    walk_context = _WalkContext(
        graph.nested_inputs(e.layer for e in entries),
        {id(e.layer): e.path for e in entries},
        {e.index: e.layer for e in entries},
        graph.call_ranks([model] + [e.layer for e in entries]),
    )
    targets, skipped = [], {}
    for entry in entries:
        if chosen is not None and id(entry.layer) not in chosen:
            continue
        adapter = layers.adapter_for(entry.layer)
        reason = refusal(entry.layer, adapter, chosen is not None and adapter is None)
        if reason is not None:
            skipped[entry.path] = reason
            _warn(entry.path, entry.layer, reason)
        elif adapter is not None and adapter.records:
            targets.extend(_targets(entry, adapter, roles, confidence, thresholds, walk_context))
        for suffix, why in ({} if adapter is None else adapter.not_recorded(entry.layer)).items():
            skipped[f"{entry.path}/{suffix}"] = why
            _warn(f"{entry.path}/{suffix}", entry.layer, why)
    return targets, skipped, entries


def wrappers(entries):
    """[(layer, call)] of the wrappers whose adapter replaces their call while recording (`Adapter.recording_call`)."""
    out = []
    for entry in entries:
        adapter = layers.adapter_for(entry.layer)
        call = None if adapter is None else adapter.recording_call(entry.layer)
        if call is not None:
            out.append((entry.layer, call))
    return out
