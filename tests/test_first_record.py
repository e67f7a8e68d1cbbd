"""The first recording step: prepared once per model and settings, announced on the console, traced once; XLA
compilation of its kernels (off by default) changes no record."""

import keras
import numpy as np

from tb_matmul_explainer.keras import ExplainerCallback, recorder
from tests.keras_helpers import ALL_ROLES, EXACT, UNCOMPILED, mlp, mlp_data, record_at, records, steps_of

OPTIONS = dict(roles=("forward", "kernel_gradient"), **UNCOMPILED)


def _fit(model, callback, steps=4):
    x, y = mlp_data(n=8 * steps)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[callback])


def test_progress_is_printed_around_the_first_recording_step_only(tmp_path, capsys):
    model = mlp()
    _fit(model, ExplainerCallback(tmp_path, update_freq=2, **OPTIONS))
    out = capsys.readouterr().out
    assert out.count("preparing the recording step for 2 layers (first time only") == 1, out
    assert out.count("recording step ready in") == 1, out
    _fit(model, ExplainerCallback(tmp_path, update_freq=2, verbose=0, **OPTIONS))
    assert "preparing" not in capsys.readouterr().out


def test_a_new_callback_with_the_same_settings_reuses_the_prepared_step(tmp_path, monkeypatch):
    traces = []
    enter = recorder._Recording.__enter__

    def counting_enter(self):
        traces.append(self.step)
        return enter(self)

    monkeypatch.setattr(recorder._Recording, "__enter__", counting_enter)
    model = mlp()
    first = ExplainerCallback(tmp_path, update_freq=2, verbose=0, **OPTIONS)
    _fit(model, first)
    assert len(traces) == 1, "the first recording step was traced more than once (optimizer variables?)"
    second = ExplainerCallback(tmp_path, update_freq=2, verbose=0, **OPTIONS)
    _fit(model, second)
    assert len(traces) == 1, "a new callback with the same settings traced the recording step again"
    assert second._instrumented is first._instrumented and second.recorder is first.recorder
    assert second.recorded_steps == [4, 6]
    recs = records(tmp_path)
    assert steps_of(recs, "hidden/forward") == [0, 2, 4, 6]
    # The reused step records the batches it trains on: step 4's forward record counts 8 rows x 8 inputs.
    np.testing.assert_array_equal(np.asarray(record_at(recs, "hidden/forward", 4).counts).sum(-1), 8 * 8)

    other = ExplainerCallback(tmp_path, update_freq=3, verbose=0, **OPTIONS)  # other settings: prepared anew
    _fit(model, other, steps=3)
    assert other._instrumented is not first._instrumented and len(traces) == 2


def test_xla_compiled_records_equal_the_default_uncompiled_ones(tmp_path):
    """`jit=True` (the aggregate kernels XLA-compiled) writes the same records as the default `jit=False`."""
    logs = {}
    for jit in (False, True):
        keras.utils.set_random_seed(3)
        logs[jit] = tmp_path / f"jit_{jit}"
        kwargs = {} if not jit else {"jit": True}
        _fit(
            mlp(),
            ExplainerCallback(
                logs[jit], update_freq=2, verbose=0, roles=ALL_ROLES, seed=7, unit_detail_every=1, **EXACT, **kwargs
            ),
        )
    default, compiled = records(logs[False]), records(logs[True])
    assert sorted(default) == sorted(compiled) and len(default) >= 6
    for tag in default:
        assert steps_of(default, tag) == steps_of(compiled, tag) == [0, 2]
        for step in (0, 2):
            a, b = record_at(default, tag, step), record_at(compiled, tag, step)
            np.testing.assert_array_equal(a.counts, b.counts, err_msg=tag)
            np.testing.assert_array_equal(a.near_zero_counts, b.near_zero_counts, err_msg=tag)
            np.testing.assert_allclose(a.sums, b.sums, rtol=1e-5, atol=1e-6, err_msg=tag)
