"""Diagnosis rules on records written by our own writer for situations whose cause we know."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tb_matmul_explainer import __main__ as cli
from tb_matmul_explainer import explain, loader, summary
from tb_matmul_explainer.explain import rules


def write(logdir, run, layers):
    """layers: [(name, role, [(step, first, second)])] written with the summary ops (exact thresholds)."""
    ops = {"forward": summary.dense, "kernel_gradient": summary.dense_kernel_gradient}
    with tf.summary.create_file_writer(str(logdir / run)).as_default():
        for index, (name, role, steps) in enumerate(layers):
            for step, first, second in steps:
                ops[role](
                    f"{name}/{role}", first, second, step=step, layer=name, layer_index=index, threshold_method="exact"
                )
    return loader.load(str(logdir)).runs[run]


def rng_normal(seed, shape):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


class TotalsView:
    """A layer series read through `explain.Totals` and `explain.summarise` (as the plugin's digest keeps them)."""

    def __init__(self, series):
        self.info, self._series = series.info, series

    def record_at(self, step):
        picked = self._series.record_at(step)
        return None if picked is None else (picked[0], explain.totals(picked[1]))

    def history(self, step):
        return [
            explain.summarise(s, explain.totals(r))
            for s, r in zip(self._series.steps, self._series.records)
            if s < step
        ]


def test_healthy_layer_says_nothing_is_wrong(tmp_path):
    layers = write(tmp_path, "ok", [("dense", "forward", [(0, rng_normal(0, (64, 16)), rng_normal(1, (16, 8)))])])
    diagnoses, alerts = explain.diagnose_run(layers)
    assert alerts == []
    assert diagnoses[0].text.startswith("Nothing wrong")


def test_dead_units_are_named_with_the_step_they_died(tmp_path):
    x = np.maximum(rng_normal(0, (64, 16)), 0)
    kernel = rng_normal(1, (16, 8))
    dead_kernel = kernel.copy()
    dead_kernel[:, :4] = 0
    layers = write(
        tmp_path, "dying", [("dense", "forward", [(0, x, kernel), (10, x, dead_kernel), (20, x, dead_kernel)])]
    )
    diagnoses, alerts = explain.diagnose_run(layers)
    dead = [a for a in alerts if a.kind == "dead_units"]
    assert len(dead) == 1 and dead[0].first_step == 10 and dead[0].severity == pytest.approx(0.5)
    assert "4 of 8 units are dead" in diagnoses[0].text and "since step 10" in diagnoses[0].text
    assert diagnoses[0].dead_rows == [0, 1, 2, 3]


def test_near_zero_inputs_are_named_as_the_cause(tmp_path):
    x = np.abs(rng_normal(0, (100, 16))) + 0.5
    x[:40] = 0  # 40% of the samples are all zeros: their outputs are zero because the input is
    layers = write(tmp_path, "zeros", [("dense", "forward", [(0, x, rng_normal(1, (16, 8)))])])
    diagnosis = explain.diagnose_run(layers)[0][0]
    assert list(diagnosis.causes) == ["near-zero input"]
    assert diagnosis.causes["near-zero input"] > 0.95
    assert "near-zero input" in diagnosis.text


def test_cancellation_is_told_apart_from_near_zero_operands(tmp_path):
    # (multiples of 1/8: every product and sum is exact, so that the cancellation is exact on every CPU; with
    # fused multiply-adds, 3x - 3x of an arbitrary float32 x is the rounding error of 3x, not 0)
    x = np.round(8 * (np.abs(rng_normal(0, (64, 2))) + 1.0)) / 8
    x[:, 1] = x[:, 0]  # two equal, large, positive inputs ...
    kernel = np.array([[3.0, 1.0, 2.0], [-3.0, 1.0, 0.5]], np.float32)  # ... weighted +3 and -3 in unit 0
    layers = write(tmp_path, "cancel", [("dense", "forward", [(0, x, kernel)])])
    diagnosis = explain.diagnose_run(layers)[0][0]
    assert "kernel +/- cancelling" in diagnosis.causes
    assert not any(cause.startswith("near-zero") for cause in diagnosis.causes)


def test_vanishing_gradients_are_ranked_first(tmp_path):
    x = rng_normal(0, (32, 8))
    layers = write(
        tmp_path,
        "deep",
        [
            ("first", "kernel_gradient", [(0, x, 1e-6 * rng_normal(1, (32, 8)))]),
            ("middle", "kernel_gradient", [(0, x, 1e-3 * rng_normal(2, (32, 8)))]),
            ("last", "kernel_gradient", [(0, x, rng_normal(3, (32, 8)))]),
        ],
    )
    diagnoses, alerts = explain.diagnose_run(layers)
    assert [(a.kind, a.layer) for a in alerts] == [("vanishing_gradient", "first"), ("vanishing_gradient", "middle")]
    assert alerts[0].severity > alerts[1].severity
    assert "vanishing gradients" in diagnoses[0].text and diagnoses[2].text.startswith("Nothing wrong")


def test_non_finite_values_raise_an_alert(tmp_path):
    x = rng_normal(0, (16, 4))
    x[3, 1] = np.nan
    layers = write(tmp_path, "nan", [("dense", "forward", [(0, x, rng_normal(1, (4, 3)))])])
    _, alerts = explain.diagnose_run(layers)
    assert any(a.kind == "non_finite" and "input" in a.message for a in alerts)


def test_report_command_prints_alerts_worst_first(tmp_path, capsys):
    x = np.maximum(rng_normal(0, (64, 16)), 0)
    kernel = rng_normal(1, (16, 8))
    kernel[:, :6] = 0
    write(tmp_path, "dying", [("dense", "forward", [(0, x, kernel)])])
    assert cli.main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert (
        "== run dying" in out
        and "6 of 8 units are dead" in out
        and "Alerts, where problems start first, then worst first" in out
    )


def test_report_command_prints_nothing_on_stderr(tmp_path):
    """`python -m tb_matmul_explainer report` in a fresh process: the report on stdout, and no TensorFlow start-up
    notices on stderr (unless TF_CPP_MIN_LOG_LEVEL says otherwise)."""
    x = np.maximum(rng_normal(0, (64, 16)), 0)
    write(tmp_path, "relu", [("dense", "forward", [(0, x, rng_normal(1, (16, 8)))])])
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        [sys.executable, "-m", "tb_matmul_explainer", "report", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "== run relu" in done.stdout and "dense (forward, step 0)" in done.stdout
    assert done.stderr == ""


def test_report_command_errors_are_clear(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.main(["report", str(tmp_path / "empty")]) == 2
    assert "holds no matmul-explainer summaries" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["report", str(tmp_path), "--step", "-3"])


def test_totals_diagnose_exactly_as_the_records_they_come_from(tmp_path):
    """`explain.Totals` (what the plugin keeps per step instead of the records) give the same diagnoses, alerts
    and "since" steps as the records, including vanishing gradients across layers and dead units over steps."""
    x = np.maximum(rng_normal(0, (32, 8)), 0)
    kernel = rng_normal(1, (8, 6))
    dead_kernel = kernel.copy()
    dead_kernel[:, :3] = 0
    layers = write(
        tmp_path,
        "mixed",
        [
            ("dense", "forward", [(0, x, kernel), (10, x, dead_kernel), (20, x, dead_kernel)]),
            ("first", "kernel_gradient", [(s, x, 1e-6 * rng_normal(s + 1, (32, 8))) for s in (0, 10, 20)]),
            ("last", "kernel_gradient", [(s, x, rng_normal(s + 2, (32, 8))) for s in (0, 10, 20)]),
        ],
    )  # (dense first: dead units block the vanishing alerts of the layers *before* them)

    for step in (None, 0, 15, 20):
        expected = explain.diagnose_run(layers, step)
        actual = explain.diagnose_run({k: TotalsView(v) for k, v in layers.items()}, step)
        assert actual == expected
    _, alerts = explain.diagnose_run(layers, 15)
    assert {a.kind for a in alerts} >= {"vanishing_gradient", "dead_units"}
    record = layers["dense", "forward"].records[1]
    assert explain.totals(record).dead_rows == tuple(explain.dead_rows(record)) == (0, 1, 2)
    assert explain.gradient_scale(explain.totals(record)) == explain.gradient_scale(record)


# ----------------------------------------------------------------------------------------------- non-finite values


def test_non_finite_alert_dates_from_the_step_the_values_came_in(tmp_path):
    """As in real training that diverges: a NaN sample at step 10, every weight NaN from step 20 on. The alert's
    first step is where the latest unbroken run of non-finite records began, not the step diagnosed."""
    x, kernel = rng_normal(0, (32, 6)), rng_normal(1, (6, 4))
    x_nan = x.copy()
    x_nan[5, 2] = np.nan
    nan_kernel = np.full_like(kernel, np.nan)
    layers = write(
        tmp_path,
        "diverging",
        [
            ("dense", "forward", [(0, x, kernel), (10, x_nan, kernel), (20, x, nan_kernel), (30, x, nan_kernel)]),
            ("again", "forward", [(0, x_nan, kernel), (10, x, kernel), (20, x_nan, kernel), (30, x, nan_kernel)]),
        ],
    )
    for step in (None, 30, 20, 10):
        diagnoses, alerts = explain.diagnose_run(layers, step)
        assert [(a.layer, a.first_step) for a in alerts if a.kind == "non_finite"] == [
            (layer, since) for layer, since in (("dense", 10), ("again", 20)) if since <= (step or 30)
        ]
        assert diagnoses == explain.diagnose_run({k: TotalsView(v) for k, v in layers.items()}, step)[0]
    _, alerts = explain.diagnose_run(layers, 0)
    assert [(a.layer, a.first_step) for a in alerts if a.kind == "non_finite"] == [("again", 0)]


def test_nan_weights_are_neither_dead_units_nor_collapsed_weights(tmp_path):
    """Every weight NaN: every result is NaN, which the classification counts as near zero (Z). The diagnosis
    leads with the non-finite values and claims no dead units, collapsed weights or excess near-zero results."""
    x = np.maximum(rng_normal(0, (64, 16)), 0)
    kernel = rng_normal(1, (16, 8))
    nan_kernel = np.full_like(kernel, np.nan)
    layers = write(tmp_path, "nan", [("dense", "forward", [(0, x, kernel), (1, x, nan_kernel), (2, x, nan_kernel)])])
    record = layers["dense", "forward"].records[-1]
    assert len(explain.dead_rows(record)) == 8 and record.near_zero_cells.sum() == record.cells.sum()  # NaN is Z
    diagnoses, alerts = explain.diagnose_run(layers)
    assert [(a.kind, a.first_step) for a in alerts] == [("non_finite", 1)]
    text = diagnoses[0].text
    assert text.startswith("Non-finite values (NaN or inf) in the kernel, result.")
    assert "100% of results are non-finite" in text
    assert "dead" not in text and "collapsed" not in text and "is normal" not in text


def test_dead_units_are_still_named_with_a_few_non_finite_results(tmp_path):
    """Half the units dead and one NaN input sample of 64 (its results NaN in every unit, 1.6% of the results):
    the dead units are more than the non-finite results could account for, so both alerts are raised, the
    non-finite one first."""
    x = np.maximum(rng_normal(0, (64, 16)), 0)
    kernel = rng_normal(1, (16, 8))
    kernel[:, :4] = 0
    x_nan = x.copy()
    x_nan[3, 1] = np.nan
    layers = write(tmp_path, "dying", [("dense", "forward", [(0, x, kernel), (10, x_nan, kernel)])])
    diagnoses, alerts = explain.diagnose_run(layers)
    kinds = [a.kind for a in diagnoses[0].alerts]
    assert kinds[0] == "non_finite" and "dead_units" in kinds
    dead = [a for a in alerts if a.kind == "dead_units"][0]
    assert dead.first_step == 0 and dead.severity == pytest.approx(0.5)
    assert diagnoses[0].text.startswith("Non-finite values (NaN or inf) in the input, result.")
    assert "4 of 8 units are dead" in diagnoses[0].text


def test_collapsed_weights_with_non_finite_values(tmp_path):
    """Collapsed weights rest on the kernel: a NaN elsewhere (the input) leaves the alert, a NaN weight suppresses
    it (the non-finite alert says the kernel is broken)."""
    x = np.abs(rng_normal(0, (32, 8))) + 0.5
    kernel = rng_normal(1, (8, 4))
    kernel[:6] = 0  # 75% of the weights are zero: the threshold collapses to 0
    x_nan, nan_weight = x.copy(), kernel.copy()
    x_nan[0, 0] = np.nan
    nan_weight[7, 3] = np.nan
    cases = ((x, kernel, True), (x_nan, kernel, True), (x, nan_weight, False))
    for i, (first, second, collapsed) in enumerate(cases):
        layers = write(tmp_path, f"collapsing{i}", [("dense", "forward", [(0, first, second)])])
        _, alerts = explain.diagnose_run(layers)
        assert ("collapsed_weights" in [a.kind for a in alerts]) == collapsed


def test_version_1_records_are_read_and_diagnosed_as_before(tmp_path):
    """A run of contract version 1 (38 columns, no |result|, |W|, padding or activation data) loads with those
    fields unknown (NaN) and gets the same diagnoses and alerts as the same records in version 2 without them."""
    import json

    from tb_matmul_explainer import metadata

    x = rng_normal(0, (32, 8))
    layers = [
        ("dense", "forward", [(0, np.maximum(x, 0), np.where(np.arange(8) < 4, 0.0, rng_normal(2, (8, 8))))]),
        ("first", "kernel_gradient", [(0, x, 1e-6 * rng_normal(1, (32, 8)))]),
        ("last", "kernel_gradient", [(0, x, rng_normal(3, (32, 8)))]),
    ]
    current = write(tmp_path, "v2", layers)
    with tf.summary.create_file_writer(str(tmp_path / "v1")).as_default():
        for (layer, role), series in current.items():
            md = metadata.create_summary_metadata(
                layer,
                None,
                role=role,
                op="dense",
                layer=layer,
                index=series.info.index,
                units=series.info.units,
                confidence=series.info.confidence,
            )
            content = json.loads(md.plugin_data.content)
            content["v"] = 1
            md.plugin_data.content = json.dumps(content).encode()
            for step, record in zip(series.steps, series.records):
                array = np.zeros((len(record.cells) + 1, metadata.V1_COLUMNS))
                array[0, :3], array[0, 3:6] = record.thresholds, record.nonfinite
                array[0, 6], array[0, 7] = record.units, record.group_size
                array[1:, 0:9], array[1:, 9:18] = record.counts, record.sums
                array[1:, 18:27], array[1:, 27:36] = record.near_zero_counts, record.near_zero_sums
                array[1:, 36], array[1:, 37] = record.cells, record.near_zero_cells
                tf.summary.write(f"{layer}/{role}", tf.constant(array, tf.float64), step, metadata=md)
    old = loader.load(str(tmp_path)).runs["v1"]
    assert {s.info.version for s in old.values()} == {1}
    record = old[("first", "kernel_gradient")].records[0]
    assert np.isnan(record.result_magnitude).all() and np.isnan(record.padding_only)
    new_diagnoses, new_alerts = explain.diagnose_run(current)
    old_diagnoses, old_alerts = explain.diagnose_run(old)
    assert [d.text for d in old_diagnoses] == [d.text for d in new_diagnoses]
    assert [(a.kind, a.layer, a.first_step) for a in old_alerts] == [
        (a.kind, a.layer, a.first_step) for a in new_alerts
    ]
    assert "dead_units" in {a.kind for a in old_alerts}


def _dying_units():
    """(x, kernel, dying): ReLU-like inputs [64, 16], a kernel [16, 8], and dying(n): the kernel with its first n
    units' weights zeroed (n units dead)."""
    x = np.maximum(rng_normal(0, (64, 16)), 0)
    kernel = rng_normal(1, (16, 8))

    def dying(n):
        k = kernel.copy()
        k[:, :n] = 0
        return k

    return x, kernel, dying


def test_dead_units_that_grow_in_number_say_how_many_were_dead_when_it_began(tmp_path):
    x, kernel, dying = _dying_units()

    growing = write(
        tmp_path, "growing", [("dense", "forward", [(0, x, dying(2)), (10, x, dying(4)), (20, x, dying(6))])]
    )
    steady = write(tmp_path, "steady", [("dense", "forward", [(0, x, dying(4)), (10, x, dying(4)), (20, x, dying(4))])])
    (grew,) = [a for a in explain.diagnose_run(growing)[1] if a.kind == "dead_units"]
    (held,) = [a for a in explain.diagnose_run(steady)[1] if a.kind == "dead_units"]
    assert grew.first_step == 0 and "6 of 8 units are dead" in grew.message
    assert "since step 0, up from 2 then (most died during training" in grew.message
    assert held.first_step == 0 and "since step 0." in held.message and "up from" not in held.message
    # Alerted from step 10 only (1 of 8 is below the 10% that raises it): the count at the first record says it.
    late = write(tmp_path, "late", [("dense", "forward", [(0, x, kernel), (10, x, dying(4)), (20, x, dying(6))])])
    (died,) = [a for a in explain.diagnose_run(late)[1] if a.kind == "dead_units"]
    assert died.first_step == 10
    assert "since step 10, up from 4 then (none at step 0; most died during training" in died.message


def test_a_kernel_gradient_zeroed_by_dead_inputs_and_dead_units_is_starved_not_alerted(tmp_path):
    # dW = x^T d_out: 6 of 16 input features dead (zero in x) and 3 of 8 units passing no gradient back (zero in
    # d_out): 78 of 128 entries are zero, each because one operand or the other is, which other layers made.
    x = np.abs(rng_normal(0, (64, 16))) + 0.1
    x[:, :6] = 0
    d_out = rng_normal(1, (64, 8))
    d_out[:, :3] = 0
    layers = write(tmp_path, "starved", [("dense", "kernel_gradient", [(0, x, d_out)])])
    diagnoses, alerts = explain.diagnose_run(layers)
    (d,) = diagnoses
    assert d.near_zero_fraction == pytest.approx(78 / 128)
    assert d.starved and alerts == []
    assert "near-zero input" in d.text and "near-zero output gradient" in d.text


def test_units_dying_during_training_in_many_layers_lead_with_one_alert_for_their_common_cause(tmp_path):
    x, kernel, dying = _dying_units()

    def run(name, schedules):
        layers = [(f"dense_{i}", "forward", list(zip((0, 10, 20), [x] * 3, map(dying, s)))) for i, s in schedules]
        return explain.diagnose_run(write(tmp_path, name, layers))[1]

    # dense_1 loses its units first (from step 10); dense_0 and dense_2 at step 20; none at step 0.
    alerts = run("many", [(0, (0, 0, 6)), (1, (0, 4, 6)), (2, (0, 0, 5))])
    summary, *rest = alerts
    assert summary.kind == "dying_during_training" and (summary.layer, summary.first_step) == ("dense_1", 10)
    assert summary.message.startswith("3 layers lost most of their units during training")
    assert "The first to lose them: dense_1, since step 10. Lower the learning rate" in summary.message
    assert sorted(a.layer for a in rest if a.kind == "dead_units") == ["dense_0", "dense_1", "dense_2"]
    assert all(a.during_training for a in rest if a.kind == "dead_units")
    # Two layers, or dead units that were dead from the start, make no such alert.
    assert "dying_during_training" not in {a.kind for a in run("two", [(0, (0, 0, 6)), (1, (0, 4, 6))])}
    steady = run("steady", [(0, (6, 6, 6)), (1, (4, 4, 4)), (2, (5, 5, 5))])
    dead = [a for a in steady if a.kind == "dead_units"]
    assert "dying_during_training" not in {a.kind for a in steady}
    assert len(dead) == 3 and not any(a.during_training for a in dead)


def test_dying_during_training_names_the_learning_rate_only_for_a_layer_that_lost_most_of_its_units():
    """A few units of a healthy layer die at any learning rate; half of a layer's units dying points at it."""
    history = [explain.step_summary(0, 0, 32, 100, 5), explain.step_summary(10, 4, 32, 100, 5)]
    few = rules.dead_since(4, 32, 10, 20, history)
    assert "most died during training)" in few and "learning rate" not in few
    many = rules.dead_since(20, 32, 10, 20, history)
    assert "most died during training: a learning rate that is too high is a common cause" in many


def test_dead_units_coming_back_to_life_are_said_to():
    """VGG16's fc1 had 1647 of 4096 units off for a whole batch at initialisation and 991 at step 30: a healthy
    layer recovering, which the alert says (not only "since step 0")."""
    history = [explain.step_summary(0, 1647, 4096, 100, 5), explain.step_summary(10, 1300, 4096, 100, 5)]
    recovering = rules.dead_since(991, 4096, 0, 30, history)
    assert recovering == "since step 0, down from 1647 at step 0 (units coming back to life)"
    assert "down from" not in rules.dead_since(1500, 4096, 0, 30, history)  # (fewer than 1.5x: not said)


def test_a_diverged_training_leads_with_one_alert_that_names_the_last_finite_step(tmp_path):
    """Every weight NaN from step 20 in four layers (one update with a NaN gradient does that): one non-finite
    alert for the run, not one per layer and role, naming the last recorded step without them (10), and no alert
    that only NaN-filled records raise; an alert that began before (a layer whose kernel is zero from the start)
    stays, after it."""
    x, kernel = rng_normal(0, (32, 6)), rng_normal(1, (6, 6))
    nan_kernel, zero_kernel = np.full_like(kernel, np.nan), np.zeros_like(kernel)
    healthy_then_nan = [(0, x, kernel), (10, x, kernel), (20, x, nan_kernel), (30, x, nan_kernel)]
    layers = write(
        tmp_path,
        "diverged",
        [(f"dense_{i}", "forward", healthy_then_nan) for i in range(4)]
        + [
            ("zero", "forward", [(0, x, zero_kernel), (10, x, zero_kernel), (20, x, zero_kernel), (30, x, zero_kernel)])
        ],
    )
    _, alerts = explain.diagnose_run(layers)
    assert [(a.kind, a.layer, a.first_step) for a in alerts] == [
        ("non_finite", "dense_0", 20),
        ("collapsed_weights", "zero", 0),
    ]
    assert "in 4 layers, since step 20" in alerts[0].message
    assert "The last recorded step without them is 10: diagnose that step (report --step 10" in alerts[0].message
    # At step 10 nothing is NaN: the run's alerts are what led up to it.
    assert [a.kind for a in explain.diagnose_run(layers, 10)[1]] == ["collapsed_weights"]
    # Two layers: their own alerts, as before.
    two = write(tmp_path / "two", "diverged", [(f"dense_{i}", "forward", healthy_then_nan) for i in range(2)])
    assert [(a.kind, a.layer) for a in explain.diagnose_run(two)[1]] == [
        ("non_finite", "dense_0"),
        ("non_finite", "dense_1"),
    ]
