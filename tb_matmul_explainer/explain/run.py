"""The rules across a run's layers (`diagnose_run`): dead inputs named where they start, vanishing gradients, units
dying during training in many layers (one cause, named once), and the ranking that puts the origin of a problem
first."""

import math
import re

import numpy as np

from tb_matmul_explainer import metadata
from tb_matmul_explainer.explain import causes as causes_lib
from tb_matmul_explainer.explain.rules import (
    DEAD_UNITS,
    Alert,
    dead_since,
    diagnose,
    died_during_training,
    has_kernel,
    held_since,
    sentence,
)
from tb_matmul_explainer.explain.table import dead_count, totals

MANY_DYING = 3  # layers whose units died during training that make one run-level alert (a common cause)
MANY_NON_FINITE = 3  # layers with non-finite values that make one run-level alert (a diverged training)
VANISHING_RATIO = 100.0  # later layers' largest mean |dW| / mean |W| over this and earlier layers' largest
V1_VANISHING_RATIO = 100.0  # on the version-1 measure, as version 1 of the diagnosis judged it


def relative_scale(record):
    """mean |dW| / mean |W| of a kernel-gradient record (kernel entries that only meet padding left out of the
    mean), or None where the record lacks |dW| or |W| (version 1, the summary ops)."""
    t = totals(record)
    mean_dw = mean_abs_gradient(t)
    if mean_dw is None or not np.isfinite(t.reference) or t.reference <= 0:
        return None  # all-zero weights: collapsed weights says so; nothing to compare the gradient with
    return float(mean_dw / (t.reference / t.cells))


def mean_abs_gradient(t):
    """mean |dW| of a kernel-gradient record's `Totals` over the kernel entries that meet data (not only
    padding), or None where it has no |dW| (version 1, the summary ops) or no such entry."""
    live = t.cells - (t.padding_only if np.isfinite(t.padding_only) else 0.0)
    if t.cells <= 0 or live <= 0 or not np.isfinite(t.result_magnitude):
        return None
    return float(t.result_magnitude / live)


def _has_relative_columns(record):
    """Whether a kernel-gradient record holds |dW| and |W| (not version 1, not the summary ops' NaN columns)."""
    t = totals(record)
    return bool(np.isfinite(t.result_magnitude) and np.isfinite(t.reference))


def gradient_scale(record):
    """How large a layer's kernel gradient is: `relative_scale` where recorded, else sum(|pair sums|) / cells, the
    version-1 bound on the mean |dW|. `record`: a `metadata.Record` or its `Totals`."""
    relative = relative_scale(record)
    if relative is not None:
        return relative
    t = totals(record)
    return float(np.abs(t.sums).sum() / t.cells) if t.cells > 0 else 0.0


def _vanishing(records, groups=None):
    """{layer: ratio} of the vanishing layers; records: {layer: record} in model order; groups: {layer: group}
    (`metadata.PluginMetadata.group`: layers of one group, such as an attention layer's projections, read the same
    input at the same depth and are judged together; default: each layer its own).

    Relative scales (where records have them: not version 1): gradients vanish going backward, so a layer is
    vanishing when the largest relative scale of the layers after it is at least VANISHING_RATIO x the largest of
    it and every layer before it (measured: 1e6 at the first layer of an 8-layer sigmoid MLP; at most 9 on healthy
    ResNet50, MobileNetV2, Transformer and ReLU MLPs, whose smallest relative scales sit in their *last* stages).
    Otherwise the version-1 rule: at most 1/V1_VANISHING_RATIO of the largest layer's scale."""
    if any(_has_relative_columns(r) for r in records.values()):
        # (a layer whose |W| is 0 has no relative scale: collapsed weights says so; a record without the columns,
        # such as a frozen layer's before this version computed its |dW|, is left out too; the others are compared)
        relative = {
            layer: s for layer, s in ((layer, relative_scale(r)) for layer, r in records.items()) if s is not None
        }
        groups = groups or {}
        by_group = {}
        for layer, _r in relative.items():
            by_group.setdefault(groups.get(layer, layer), []).append(layer)
        scales = [max(relative[layer] for layer in members) for members in by_group.values()]
        out = {}
        for i, members in enumerate(list(by_group.values())[:-1]):
            before, after = max(scales[: i + 1]), max(scales[i + 1 :])
            if after > 0 and after >= VANISHING_RATIO * before:
                out.update(dict.fromkeys(members, after / before if before > 0 else math.inf))
        return out
    scales = {layer: gradient_scale(r) for layer, r in records.items()}
    top = max(scales.values(), default=0.0)
    return {
        layer: (top / s if s > 0 else math.inf)
        for layer, s in scales.items()
        if top > 0 and s * V1_VANISHING_RATIO <= top
    }


def vanishing_gradient_alerts(kernel_gradients, step):
    """Vanishing-gradient alerts at one step; `kernel_gradients`: [(layer, Record or Totals)] in model order."""
    return [
        _vanishing_alert(layer, ratio, step, _has_relative_columns(dict(kernel_gradients)[layer]))
        for layer, ratio in _vanishing(dict(kernel_gradients)).items()
    ]


def _vanishing_alert(layer, ratio, since, relative=True):
    severity = 1.0 if math.isinf(ratio) else min(1.0, math.log10(ratio) / 4)
    if relative:
        message = (
            f"kernel gradients relative to the weights (mean |dW| / mean |W|) here and in every earlier layer "
            f"are {ratio:.3g}x smaller than in a later layer (vanishing gradients), since step {since}."
        )
    else:
        message = (
            f"kernel gradients are {ratio:.3g}x smaller than in the layer with the largest (vanishing "
            f"gradients), since step {since}."
        )
    return Alert("vanishing_gradient", layer, "kernel_gradient", since, severity, message)


def _order(info):
    """Model order of a layer: its group's position, then its own."""
    if info is None:
        return (0, 0)
    return (info.group if info.group is not None else info.index, info.index)


def _vanishing_run(views, diagnoses):
    """Vanishing-gradient alerts at the latest step the kernel-gradient records share, dated back over the earlier
    steps at which the same layer was vanishing."""
    series = dict(
        sorted(
            ((layer, view) for (layer, role), view in views.items() if role == "kernel_gradient"),
            key=lambda kv: _order(kv[1].info),
        )
    )
    picked = {
        layer: view.record_at(diagnoses[(layer, "kernel_gradient")].step)
        for layer, view in series.items()
        if (layer, "kernel_gradient") in diagnoses
    }
    if len(picked) < 2:
        return []
    step = max(s for s, _ in picked.values())
    records = {layer: r for layer, (_, r) in picked.items()}
    groups = {
        layer: view.info.group
        if view.info is not None and view.info.group is not None
        else (view.info.index if view.info is not None else layer)
        for layer, view in series.items()
    }
    vanishing = _vanishing(records, groups)
    if not vanishing:
        return []
    earlier = {}  # step -> {layer: Totals}
    for layer, view in series.items():
        for h in view.history(step):
            earlier.setdefault(h.step, {})[layer] = h.totals
    history = [
        _Held(s, _vanishing(layer_totals, groups))
        for s, layer_totals in earlier.items()
        if len(layer_totals) == len(series)
    ]
    relative = any(_has_relative_columns(r) for r in records.values())
    return [
        _vanishing_alert(layer, ratio, held_since(step, history, lambda h, l=layer: l in h.vanishing), relative)
        for layer, ratio in vanishing.items()
    ]


class _Held:
    """An earlier step's vanishing layers, for `held_since`."""

    def __init__(self, step, vanishing):
        self.step, self.vanishing = step, vanishing


def _passed_on(forward, t, producer):
    """A starved forward line without an alert, whose input has no dead feature (its zeros are spread over the
    features: a ReLU's off cells), is "nothing wrong": the layer carries its input's zeros on (a depthwise conv on a
    1x1 map is an elementwise scale: NASNetMobile's read "51% of results are near zero" with no verdict)."""
    if forward is None or not forward.starved or forward.alerts or t.cells <= 0 or not np.isfinite(t.reference):
        return
    source = f" from {producer}" if producer else ""
    forward.text = _nothing_wrong_here(
        f"{forward.text} Its input{source} is exactly zero in {t.reference / t.cells:.0%} of its values, spread over "
        f"its features (none is near zero in every row), and the layer carries those zeros on."
    )


def _nothing_wrong_here(text):
    """`text` as a "Nothing wrong here" line (the tab folds those)."""
    return f"Nothing wrong here: {text[0].lower()}{text[1:]}"


_OFF_HINT = (
    " — dead units: the activation is off for them; look at what feeds it (a BatchNormalization's beta and gamma, "
    "the previous layer's bias)"
)


def _dead_inputs(views, diagnoses, alerts):
    """Input features near zero in every row: named at the layer that made them. A recorded producer with an
    activation record says so itself; an Activation / BatchNormalization / Concatenate producer gets the alert,
    once. Returns the ids of the alerts at a layer that joins several inputs (producer kind "join"): their zeros
    are those of the layers it joins; where none of them has dead units, the zeros are the data's own (a
    structured-data model's one-hot out-of-vocabulary slots) and raise no alert."""
    by_producer, joins = {}, set()
    for (layer, role), d in diagnoses.items():
        info = views[(layer, role)].info
        if role != "input_features" or info is None:
            continue
        _zeros_by_construction(diagnoses.get((layer, "kernel_gradient")), info)
        t = totals(views[(layer, role)].record_at(d.step)[1])
        dead, of, _ = dead_count(t)
        if not dead:
            _passed_on(diagnoses.get((layer, "forward")), t, info.producer)
            continue
        share = dead / of - (t.nonfinite[0] / t.cells if t.cells > 0 else 0.0)  # (NaN is Z: not a dead feature)
        producer, kind = info.producer, info.producer_kind
        named = producer
        if not producer:  # (a subclassed model: the layer whose dead units match these dead features, if one does)
            producer = _matching_producer(views, diagnoses, d.step, dead, of)
            kind = producer and "activation"
            named = producer and f"{producer} (whose dead units match them: the model's graph does not say)"
        forward = diagnoses.get((layer, "forward"))
        if forward is not None and forward.starved and producer:
            forward.text = forward.text.replace("near-zero input", f"near-zero input from {named}", 1)
        if share < DEAD_UNITS or kind == "input":
            continue
        if (producer, "activation") in diagnoses:
            continue  # the producer's own activation record raises (or not) its dead units
        made_by = views.get((producer, "forward"))
        if made_by is not None and not has_kernel(made_by.info):
            continue  # an einsum of two activations (attention's): its output is its forward record's results
        origin = producer or layer
        history = views[(layer, role)].history(d.step)
        since = held_since(d.step, history, lambda h: h.dead_share >= DEAD_UNITS)
        when = dead_since(dead, of, since, d.step, history)
        what = (
            f"{dead} of {of} of its output features are near zero for every input {when} (seen in the input of {layer})"
            if producer
            else f"{dead} of {of} input features are near zero for every input {when} (their producer is not "
            f"known: they come from Python code, a subclassed model or layer, not a functional or Sequential graph)"
        )
        hints = {
            "activation": _OFF_HINT,
            "join": f" — {producer} joins several layers' outputs (Concatenate, Add, ...) and makes no zeros of its "
            f"own: they come from the layers it joins (see their alerts first)",
        }
        hint = hints.get(kind, "")
        if origin not in by_producer or share > by_producer[origin].severity:
            by_producer[origin] = Alert(
                "dead_units",
                origin,
                "input_features",
                since,
                share,
                f"{what}{hint}.",
                seen_in=layer,
                during_training=died_during_training(dead, of, d.step, history),
            )
            if kind == "join":
                joins.add(origin)
    others = any(a.kind == "dead_units" for a in alerts) or any(o not in joins for o in by_producer)
    for origin in joins if not others else ():  # (nothing it joins is dead: the data's own zero features)
        alert = by_producer.pop(origin)
        d = diagnoses[(alert.seen_in, "input_features")]
        d.text = _nothing_wrong_here(
            f"{d.text} Nothing it joins has dead units: these are zero for every input in the data itself (a "
            "one-hot's out-of-vocabulary or unused slots are, by construction)."
        )
    alerts.extend(by_producer.values())
    return {id(a) for origin, a in by_producer.items() if origin in joins}


UNSCALED = 1000.0  # an input feature's mean |x| over the median feature's that says "not normalised"


def _with_unit_detail(view, step):
    """The latest record at or before `step` that has per-unit rows (`metadata.Record.detail`), or None."""
    for at in [step] + [h.step for h in reversed(view.history(step))]:
        picked = view.record_at(at)
        record = picked[1] if picked is not None else None
        if isinstance(record, metadata.Record) and record.detail and record.result_magnitude is not None:
            return picked
    return None


def _unscaled_inputs(views, diagnoses, alerts):
    """An input feature whose mean |x| is UNSCALED times the median feature's or more (a raw feature among
    normalised ones: a wide & deep model's income at ~4e4 killed 19 of 32 units of the Dense that read it, which
    read "the weights point away from the data"): one alert, at the layer that reads it, naming the feature. Only
    for the data's features (read from the model's input, or a join of inputs: a tabular model's Concatenate), and
    against the median of the features that are not near zero in most rows (a layer's dead units are not a
    scale)."""
    for (layer, role), d in diagnoses.items():
        view = views[(layer, role)]
        if role != "input_features" or view.info is None or view.info.producer_kind not in ("input", "join"):
            continue
        picked = _with_unit_detail(view, d.step)
        if picked is None:
            continue
        at, record = picked
        cells, magnitude = np.asarray(record.cells, np.float64), np.asarray(record.result_magnitude, np.float64)
        alive = np.asarray(record.near_zero_cells, np.float64) < 0.5 * cells
        known = (cells > 0) & np.isfinite(magnitude) & alive
        if known.sum() < 3:
            continue
        means = np.where(known, magnitude / np.maximum(cells, 1.0), np.nan)
        median = float(np.nanmedian(means))
        row = int(np.nanargmax(means))
        if median <= 0 or means[row] < UNSCALED * median:
            continue
        ratio, g = means[row] / median, record.group_size
        which = (
            f"input feature {row} (counting from 0)"
            if g == 1
            else f"input features {row * g}-{row * g + g - 1} (counting from 0: a group)"
        )
        source = f" (from {view.info.producer})" if view.info.producer else ""
        alert = Alert(
            "unscaled_input",
            layer,
            role,
            at,
            min(1.0, math.log10(ratio) / 5),
            f"{which} of {record.units}{source} has mean |x| {means[row]:.1e}, {ratio:.0e}x the median "
            f"feature's ({median:.1e}), at step {at}: an input on another scale (not normalised?) swamps x.W and "
            f"saturates or kills the units that read it. Normalise it (a Normalization layer, or scale it).",
        )
        d.alerts.append(alert)
        d.text += " " + sentence(alert.message)
        alerts.append(alert)
        for dead in [a for a in alerts if a.kind == "dead_units" and a.layer == layer and a.role == "activation"]:
            dead.message += f" Its x.W is swamped by {which} (see that alert): normalise it first."


def _zeros_by_construction(kernel_gradient, info):
    """A kernel gradient whose near-zero entries come from its input's zeros, where a ZeroPadding or Dropout layer
    between the producer and the layer made exact zeros (`info.zeroed_by`, of its input-features record): its text
    says they are zero by construction (an EfficientNet's explicitly padded stride-2 convolutions read 84% near
    zero for it)."""
    if kernel_gradient is None or not kernel_gradient.starved or not info.zeroed_by:
        return
    if kernel_gradient.text.startswith("Nothing wrong") or "near-zero input" not in kernel_gradient.text:
        return
    verb = "sets" if len(info.zeroed_by) == 1 else "set"
    kernel_gradient.text += (
        f" Its input's exact zeros come from {', '.join(info.zeroed_by)}, which {verb} values to exactly zero "
        f"(padding or dropout): zero by construction, nothing to fix there."
    )


def _matching_producer(views, diagnoses, step, dead, of):
    """For input features whose producer the graph does not say: the one layer whose activation record at the same
    step has as many units as there are features and as many dead units as dead features, else None."""
    matches = []
    for (layer, role), d in diagnoses.items():
        if role != "activation" or d.step != step:
            continue
        if dead_count(totals(views[(layer, role)].record_at(step)[1]))[:2] == (dead, of):
            matches.append(layer)
    return matches[0] if len(matches) == 1 else None


def _blockers(alerts):
    """The alerts of layers that pass (almost) no gradient back: dead units or collapsed weights in at least half
    of a layer. (Dead input features alerted at the layer that reads them, their producer unknown, block nothing
    there.)"""
    return [
        a
        for a in alerts
        if a.kind in ("dead_units", "collapsed_weights")
        and a.severity >= 0.5
        and not (a.role == "input_features" and a.layer == a.seen_in)
    ]


def _blocker_after(layer, blockers, order):
    """The blocker (a dead-unit or collapsed-weights alert) after `layer` in model order that passes the least
    gradient back: the most severe, the nearest of equals (a layer with half its units dead, which a residual path
    goes around, does not explain what a wholly dead one after it does), or None."""
    at = order.get(layer, (0, 0))
    after = [b for b in blockers if order.get(b.layer, order.get(b.seen_in, (0, 0))) > at]
    return min(
        after, key=lambda b: (-round(b.severity, 2), order.get(b.layer, order.get(b.seen_in, (0, 0)))), default=None
    )


def _after(layer, blocker, order):
    """Where `blocker` is from `layer`: "after it", or "beside it in the same layer" for two parts of one layer
    (an attention's value projection, whose zero V stops the gradient of its query and key)."""
    same = layer in order and blocker in order and order[layer][0] == order[blocker][0]
    return "beside it in the same layer" if same else "after it"


def _blocked(vanishing, alerts, views, diagnoses):
    """Vanishing-gradient alerts less those of starved layers and of layers before a layer with dead units or
    collapsed weights: no gradient passes back through those, which their own alert says (the earlier layer's
    text says so too)."""
    order = {layer: _order(view.info) for (layer, _), view in views.items()}
    blockers = _blockers(alerts)
    for d in diagnoses.values():
        if d.text.startswith("Nothing wrong"):
            continue  # (as many near-zero results as the threshold makes normal: nothing to explain)
        blocker = _blocker_after(d.layer, blockers, order)
        own = diagnoses.get((d.layer, "activation"))
        if (
            d.starved
            and d.role == "kernel_gradient"
            and own is not None
            and any(a.kind == "dead_units" for a in own.alerts)
        ):
            d.text += " Its output gradient dJ/dz is near zero because its own units are dead (its activation's alert)."
            continue
        if d.starved and d.role != "forward" and blocker is not None:
            d.text += (
                f" Its output gradient is near zero because {blocker.layer}, {_after(d.layer, blocker.layer, order)}, "
                f"passes almost none back ({blocker.kind.replace('_', ' ')})."
            )
    kept = []
    for a in vanishing:
        d = diagnoses.get((a.layer, a.role))
        if d is not None and d.starved:
            continue  # its kernel gradient is near zero because an operand from another layer is: said there
        blocker = _blocker_after(a.layer, blockers, order)
        if blocker is None:
            kept.append(a)
            continue
        d = diagnoses.get((a.layer, a.role))
        if d is not None:
            d.text += (
                f" Its gradients are tiny because {blocker.layer}, {_after(a.layer, blocker.layer, order)}, passes "
                f"almost none back ({blocker.kind.replace('_', ' ')})."
            )
    return kept


# An attention einsum's operands and the layers under the attention's path that make them (`metadata.OP_OPERANDS`).
_EINSUM_OPERAND_MAKERS = {"query": "query", "key": "key", "value": "value", "attention": "attention_scores"}


def _einsum_starved_by(t, info, d, alerts, recorded):
    """Why an attention einsum's units are dead: the operand(s) near zero in its near-zero cells' products, named
    with the projection that makes each. None where that projection's kernel is all zero: its collapsed-weights
    alert then says that this einsum's dead units follow from it, and the einsum raises none of its own (its
    diagnosis `d` says so)."""
    layer = d.layer
    shares = causes_lib.z_shares(t.near_zero_counts)
    near_zero = [n for n, key in zip(info.operands, ("first", "second")) if shares[key] >= causes_lib.DOMINANT]
    near_zero = near_zero or list(info.operands)
    base = layer.rsplit("/", 1)[0]
    makers = [f"{base}/{_EINSUM_OPERAND_MAKERS.get(n)}" for n in near_zero]
    makers = [m for m in makers if m in recorded]  # (Keras' Attention layers have no projections of their own)
    collapsed = [a for a in alerts if a.kind == "collapsed_weights" and a.severity >= WHOLLY_COLLAPSED]
    collapsed = [a for a in collapsed if a.layer in makers]
    if collapsed and len(collapsed) == len(makers):
        for a in collapsed:
            a.message += f" {layer}'s dead units (it reads its output) follow from it too."
        d.text += f" Its units are dead because {' and '.join(makers)}'s weights have collapsed (its alert)."
        return None
    operands = " and ".join(near_zero)
    verb = "is" if len(near_zero) == 1 else "are"
    made_by = f" (made by {', '.join(makers)})" if makers else ""
    return f"because {operands}{made_by} {verb} near zero: look at the layers that make it and what feeds them"


def _starved_without_producer(views, diagnoses, alerts):
    """A starved forward layer with dead units whose run has no input_features record for it (the summary ops,
    version 1, or roles chosen without it) cannot name where its zeros start: its dead units are alerted at the
    layer itself, as before, saying that their input is what is near zero."""
    recorded_inputs = any(role == "input_features" for _, role in diagnoses)
    for (layer, role), d in diagnoses.items():
        if role != "forward" or not d.starved or (layer, "input_features") in diagnoses:
            continue
        t = totals(views[(layer, role)].record_at(d.step)[1])
        dead, of, units = dead_count(t)
        if not of or dead / of < DEAD_UNITS:
            continue
        history = views[(layer, role)].history(d.step)
        since = held_since(d.step, history, lambda h: h.dead_share >= DEAD_UNITS)
        info = views[(layer, role)].info
        if info is not None and not has_kernel(info):
            why = _einsum_starved_by(t, info, d, alerts, {name for name, _ in views})
            if why is None:
                continue  # (folded into the collapsed projection that makes its operand)
        elif recorded_inputs:
            why = "because their input is near zero: the layer before it is likely dead (it is not recorded)"
        else:
            why = (
                "because their input is near zero: the layer before it is likely dead (record the input_features "
                "and activation roles to name it)"
            )
        alert = Alert(
            "dead_units",
            layer,
            role,
            since,
            dead / of,
            f"{dead} of {of} {units} are dead (near zero in every cell) "
            f"{dead_since(dead, of, since, d.step, history)}, {why}.",
            during_training=died_during_training(dead, of, d.step, history),
        )
        d.alerts.append(alert)
        d.text += " " + sentence(alert.message)
        alerts.append(alert)


def _dead_from_dead_inputs(views, diagnoses, alerts):
    """Dead units that are off because x.W is near zero (the activation cause), in a layer starved by a producer
    with a dead-unit alert of its own (its near-zero results come from that input), follow from the producer: their
    alert and text say so. Returns the ids of those alerts, which rank after the origins."""
    dead = {a.layer for a in alerts if a.kind == "dead_units"}
    follows = set()
    for a in alerts:
        forward = diagnoses.get((a.layer, "forward"))
        view = views.get((a.layer, "input_features"))
        producer = view.info.producer if view is not None and view.info is not None else ""
        if a.kind != "dead_units" or a.role != "activation" or forward is None or not forward.starved:
            continue
        d = diagnoses[(a.layer, a.role)]
        if producer not in dead - {a.layer}:
            continue
        if not causes_lib.inactive_because_input_is(totals(views[(a.layer, a.role)].record_at(d.step)[1])):
            continue
        note = f" Its input from {producer} is dead (see {producer}'s alert): this follows from it."
        a.message += note
        d.text += note
        follows.add(id(a))
    return follows


NO_GRADIENT = 0.99  # share of a layer's output gradients dJ/dz near zero for "no gradient reaches it"


def gets_no_gradient(t):
    """A kernel-gradient record (`table.Totals`) of a layer that no gradient reaches: dW is exactly zero and its
    output gradient dJ/dz (the second operand) is near zero in at least NO_GRADIENT of its values (an all-zero
    tensor's threshold is 0: it is all Z). A zero input (the first operand) zeroes dW too; that is not this: a layer
    whose input is near zero as well is starved by what makes it."""
    if t.cells <= 0 or not np.isfinite(t.result_magnitude) or any(c > 0 for c in t.nonfinite):
        return False
    shares = causes_lib.z_shares(t.counts)
    return t.result_magnitude == 0 and shares["second"] >= NO_GRADIENT and shares["first"] < NO_GRADIENT


def _no_gradient(views, diagnoses, alerts, order):
    """One alert for the layers that no gradient reaches at all (`gets_no_gradient`), unless their own dead units or
    a dead or collapsed layer after them already says why (`_blocked` then names it): at the one nearest the loss
    (latest in model order), naming the others. Returns the set of those layers."""
    explained = {a.layer for a in alerts if a.kind == "dead_units" and a.role in ("activation", "forward")}
    blockers = [order[a.layer] for a in _blockers(alerts)]
    starved = []
    for (layer, role), d in diagnoses.items():
        if role != "kernel_gradient" or layer in explained or any(b > order[layer] for b in blockers):
            continue
        if gets_no_gradient(totals(views[(layer, role)].record_at(d.step)[1])):
            starved.append(layer)
    if not starved:
        return set()
    starved.sort(key=lambda layer: order[layer], reverse=True)
    nearest = starved[0]
    d = diagnoses[(nearest, "kernel_gradient")]
    history = views[(nearest, "kernel_gradient")].history(d.step)
    since = held_since(d.step, history, lambda h: gets_no_gradient(h.totals))
    others = f"; so do {', '.join(starved[1:])} ({len(starved)} layers)" if len(starved) > 1 else ""
    alert = Alert(
        "no_gradient",
        nearest,
        "kernel_gradient",
        since,
        1.0,
        f"no gradient reaches this layer, since step {since}: every output gradient dJ/dz is zero, so dW = 0 and its "
        f"weights do not learn{others}. Nothing after it passes a gradient back: its output does not reach the "
        f"loss, or reaches it with weight 0 (loss_weights), or only through operations without a gradient, or "
        f"through a BatchNormalization or LayerNormalization whose gamma is zero (a residual block's last one, "
        f"zero-initialised on purpose, blocks it until gamma has trained: harmless if it is gone at the next "
        f"recorded step).",
    )
    alerts.append(alert)
    d.alerts.append(alert)
    for layer in starved:
        d = diagnoses[(layer, "kernel_gradient")]
        d.text += " " + (
            sentence(alert.message) if layer == nearest else f"No gradient reaches it at all: see {nearest}'s alert."
        )
    return set(starved)


WHOLLY_COLLAPSED = 0.99  # share of a kernel's products with a zero weight from which nothing else is news


def _downstream_of_zero_layer(alerts, order):
    """Dead output features alerted at a producer without records (`_dead_inputs`) that comes after a layer whose
    outputs are all zero (an all-zero kernel, every unit dead, or every output feature of a producer without
    records: a ReLU layer after a BatchNormalization at beta -10): they may be that layer's zeros carried on (an
    activation layer passes a zero input on as a zero whatever its slope), so their alert says so and ranks after
    it. Returns the ids of those alerts."""
    zero_layers = [  # (not a forward record's dead units: those of a layer that is itself fed zeros, as often)
        a
        for a in alerts
        if (a.kind == "collapsed_weights" and a.severity >= WHOLLY_COLLAPSED)
        or (a.kind == "dead_units" and a.severity >= WHOLLY_COLLAPSED and a.role in ("activation", "input_features"))
    ]
    follows = set()
    for a in alerts:
        if a.kind != "dead_units" or a.role != "input_features" or not a.seen_in:
            continue
        before = [z for z in zero_layers if z.layer != a.layer and order[z.layer] < order[a.seen_in]]
        if before:
            origin = max(before, key=lambda z: order[z.layer]).layer
            a.message = a.message.replace(_OFF_HINT, "")  # (what feeds it is zero: its beta is not the cause)
            a.message += (
                f" They may be {origin}'s zero outputs carried on (see {origin}'s alert, before it): look there first."
            )
            follows.add(id(a))
    return follows


def _cut_off_from_data(views, alerts):
    """Dead-unit alerts of layers whose input, through recorded producers that each read one input (a straight
    chain: the graph's producers stop at Add and Concatenate), comes from a layer with every unit dead since its
    first record, or an all-zero kernel: their inputs are made from biases alone, the same for every sample, so
    whatever their own records say (a VGG16 at bias -20 in block3_conv2: five layers after it "lost their units
    during training" under Adam, "because the bias outweighs x.W"), their dead units follow from that layer. Their
    alerts say so in the place of their own cause and rank after it; returns {id(alert)}."""
    wholly = {
        a.layer: a
        for a in alerts
        if a.severity >= WHOLLY_COLLAPSED
        and ((a.kind == "collapsed_weights") or (a.kind == "dead_units" and a.role == "activation"))
        and not a.during_training
    }
    producers = {
        layer: view.info.producer
        for (layer, role), view in views.items()
        if role == "input_features" and view.info is not None and view.info.producer_kind == "activation"
    }

    def origin(layer, seen=()):
        producer = producers.get(layer)
        if producer is None or producer in seen:
            return None
        return wholly.get(producer) or origin(producer, (*seen, layer))

    follows = set()
    for a in alerts:
        if a.kind != "dead_units" or a.role != "activation" or a.layer in wholly or "this follows from it" in a.message:
            continue
        cause = origin(a.layer)
        if cause is not None:
            a.message = a.message.replace(": a learning rate that is too high is a common cause)", ")")
            own = re.match(r"(.*? since step \d+(?:, up from \d+ then)?(?: \([^)]*\))?)", a.message)
            a.message = (own.group(1) + "." if own else a.message) + (
                f" Its input does not depend on the data: {cause.layer}, before it, has "
                f"{'an all-zero kernel' if cause.kind == 'collapsed_weights' else 'all its units dead'} since step "
                f"{cause.first_step} (see its alert), and the layers between compute from their biases alone; this "
                f"follows from it."
            )
            a.during_training = False
            follows.add(id(a))
    return follows


def _fold_into_collapsed(views, diagnoses, alerts):
    """A layer whose kernel is all but entirely zero (collapsed-weights severity, the zero share, at least
    WHOLLY_COLLAPSED) has dead units and near-zero results because of it: its own dead-unit and excess-near-zero
    alerts, and the dead output features a consumer's input shows, are left out of the list (the records' texts keep
    them), and its collapsed-weights alert says that they follow from it. (Where only some columns are zero, which
    units are dead, and since when, is news.)"""
    collapsed = {a.layer: a for a in alerts if a.kind == "collapsed_weights" and a.severity >= WHOLLY_COLLAPSED}
    folded = [a for a in alerts if a.layer in collapsed and a.kind in ("dead_units", "excess_near_zero")]
    for a in folded:
        alerts.remove(a)
        d = diagnoses.get((a.layer, a.role))
        if d is not None and a in d.alerts:
            d.alerts.remove(a)
    words = {"dead_units": "dead units", "excess_near_zero": "near-zero results"}
    for layer, alert in collapsed.items():
        named = [w for kind, w in words.items() if any(a.kind == kind and a.layer == layer for a in folded)]
        if named:
            alert.message += f" Its {' and '.join(named)} follow from it."
        step = diagnoses[(layer, alert.role)].step
        alert.message += " " + _why_all_zero(views.get((layer, "kernel_gradient")), alert.first_step, step)


def _why_all_zero(kernel_gradient, since, step):
    """What keeps a kernel all zero, and the fix: where it was all zero at every recorded step from `since` to
    `step` (a later one) while its gradient dW is not zero, it does not train; else where it comes from."""
    picked = kernel_gradient.record_at(step) if kernel_gradient is not None else None
    if picked is not None and picked[0] > since:
        mean_dw = mean_abs_gradient(totals(picked[1])) or 0.0
        if mean_dw > 0:
            return (
                f"It has stayed all zero since step {since} although its gradient dW is not zero (mean |dW| "
                f"{mean_dw:.1e} at step {picked[0]}): the layer does not train (trainable=False, or its weights "
                f"left out of the optimizer). Let it train, or give it a non-zero kernel_initializer."
            )
    return (
        "An all-zero kernel: a zeros kernel_initializer, weights that were never loaded, or a layer frozen at zero "
        "(trainable=False)."
    )


def _dead_alert(diagnoses, layer):
    """The dead-unit alert of `layer`'s activation record, or None."""
    own = diagnoses.get((layer, "activation"))
    return next((a for a in own.alerts if a.kind == "dead_units"), None) if own is not None else None


def _nothing_wrong(d):
    """The text of a "Nothing wrong" line after that verdict (capitalised), or None for any other line."""
    for verdict in ("Nothing wrong here: ", "Nothing wrong: "):
        if d.text.startswith(verdict):
            return sentence(d.text[len(verdict) :])
    return None


def _around_dead_activation(views, diagnoses):
    """Lines that a threshold relative to a tensor's own values calls "nothing wrong" next to dead units whose
    activation scales everything down without making it exactly zero (a saturated sigmoid, a flat gelu: ~1e-8 of
    normal): the layer's activation-gradient and kernel-gradient lines, and the input-features, forward and
    kernel-gradient lines of a layer whose input comes from a layer with every unit dead (its activation's alert),
    say so instead."""
    for (layer, role), d in diagnoses.items():
        rest = _nothing_wrong(d)
        if rest is None:
            continue
        own = _dead_alert(diagnoses, layer)
        if own is not None and role == "activation_gradient":
            t = totals(views[(layer, role)].record_at(d.step)[1])
            flat = causes_lib.z_shares(t.counts)["second"]
            d.text = (
                f"{rest} But its units are dead (its activation's alert): f'(z) is near zero in {flat:.0%} of cells "
                f"and scales dJ/dz down there, which a threshold relative to dJ/dz's own values does not call near "
                f"zero."
            )
        elif own is not None and role == "kernel_gradient":
            d.text = (
                f"{rest} But {own.severity:.0%} of its units are dead (its activation's alert): their weights get "
                f"almost no gradient, since f'(z) scales their dJ/dz down."
            )
        elif role in ("input_features", "forward", "kernel_gradient"):
            info = views[(layer, "input_features")].info if (layer, "input_features") in views else None
            producer = info.producer if info is not None else None
            dead = _dead_alert(diagnoses, producer) if producer else None
            if dead is not None and dead.severity >= WHOLLY_COLLAPSED:
                d.text = (
                    f"{rest} But its input comes from {producer}, whose units are all dead (its alert): their "
                    f"outputs are tiny everywhere, which a threshold relative to the input's own values does not call "
                    f"near zero."
                )


def _dying_during_training(alerts, order):
    """One alert for a run in which MANY_DYING or more layers' units died during training (`Alert.during_training`):
    a cause common to them all (the learning rate, most often), named once and first, at the layer that lost its
    units first; None for fewer. The layers' own alerts stay."""
    dying = [a for a in alerts if a.kind == "dead_units" and a.during_training]
    if len(dying) < MANY_DYING:
        return None
    first = min(dying, key=lambda a: (a.first_step, order[a.layer]))
    return Alert(
        "dying_during_training",
        first.layer,
        first.role,
        first.first_step,
        max(a.severity for a in dying),
        f"{len(dying)} layers lost most of their units during training (most of their dead units were alive at "
        f"the first recorded step): one cause behind them all, most often a learning rate that is too high. The "
        f"first to lose them: {first.layer}, since step {first.first_step}. Lower the learning rate (or warm it "
        f"up) before looking at single layers.",
        seen_in=first.seen_in,
    )


def _non_finite_in_many(alerts, order, views, diagnoses):
    """One alert for non-finite values in MANY_NON_FINITE or more layers (a training that diverged: every weight is
    NaN once one update was), in the place of theirs in the run's list (each layer's diagnosis keeps its own): at
    the first layer in model order of those with the earliest first step, naming the last recorded step without
    them, where what led up to them shows. The run's other alerts that began at or after that step read NaN-filled
    records (NaN is classed near zero): they are left out of the list; those that began before stay (a cause, it
    may be). Returns the alerts, changed or not."""
    non_finite = [a for a in alerts if a.kind == "non_finite"]
    layers = {a.layer for a in non_finite}
    if len(layers) < MANY_NON_FINITE:
        return alerts
    first = min(non_finite, key=lambda a: (a.first_step, order[a.layer]))
    d = diagnoses[(first.layer, first.role)]
    before = [h.step for h in views[(first.layer, first.role)].history(d.step) if h.step < first.first_step]
    where = (
        f"The last recorded step without them is {max(before)}: diagnose that step (report --step {max(before)}, or "
        f"that step in the tab) for what led up to them; the records since read NaN."
        if before
        else "No recorded step is without them."
    )
    merged = Alert(
        "non_finite",
        first.layer,
        first.role,
        first.first_step,
        1.0,
        f"non-finite values (NaN or inf) in {len(layers)} layers, since step {first.first_step} (the first in model "
        f"order: {first.layer}): the training diverged, or one layer made them and the others took them in. {where}",
    )
    return [merged] + [a for a in alerts if a.kind != "non_finite" and a.first_step < first.first_step]


def diagnose_run(layers, step=None):
    """Diagnoses every (layer, role) of a run at `step` (default: each layer's latest record).

    `layers`: {(layer, role): view} in model order, where a view has `info` (`metadata.PluginMetadata`),
    `record_at(step)` -> `(step, Record or Totals)` of the latest record at or before `step` (latest for None),
    or None, and `history(step)` -> `StepSummary`s of the records before `step` (`loader.LayerSeries` is one).
    Returns (diagnoses, alerts), alerts ranked: non-finite values first, then the run-level alert of units dying
    during training in many layers (`_dying_during_training`), then by severity, earliest step, and model order
    (so that where a problem starts leads the layers it starves).
    """
    diagnoses, alerts = {}, []
    for (layer, role), view in layers.items():
        picked = view.record_at(step)
        if picked is None:
            continue
        at_step, record = picked
        d = diagnose(record, layer=layer, role=role, step=at_step, info=view.info, history=view.history(at_step))
        diagnoses[(layer, role)] = d
        alerts.extend(d.alerts)
    joined = _dead_inputs(layers, diagnoses, alerts)
    _unscaled_inputs(layers, diagnoses, alerts)
    _fold_into_collapsed(layers, diagnoses, alerts)
    _starved_without_producer(layers, diagnoses, alerts)
    follows = _dead_from_dead_inputs(layers, diagnoses, alerts)
    if any(a.kind == "dead_units" and id(a) not in joined for a in alerts):
        follows |= joined  # (a join's zeros come from what it joins: their alerts lead)
    order = {layer: view.info.index if view.info is not None else 0 for (layer, _), view in layers.items()}
    for a in alerts:
        if a.layer not in order:  # a producer without records of its own: just before the layer it feeds
            order[a.layer] = order.get(a.seen_in, 0) - 0.5
    no_gradient = _no_gradient(layers, diagnoses, alerts, order)
    vanishing = _blocked(_vanishing_run(layers, diagnoses), alerts, layers, diagnoses)
    vanishing = [a for a in vanishing if a.layer not in no_gradient]  # (its scale is 0: not small, none at all)
    alerts.extend(vanishing)
    for a in vanishing:
        d = diagnoses[(a.layer, a.role)]
        d.alerts.append(a)
        d.text = ("" if d.text.startswith("Nothing wrong") else d.text + " ") + sentence(a.message)
    follows |= _downstream_of_zero_layer(alerts, order) | _cut_off_from_data(layers, alerts)
    _around_dead_activation(layers, diagnoses)
    dying = _dying_during_training(alerts, order)
    if dying is not None:
        alerts.append(dying)
    alerts = _non_finite_in_many(alerts, order, layers, diagnoses)
    alerts.sort(
        key=lambda a: (
            a.kind != "non_finite",
            a.kind != "dying_during_training",
            id(a) in follows,
            -round(a.severity, 2),
            a.first_step,
            order[a.layer],
            a.layer,
        )
    )
    return list(diagnoses.values()), alerts
