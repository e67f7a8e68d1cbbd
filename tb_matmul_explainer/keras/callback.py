"""`ExplainerCallback`: records chosen layers during `model.fit`, every `update_freq` steps.

It keeps the model's own compiled `train_function` for the steps that do not record and swaps in an instrumented
one (Keras' own factory around the model's `train_step`, inside `LayerRecorder.recording`) just before a step
that records; see the package docstring for cadence, `steps_per_execution` and distribution.
"""

import functools
import os

import keras
import tensorflow as tf
from keras import ops as kops

from tb_matmul_explainer import internals, metadata
from tb_matmul_explainer.keras import prepared as prepared_lib
from tb_matmul_explainer.keras import workers
from tb_matmul_explainer.keras.options import DEFAULT_ROLES, DEFAULT_RUN, check_options
from tb_matmul_explainer.keras.recorder import LayerRecorder


class ExplainerCallback(keras.callbacks.Callback):
    """Records chosen layers of a Keras 3 model during `model.fit`, every `update_freq` steps.

    Args:
      log_dir: the log directory (as for `keras.callbacks.TensorBoard`); records go to `<log_dir>/train`.
      update_freq: record the global steps 0, N, 2N, ... (an int >= 1).
      layers: None (every supported layer) or layer names, Keras paths or layer objects.
      roles: any of "forward", "kernel_gradient", "input_gradient".
      confidence, thresholds, threshold_method, near_zero, sample_size, near_zero_sample_size, seed, max_units,
        scalars, run, jit, share_records: as for `LayerRecorder`.
      unit_detail_every: keep the per-unit pair table (unit detail, `metadata.py`) in every N-th recorded step's
        records and in each fit's first (an int >= 1; 1: every record). The other records keep the layer totals
        and each unit's near-zero share (a 256-unit record: 4.6 kB instead of 82.4 kB).
      verbose: 1 (print the coverage line at the start of training) or 0.

    At the start of training it prints one line (`coverage.Coverage.line`: how many layers and what share of the
    model's multiply-adds per sample are recorded) unless `verbose=0`. After `fit`, `skipped` maps the Keras paths
    of the matmuls that are not recorded to the reason, `coverage` holds the `Coverage`, and `recorded_steps` lists
    the steps recorded (in this process).
    """

    def __init__(
        self,
        log_dir,
        update_freq=100,
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
        jit=False,
        share_records=True,
        unit_detail_every=10,
        verbose=1,
    ):
        super().__init__()
        if isinstance(update_freq, bool) or not isinstance(update_freq, int) or update_freq < 1:
            raise ValueError(f"update_freq must be an int >= 1 (record the steps 0, N, 2N, ...), got {update_freq!r}")
        if isinstance(unit_detail_every, bool) or not isinstance(unit_detail_every, int) or unit_detail_every < 1:
            raise ValueError(
                "unit_detail_every must be an int >= 1 (unit detail every N-th recorded step), "
                f"got {unit_detail_every!r}"
            )
        self.unit_detail_every = unit_detail_every
        self.log_dir = os.fspath(log_dir)
        self.update_freq = update_freq
        self._recorder_args = dict(
            layers=layers,
            roles=roles,
            confidence=confidence,
            thresholds=thresholds,
            threshold_method=threshold_method,
            near_zero=near_zero,
            sample_size=sample_size,
            near_zero_sample_size=near_zero_sample_size,
            seed=seed,
            max_units=max_units,
            scalars=scalars,
            run=run,
            jit=jit,
            share_records=share_records,
        )
        check_options(**{k: v for k, v in self._recorder_args.items() if k not in ("layers", "scalars", "run")})
        self.verbose = verbose
        self.recorder = None
        self.coverage = None
        self.skipped = {}
        self.recorded_steps = []
        self._prepared = None  # prepared.Prepared: the recorder and the instrumented function (shared per model)
        self._write_dir = self.log_dir
        self._step = 0
        self._steps_in_call = 0
        self._records_in_fit = 0
        self._model_id = None

    # -- setup -----------------------------------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        model = self.model
        if keras.backend.backend() != "tensorflow":
            raise RuntimeError("ExplainerCallback needs the TensorFlow backend")
        self._write_dir = workers.write_dir(self.log_dir, model.distribute_strategy)
        settings = dict(self._recorder_args, log_dir=self._write_dir, update_freq=self.update_freq)
        key = prepared_lib.settings_key(settings)
        if self._prepared is None or self._model_id != id(model) or self._prepared.key != key:
            self._prepared = prepared_lib.lookup(model, key) or self._prepare(model, key, settings)
            self.recorder = self._prepared.recorder
            self.skipped = dict(self.recorder.skipped)
            self.coverage = self._prepared.coverage
            if self.verbose:
                print(self.coverage.line())
            self._model_id = id(model)
        prepared = self._prepared
        if prepared.instrumented is not None and model.train_function is prepared.instrumented:
            model.train_function = prepared.plain  # a previous fit stopped by an exception left it swapped in
        if model.train_function is not prepared.plain:  # new fit after compile(): rebuild the instrumented function
            prepared.plain = model.train_function
            prepared.instrumented = None
        if prepared.step_variable is None:
            prepared.step_variable = prepared_lib.step_variable(model)
            prepared.detail_variable = prepared_lib.detail_variable(model)
        self._records_in_fit = 0
        self._steps_in_call = 0
        # The global step: the optimizer's step count, but never below the steps already trained with a callback
        # (a model with its own optimizers, such as a GAN whose `compile` takes two, leaves `model.optimizer`'s
        # count at 0, and a second fit would record steps 0, N, ... again).
        optimizer = getattr(model, "optimizer", None)
        iterations = getattr(optimizer, "iterations", None) if optimizer is not None else None
        counted = _steps_seen(model)
        self._step = max(counted[0], 0 if iterations is None else int(iterations.numpy()))

    def _prepare(self, model, key, settings):
        recorder = LayerRecorder(
            model, self._write_dir, loss_scale=functools.partial(_loss_scale, model), **self._recorder_args
        )
        prepared = prepared_lib.Prepared(key, settings, recorder, recorder.coverage())
        prepared_lib.store(model, prepared)
        return prepared

    @property
    def _plain(self):
        return None if self._prepared is None else self._prepared.plain

    @property
    def _instrumented(self):
        return None if self._prepared is None else self._prepared.instrumented

    def _instrumented_function(self):
        prepared = self._prepared
        if prepared.instrumented is None:
            function = prepared_lib.instrumented_function(
                self.model, self.recorder, prepared.step_variable, self.update_freq, prepared.detail_variable
            )
            prepared.instrumented = prepared_lib.first_call_progress(function, len(self.recorder.targets), self.verbose)
        return prepared.instrumented

    # -- per step --------------------------------------------------------------------------------------------

    def on_train_batch_begin(self, batch, logs=None):
        # Everything happens here (no `on_train_batch_end`, so that Keras keeps dispatching batch-end callbacks
        # asynchronously, as it does without this callback). The steps of the previous call are counted now.
        # Keras reports `end_step = begin + steps_per_execution - 1` even for a shorter last execution, so the
        # number of steps in a call comes from the epoch's number of steps, where Keras knows it.
        self._step += self._steps_in_call
        steps = self.params.get("steps") if self.params else None
        k = self.model.steps_per_execution
        if steps is not None:
            k = max(1, min(k, steps - batch))
        self._steps_in_call = k
        first = self._step
        if (-first) % self.update_freq < k:  # a multiple of N in [first, first + k)
            self._prepared.step_variable.assign(first)
            self._prepared.detail_variable.assign(self._records_in_fit % self.unit_detail_every == 0)
            self._records_in_fit += 1
            self.model.train_function = self._instrumented_function()
            recorded = [s for s in range(first, first + k) if s % self.update_freq == 0]
            self.recorder.write_not_recorded(recorded[0])  # (what is new: the skipped layers at first, then
            # the layers that the last recording step found recorded only in part)
            self.recorded_steps.extend(recorded)
        elif self.model.train_function is not self._plain:
            self.model.train_function = self._plain

    def on_epoch_end(self, epoch, logs=None):
        self._step += self._steps_in_call
        self._steps_in_call = 0
        self._note_steps()
        self.model.train_function = self._plain
        if self.recorder is not None:
            if self.recorded_steps:
                self.recorder.write_not_recorded(self.recorded_steps[-1])
            self.recorder.flush()

    def on_train_end(self, logs=None):
        self._step += self._steps_in_call  # (a fit stopped inside an epoch)
        self._steps_in_call = 0
        self._note_steps()
        if self._plain is not None:
            self.model.train_function = self._plain
        if self.recorder is not None:
            self.recorder.flush()
            # A worker that is not the chief: its records are not kept (its writer, shared with the prepared
            # step, stays open on the removed file).
            workers.remove_temp_dir(self.log_dir, self._write_dir)

    def _note_steps(self):
        if self.model is not None:
            counted = _steps_seen(self.model)
            counted[0] = max(counted[0], self._step)


def _steps_seen(model):
    """[n]: the steps trained so far with an ExplainerCallback on `model` (kept on the model)."""
    counted = internals.instance_cache(model, "matmul_explainer_steps")
    if not counted:
        counted.append(0)
    return counted


def _loss_scale(model):
    """The model's current loss scale (a tensor; 1 without an optimizer)."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return tf.constant(1.0)
    return kops.convert_to_tensor(optimizer.scale_loss(tf.constant(1.0, tf.float32)))
