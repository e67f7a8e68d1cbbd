"""The rules that judge one record (`diagnose`): its alerts, its causes and its plain-language text.

Which rules apply depends on the record's role (see the package docstring for the thresholds and why): the
matmul roles (forward, kernel_gradient, input_gradient), the activation step, the activation gradient and the
input features. Rules that need more than one layer (vanishing gradients, dead inputs named at their producer)
are `run.py`'s.
"""

import dataclasses
import math

import numpy as np

from tb_matmul_explainer import metadata
from tb_matmul_explainer.explain import causes as causes_lib
from tb_matmul_explainer.explain.table import any_non_finite, dead_count, dead_share, non_finite_results, totals

DEAD_UNITS = 0.10
MIN_DEAD = 2  # dead units that alert, unless all of the layer's are: one unit of 8 dies in healthy U-Nets


def many_dead(dead, of, non_finite=0.0):
    """Whether `dead` of `of` units (less the non-finite share) make a dead-unit alert."""
    return bool(of) and dead / of - non_finite >= DEAD_UNITS and (dead >= MIN_DEAD or dead == of)


EXCESS = 0.20
COLLAPSED = 0.50
CANCELLED = 1e-3
CONFIDENT = 0.10  # a classifier output saturated in this share of cells is said to be confident


@dataclasses.dataclass
class Alert:
    kind: str  # dead_units | cancellation | excess_near_zero | vanishing_gradient | collapsed_weights
    #            | non_finite | no_gradient | dying_during_training (the last two: `run.py`, across layers)
    layer: str  # where the problem starts
    role: str
    first_step: int
    severity: float
    message: str
    run: str = ""
    seen_in: str = ""  # the layer whose record shows it, where that is not `layer` (a consumer's input)
    during_training: bool = False  # dead units: most of them died after the first recorded step (`dead_since`)


@dataclasses.dataclass
class Diagnosis:
    layer: str
    role: str
    step: int
    near_zero_fraction: float
    causes: dict  # cause name -> share of near-zero cells' products it accounts for
    dead_rows: list  # stored row indices that are dead at this step
    text: str
    alerts: list
    starved: bool = False  # forward: its near-zero results come from near-zero inputs (`run.py` names the producer)


def sentence(text):
    return text[0].upper() + text[1:]


def held_since(step, history, condition):
    """The first step of the latest unbroken run of records (ending at `step`) for which `condition` holds;
    `condition` takes a `table.StepSummary`."""
    since = step
    for earlier in sorted(history, key=lambda h: h.step, reverse=True):
        if earlier.step >= step:
            continue
        if not condition(earlier):
            break
        since = earlier.step
    return since


LOST_MOST = 0.5  # a layer that lost this share of its units during training points at the learning rate
RECOVERING = 1.5  # dead units at the first recorded step over now: the layer is recovering (VGG16's fc layers)


def dead_since(dead, of, since, step, history):
    """The words "since step S" of `dead` of `of` dead units held since S; where fewer were dead at S, how many then
    (where RECOVERING times as many were dead at the first recorded step, that they are coming back);
    and where most died during training (`died_during_training`), that they did, which points at the training, not
    at the initialisation; at a learning rate too high where they are at least LOST_MOST of the layer (a few
    units of a healthy layer die at any learning rate: seen in a conv autoencoder at Adam 1e-3, 3e-4 and 1e-4)."""
    count = _dead_counts(of, step, history)
    words = f"since step {since}"
    if since in count and count[since] < dead:
        words += f", up from {count[since]} then"
    elif count and count[min(count)] >= RECOVERING * dead and count[min(count)] - dead >= 2:
        words += f", down from {count[min(count)]} at step {min(count)} (units coming back to life)"
    if died_during_training(dead, of, step, history):
        first = min(count)
        at_first = "" if first == since else f"{count[first] or 'none'} at step {first}; "
        hint = ": a learning rate that is too high is a common cause" if dead >= LOST_MOST * of else ""
        words += f" ({at_first}most died during training{hint})"
    return words


def died_during_training(dead, of, step, history):
    """Whether at most half as many of the `of` units were dead at the first recorded step as now (`dead`)."""
    count = _dead_counts(of, step, history)
    return bool(count) and count[min(count)] <= dead / 2


def _dead_counts(of, step, history):
    """{step: dead units} of the recorded steps before `step`."""
    return {h.step: round(h.dead_share * of) for h in history if h.step < step}


def expected_near_zero_fraction(info):
    """What the result threshold makes normal: 1 - confidence for a derived threshold, else unknown (None)."""
    if info is None or (len(info.thresholds) > 2 and info.thresholds[2] is not None):
        return None
    return 1.0 - info.confidence


def _padding_only(t):
    return float(t.padding_only) if np.isfinite(t.padding_only) else 0.0


def _near_zero_share(t):
    """Near-zero result cells / cells, less the cells that only meet padding (zero by construction)."""
    cells = t.cells - _padding_only(t)
    return float(max(t.near_zero_cells - _padding_only(t), 0.0) / cells) if cells > 0 else 0.0


def _collapsed(t):
    kernel_zero = causes_lib.z_shares(t.counts)["second"]
    return kernel_zero >= COLLAPSED and t.thresholds[1] == 0 and not t.nonfinite[1] > 0, kernel_zero


def _cancelled(t):
    share = causes_lib.kept_share(t)
    return (not math.isnan(share)) and share <= CANCELLED, share


# The near-zero operands that other layers made, per matmul role (a `causes.z_shares` key): the layer input (from
# its producer) and the output gradient (from the layers after it); the kernel-gradient's two operands both are.
_FROM_OTHER_LAYERS = {"forward": "first", "kernel_gradient": "either", "input_gradient": "first"}


def has_kernel(info):
    """Whether the record's second matmul operand is the layer's kernel (not an activation, as in attention's
    query x key and attention x value einsums: `metadata.OP_OPERANDS`); unknown (no metadata): assumed."""
    return info is None or "kernel" in info.operands


def _recurrent(info):
    """Whether the record is a recurrent layer's (`metadata.GATES`): its output gradient is that of the gates'
    pre-activations, through the cell's own sigmoid/tanh."""
    return info is not None and info.op in metadata.GATES


def _is_starved(t, role, info=None):
    """Nearly all the near-zero cells' products have a near-zero operand that another layer made (a dead
    producer's output, or an output gradient that dead units after it do not pass back): the problem is theirs.
    Both operands of a product of two activations (attention's einsums) are made by other layers."""
    if t.near_zero_cells <= 0 or role not in _FROM_OTHER_LAYERS:
        return False
    made_elsewhere = _FROM_OTHER_LAYERS[role] if has_kernel(info) else "either"
    if _recurrent(info) and role == "kernel_gradient":
        made_elsewhere = "first"  # (its output gradient is its gates' own: saturated gates are the layer's doing)
    return causes_lib.z_shares(t.near_zero_counts)[made_elsewhere] >= causes_lib.DOMINANT


def _non_finite_alert(t, layer, role, step, history, info):
    names = [n for n, c in zip((*causes_lib.operand_names(info), "result"), t.nonfinite) if c > 0]
    since = held_since(step, history, lambda h: h.non_finite)
    return Alert("non_finite", layer, role, since, 1.0, f"non-finite values (NaN or inf) in the {', '.join(names)}.")


def _dated(kind, layer, role, step, history, holds, strength, message, **fields):
    """An Alert dated from the first step of the run from which `holds(summary)` has held; `message(since)` is
    its text; `fields` its other fields."""
    since = held_since(step, history, holds)
    return Alert(kind, layer, role, since, strength, message(since), **fields)


def _matmul_alerts(t, layer, role, step, info, history):
    """Alerts of a forward / kernel_gradient / input_gradient record."""
    alerts = []
    nf = non_finite_results(t.nonfinite, t.cells)
    dead, of, units = dead_count(t)
    if role == "forward" and many_dead(dead, of, nf) and not _is_starved(t, role, info):
        alerts.append(_dated(
            "dead_units", layer, role, step, history,
            lambda h: many_dead(round(h.dead_share * of), of, h.non_finite_results), dead / of,
            lambda since: f"{dead} of {of} {units} are dead (near zero in every cell) "
            f"{dead_since(dead, of, since, step, history)}.",
            during_training=died_during_training(dead, of, step, history),
        ))  # fmt: skip
    expected = expected_near_zero_fraction(info)
    excess = _near_zero_share(t) - nf - expected if expected is not None else -1.0
    if excess >= EXCESS and not _is_starved(t, role, info):
        gates = (
            " Its output gradient is that of its gates' pre-activations: near zero where the gates saturate (their "
            "sigmoid or tanh is flat): inputs on too large a scale (normalise them) or a learning rate too high are "
            "common causes."
            if _recurrent(info)
            and role == "kernel_gradient"
            and causes_lib.z_shares(t.near_zero_counts)["second"] >= causes_lib.DOMINANT
            else ""
        )
        alerts.append(_dated(
            "excess_near_zero", layer, role, step, history,
            lambda h: _near_zero_share(h.totals) - h.non_finite_results - expected >= EXCESS, min(1.0, excess),
            lambda since: f"{_near_zero_share(t):.0%} of results are near zero where about {expected:.0%} is "
            f"normal, since step {since}.{gates}",
        ))  # fmt: skip
    if role in ("forward", "input_gradient") and _cancelled(t)[0]:
        alerts.append(_dated(
            "cancellation", layer, role, step, history, lambda h: _cancelled(h.totals)[0], 1.0,
            lambda since: f"every result cancels: |results| add up to {_cancelled(t)[1]:.1e} of the magnitude of "
            f"their products (large positive and negative products of equal size) since step {since}.",
        ))  # fmt: skip
    collapsed, kernel_zero = _collapsed(t)
    if role == "forward" and collapsed and has_kernel(info):  # (a zero key or value is an input's doing)
        alerts.append(_dated(
            "collapsed_weights", layer, role, step, history, lambda h: _collapsed(h.totals)[0], float(kernel_zero),
            lambda since: f"{kernel_zero:.0%} of the kernel's products involve zero weights: the weights have "
            f"collapsed, since step {since}.",
        ))  # fmt: skip
    return alerts


def _unusual(t, info):
    """More near-zero results than the threshold makes normal, or dead units: worth a sentence of its own."""
    expected = expected_near_zero_fraction(info)
    excess = expected is not None and _near_zero_share(t) - expected >= EXCESS
    return excess or dead_share(t) >= DEAD_UNITS


def _matmul_text(t, role, info, alerts, found):
    fraction = float(t.near_zero_cells / t.cells) if t.cells > 0 else 0.0
    nf = non_finite_results(t.nonfinite, t.cells)
    padding = _padding_only(t) / t.cells if t.cells > 0 else 0.0
    why = causes_lib.because(found)
    padded = (
        f" ({padding:.0%} of the kernel-gradient entries only ever meet SAME padding: zero by construction)"
        if padding >= causes_lib.MIN_SHARE
        else ""
    )
    if alerts:
        counted = f" (NaN counts as near zero: {nf:.0%} of results are non-finite)" if nf > 0 else ""
        expected = expected_near_zero_fraction(info)
        normal = f" (about {expected:.0%} is normal)" if any(a.kind == "excess_near_zero" for a in alerts) else ""
        lead = [sentence(a.message) for a in alerts if a.kind == "non_finite"]
        rest = [sentence(a.message) for a in alerts if a.kind not in ("non_finite", "excess_near_zero")]
        return " ".join(
            lead
            + [f"{fraction:.0%} of results are near zero{counted}{padded}{', ' + why if why else ''}{normal}."]
            + rest
        )
    if _is_starved(t, role, info) and _unusual(t, info):
        return f"{fraction:.0%} of results are near zero, {why or 'because its input is near zero'}."
    if t.near_zero_cells:
        expected = expected_near_zero_fraction(info)
        usual = (
            f"above the {expected:.0%} this threshold makes normal, less than {EXCESS:.0%} more (which alerts)"
            if expected is not None and fraction - padding > 2 * expected + 0.02
            else "as expected for this layer"
        )
        text = f"Nothing wrong: {fraction:.0%} of results are near zero{padded}, {usual}."
        return text + (f" They are near zero {why}." if why else "")
    return "Nothing wrong: no result is near zero."


def _activation(t, layer, role, step, info, history):
    """The activation step: dead units (inactive in >= 99% of their cells)."""
    name = info.activation if info is not None and info.activation else "activation"
    word = causes_lib.inactive_word(name)
    inactive = float(t.near_zero_cells / t.cells) if t.cells > 0 else 0.0
    outputs = float(t.reference / t.cells) if t.cells > 0 and np.isfinite(t.reference) else math.nan
    out_text = f"; {outputs:.0%} of its outputs are near zero" if not math.isnan(outputs) else ""
    dead, of, units = dead_count(t)
    alerts, found = [], {}
    if info is not None and info.loss_reads_logits:
        # Keras' cross-entropy differentiates z itself: dJ/dz = p - y whatever f'(z), so a saturated output is a
        # confident prediction (a trained classifier's softmax saturates almost everywhere), not a dead unit.
        confident = " (confident outputs)" if inactive >= CONFIDENT else ""
        text = (
            f"Nothing wrong: the {name} is {word} in {inactive:.0%} of cells{out_text}{confident}. "
            f"The loss reads this layer's logits z directly, so its gradient does not pass through the {name}'s "
            f"slope: saturation blocks no gradient here."
        )
        return alerts, found, text
    if many_dead(dead, of, non_finite_results(t.nonfinite, t.cells)):
        cause = causes_lib.activation_cause(t, name)
        kind = "dying ReLUs" if word == "off" else f"{word} {name}"
        alerts.append(_dated(
            "dead_units", layer, role, step, history,
            lambda h: many_dead(round(h.dead_share * of), of, h.non_finite_results), dead / of,
            lambda since: f"{dead} of {of} {units} are dead ({kind}: the {name} is {word} for at least 99% of "
            f"inputs) {dead_since(dead, of, since, step, history)}{': ' + cause if cause else ''}.",
            during_training=died_during_training(dead, of, step, history),
        ))  # fmt: skip
        found[cause] = dead / of
        text = f"The {name} is {word} in {inactive:.0%} of cells{out_text}. " + sentence(alerts[-1].message)
    else:
        below = (
            f"below the {DEAD_UNITS:.0%} that raises an alert"
            if dead / max(of, 1) < DEAD_UNITS
            else f"fewer than the {MIN_DEAD} that raise an alert"
        )
        dead_text = f" ({dead} of {of} {units} dead, {below})" if dead else ""
        text = f"Nothing wrong: the {name} is {word} in {inactive:.0%} of cells{out_text}{dead_text}."
    return alerts, found, text


def _activation_gradient(t, info):
    """dJ/dz = dJ/da * f'(z): whether near-zero dJ/dz comes from the activation being off or from a small dJ/da.
    No alert of its own (a dead activation is alerted in the activation record), but units that get no gradient
    in any cell are said so, not called "nothing wrong"."""
    found = causes_lib.near_zero_causes(t, info, with_cancellation=False)
    fraction = float(t.near_zero_cells / t.cells) if t.cells > 0 else 0.0
    labels = {
        "near-zero activation derivative": "the activation is off or saturated",
        "near-zero activation output gradient": "dJ/da, the gradient arriving from later layers, is near zero",
    }
    named = {labels.get(k, k): v for k, v in found.items()}
    why = "; ".join(f"{k} ({v:.0%} of them)" for k, v in sorted(named.items(), key=lambda kv: -kv[1]))
    text = f"{fraction:.0%} of the pre-activation gradients dJ/dz are near zero{': ' + why if why else ''}."
    dead, of, units = dead_count(t)
    if of and dead / of >= DEAD_UNITS:
        return named, f"{text} {dead} of {of} {units} get no gradient in any cell: {_why_no_gradient(t)}."
    return named, "Nothing wrong here: " + text


OWN_OFF = 0.99  # f'(z) near zero in this share of the units' cells: their own activation is off


def _why_no_gradient(t):
    """Why the units with no dJ/dz in any cell get none, from their near-zero cells' pairs [class of dJ/da, class
    of f'(z)]: where f'(z) is near zero in at least OWN_OFF of them (whatever dJ/da is: a max-pooling after the
    layer zeroes 3 in 4 of a unit's dJ/da anyway), or alone near zero at least as often as dJ/da is, their own
    activation is off; else no dJ/da arrives from after the layer."""
    dead_rows = t.dead_near_zero_counts  # (none where the stored rows group several units: a 4096-unit layer's)
    counts = dead_rows if dead_rows is not None and np.sum(dead_rows) > 0 else t.near_zero_counts
    counts = np.asarray(counts, np.float64).reshape(3, 3)
    off, off_alone, none_arrives = counts[:, 1].sum(), counts[0, 1] + counts[2, 1], counts[1].sum()
    if off > 0 and (off >= OWN_OFF * counts.sum() or off_alone >= none_arrives):
        return "their own activation is off there, so their weights get no gradient"
    return (
        "no gradient arrives from after the layer (a later layer or the loss passes none back), so their weights "
        "get no gradient"
    )


def _input_features(t, info):
    dead, of, units = dead_count(t)
    features = units.replace("units", "input features")
    zeros = float(t.reference / t.cells) if t.cells > 0 and np.isfinite(t.reference) else math.nan
    source = [f"from {info.producer}"] if info is not None and info.producer else []
    if info is not None and info.zeroed_by and zeros > 0:  # exactly-zero values that the producer did not make
        verb = "sets" if len(info.zeroed_by) == 1 else "set"
        source.append(f"through {', '.join(info.zeroed_by)}, which {verb} values to exactly zero")
    producer = f" ({' '.join(source)})" if source else ""
    zero_text = f", {zeros:.0%} of its input values are exactly zero" if not math.isnan(zeros) else ""
    if dead and dead / of >= DEAD_UNITS:
        return f"{dead} of {of} {features} are near zero in every row{producer}{zero_text}."
    if dead:
        return (
            f"Nothing wrong: {dead} of {of} {features} are near zero in every row, below the {DEAD_UNITS:.0%} "
            f"that raises an alert{producer}{zero_text}."
        )
    return f"Nothing wrong: no input feature is near zero in every row{producer}{zero_text}."


def diagnose(record, *, layer="", role="forward", step=0, info=None, history=()):
    """Diagnoses one record (a `metadata.Record` or its `Totals`) of `role`. `history`: `StepSummary`s of the
    layer's earlier records (for "since which step"). Returns a `Diagnosis` whose `text` is plain sentences."""
    t = totals(record)
    fraction = float(t.near_zero_cells / t.cells) if t.cells > 0 else 0.0
    alerts = [_non_finite_alert(t, layer, role, step, history, info)] if any_non_finite(t.nonfinite) else []
    found, starved = {}, False
    if role == "activation":
        more, found, text = _activation(t, layer, role, step, info, history)
        alerts += more
    elif role == "activation_gradient":
        found, text = _activation_gradient(t, info)
    elif role == "input_features":
        text = _input_features(t, info)
    else:
        alerts += _matmul_alerts(t, layer, role, step, info, history)
        starved = _is_starved(t, role, info)
        found = causes_lib.near_zero_causes(t, info, with_cancellation=bool(alerts))
        text = _matmul_text(t, role, info, alerts, found)
    if role not in ("forward", "kernel_gradient", "input_gradient") and any(a.kind == "non_finite" for a in alerts):
        text = sentence(alerts[0].message) + " " + text
    dead = list(t.dead_rows) if role in ("forward", "activation", "input_features") else []
    if role == "activation" and info is not None and info.loss_reads_logits:
        dead = []  # (saturated, not dead: `_activation`)
    return Diagnosis(layer, role, step, fraction, found, dead, text, alerts, starved)
