"""Record computations shared by the layers of a recording step that compute alike.

A deep model repeats a few layer shapes (ResNet50 records 54 layers of about 20 shapes). Within one traced
recording step, the second and later records with the same key (`record_key`: the role, the adapter, the layer's
configuration without its name, the part, the geometry and the inputs' shapes and dtypes) call one traced function
instead of inlining a copy of their computation: the step's graph then grows with the distinct layer shapes rather
than with the layers, which shortens its graph optimisation and its first run and lowers its peak memory. The first
record of a key stays inlined (a call costs about 0.25 ms on CPU, so a layer of its own shape keeps the inlined
graph). The writes stay per layer (their tags differ).

Only adapters that declare `shares_records` take part: their records depend on nothing but the layer's
configuration and the tensors passed. A shared function that captured a tensor of the step (a record computation
reaching outside its inputs) would compute with the first layer's tensor, so it is refused with an error.
"""

import json

import tensorflow as tf


def record_key(target, role, geometry, inputs):
    """A hashable key of one record's computation, or None when it is not shared (the adapter does not declare
    `shares_records`, or the layer's configuration cannot be serialised)."""
    if not getattr(target.adapter, "shares_records", False):
        return None
    try:
        config = {k: v for k, v in target.layer.get_config().items() if k != "name"}
        config = json.dumps(config, sort_keys=True, default=repr)
    except (TypeError, ValueError, NotImplementedError):
        return None
    return (
        role,
        type(target.adapter),
        type(target.layer),
        config,
        target.part,
        repr(geometry),
        tuple(_spec(t) for t in inputs),
    )


def _spec(value):
    if isinstance(value, (tf.Tensor, tf.Variable)):
        return (tuple(value.shape.as_list()) if value.shape.rank is not None else None, value.dtype.name)
    return ("value", repr(value))


class SharedRecords:
    """The shared record functions of one recorder (kept across traces of its recording step)."""

    def __init__(self, enabled=True):
        self.enabled = enabled
        self._functions = {}

    def __len__(self):
        """The number of shared functions (keys met more than once in a step)."""
        return len(self._functions)

    def compute(self, seen, key, fn, inputs):
        """`fn(*inputs)`: inlined the first time `key` is met in a step (`seen`: the keys met so far in the step
        being traced, updated here), when `key` is None, when sharing is off or eagerly; else a call of the
        function traced for `key`."""
        if key is None or not self.enabled or key not in seen or not tf.inside_function():
            if key is not None:
                seen.add(key)
            return fn(*inputs)
        function = self._functions.get(key)
        if function is None:
            function = self._functions[key] = tf.function(
                fn, autograph=False, experimental_attributes={"_noinline": True}
            )
        outputs = function(*inputs)
        captured = function.get_concrete_function(*inputs).captured_inputs
        if captured:
            raise RuntimeError(
                f"a shared record computation ({key[0]}) captured tensors outside its inputs "
                f"({[getattr(t, 'name', t) for t in captured]}): it would compute with another layer's values"
            )
        return outputs
