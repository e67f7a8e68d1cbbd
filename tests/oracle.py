"""Independent NumPy oracle for the classifiers: plain sorting, masks and einsum; never calls project code.

Convolutions are expressed through an explicit index map G[out, offset, in] (1 where kernel offset `offset`
at output position `out` reads input position `in`; padding reads nothing), so forward, kernel-gradient and
input-gradient are each one einsum over flattened spatial positions.
"""

import itertools
import math

import numpy as np

TERMS = ("PP", "PZ", "PN", "ZP", "ZZ", "ZN", "NP", "NZ", "NN")


def threshold(x, confidence):
    """Midpoint percentile of |x| over finite values, by sorting (the documented formula)."""
    x = np.asarray(x)
    a = np.sort(np.abs(x[np.isfinite(x)]).ravel())
    if a.size == 0:
        return x.dtype.type(0)
    q = np.float64(np.float32(100.0 * (1.0 - confidence)))
    i = (a.size - 1) * q / 100.0
    return x.dtype.type(0.5) * (a[int(math.floor(i))] + a[int(math.ceil(i))])


def masks(x, thr):
    """(P, Z, N) boolean masks with the documented rule (NaN is Z)."""
    zero = (x == 0) | (np.abs(x) < thr) | np.isnan(x)
    return (x > 0) & ~zero, zero, (x < 0) & ~zero


def classify(op, x, y, tx, ty):
    """(counts, sums) for op applied to every class pair; float64 arithmetic."""
    xm, ym = masks(x, tx), masks(y, ty)
    counts, sums = [], []
    for a in xm:
        for b in ym:
            counts.append(op(a.astype(np.float64), b.astype(np.float64)))
            with np.errstate(invalid="ignore"):
                sums.append(op(np.where(a, x, 0).astype(np.float64), np.where(b, y, 0).astype(np.float64)))
    return np.stack(counts, -1), np.stack(sums, -1)


def _pad_before(size, k, s, padding):
    if padding == "VALID":
        return 0, max(0, math.ceil((size - k + 1) / s))
    out = math.ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, out


def index_map(in_spatial, k_spatial, strides, padding):
    """G[out, offset, in] for flattened spatial positions (padding reads nothing)."""
    geometry = [_pad_before(n, k, s, padding) for n, k, s in zip(in_spatial, k_spatial, strides)]
    out_spatial = [g[1] for g in geometry]
    g = np.zeros((int(np.prod(out_spatial)), int(np.prod(k_spatial)), int(np.prod(in_spatial))))
    for o_idx, out in enumerate(itertools.product(*[range(n) for n in out_spatial])):
        for k_idx, off in enumerate(itertools.product(*[range(k) for k in k_spatial])):
            pos = [o * s + f - g_[0] for o, s, f, g_ in zip(out, strides, off, geometry)]
            if all(0 <= p < n for p, n in zip(pos, in_spatial)):
                g[o_idx, k_idx, np.ravel_multi_index(pos, in_spatial)] = 1
    return g, out_spatial


def conv(x, w, strides, padding):
    """Forward convolution, NHWC, via the index map."""
    b, *sp, c = x.shape
    *ksp, _, d = w.shape
    g, out_sp = index_map(sp, ksp, strides, padding)
    out = np.einsum("bic,oki,kcd->bod", x.reshape(b, -1, c), g, w.reshape(-1, c, d))
    return out.reshape([b] + out_sp + [d])


def conv_filter_grad(x, dy, kshape, strides, padding):
    b, *sp, c = x.shape
    g, _ = index_map(sp, kshape[:-2], strides, padding)
    out = np.einsum("bic,oki,bod->kcd", x.reshape(b, -1, c), g, dy.reshape(b, -1, dy.shape[-1]))
    return out.reshape(kshape)


def conv_input_grad(dy, w, in_shape, strides, padding):
    b, *sp, c = in_shape
    g, _ = index_map(sp, w.shape[:-2], strides, padding)
    out = np.einsum("bod,oki,kcd->bic", dy.reshape(b, -1, dy.shape[-1]), g, w.reshape(-1, c, w.shape[-1]))
    return out.reshape(in_shape)
