"""XLA compilation of the aggregate kernels: the `kernel` decorator and the compile mode of one public call.

A function decorated with `kernel` runs as one XLA-compiled `tf.function` (static Python arguments key its
cache) or as one uncompiled `tf.function`, as the public call running it asks (`Options.jit`). Compiling fuses the
elementwise class masks into few passes (faster on CPU, measured in bench/kernels.py) but costs about a second per
new shape. Each public function sets the mode for the duration of its own call (`compile_mode`); the mode lives in
a context variable, so calls in other threads (replicas of a distribution strategy) keep their own.
"""

import contextlib
import contextvars
import functools

import tensorflow as tf

_JIT = contextvars.ContextVar("tb_matmul_explainer.aggregates.jit", default=True)


@contextlib.contextmanager
def compile_mode(jit):
    """Within the block, `kernel` functions run XLA-compiled if `jit`, else uncompiled."""
    token = _JIT.set(bool(jit))
    try:
        yield
    finally:
        _JIT.reset(token)


def kernel(fn):
    """Runs `fn` as one XLA-compiled function when the current compile mode asks for it, else as one traced
    (uncompiled) function. Either way a kernel is traced once per input signature and shared by every caller
    of that signature (the layers of a deep model repeat a few shapes); uncompiled, a caller's graph inlines it."""
    compiled = tf.function(fn, jit_compile=True, autograph=False)  # our kernels need no autograph
    traced = tf.function(fn, autograph=False)

    @functools.wraps(fn)
    def call(*args):
        return compiled(*args) if _JIT.get() else traced(*args)

    return call
