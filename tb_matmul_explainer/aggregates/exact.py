"""Exact-count arithmetic: integer counts carried through float products without rounding.

Counts of products are integers. float32 holds every integer up to 2**24 (`F32_EXACT`), so a float32 product
of 0/1 masks with integer counts is exact while every partial sum stays below that; beyond it the counts are
split into bit planes (each plane's product exact, the planes recombined in float64) or computed in float64.
Two masks that never overlap (P and N) can share one operand as the packed code `P + base * N`, decoded from
the product by `unpack`. The stage-1 near-zero products choose among three strategies by a bound on the counts
they carry (`strategy`, `by_bound`): "packed" (P + PACK * N, four variants), "f32" and "f64" (P and N masks apart,
five variants). All totals leave here as float64.
"""

import math

import tensorflow as tf

F32_EXACT = 1 << 24  # float32 holds every integer up to 2**24
PACK = 4096  # P and N counts share one float32 operand as P + PACK * N ...
PACK_LIMIT = PACK - 1  # ... while a count is at most PACK_LIMIT: PACK_LIMIT * (PACK + 1) < 2**24
INT32_MAX = (1 << 31) - 1


def f64(t):
    return tf.cast(t, tf.float64)


def exact_sum(t, axis, elem_bound, length):
    """Exact float64 sum of non-negative integer-valued `t` (each entry <= elem_bound) along `axis` of `length`
    entries (None if unknown)."""
    if t.dtype == tf.float64:
        return tf.reduce_sum(t, axis)
    if length is not None and elem_bound * length <= F32_EXACT:
        return f64(tf.reduce_sum(t, axis))
    return tf.reduce_sum(f64(t), axis)


def float64_sum(t, axis, *_):
    """float64 sum along `axis` (summed in float64; the bound arguments of `exact_sum` are ignored)."""
    return tf.reduce_sum(f64(t), axis)


def planes_for(bound, bits):
    """The number of `bits`-bit planes that hold integers up to `bound`."""
    return max(1, math.ceil(max(int(bound), 1).bit_length() / bits))


def exact_matmul(left, right, bound, length, transpose_a=False, transpose_b=False):
    """Exact float64 `left @ right` for non-negative int32 `left` (entries <= bound) and a 0/1 float32 `right`,
    contracting over `length` terms (None if unknown). Runs in float32 on bit planes of `left`, each small enough
    that every partial sum stays below 2**24; falls back to float64 when `length` is unknown or too large."""

    def mm(a, b):
        return tf.linalg.matmul(a, b, transpose_a=transpose_a, transpose_b=transpose_b)

    if length is None or length > F32_EXACT // 2:
        return mm(f64(left), f64(right))
    if length == 0:
        return f64(mm(tf.cast(left, tf.float32), right))
    bits = int(math.floor(math.log2(F32_EXACT // length + 1)))  # (2**bits - 1) * length <= 2**24
    planes = planes_for(bound, bits)
    if planes == 1:
        return f64(mm(tf.cast(left, tf.float32), right))
    return combine_planes(mm(bit_planes(left, bits, planes, -1 if transpose_a else -2), right), bits, planes)


def bit_planes(left, bits, planes, axis):
    """Non-negative int32 `left` split into `planes` planes of `bits` bits, concatenated along `axis`, float32."""
    mask = tf.constant((1 << bits) - 1, tf.int32)
    parts = [
        tf.bitwise.bitwise_and(tf.bitwise.right_shift(left, tf.constant(bits * i, tf.int32)), mask)
        for i in range(planes)
    ]
    return tf.cast(tf.concat(parts, axis), tf.float32)


def combine_planes(product, bits, planes):
    """Exact float64 sum of the plane products (split along axis -2) weighted by their place values."""
    pieces = tf.split(product, planes, axis=-2)
    return tf.add_n([float(1 << (bits * i)) * f64(p) for i, p in enumerate(pieces)])


def packed_plan(length, bound):
    """(bits per plane, base) such that a float32 product of a `bits`-bit plane of the counts with the packed
    mask `P + base * N` stays exact (every partial sum below 2**24) over `length` terms; None if none fits."""
    if length is None:
        return None
    for bits in range(max(1, min(24, int(bound).bit_length())), 0, -1):
        most = ((1 << bits) - 1) * max(length, 1)  # largest P (or N) part of one product
        base = 1 << most.bit_length()  # > most
        if most * (base + 1) <= F32_EXACT:
            return bits, base
    return None


def count_pair_matmul(left, pos, neg, bound, length, transpose_a=False, transpose_b=False):
    """Exact float64 `(left @ pos, left @ neg)` for non-negative int32 `left` (entries <= bound) and boolean
    masks, contracting over `length` terms: one float32 matmul of bit planes of `left` with the packed mask
    `pos + base * neg` when that stays exact, else `exact_matmul` per mask."""
    plan = packed_plan(length, bound)
    if plan is None:
        return tuple(
            exact_matmul(left, tf.cast(m, tf.float32), bound, length, transpose_a, transpose_b) for m in (pos, neg)
        )
    bits, base = plan
    planes = planes_for(bound, bits)
    stacked = bit_planes(left, bits, planes, -1 if transpose_a else -2)
    product = tf.linalg.matmul(stacked, packed_code(pos, neg, base), transpose_a=transpose_a, transpose_b=transpose_b)
    p_part, n_part = unpack(product, base)
    return combine_planes(p_part, bits, planes), combine_planes(n_part, bits, planes)


def packed_code(pos, neg, base):
    """The float32 count code `P + base * N` of two disjoint masks."""
    return tf.where(pos, tf.constant(1.0), tf.where(neg, tf.constant(float(base)), tf.constant(0.0)))


def unpack(product, base):
    """(P part, N part) of an exact float32 product with a packed code."""
    n_part = tf.math.floor(product / base)
    return product - base * n_part, n_part


def strategy(bound, dtype):
    """How stage-1 near-zero products carry counts that are at most `bound`: "packed", "f32" or "f64"."""
    if dtype == tf.float64 or bound > F32_EXACT:
        return "f64"
    if bound <= PACK_LIMIT:
        return "packed"
    return "f32"


def by_bound(static_bound, dynamic_bound, dtype, fn):
    """fn(strategy, bound) with the strategy fixed by a static bound, else chosen at run time by tf.cond."""
    if static_bound is not None or dtype == tf.float64:
        bound = INT32_MAX if static_bound is None else static_bound
        return fn(strategy(bound, dtype), bound)
    dynamic_bound = tf.cast(dynamic_bound, tf.int64)
    return tf.cond(
        dynamic_bound <= PACK_LIMIT,
        lambda: fn("packed", PACK_LIMIT),
        lambda: tf.cond(dynamic_bound <= F32_EXACT, lambda: fn("f32", F32_EXACT), lambda: fn("f64", INT32_MAX)),
    )


def n_variants(strategy_name):
    """Stage-1 variants of an operand: the count variant(s) (one packed code, or the P and N masks), then the
    P, Z and N values."""
    return 4 if strategy_name == "packed" else 5


def decode(count_parts, strategy_name):
    """The P and N count products from the count variant product(s)."""
    if strategy_name != "packed":
        return count_parts[0], count_parts[1]
    return unpack(count_parts[0], PACK)


def pair_counts(cross, total_a, col_b, size):
    """Assembles [3, 3, U] exact counts from the P/N x P/N products.

    cross[a][b]: sum of A_a * mask_b for a, b in (P, N);  total_a[a]: sum of A_a (a in P, N);
    col_b[b]: the products whose second factor is b and whose first factor is anything (b in P, N);
    size: all products (any classes).
    """
    rows = []
    for a in range(2):
        p, n = cross[a][0], cross[a][1]
        rows.append([p, total_a[a] - p - n, n])
    zp = col_b[0] - rows[0][0] - rows[1][0]
    zn = col_b[1] - rows[0][2] - rows[1][2]
    zz = size - zp - zn - sum(rows[0]) - sum(rows[1])
    table = [rows[0], [zp, zz, zn], rows[1]]
    return tf.stack([tf.stack(r) for r in table])
