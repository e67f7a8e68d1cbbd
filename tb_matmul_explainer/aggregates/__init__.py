"""Per-unit nine-pair totals for summaries: factorised reductions instead of per-cell classification.

Each function explains `result = op(first, second)` and returns a `UnitTotals` (all float64): per unit u and pair
t in `ops.TERMS` (first letter = first operand) the number of products `counts[u, t]` and their sum `sums[u, t]`
over the unit's result cells, and the same over its near-zero cells only (`near_zero_counts`, `near_zero_sums`).
They equal `ops`' per-cell classifiers reduced over those cells: counts exactly, sums to float tolerance.

  role             function               first, second   result             unit (its cells)       near zero
  forward          dense                  x, kernel       x @ kernel         out unit (all rows)    x_a^T @ M
                   conv                   inputs, kernel  convolution        out ch. (batch, pos.)  bpf(x_a, M)
  kernel_gradient  dense_kernel_gradient  x, d_out        x^T @ d_out [k,m]  out unit (its k)       x_a @ M
                   conv_kernel_gradient   x, d_out        bpf(x, d_out)      out ch. (taps x in)    conv(x_a, M)
  input_gradient   dense_input_gradient   d_out, kernel   d_out @ kernel^T   in feature (all rows)  d_a^T @ M
                   conv_input_gradient    d_out, kernel   backprop_input     in ch. (batch, pos.)   bpf(M, d_a)
  (any of the three) batched_matmul         first, second   first @ second     head (G x R x U)       F_v^T @ M
                     (per (batch, head) slice, both operands activations: attention's einsums, `batched`)

Dense x/d_out: rank >= 2, leading axes aggregated. Convolutions: NHWC 1D/2D/3D, int or per-axis strides,
VALID/SAME (padding is in no class). Classes as in `ops` (Z: v == 0, |v| < thr or NaN; P: v > 0; N: v < 0); a
result cell is near zero when it is Z under the result's threshold. M is that near-zero mask.

All cells: sum_cells op(Xa, Yb) factorises, e.g. `(1^T Xa) @ Yb` for dense forward, so the cost is O(operands +
9 k U): rows (or batch and positions) are summed first, then one small product per class. Near zero: one stacked
product of the first operand's variants with M (last column; bpf = backprop-filter; variants: P and N masks, packed as
P + 4096 N where the count bound allows, and P, Z, N values: 4-5x the op's multiply-adds), then against the second
operand's classes: one batched product per unit with the kernel's five class variants (`[u, 5, c]`) where the
contraction runs over the kernel (dense forward and input gradient), an elementwise pass elsewhere. Counts stay
exact: integers ride in float32 only under a static bound below 2**24 (else bit planes or float64); totals are
float64. Sums accumulate in the compute dtype (float16 and bfloat16 computed in float32, mixed floats promoted, as in
`validation`).

thresholds: None, one number (both operands and the result) or (first, second, result), None entries derived from
`confidence` by `threshold_method` "sampled" (`threshold.sampled_threshold`, default) or "exact" (O(N) percentile).
near_zero: "exact" (default); "off" (near-zero outputs zero, the result untouched, its threshold and non-finite
count NaN); "sampled": near-zero pair totals estimated from `near_zero_sample_size` batch rows (dense) or (batch,
position) pairs (convs) and rescaled, exact when there are no more (dense forward and input gradient take the
sampled rows cell by cell, one set of the kernel's class variants serving them and the all-cells totals); measured
(test_near_zero_sampled_error, 1024 of 8192): pair shares within 0.02-0.05 of exact, a unit's near-zero count
within ~2/sqrt(its near-zero cells in the sample) (3% for kernel gradients).

Non-finite: NaN is Z, +inf P, -inf N; counts stay exact; sums are non-finite wherever the per-cell route's are
(the factorised products may spread a NaN further, as 0 * inf, and a dense kernel's N-value products, taken
as raw - P - Z, are NaN wherever its P or Z products are not finite); `nonfinite` counts them per tensor. Zero-size
batches give zeros. Works eagerly and in `tf.function` with unknown batch dims; with `jit=True` (default) the masks and
elementwise stages are XLA-compiled while the big product runs on TensorFlow's kernels (faster on CPU).
Cost on 2 CPU cores: bench/kernels.py.

Options: keywords of each function or one `options=Options(...)` (`Options` checks every field once; the `summary`
ops and the Keras recorder take the same). Modules, one job each:
  api            the six public functions: argument checks and layouts, then the role's driver
  options        `Options`, the validated options shared with `summary` and `keras`
  totals         `UnitTotals`, thresholds, non-finite counts and the assembly shared by every role
  classes        class masks and values, stage-1 variants, near-zero result masks
  exact          exact-count arithmetic (bit planes, packed codes, exact sums and products)
  dense_kernels  dense totals over all cells and near-zero cells; the dense driver
  dense_sampled  dense forward / input gradient with sampled near-zero rows (shared products)
  conv_kernels   convolution totals over all cells and near-zero cells; the convolution driver
  conv_sampled   convolutions with sampled near-zero (batch, position) pairs
  conv_transpose a transposed convolution's kernel gradient (per cell; its other roles are conv's)
  batched        batched matmuls between activations, one unit per head (attention's einsums)
  sampling       seeds and sampled rows
  jit            XLA compilation of the kernels (the compile mode of one call)
Convolution geometry (shapes, padding, sampled patches) lives in `tb_matmul_explainer.conv`.
"""

from tb_matmul_explainer.aggregates.api import (
    conv,
    conv_input_gradient,
    conv_kernel_gradient,
    dense,
    dense_input_gradient,
    dense_kernel_gradient,
)
from tb_matmul_explainer.aggregates.batched import batched_matmul
from tb_matmul_explainer.aggregates.conv_transpose import conv_transpose_kernel_gradient
from tb_matmul_explainer.aggregates.options import (
    NEAR_ZERO_MODES,
    NEAR_ZERO_SAMPLE_SIZE,
    ROLES,
    THRESHOLD_METHODS,
    Options,
)
from tb_matmul_explainer.aggregates.totals import UnitTotals

__all__ = [
    "NEAR_ZERO_MODES",
    "NEAR_ZERO_SAMPLE_SIZE",
    "ROLES",
    "THRESHOLD_METHODS",
    "Options",
    "UnitTotals",
    "batched_matmul",
    "conv",
    "conv_input_gradient",
    "conv_kernel_gradient",
    "conv_transpose_kernel_gradient",
    "dense",
    "dense_input_gradient",
    "dense_kernel_gradient",
]
