"""`LayerRecorder`: instruments a Keras model's layers so that a traced training step records them.

Setup (which layers, their names and metadata) is `model.resolve`; what a recording step computes is
`explaining.Explaining`; how each layer kind's call is captured is its adapter in `tb_matmul_explainer.layers`.
`recording(step, record)` swaps the targets' calls for their adapters' patched calls while the step is traced.
"""

import os
import threading

import tensorflow as tf

from tb_matmul_explainer import internals, metadata
from tb_matmul_explainer.keras import coverage as coverage_lib
from tb_matmul_explainer.keras import model as model_lib
from tb_matmul_explainer.keras import shared
from tb_matmul_explainer.keras.explaining import Explaining, Trace
from tb_matmul_explainer.keras.options import (
    DEFAULT_ROLES,
    DEFAULT_RUN,
    NOT_RECORDED_TAG_PREFIX,
    PARTLY_RECORDED_TAG_PREFIX,
    check_options,
)


class LayerRecorder(Explaining):
    """Instruments a Keras model's layers so that a traced training step records them.

    Args:
      model: a built Keras 3 model (Sequential, functional or subclassed) or layer.
      log_dir: the log directory; records go to `<log_dir>/<run>`.
      layers: None (every supported layer) or a list of layer names, Keras paths and/or layer objects.
      roles: any of "forward", "kernel_gradient", "input_gradient".
      confidence, thresholds, threshold_method, near_zero, sample_size, near_zero_sample_size, seed: as for the
        `summary` ops and `aggregates` (defaults: sampled thresholds, sampled near-zero totals, see above).
      max_units: per-unit detail up to this many units (grouped beyond), as for the `summary` ops.
      scalars: also write `<tag>/near_zero_fraction` and `<tag>/dead_unit_fraction`.
      run: the run subdirectory of `log_dir` ("train"), or None for `log_dir` itself.
      loss_scale: None, or a callable returning the current loss scale (a tensor); d_out is divided by it.
      jit: run the aggregate kernels and the elementwise records XLA-compiled (`aggregates.Options.jit`,
        `elementwise.compiled`; the same values either way). Off by default: on CPU, compiling lengthened the first
        recording step by half or more (about half a second per distinct record) and made later ones faster
        (bench/first_record.py, bench/recording_cost.py --jit-only); worth it when recording often.
      share_records: layers that compute alike share one traced computation of each record (`keras/shared.py`; the
        same records). On by default: ResNet50's first recording step took 30% less time and 0.8 GB less memory,
        and each later recording step about 10% more (2 CPU cores); `False` inlines every layer's records.

    `recording(step, record=True, detail=True)` is a context manager to enter inside a `tf.function` (or eagerly)
    around the forward pass *and* `tape.gradient`: layers called in it are explained at `step` (an int or int
    tensor) whenever `record` (a bool or bool tensor) is true; their records keep the per-unit pair table (unit
    detail, `metadata.py`) when `detail` (a bool or bool tensor) is true. Outside it the model is untouched.

    After construction, `targets` lists the recorded layers (tags `<Keras path>/<role>`) and `skipped` maps the
    path of each matmul that is not recorded to the reason (each was warned about with `UnsupportedLayerWarning`).
    """

    def __init__(
        self,
        model,
        log_dir,
        *,
        layers=None,
        roles=DEFAULT_ROLES,
        confidence=0.95,
        thresholds=None,
        threshold_method="sampled",
        near_zero="sampled",
        sample_size=None,
        near_zero_sample_size=None,
        seed=None,
        max_units=metadata.DEFAULT_MAX_UNITS,
        scalars=True,
        run=DEFAULT_RUN,
        loss_scale=None,
        jit=False,
        share_records=True,
    ):
        self.roles, self.options = check_options(
            roles=roles,
            confidence=confidence,
            thresholds=thresholds,
            threshold_method=threshold_method,
            near_zero=near_zero,
            sample_size=sample_size,
            near_zero_sample_size=near_zero_sample_size,
            seed=seed,
            max_units=max_units,
            jit=jit,
            share_records=share_records,
        )
        self.confidence, self.thresholds = self.options.confidence, self.options.thresholds
        self.threshold_method, self.near_zero = self.options.threshold_method, self.options.near_zero
        self.sample_size, self.seed = self.options.sample_size, self.options.seed
        self.near_zero_sample_size = near_zero_sample_size
        self.max_units = max_units
        self.scalars = bool(scalars)
        self.log_dir = os.fspath(log_dir)
        self.run = run
        self.loss_scale = loss_scale
        self.model = model
        self.targets, self.skipped, self._entries = model_lib.resolve(
            model, layers, self.roles, self.confidence, self.thresholds
        )
        self._wrappers = model_lib.wrappers(self._entries)
        self._writer = None
        self._local = threading.local()  # the active trace, per thread (replicas trace in their own threads)
        self._warned = set()  # (layer, reason) of the partly-recorded warnings given (`_warn_partial`)
        self.partly_recorded = {}  # layer -> what its records miss ("; "-joined), from the traced steps
        self._notes_written = {}  # tag -> text of the notes written (`write_not_recorded`)
        self._shared_records = shared.SharedRecords(enabled=share_records)
        self._lock = threading.Lock()
        self._patched = 0

    def coverage(self, sample=None):
        """`coverage.Coverage`: how many layers and what share of the model's multiply-adds per sample are
        recorded (`sample`: one input sample, batch axis included, for models whose input shape is not known)."""
        return coverage_lib.measure(self.model, self._entries, self.targets, self.skipped, sample)

    @property
    def writer(self):
        """The recorder's `tf.summary` writer (created on first use, outside any strategy scope)."""
        if self._writer is None:
            path = self.log_dir if self.run is None else os.path.join(self.log_dir, self.run)
            with tf.init_scope():
                self._writer = tf.summary.create_file_writer(path, filename_suffix=".matmul_explainer")
        return self._writer

    def write_not_recorded(self, step):
        """Writes, with the recorder's writer, the notes not written yet: one standard text summary per matmul not
        recorded (`skipped`), tag `NOT_RECORDED_TAG_PREFIX + its path`, and one per layer recorded only in part
        (`partly_recorded`: known once a recording step has been traced), tag `PARTLY_RECORDED_TAG_PREFIX + its
        name`, each holding the reason its warning gave, at `step`. Call it eagerly (outside `tf.function`) before
        and after recording steps: the callback does at each recording step and at each epoch's end. Returns the
        number of summaries written."""
        notes = {NOT_RECORDED_TAG_PREFIX + name: reason for name, reason in self.skipped.items()}
        notes.update({PARTLY_RECORDED_TAG_PREFIX + name: why for name, why in self.partly_recorded.items()})
        new = {tag: text for tag, text in notes.items() if self._notes_written.get(tag) != text}
        if not new:
            return 0
        with self.writer.as_default(), tf.summary.record_if(True):
            for tag, text in new.items():
                tf.summary.text(tag, tf.constant(text), step=int(step))
        self._notes_written.update(new)
        return len(new)

    def flush(self):
        if self._writer is not None:
            self._writer.flush()

    def close(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- the recording context -------------------------------------------------------------------------------

    def recording(self, step, record=True, detail=True):
        """A context manager to enter inside a `tf.function` (or eagerly) around the forward pass and
        `tape.gradient`: the targets are explained at `step` whenever `record` is true, with unit detail when
        `detail` is true."""
        return _Recording(self, step, record, detail)

    @property
    def _trace(self):
        return getattr(self._local, "trace", None)

    def _patch(self):
        with self._lock:
            if self._patched == 0:
                for target in self._first_parts():
                    target.adapter.patch(self, target)
                for layer, call in self._wrappers:
                    internals.patch_call(layer, call)
            self._patched += 1

    def _unpatch(self):
        with self._lock:
            self._patched -= 1
            if self._patched == 0:
                for target in self._first_parts():
                    target.adapter.unpatch(target.layer)
                for layer, _ in self._wrappers:
                    internals.unpatch_call(layer)

    def _first_parts(self):
        """The first target of each recorded layer (a layer with several parts is patched once)."""
        return [t for t in self.targets if t.parts is None or next(iter(t.parts.values())) is t]


class _Recording:
    """`LayerRecorder.recording(step, record, detail)`: patches the layers while the step is traced (or run
    eagerly)."""

    def __init__(self, recorder, step, record, detail):
        self.recorder, self.step, self.record, self.detail = recorder, step, record, detail

    def __enter__(self):
        recorder = self.recorder
        if recorder._trace is not None:
            raise RuntimeError("LayerRecorder.recording() is already active in this thread")
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync if context is not None else 1
        _ = recorder.writer  # created now (in an init scope), outside the step's graph
        recorder._local.trace = Trace(
            step=tf.cast(self.step, tf.int64),
            record=self.record if isinstance(self.record, bool) else tf.convert_to_tensor(self.record, tf.bool),
            replicas=replicas,
            context=context,
            detail=self.detail if isinstance(self.detail, bool) else tf.convert_to_tensor(self.detail, tf.bool),
        )
        recorder._patch()
        return recorder

    def __exit__(self, *exc):
        trace = self.recorder._local.trace
        if exc[0] is None and trace is not None:
            self.recorder._finish_step(trace)
        self.recorder._unpatch()
        self.recorder._local.trace = None
        return False
