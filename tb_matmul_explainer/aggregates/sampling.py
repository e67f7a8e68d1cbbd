"""Random choices of the aggregate kernels: per-use stateless seeds and the batch rows (or positions) sampled
for near_zero="sampled"."""

import numbers

import tensorflow as tf

# Sub-seed indices: the thresholds of the first operand, the second operand and the result, then the row sample.
FIRST, SECOND, RESULT, ROWS = 0, 1, 2, 3


def sub_seed(seed, index):
    """A distinct stateless seed per use (`index`: FIRST, SECOND, RESULT or ROWS); None for unseeded draws."""
    if seed is None:
        return None
    if isinstance(seed, numbers.Integral):
        return tf.constant([int(seed), index], tf.int64)
    return tf.cast(seed, tf.int64) + tf.constant([0, index], tf.int64)


def sample_rows(n, size, seed):
    """`size` distinct row indices out of n >= size, in order."""
    keys = tf.random.uniform([n]) if seed is None else tf.random.stateless_uniform([n], seed=seed)
    return tf.sort(tf.math.top_k(keys, k=size).indices)


def exact_or_sampled(rows_static, rows, size, exact_fn, sampled_fn):
    """near_zero="sampled": the exact totals when the sample would hold every row, else the estimate."""
    if rows_static is not None:
        return exact_fn() if rows_static <= size else sampled_fn()
    return tf.cond(rows <= size, exact_fn, sampled_fn)
