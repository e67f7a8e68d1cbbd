"""Keras 3 instrumentation: records chosen layers' nine-pair explanations on the actual training batches.

Two public pieces:

* `ExplainerCallback(log_dir, update_freq=100, ...)`: a `keras.callbacks.Callback` for `model.fit`.
* `LayerRecorder(model, log_dir, ...)`: the same instrumentation for a custom training loop (GradientTape),
  used as `with recorder.recording(step): ...` inside the user's own (recording) train step.

What is recorded. For each chosen layer and role, one tag `<Keras path>/<role>` (the layer's path in the model,
e.g. `block_2/multi_head_attention_1/query`: unique, and stable across runs of the same model code) in the run directory
`<log_dir>/<run>` (`run="train"` by default, the directory Keras' own `TensorBoard` callback writes its training
scalars to; `run=None` writes into `log_dir` itself), holding one `metadata.py` record per recorded step, plus the
two plain scalars `<tag>/near_zero_fraction` and `<tag>/dead_unit_fraction` (unless `scalars=False`). The
callback keeps each record's per-unit pair table (unit detail) every `unit_detail_every`-th recorded step and at
each fit's first; `LayerRecorder.recording(step, record, detail)` leaves it to the caller. Roles:
  forward          the layer's input x and kernel; result z = x @ kernel (the convolution), before bias/activation
  kernel_gradient  x and d_out = d(loss)/dz; result = the kernel gradient TensorFlow computes for the step
  input_gradient   d_out and the kernel; result = d(loss)/dx
An operand is classed the same way in every record of the step that uses it (x in forward and kernel_gradient,
the kernel in forward and input_gradient, d_out in both gradients): its threshold is computed once.
Defaults: `threshold_method="sampled"` (a percentile of `sample_size` random values) and `near_zero="sampled"`
(near-zero totals from `DEFAULT_NEAR_ZERO_SAMPLE` batch rows of a Dense layer, batch positions of a
convolution or batch entries of an attention einsum, rescaled; `near_zero_sample_size` sets them all); all-cells
totals and near-zero cell counts are exact.
Supported layers: one adapter per layer kind in `tb_matmul_explainer.layers` says which layers it takes (today
`Dense`, `EinsumDense` whose equation is a matmul over trailing input axes, `Conv1D/2D/3D` with `channels_last`,
any `dilation_rate` and `groups` (1D/2D), `DepthwiseConv1D/2D`, `SeparableConv1D/2D` (two targets,
`<path>/depthwise` and `<path>/pointwise`) and `Conv1D/2D/3DTranspose`, that do not override `call`; `SimpleRNN`,
`LSTM`, `GRU`, whose two kernels are two explanations `<path>/kernel` and `<path>/recurrent_kernel` aggregated over
time steps (`layers/recurrent.py`); these inside `TimeDistributed` and `Bidirectional`; and MultiHeadAttention's
and GroupQueryAttention's score and value einsums, tagged `<path>/attention_scores/<role>` and
`<path>/attention_values/<role>`, one unit per (query) head: `layers/attention.py` says which operand is which;
those of Attention and AdditiveAttention that are matmuls, one unit: `layers/other_attention.py`).
Nothing is skipped silently: every layer with a kernel that is not recorded, and every matmul inside a layer that is not
a layer and is not recorded (such as the einsums of a MultiHeadAttention with other attention axes), is warned about
with an `UnsupportedLayerWarning` naming its path and the reason
(`skipped` lists them), and recorded in the run, for TensorBoard and the report CLI: one standard text summary per
entry, tag `matmul_explainer/not_recorded/<path>` (`NOT_RECORDED_TAG_PREFIX`), holding the reason, written once at
the first recorded step (by the callback; in a custom loop, `LayerRecorder.write_not_recorded(step)`). At the start
of training the callback prints one line: how many layers and what share of the model's multiply-adds per sample
are recorded (`LayerRecorder.coverage()`). A layer called several times in one step is explained at the call
Keras runs first, and one whose output no gradient reaches in the step has no gradient records: each is warned
about once (`PartlyRecordedWarning`) and noted in the run like a matmul not recorded, tag
`matmul_explainer/partly_recorded/<layer>` (`PARTLY_RECORDED_TAG_PREFIX`), written after the step that found it.

Cadence (callback). Steps are 0-based global training steps: the number of optimizer steps taken before the step
(`model.optimizer.iterations` at `on_train_begin`, then counted by the callback; it keeps counting over epochs
and over later `fit` calls, also for a model that trains with optimizers of its own, such as a GAN's custom
`compile` and `train_step`, whose `model.optimizer` never steps). `update_freq=N` records the steps 0, N, 2N,
...; validation batches are never recorded.

How it stays cheap. A recording step and a plain step are different compiled functions: the callback keeps the
model's own `train_function` for the steps that do not record (they cost nothing extra, and keep TensorFlow's
fused matmul + bias + activation kernels; the callback's only per-step work is a Python check in
`on_train_batch_begin`, and it defines no batch-end hook, so Keras keeps dispatching those asynchronously) and
swaps in an instrumented train function (built by Keras' own `_make_function` around the model's own
`train_step`, so custom `train_step`s, loss scaling and metrics keep working; compiled once and cached) just
before a step that records. While the instrumented function is traced, the chosen layers' `call` is replaced by
an equivalent that computes z explicitly, writes the forward record with result=z, and passes z and the kernel
through identities whose gradient functions receive d_out and the kernel gradient and write the gradient
records (those ops become part of the same compiled step). Nothing is run twice: the records explain the batch
that the step trains on, with the weights before the step's update. The kernel-gradient record needs the
kernel's gradient to be computed (the layer is trainable and the train step differentiates its kernel); for a
frozen layer the record computes it.

`steps_per_execution=K > 1`: an execution (K steps in one compiled call) that contains a recording step runs the
instrumented function for all K steps; exactly the steps s with s % N == 0 are recorded, each with its own step
number; the other steps in that execution only skip the record kernels (a `tf.cond`).

Mixed precision: float16/bfloat16 operands are explained in float32. Under loss scaling (Keras'
`LossScaleOptimizer`, or any optimizer whose `scale_loss` scales), d_out is divided by the scale
(`optimizer.scale_loss(1.0)` at that step), so gradient records are in the units of the unscaled loss. A step
whose scaled gradients overflow is recorded too (its non-finite values counted in the record's header).

Logits read by the loss: Keras' cross-entropy reads the logits of a sigmoid or softmax output (the `_keras_logits`
Keras attaches to it); the recorder's identity on that output keeps them, so a recording step computes the loss
and the gradients exactly as a plain step does. No dJ/da then reaches the activation: the layer has no
activation-gradient record, and its activation record, written when dJ/dz arrives, says `loss_reads_logits`.

NaN loss: the step is recorded (non-finite values are counted in the header; NaN is classed near-zero as the
classifiers do); training is unaffected by the recorder.

`tf.distribute` (e.g. MirroredStrategy): each replica computes its totals on its shard of the batch with its own
thresholds; the totals are summed across replicas (`ReplicaContext.all_reduce`), so a record covers the global
batch, and only replica 0 writes it (TensorFlow's summary ops already record on replica 0 only). The record's
header holds the mean of the replicas' operand thresholds. For `kernel_gradient` the result is the all-reduced
(global) kernel gradient: its near-zero cells and its threshold are those of the gradient the optimizer applies,
and each replica's contributions to those cells are summed. Keras divides each replica's loss by the number of
replicas, so d_out is d(global mean loss)/dz. With `steps_per_execution > 1` under a strategy, the all-reduce of
the totals runs on every step of a recording execution (zeros on the steps that do not record).

`MultiWorkerMirroredStrategy`: every worker computes the records (the totals are all-reduced over all replicas)
and only the chief writes them; the others write to `<log_dir>/workertemp_<task id>`, removed at the end of
training, as Keras' TensorBoard callback arranges (`workers`).

The first recording step traces and optimises the instrumented function (seconds to minutes; the callback
announces it when `verbose`); it is prepared once per model and settings and reused by a new callback
(`prepared`). When every step of that function records (`steps_per_execution=1`) it has no conditionals.

XLA: the instrumented function is compiled without XLA (summary writes cannot be compiled); the plain steps keep
the model's `jit_compile` setting.

Modules, one job each:
  options     constants, option checks, `UnsupportedLayerWarning`
  model       the model walk (Keras paths), recorded targets and what is not recorded
  coverage    layers and multiply-adds per sample recorded (the start-of-training line)
  explaining  what a recording step computes at trace time (records, thresholds, gradient hooks, replicas)
  recorder    `LayerRecorder`: setup, writer, patching the targets' calls while a step is traced
  prepared    the instrumented train function, prepared once per model and settings, its first call announced
  workers     multi-worker training: the directory a worker writes to (only the chief keeps its records)
  callback    `ExplainerCallback` for `model.fit`
Private Keras/TensorFlow APIs are read in `tb_matmul_explainer.internals` only.
"""

from tb_matmul_explainer.keras.callback import ExplainerCallback
from tb_matmul_explainer.keras.coverage import Coverage
from tb_matmul_explainer.keras.options import (
    DEFAULT_NEAR_ZERO_SAMPLE,
    DEFAULT_ROLES,
    DEFAULT_RUN,
    NOT_RECORDED_TAG_PREFIX,
    PARTLY_RECORDED_TAG_PREFIX,
    PartlyRecordedWarning,
    UnsupportedLayerWarning,
)
from tb_matmul_explainer.keras.recorder import LayerRecorder

__all__ = [
    "DEFAULT_NEAR_ZERO_SAMPLE",
    "DEFAULT_ROLES",
    "DEFAULT_RUN",
    "NOT_RECORDED_TAG_PREFIX",
    "PARTLY_RECORDED_TAG_PREFIX",
    "Coverage",
    "ExplainerCallback",
    "LayerRecorder",
    "PartlyRecordedWarning",
    "UnsupportedLayerWarning",
]
