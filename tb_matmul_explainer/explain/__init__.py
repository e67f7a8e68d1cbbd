"""Diagnosis: what makes a layer's near-zero results near zero, which units are dead, and ranked alerts.

Inputs are recorded per-unit totals (`metadata.Record`). Every figure below is a layer total (summed over units)
unless it says per unit. "Products" are the operand pairs that make up a result cell; shares are of products.

Causes of near-zero results, from the products inside near-zero result cells:
  * near-zero first operand: products in ZP, ZZ, ZN;  near-zero second operand: PZ, ZZ, NZ;  either: any Z.
    A Z share only explains something when it is *above what is normal for the layer*: it is compared with the
    same share over all cells (after a ReLU about half of every input is an exact zero, everywhere, and a
    percentile threshold puts at least `1 - confidence` of each operand in Z by construction). A cause is
    named when its share in near-zero cells exceeds its share over all cells by LIFT (1.25x) and 10 points, or
    when it accounts for DOMINANT (90%) of them (then nearly every cell is near zero and there is nothing to
    compare with: a dead layer's input).
  * cancellation: the products with no Z operand (PP, PN, NP, NN) in near-zero cells are large but cancel.
    Their magnitude `PP + NN - PN - NP` is compared with the largest total the near-zero results could have,
    `result threshold x near-zero cells`; at CANCELLATION_RATIO (4x) or more they cancel. Which operand's signs
    cancel: first operand (PP ~ NP and PN ~ NN), second operand (PP ~ PN and NP ~ NN), both (PP + NN ~ NP + PN);
    the largest matched magnitude names it.

Alerts (each with a severity in [0, 1] and the first recorded step from which it held continuously):
  * dead units (forward): units whose results are near zero in at least DEAD_CELLS (99%) of their cells; raised
    when at least DEAD_UNITS (10%) of the units are dead beyond what non-finite results could make dead (below).
    Severity = dead share.
  * excess near-zero results: the near-zero result fraction, less the non-finite result fraction (below), exceeds
    what the threshold makes normal (`1 - confidence` for a derived result threshold) by EXCESS (20 points).
    Severity = that excess.
  * vanishing gradients (kernel_gradient, across layers): a layer's mean gradient magnitude per cell is at most
    1/VANISHING_RATIO (1/100) of the largest layer's. Severity = log10(ratio) / 4, at most 1.
  * collapsed weights (forward): at least COLLAPSED (50%) of the kernel is exactly zero or near zero with a zero
    threshold (the threshold collapses to 0 when most weights are 0), and no weight is non-finite (below).
  * non-finite values in an operand or the result. Severity 1; its first step is the first of the latest unbroken
    run of records with non-finite values (so the step at which they came in).
With none of these, the diagnosis says nothing is wrong. With non-finite values, their alert leads the diagnosis.

Non-finite values and the near-zero rules: the classification puts NaN in Z (and +/-inf in P/N), so NaN results
look near zero and NaN weights look like zero weights; once training diverges (every weight NaN) every unit would
look dead and the weights collapsed. The rules that rest on Z therefore discount what non-finite values could
account for, with the per-tensor non-finite counts a record carries (first, second, result):
  * dead units and excess near-zero results rest on near-zero result cells: the non-finite result fraction
    (non-finite results / result cells) is subtracted from the dead-unit share and from the near-zero fraction
    before their thresholds are applied. A non-finite fraction f of the results fills at most f of the units
    entirely, so dead units beyond those still raise the alert (e.g. half the units dead and one NaN sample of 64
    in the batch: 50% - 1.6% >= 10%), while a layer whose results are all NaN raises neither.
  * collapsed weights rests on the kernel's near-zero share of products: it is not raised when any kernel value
    is non-finite. The totals count products, not weights, so how many products the non-finite weights account
    for is not known; and a kernel with a non-finite weight is broken anyway, which the non-finite alert says.
The "since" steps of these alerts apply the same discounted conditions to the earlier records. Causes (shares of
the near-zero cells' products) are not discounted: where results are non-finite, the first sentence says how many
count as near zero.

Every rule reads a record through its `Totals` (rows summed over units, and the dead rows), one row of the
layer's summary table (`table.SeriesTable`, re-exported here with `Totals`, `StepSummary` and the step lookup), so
a reader that keeps the table per tag (the loader's `LayerSeries` and the TensorBoard plugin's digest do) diagnoses
any step without keeping or re-reading the records, with exactly the same results.

This package: the rules (this file) and the summary table they read (`table.py`).
"""

import dataclasses
import math

import numpy as np

from tb_matmul_explainer import metadata
from tb_matmul_explainer.explain.table import (  # noqa: F401  (the summary table, re-exported)
    DEAD_CELLS, SeriesTable, StepSummary, Totals, dead_rows, index_at, near_zero_fraction, step_summary, summarise,
    totals)
from tb_matmul_explainer.explain.table import any_non_finite as _any_non_finite
from tb_matmul_explainer.explain.table import non_finite_results as _non_finite_results

LIFT = 1.25
LIFT_POINTS = 0.10
DOMINANT = 0.90
CANCELLATION_RATIO = 4.0
DEAD_UNITS = 0.10
EXCESS = 0.20
VANISHING_RATIO = 100.0
COLLAPSED = 0.50

_T = {t: i for i, t in enumerate(metadata.TERMS)}
_FIRST_Z = [_T["ZP"], _T["ZZ"], _T["ZN"]]
_SECOND_Z = [_T["PZ"], _T["ZZ"], _T["NZ"]]
_NO_Z = [_T["PP"], _T["PN"], _T["NP"], _T["NN"]]


@dataclasses.dataclass
class Alert:
    kind: str            # dead_units | excess_near_zero | vanishing_gradient | collapsed_weights | non_finite
    layer: str
    role: str
    first_step: int
    severity: float
    message: str
    run: str = ""


@dataclasses.dataclass
class Diagnosis:
    layer: str
    role: str
    step: int
    near_zero_fraction: float
    causes: dict         # cause name -> share of near-zero cells' products it accounts for
    dead_rows: list      # stored row indices that are dead at this step
    text: str
    alerts: list


def _shares(counts):
    total = counts.sum()
    if total <= 0:
        return {"first": 0.0, "second": 0.0, "either": 0.0}
    return {"first": counts[_FIRST_Z].sum() / total, "second": counts[_SECOND_Z].sum() / total,
            "either": 1.0 - counts[_NO_Z].sum() / total}


def _operand_names(info):
    first, second = info.operands if info is not None else ("first operand", "second operand")
    return first.replace("_", " "), second.replace("_", " ")


def _cancellation(t):
    """(ratio of cancelling magnitude to the near-zero results' bound, which operand's signs cancel); t: `Totals`."""
    s = t.near_zero_sums
    pp, pn, np_, nn = s[_T["PP"]], s[_T["PN"]], s[_T["NP"]], s[_T["NN"]]
    magnitude = pp + nn - pn - np_
    bound = t.thresholds[2] * t.near_zero_cells
    ratio = math.inf if bound <= 0 and magnitude > 0 else (magnitude / bound if bound > 0 else 0.0)
    matched = {"first": min(pp, -np_) + min(-pn, nn), "second": min(pp, -pn) + min(-np_, nn),
               "both": min(pp + nn, -(np_ + pn))}
    return ratio, max(matched, key=matched.get)


def expected_near_zero_fraction(info):
    """What the result threshold makes normal: 1 - confidence for a derived threshold, else unknown (None)."""
    if info is None or (len(info.thresholds) > 2 and info.thresholds[2] is not None):
        return None
    return 1.0 - info.confidence


def diagnose(record, *, layer="", role="forward", step=0, info=None, history=()):
    """Diagnoses one record (a `metadata.Record` or its `Totals`). `history`: `StepSummary`s of the layer's
    earlier records (for "since which step").

    Returns a `Diagnosis` whose `text` is one or two plain sentences.
    """
    first_name, second_name = _operand_names(info)
    t = totals(record)
    cells = t.cells
    nz_cells = t.near_zero_cells
    fraction = float(near_zero_fraction(nz_cells, cells, empty=0.0))
    non_finite_results = _non_finite_results(t.nonfinite, cells)
    alerts, causes, because = [], {}, ""

    if _any_non_finite(t.nonfinite):
        since = _held_since(step, history, lambda h: h.non_finite)
        names = [n for n, c in zip((first_name, second_name, "result"), t.nonfinite) if c > 0]
        alerts.append(Alert("non_finite", layer, role, since, 1.0,
                            f"non-finite values (NaN or inf) in the {', '.join(names)}."))

    if nz_cells > 0:
        near, overall = _shares(t.near_zero_counts), _shares(t.counts)
        for key, label in (("first", f"near-zero {first_name}"), ("second", f"near-zero {second_name}")):
            lifted = near[key] >= LIFT * overall[key] and near[key] >= overall[key] + LIFT_POINTS
            if lifted or near[key] >= DOMINANT:
                causes[label] = float(near[key])
        ratio, which = _cancellation(t)
        no_z_share = 1.0 - near["either"]
        if ratio >= CANCELLATION_RATIO and no_z_share > 0:
            label = {"first": f"{first_name} +/- cancelling", "second": f"{second_name} +/- cancelling",
                     "both": "both operands +/- cancelling"}[which]
            causes[label] = float(no_z_share)
        if causes:
            parts = [f"{name} ({share:.0%} of their products)" for name, share in
                     sorted(causes.items(), key=lambda kv: -kv[1])]
            because = "mostly because of " + ", ".join(parts)

    dead = list(t.dead_rows) if role == "forward" else []
    rows = t.rows
    if rows and len(dead) / rows - non_finite_results >= DEAD_UNITS:
        since = _held_since(step, history, lambda h: h.dead_share - h.non_finite_results >= DEAD_UNITS)
        units = "units" if t.group_size == 1 else f"groups of {t.group_size} units"
        alerts.append(Alert("dead_units", layer, role, since, len(dead) / rows,
                            f"{len(dead)} of {rows} {units} are dead (near zero in every cell) since step {since}."))

    expected = expected_near_zero_fraction(info)
    if expected is not None and fraction - non_finite_results - expected >= EXCESS:
        since = _held_since(step, history,
                            lambda h: h.near_zero_fraction - h.non_finite_results - expected >= EXCESS)
        alerts.append(Alert("excess_near_zero", layer, role, since,
                            min(1.0, fraction - non_finite_results - expected),
                            f"{fraction:.0%} of results are near zero where about {expected:.0%} is normal, "
                            f"since step {since}."))

    if role == "forward":
        kernel_zero = _shares(t.counts)["second"]
        if kernel_zero >= COLLAPSED and t.thresholds[1] == 0 and not t.nonfinite[1] > 0:
            alerts.append(Alert("collapsed_weights", layer, role, step, float(kernel_zero),
                                f"{kernel_zero:.0%} of the kernel's products involve zero weights: the weights "
                                f"have collapsed."))

    if alerts:
        counted = (f" (NaN counts as near zero: {non_finite_results:.0%} of results are non-finite)"
                   if non_finite_results > 0 else "")
        normal = f" (about {expected:.0%} is normal)" if any(a.kind == "excess_near_zero" for a in alerts) else ""
        near_zero = f"{fraction:.0%} of results are near zero{counted}{', ' + because if because else ''}{normal}."
        lead = [_sentence(a.message) for a in alerts if a.kind == "non_finite"]
        sentences = lead + [near_zero] + [_sentence(a.message) for a in alerts
                                          if a.kind not in ("non_finite", "excess_near_zero")]
    elif nz_cells:
        sentences = [f"Nothing wrong: {fraction:.0%} of results are near zero, as expected for this layer."]
        if because:
            sentences.append(f"They are near zero {because}.")
    else:
        sentences = ["Nothing wrong: no result is near zero."]
    return Diagnosis(layer, role, step, fraction, causes, dead, " ".join(sentences), alerts)


def _sentence(text):
    return text[0].upper() + text[1:]


def _held_since(step, history, condition):
    """The first step of the latest unbroken run of records (ending at `step`) for which `condition` holds."""
    since = step
    for earlier in sorted(history, key=lambda h: h.step, reverse=True):
        if earlier.step >= step:
            continue
        if not condition(earlier):
            break
        since = earlier.step
    return since


def gradient_scale(record):
    """Mean magnitude per result cell, bounded from above by the pair sums: sum(|pair sums|) / cells.

    `record`: a `metadata.Record` or its `Totals`."""
    t = totals(record)
    return float(np.abs(t.sums).sum() / t.cells) if t.cells > 0 else 0.0


def vanishing_gradient_alerts(kernel_gradients, step):
    """Alerts for layers whose kernel-gradient scale is at most 1/VANISHING_RATIO of the largest layer's.

    `kernel_gradients`: [(layer, Record or Totals)] at one step, in model order.
    """
    return _vanishing_alerts([(layer, gradient_scale(r)) for layer, r in kernel_gradients], step)


def _vanishing_alerts(scales, step):
    """`vanishing_gradient_alerts` over [(layer, gradient scale)]."""
    top = max((s for _, s in scales), default=0.0)
    alerts = []
    for layer, s in scales:
        if top > 0 and s * VANISHING_RATIO <= top:
            ratio = top / s if s > 0 else math.inf
            severity = 1.0 if math.isinf(ratio) else min(1.0, math.log10(ratio) / 4)
            alerts.append(Alert("vanishing_gradient", layer, "kernel_gradient", step, severity,
                                f"kernel gradients are {ratio:.3g}x smaller than in the layer with the largest "
                                f"(vanishing gradients)."))
    return alerts


def diagnose_run(layers, step=None):
    """Diagnoses every (layer, role) of a run at `step` (default: each layer's latest record).

    `layers`: {(layer, role): view} in model order, where a view has `info` (`metadata.PluginMetadata`),
    `record_at(step)` -> `(step, Record or Totals)` of the latest record at or before `step` (latest for None),
    or None, and `history(step)` -> `StepSummary`s of the records before `step` (`loader.LayerSeries` is one).
    Returns (diagnoses, alerts), alerts ranked worst first (severity, then earliest step).
    """
    diagnoses, alerts, gradients = [], [], {}
    for (layer, role), view in layers.items():
        picked = view.record_at(step)
        if picked is None:
            continue
        at_step, record = picked
        d = diagnose(record, layer=layer, role=role, step=at_step, info=view.info, history=view.history(at_step))
        diagnoses.append(d)
        alerts.extend(d.alerts)
        if role == "kernel_gradient":
            gradients[layer] = (at_step, gradient_scale(record))
    if len(gradients) >= 2:
        latest = max(s for s, _ in gradients.values())
        vanishing = _vanishing_alerts([(l, scale) for l, (_, scale) in gradients.items()], latest)
        alerts.extend(vanishing)
        for d in diagnoses:
            for a in vanishing:
                if (d.layer, d.role) == (a.layer, a.role):
                    d.alerts.append(a)
                    kept = "" if d.text.startswith("Nothing wrong") else d.text + " "
                    d.text = kept + _sentence(a.message)
    alerts.sort(key=lambda a: (-a.severity, a.first_step, a.layer))
    return diagnoses, alerts
