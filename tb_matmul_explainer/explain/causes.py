"""Why a record's results are near zero, read from its pairs (`table.Totals`), and how each cause is worded.

Causes are shares of the products inside near-zero result cells (or, for the activation role, of the inactive
cells). A cause that would print as 0% is never named (MIN_SHARE).
"""

import math

import numpy as np

from tb_matmul_explainer import metadata

LIFT = 1.25
LIFT_POINTS = 0.10
DOMINANT = 0.90
CANCELLATION_RATIO = 4.0
MIN_SHARE = 0.005

T = {t: i for i, t in enumerate(metadata.TERMS)}
FIRST_Z = [T["ZP"], T["ZZ"], T["ZN"]]
SECOND_Z = [T["PZ"], T["ZZ"], T["NZ"]]
NO_Z = [T["PP"], T["PN"], T["NP"], T["NN"]]
_SIGN = (1, 0, -1)  # of the classes P, Z, N


def z_shares(counts):
    """Shares of products with a near-zero first operand, second operand, either."""
    total = counts.sum()
    if total <= 0:
        return {"first": 0.0, "second": 0.0, "either": 0.0}
    return {"first": counts[FIRST_Z].sum() / total, "second": counts[SECOND_Z].sum() / total,
            "either": 1.0 - counts[NO_Z].sum() / total}


def operand_names(info):
    first, second = info.operands if info is not None else ("first operand", "second operand")
    return first.replace("_", " "), second.replace("_", " ")


def cancellation_in_near_zero(t):
    """(ratio of the near-zero cells' cancelling magnitude to the most those results could total, whose signs
    cancel: "first", "second" or "both")."""
    s = t.near_zero_sums
    pp, pn, np_, nn = s[T["PP"]], s[T["PN"]], s[T["NP"]], s[T["NN"]]
    magnitude = pp + nn - pn - np_
    bound = t.thresholds[2] * t.near_zero_cells
    ratio = math.inf if bound <= 0 and magnitude > 0 else (magnitude / bound if bound > 0 else 0.0)
    matched = {"first": min(pp, -np_) + min(-pn, nn), "second": min(pp, -pn) + min(-np_, nn),
               "both": min(pp + nn, -(np_ + pn))}
    return ratio, max(matched, key=matched.get)


def products_magnitude(t):
    """Sum of |product| over the products with no near-zero operand, all cells: exact, since within PP, PN, NP
    and NN every product has one sign."""
    s = t.sums
    return float(s[T["PP"]] + s[T["NN"]] - s[T["PN"]] - s[T["NP"]])


def kept_share(t):
    """Sum of |result| / `products_magnitude`: ~1 when products add up, ~1/sqrt(k) for k random-signed products,
    ~0 when every result cancels. NaN where not recorded (version 1) or without products."""
    magnitude = products_magnitude(t)
    if not magnitude > 0 or not np.isfinite(t.result_magnitude):
        return math.nan
    return float(t.result_magnitude) / magnitude


def near_zero_causes(t, info, with_cancellation):
    """{cause label: share} for a matmul role's near-zero results."""
    first, second = operand_names(info)
    causes = {}
    if t.near_zero_cells <= 0:
        return causes
    near, overall = z_shares(t.near_zero_counts), z_shares(t.counts)
    for key, label in (("first", f"near-zero {first}"), ("second", f"near-zero {second}")):
        lifted = near[key] >= LIFT * overall[key] and near[key] >= overall[key] + LIFT_POINTS
        if (lifted or near[key] >= DOMINANT) and near[key] >= MIN_SHARE:
            causes[label] = float(near[key])
    ratio, which = cancellation_in_near_zero(t)
    no_z_share = 1.0 - near["either"]
    if with_cancellation and ratio >= CANCELLATION_RATIO and no_z_share >= MIN_SHARE:
        label = {"first": f"{first} +/- cancelling", "second": f"{second} +/- cancelling",
                 "both": "both operands +/- cancelling"}[which]
        causes[label] = float(no_z_share)
    return causes


def because(causes):
    """"mostly because of A (60% of their products), B (...)" or ""."""
    if not causes:
        return ""
    parts = [f"{name} ({share:.0%} of their products)" for name, share in sorted(causes.items(), key=lambda kv: -kv[1])]
    return "mostly because of " + ", ".join(parts)


def inactive_word(activation):
    """How an inactive activation is called: "off" for the ReLU family, "saturated" for the others."""
    return "off" if activation in ("relu", "relu6", "leaky_relu", "elu", "selu", "celu", "softplus", "gelu",
                                   "silu", "swish", "mish", "hard_silu", "hard_swish", "threshold") else "saturated"


def activation_cause(t, activation):
    """Why a layer's activation is inactive in its dead units: which of x.W (the matmul part m) and the bias b set
    the sign of z there, from the dead rows' inactive cells per (class of m, class of b)."""
    counts = t.dead_near_zero_counts if t.dead_near_zero_counts is not None and t.dead_near_zero_counts.sum() > 0 \
        else t.near_zero_counts
    sums = t.near_zero_sums
    total = counts.sum()
    if total <= 0:
        return ""
    votes = {"bias": 0.0, "zero": 0.0, "matmul": 0.0}
    signs = {}
    for i, m_sign in enumerate(_SIGN):
        for j, b_sign in enumerate(_SIGN):
            k = 3 * i + j
            z_sign = int(np.sign(sums[k])) or -1
            signs[z_sign] = signs.get(z_sign, 0.0) + counts[k]
            if m_sign == z_sign:
                votes["matmul"] += counts[k]
            elif b_sign == z_sign:
                votes["bias" if m_sign else "zero"] += counts[k]
    z_sign = max(signs, key=signs.get)
    side = "negative" if z_sign < 0 else "positive"
    cause = max(votes, key=votes.get)
    share = votes[cause] / total
    text = {"bias": f"pre-activations are {side} because the bias outweighs x.W",
            "zero": f"x.W is near zero (its input or weights are) and the bias makes pre-activations {side}",
            "matmul": f"x.W is {side} for almost every input (the weights point {'away from' if z_sign < 0 else 'along'}"
                      f" the data)"}[cause]
    return f"{text} ({share:.0%} of the inactive cells)"
