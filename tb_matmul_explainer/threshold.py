"""The near-zero threshold of an operand: an exact O(N) percentile, a sampled estimate, a non-finite count.

`percentile_threshold(x, confidence)`, the classifiers' default threshold: the `100*(1-confidence)`
percentile of |x| over x's *finite* values with midpoint interpolation, bit for bit
`tfp.stats.percentile(tf.abs(finite_x), 100*(1-confidence), interpolation='midpoint')`. With n finite values
and `s` their sorted magnitudes: `q = float64(float32(100*(1-confidence)))`, `i = (n-1) * (q/100)` in float64,
`thr = 0.5 * (s[floor(i)] + s[ceil(i)])` in x's dtype. No finite values (zero-size, all NaN/inf) gives 0.

It never sorts. Non-negative IEEE floats order like their bit patterns, so |x| is taken as its bit pattern with
the sign bit cleared (NaN/inf land above every finite value and are never selected) and both order statistics
are found by radix selection: 16-bit histogram passes, two for float32 and four for float64, O(N) each plus a
fixed O(65536). Ranks that fall among exact zeros (ReLU outputs) stop after the first pass.

`sampled_threshold` estimates the same percentile from `sample_size` positions of x drawn uniformly with
replacement; non-finite draws are dropped, so the kept ones are a uniform sample of the finite values. Inputs
with at most `sample_size` elements are computed exactly. Measured error of the default sample (1M standard
normal values, 200 seeds): the near-zero fraction `mean(|x| < thr)` differs from `p = 1 - confidence` with
standard deviation 0.0036 at confidence 0.95 (worst 0.011), 0.0080 at 0.5 (worst 0.029) and 0.0015 at 0.99,
i.e. `sqrt(p(1-p)/sample_size)` as theory says, with no measurable bias; tests/test_threshold.py re-checks
this. (With many tied values, e.g. exact zeros, the fraction can differ from p even for the exact threshold:
that is the percentile's definition, not sampling error.) DEFAULT_SAMPLE_SIZE = 4096 keeps one standard
deviation under 0.8 percentage points for every confidence at a fixed cost of about 1 ms per call on CPU,
whatever the operand's size (measured in tf.function, 2-core CPU).

Dtypes follow `validation.as_float_tensor`: float32/float64 keep their dtype; float16, bfloat16, integers and
bools are computed and returned as float32. All three functions work eagerly, inside `tf.function` (shapes
unknown at trace time included) and under `jit_compile=True`.
"""

import functools
import numbers

import numpy as np
import tensorflow as tf

from tb_matmul_explainer import validation

DEFAULT_SAMPLE_SIZE = 4096

_DIGIT_BITS = 16
_BINS = 1 << _DIGIT_BITS
_SORT_LIMIT = 65536  # sampled thresholds use a partial sort up to this many draws
_SMALL = 16384  # up to this many elements a histogram is a segment sum, above it a Bincount (measured)
# Per float dtype: (integer dtype of the bit pattern, total bits, sign-clearing mask, bit pattern of +inf).
_LAYOUT = {
    tf.float32: (tf.int32, 32, 0x7FFFFFFF, 0x7F800000),
    tf.float64: (tf.int64, 64, 0x7FFFFFFFFFFFFFFF, 0x7FF0000000000000),
}


def _fraction(confidence):
    """`q / 100` exactly as tfp computes it: q goes through float32 (a Python float becomes a float32 tensor)."""
    return float(np.float32(100.0 * (1.0 - confidence))) / 100.0


def _histogram(arr, bins):
    """int32 counts of the non-negative `arr` values in [0, bins); larger values are skipped."""

    def scattered():  # fixed cost ~0.05 ms, but slow per element
        ids = tf.cast(tf.minimum(arr, bins), tf.int32)
        return tf.math.unsorted_segment_sum(tf.ones_like(ids), ids, bins + 1)[:bins]

    def counted():  # fixed cost ~0.3 ms (per-thread bins), fast per element
        # Constant `size` keeps both XLA-compilable. Plain Bincount (int32 only) is the faster kernel on CPU.
        if arr.dtype == tf.int32:
            return tf.raw_ops.Bincount(arr=arr, size=bins, weights=tf.zeros([0], tf.int32))
        return tf.raw_ops.DenseBincount(input=arr, size=bins, weights=tf.zeros([0], tf.int32))

    size = arr.shape[0]
    if size is not None:
        return scattered() if size <= _SMALL else counted()
    return tf.cond(tf.size(arr) <= _SMALL, scattered, counted)


def _select(hist, ranks):
    """For each rank (0-based): the bin holding it and the rank within that bin. Two-level search (rows of
    256 bins) because a cumsum over 65536 bins costs far more on CPU than the reductions used here."""
    rows = tf.reshape(hist, [-1, 256])
    rows_before = tf.cumsum(tf.reduce_sum(rows, axis=1), exclusive=True)
    found = []
    for rank in ranks:
        row = tf.maximum(tf.reduce_sum(tf.cast(rows_before <= rank, tf.int32)) - 1, 0)
        rank = rank - tf.gather(rows_before, row)  # gather, not [], so XLA needs no compile-time index
        cols_before = tf.cumsum(tf.gather(rows, row), exclusive=True)
        col = tf.maximum(tf.reduce_sum(tf.cast(cols_before <= rank, tf.int32)) - 1, 0)
        found.append((row * 256 + col, rank - tf.gather(cols_before, col)))
    return found


def _percentile_flat(flat, frac):
    """Exact midpoint percentile of |flat| over its finite values; `flat` is 1-D float32/float64."""
    int_dtype, total_bits, sign_mask, inf_bits = _LAYOUT[flat.dtype]
    mask = tf.constant(sign_mask, int_dtype)
    keys = tf.bitwise.bitwise_and(tf.bitcast(flat, int_dtype), mask)

    # Pass 1 on the top 16 bits (the sign bit is clear, so 32768 buckets). It also counts the finite values:
    # their top digits are below the top digit of +inf; NaN and inf are at or above it.
    shift = total_bits - _DIGIT_BITS
    hist = _histogram(tf.bitwise.right_shift(keys, tf.constant(shift, int_dtype)), _BINS // 2)
    n = tf.reduce_sum(hist[: inf_bits >> shift])

    # Ranks exactly as tfp.stats.percentile: floor/ceil of (d - 1) * frac in float64, cast to int32, clipped.
    pos = (tf.cast(n, tf.float64) - 1.0) * frac
    last = tf.maximum(n - 1, 0)
    first = tf.clip_by_value(tf.cast(tf.math.floor(pos), tf.int32), 0, last)
    second = tf.clip_by_value(tf.cast(tf.math.ceil(pos), tf.int32), 0, last)
    (digit_lo, rank_lo), (digit_hi, rank_hi) = _select(hist, (first, second))  # ranks within the buckets

    # Shortcut for the common tie: exact zeros (e.g. after a ReLU) are the smallest keys and all lie in bucket
    # 0. When the ranks fall among them the answer needs no further pass over that heavily repeated bin; the
    # zeros are counted only when the low rank lies in bucket 0.
    zeros = tf.cond(digit_lo == 0, lambda: tf.reduce_sum(tf.cast(tf.equal(keys, 0), tf.int32)), lambda: tf.constant(0))
    key_lo, key_hi = tf.cond(
        second < zeros,
        lambda: (tf.zeros([], int_dtype),) * 2,
        lambda: tf.cond(
            first < zeros,
            lambda: (tf.zeros([], int_dtype), _next_key(keys, tf.zeros([], int_dtype), mask)),
            lambda: _refine(keys, mask, shift, digit_lo, rank_lo, digit_hi, rank_hi),
        ),
    )

    thr = tf.constant(0.5, flat.dtype) * (tf.bitcast(key_lo, flat.dtype) + tf.bitcast(key_hi, flat.dtype))
    return tf.where(n > 0, thr, tf.zeros([], flat.dtype))


def _refine(keys, mask, shift, digit_lo, rank_lo, digit_hi, rank_hi):
    """The two keys, given the pass-1 digits and the ranks within their pass-1 buckets.

    Each pass histograms the next 16 bits of the keys that share the low statistic's prefix (key XOR
    prefix-so-far is below 65536 << shift exactly for them; the rest fall past the last bin and are skipped).
    The high statistic (rank_lo or rank_lo + 1) is read from the same histograms unless it left that prefix
    group before the last pass ("split"); then it is the smallest key above the low one: one extra pass, run
    only in that case (rare: the low statistic must be the last of its group).
    """
    int_dtype = keys.dtype
    split = tf.constant(False)
    key_lo = key_hi = tf.cast(digit_lo, int_dtype)
    while shift > 0:
        split = tf.logical_or(split, digit_hi != digit_lo)
        prefix = tf.bitwise.left_shift(key_lo, tf.constant(shift, int_dtype))
        shift -= _DIGIT_BITS
        arr = tf.bitwise.bitwise_xor(keys, prefix)
        if shift:
            arr = tf.bitwise.right_shift(arr, tf.constant(shift, int_dtype))
        hist = _histogram(arr, _BINS)
        (digit_lo, rank_lo), (digit_hi, rank_hi) = _select(hist, (rank_lo, rank_hi))
        key_hi = key_lo * _BINS + tf.cast(digit_hi, int_dtype)
        key_lo = key_lo * _BINS + tf.cast(digit_lo, int_dtype)
    return key_lo, tf.cond(split, lambda: _next_key(keys, key_lo, mask), lambda: key_hi)


def _next_key(keys, key, mask):
    """Smallest key strictly above `key` (keys <= key wrap to the top through the mask)."""
    above = key + 1
    return tf.reduce_min(tf.bitwise.bitwise_and(keys - above, mask)) + above


# One traced graph per dtype, shared by every shape and confidence (frac is a tensor argument): eager calls
# run as a single graph call. Calls inside a caller's tf.function stay calls (`_noinline`): a recording step
# holds one per sampled threshold, in the fallback branch that runs only when every draw is NaN/inf, and
# inlining the radix selection's ~300 nodes into each of them lengthened the step's first run (graph
# optimisation, kernel creation) by about a quarter (bench/first_record.py). No autograph: the code has no
# Python control flow on tensors, and converting it cost seconds at the first trace.
_PERCENTILE_FNS = {
    dtype: tf.function(
        _percentile_flat,
        input_signature=[tf.TensorSpec([None], dtype), tf.TensorSpec([], tf.float64)],
        autograph=False,
        experimental_attributes={"_noinline": True},
    )
    for dtype in _LAYOUT
}


def _flat_float(x):
    return tf.reshape(validation.as_float_tensor(x, "x"), [-1])


def percentile_threshold(x, confidence):
    """Exact default threshold of `x` (any shape, incl. zero-size): the `100*(1-confidence)` midpoint percentile
    of |x| over its finite values, bit-for-bit `tfp.stats.percentile` on the finite magnitudes.
    Returns a scalar tensor of x's compute dtype; 0 when x has no finite values."""
    frac = _fraction(validation.check_confidence(confidence))
    flat = _flat_float(x)
    return _PERCENTILE_FNS[flat.dtype](flat, tf.constant(frac, tf.float64))


def _check_sample_size(sample_size):
    if isinstance(sample_size, bool) or not isinstance(sample_size, numbers.Integral) or sample_size < 1:
        raise ValueError(f"sample_size must be a positive int, got {sample_size!r}")
    return int(sample_size)


def _check_seed(seed):
    """None, or the seed as a shape-[2] int64 tensor."""
    if seed is None:
        return None
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        seed = [int(seed), 0]
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank != 1 or seed.shape[0] != 2 or not seed.dtype.is_integer:
        raise ValueError(f"seed must be None, an int, or a shape-[2] integer tensor, got {seed!r}")
    return tf.cast(seed, tf.int64)


def _percentile_of_sample(sample_size):
    """The exact percentile function for up to `sample_size` values."""
    # A partial sort (top_k) beats the radix selection's 65536-bin histograms on a few thousand values
    # (measured: about 3x less per call on 2 CPU cores); for large samples the radix selection wins.
    return _sorted_percentile if sample_size <= _SORT_LIMIT else _radix_percentile


def _radix_percentile(flat, frac):
    return _PERCENTILE_FNS[flat.dtype](flat, frac)


@functools.cache
def _sampled_fn(dtype, sample_size, seeded):
    """The sampled estimate, traced once per (dtype, sample size, seeded) and shared by every caller: a recording
    step computes hundreds of thresholds, and tracing each one's sampling and fallback conditional anew was a
    large part of its first trace. A caller's graph inlines it (a call that stays a call costs ~0.25 ms)."""

    def sampled(flat, frac, seed=None):
        size = tf.size(flat, out_type=tf.int64)
        if seed is None:
            indices = tf.random.uniform([sample_size], maxval=size, dtype=tf.int64)
        else:
            indices = tf.random.stateless_uniform([sample_size], seed=seed, minval=0, maxval=size, dtype=tf.int64)
        draws = tf.gather(flat, indices)
        # All draws non-finite (x almost entirely NaN/inf): fall back to the exact value over all of x.
        return tf.cond(
            tf.reduce_any(tf.math.is_finite(draws)),
            lambda: _percentile_of_sample(sample_size)(draws, frac),
            lambda: _radix_percentile(flat, frac),
        )

    signature = [tf.TensorSpec([None], dtype), tf.TensorSpec([], tf.float64)]
    if seeded:
        signature.append(tf.TensorSpec([2], tf.int64))
    return tf.function(sampled, input_signature=signature, autograph=False)


def _sorted_percentile(flat, frac):
    """`_percentile_flat` from the smallest magnitudes (top_k): the same value bit for bit, and cheaper for a few
    thousand values. One traced graph per dtype, which a caller's graph inlines (a recording step computes hundreds
    of thresholds: a call node each instead of ~30 nodes to trace)."""
    return _SORTED_FNS[flat.dtype](flat, tf.cast(frac, tf.float64))


def _sorted_percentile_flat(flat, frac):
    magnitude = tf.abs(flat)
    finite = tf.math.is_finite(magnitude)
    n = tf.reduce_sum(tf.cast(finite, tf.int32))
    pos = (tf.cast(n, tf.float64) - 1.0) * frac
    last = tf.maximum(n - 1, 0)
    first = tf.clip_by_value(tf.cast(tf.math.floor(pos), tf.int32), 0, last)
    second = tf.clip_by_value(tf.cast(tf.math.ceil(pos), tf.int32), 0, last)
    # The second + 1 smallest magnitudes, ascending (non-finite values count as +inf: never among them).
    smallest = -tf.math.top_k(
        -tf.where(finite, magnitude, tf.constant(np.inf, flat.dtype)), k=tf.minimum(second + 1, tf.size(magnitude))
    ).values
    smallest = tf.concat([smallest, tf.zeros([1], flat.dtype)], 0)  # so that an empty input gathers too
    thr = tf.constant(0.5, flat.dtype) * (tf.gather(smallest, first) + tf.gather(smallest, second))
    return tf.where(n > 0, thr, tf.zeros([], flat.dtype))


_SORTED_FNS = {
    dtype: tf.function(
        _sorted_percentile_flat,
        input_signature=[tf.TensorSpec([None], dtype), tf.TensorSpec([], tf.float64)],
        autograph=False,
    )
    for dtype in _LAYOUT
}


def sampled_threshold(x, confidence, sample_size=DEFAULT_SAMPLE_SIZE, seed=None):
    """Estimate of `percentile_threshold(x, confidence)` from `sample_size` uniform draws (with replacement)
    of x's finite values; exact when x has at most `sample_size` elements. `seed`: None (stateful random op),
    an int, or a shape-[2] integer tensor (stateless, reproducible). Returns a scalar of x's compute dtype."""
    frac = tf.constant(_fraction(validation.check_confidence(confidence)), tf.float64)
    sample_size = _check_sample_size(sample_size)
    flat = _flat_float(x)
    seed = _check_seed(seed)

    def exact():
        return _percentile_of_sample(sample_size)(flat, frac)

    def sampled():
        if seed is None:
            return _sampled_fn(flat.dtype, sample_size, False)(flat, frac)
        return _sampled_fn(flat.dtype, sample_size, True)(flat, frac, seed)

    static_size = flat.shape[0]
    if static_size is not None:
        return exact() if static_size <= sample_size else sampled()
    return tf.cond(tf.size(flat, out_type=tf.int64) <= sample_size, exact, sampled)


# One traced count per dtype, inlined by a caller's graph (a recording step counts hundreds of tensors).
_COUNT_NONFINITE_FNS = {
    dtype: tf.function(
        lambda t: tf.reduce_sum(tf.cast(tf.logical_not(tf.math.is_finite(t)), tf.int64)),
        input_signature=[tf.TensorSpec(None, dtype)],
        autograph=False,
    )
    for dtype in _LAYOUT
}


def count_nonfinite(x):
    """int64 scalar tensor: the number of NaN, +inf and -inf values in `x`."""
    return count_nonfinite_each([x])[0]


def count_nonfinite_each(tensors, follow=()):
    """int64 `[len(tensors) + len(follow)]`: the NaN, +inf and -inf values of each tensor, then of each tensor a
    function in `follow` returns. A `follow` tensor must be finite wherever `tensors` are (a bounded activation
    slope of a finite z): it is computed and counted only when some tensor holds a non-finite value. One
    conditional for them all (a record's operands and result): a large tensor is read once when all is finite,
    the common case, since a sum of sums is finite only if every value is (one that overflows merely takes the
    counting branch)."""
    tensors = [validation.as_float_tensor(t, "x") for t in tensors]

    def count(with_follow):
        counted = tensors + ([validation.as_float_tensor(f(), "x") for f in follow] if with_follow else [])
        return tf.stack([_COUNT_NONFINITE_FNS[t.dtype](t) for t in counted])

    sizes = [t.shape.num_elements() for t in tensors]
    if not follow and None not in sizes and sum(sizes) <= _SMALL:
        return count(False)
    sums = [tf.reduce_sum(t) for t in tensors]
    total = sums[0] if len(sums) == 1 else tf.add_n([tf.cast(s, tf.float64) for s in sums])
    none = tf.zeros([len(tensors) + len(follow)], tf.int64)
    return tf.cond(tf.math.is_finite(total), lambda: none, lambda: count(True))
