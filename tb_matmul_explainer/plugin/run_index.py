"""The run index: which (run, layer, role) tags hold our summaries, built from one `list_tensors` listing, and the
lookups that name a missing or unreadable tag in their errors (404 for what is not there, 400 for what cannot be
read)."""

import dataclasses
import json

from tensorboard import errors

from tb_matmul_explainer import metadata


@dataclasses.dataclass(frozen=True)
class Series:
    """One readable tag: a (run, layer, role) time series, as of the listing."""

    run: str
    tag: str
    meta: metadata.PluginMetadata
    max_step: int
    max_wall_time: float

    def key(self, eid):
        """A cache key naming this version of the tag (new data changes it)."""
        return (eid, self.run, self.tag, self.max_step, self.max_wall_time)


@dataclasses.dataclass
class Layer:
    name: str
    index: int  # position in the model (the smallest any of its tags gives)
    roles: dict  # role -> Series


@dataclasses.dataclass
class RunIndex:
    name: str
    layers: dict = dataclasses.field(default_factory=dict)  # name -> Layer
    unreadable: list = dataclasses.field(default_factory=list)  # {"tag", "reason"}
    unreadable_keys: dict = dataclasses.field(default_factory=dict)  # (layer, role) -> reason

    def ordered_layers(self, role=None):
        """The layers (holding `role`, if given) in model order."""
        layers = [l for l in self.layers.values() if role is None or role in l.roles]
        return sorted(layers, key=lambda l: (l.index, l.name))

    def roles(self):
        """The roles some layer holds, in `metadata.ROLES` order."""
        present = {r for l in self.layers.values() for r in l.roles}
        return [r for r in metadata.ROLES if r in present]

    def series(self, role, layer_name):
        """The `Series` of (layer, role); 400 if its tag cannot be read, 404 if there is none."""
        layer = self.layers.get(layer_name)
        if layer is not None and role in layer.roles:
            return layer.roles[role]
        reason = self.unreadable_keys.get((layer_name, role))
        if reason is not None:
            raise errors.InvalidArgumentError("run %r, layer %r, role %r: %s" % (self.name, layer_name, role, reason))
        if layer is None:
            raise errors.NotFoundError("run %r has no layer %r" % (self.name, layer_name[:200]))
        raise errors.NotFoundError("run %r has no %r records for layer %r" % (self.name, role, layer_name))

    def require_role(self, role):
        """Returns if some layer holds `role`; else 400 if a tag of that role cannot be read, 404 if there is none."""
        if role in self.roles():
            return
        for (_, r), reason in self.unreadable_keys.items():
            if r == role:
                raise errors.InvalidArgumentError("run %r, role %r: %s" % (self.name, role, reason))
        raise errors.NotFoundError("run %r has no %r records" % (self.name, role))

    def add(self, tag, ts, parsed):
        """Adds tag `tag` (`ts`: its `provider.TensorTimeSeries`) with `parsed`, its PluginMetadata or the text of
        why its metadata cannot be read."""
        if isinstance(parsed, str):
            self.unreadable.append({"tag": tag, "reason": parsed})
            key = _best_effort_key(ts.plugin_content)
            if key is not None:
                self.unreadable_keys.setdefault(key, "tag %r: %s" % (tag, parsed))
            return
        layer = self.layers.get(parsed.layer)
        if layer is None:
            layer = self.layers[parsed.layer] = Layer(parsed.layer, parsed.index, {})
        if parsed.role in layer.roles:
            reason = "tag %r holds the same layer %r and role %r as tag %r; it is not shown" % (
                tag,
                parsed.layer,
                parsed.role,
                layer.roles[parsed.role].tag,
            )
            self.unreadable.append({"tag": tag, "reason": reason})
            return
        layer.index = min(layer.index, parsed.index)
        layer.roles[parsed.role] = Series(self.name, tag, parsed, int(ts.max_step), float(ts.max_wall_time))


def build(mapping, parse):
    """{run: RunIndex} of the runs holding our tags, from a `list_tensors` mapping {run: {tag: TensorTimeSeries}};
    `parse(content)` gives a tag's PluginMetadata or the text of why it cannot be read."""
    result = {}
    for run in sorted(mapping):
        tags = mapping[run]
        if not tags:
            continue
        index = result[run] = RunIndex(name=run)
        for tag in sorted(tags):
            index.add(tag, tags[tag], parse(tags[tag].plugin_content))
    return result


def parse_metadata(content):
    """`metadata.parse_plugin_metadata` of a tag's content: PluginMetadata, or the ContractError's text."""
    try:
        return metadata.parse_plugin_metadata(bytes(content))
    except metadata.ContractError as e:
        return str(e)


def _best_effort_key(content):
    """(layer, role) from metadata content we cannot parse, to name it in errors; None if unknown."""
    try:
        raw = json.loads(content.decode("utf-8"))
        return (str(raw["layer"]), str(raw["role"]))
    except Exception:  # any malformed content: we just cannot name it
        return None
