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
    return {
        "first": counts[FIRST_Z].sum() / total,
        "second": counts[SECOND_Z].sum() / total,
        "either": 1.0 - counts[NO_Z].sum() / total,
    }


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
    matched = {
        "first": min(pp, -np_) + min(-pn, nn),
        "second": min(pp, -pn) + min(-np_, nn),
        "both": min(pp + nn, -(np_ + pn)),
    }
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
        label = {
            "first": f"{first} +/- cancelling",
            "second": f"{second} +/- cancelling",
            "both": "both operands +/- cancelling",
        }[which]
        causes[label] = float(no_z_share)
    return causes


def because(causes):
    """ "mostly because of A (60% of their products), B (...)" or ""."""
    if not causes:
        return ""
    parts = [f"{name} ({share:.0%} of their products)" for name, share in sorted(causes.items(), key=lambda kv: -kv[1])]
    return "mostly because of " + ", ".join(parts)


def inactive_word(activation):
    """How an inactive activation is called: "off" for the ReLU family, "flat" for the smooth ones whose slope is
    also near zero around their minimum (silu's at z = -1.28: inactive there is not the negative tail alone),
    "saturated" for the others."""
    if activation in ("gelu", "silu", "swish", "mish", "hard_silu", "hard_swish"):
        return "flat"
    if activation in ("relu", "relu6", "leaky_relu", "elu", "selu", "celu", "softplus", "threshold"):
        return "off"
    return "saturated"


def _inactive_shares(t):
    """(sign of z, {sign: share of m = x.W}, {sign: share of b}) over the dead rows' inactive cells (all inactive
    cells where the record names no dead rows), or None without any."""
    counts = (
        t.dead_near_zero_counts
        if t.dead_near_zero_counts is not None and t.dead_near_zero_counts.sum() > 0
        else t.near_zero_counts
    )
    total = counts.sum()
    if total <= 0:
        return None
    by_m = np.asarray(counts, np.float64).reshape(3, 3)  # [class of m, class of b]
    m_share = {sign: by_m[i].sum() / total for i, sign in enumerate(_SIGN)}
    b_share = {sign: by_m[:, j].sum() / total for j, sign in enumerate(_SIGN)}
    return (-1 if t.near_zero_sums.sum() <= 0 else 1), m_share, b_share


def inactive_because_input_is(t):
    """Whether x.W is near zero in at least half of the dead units' inactive cells (their input is dead, or their
    weights are zero): `activation_cause`'s "x.W is near zero ... and the bias decides"."""
    shares = _inactive_shares(t)
    return shares is not None and not _bias_outweighs(*shares) and shares[1][0] >= 0.5


BIAS_TURNS = 0.05  # share of dead units' inactive cells where x.W alone is active: the bias is what turns them off


def _bias_outweighs(z_sign, m_share, b_share):
    # A dead unit is inactive in 99% of its cells: x.W alone active in a few percent of them would keep it alive
    # (a VGG16 conv at bias -5: x.W active in 19% of the cells, 106 of its 114 dead units alive at bias 0).
    return b_share[z_sign] >= 0.5 and m_share[-z_sign] >= BIAS_TURNS


def activation_cause(t, activation):
    """Why a layer's activation is inactive in its dead units, from the dead rows' inactive cells per (class of
    the matmul part m = x.W, class of the bias b): on which side z is (the sign of their z sums), then
      * the bias outweighs x.W: the bias is on that side and x.W is on the other in at least BIAS_TURNS of the cells
        (without the bias those cells would be active, and a unit active in a few percent of its cells is alive);
      * x.W is near zero (a dead input, or zero weights) and the bias decides: m in Z in at least half the cells
        (where the bias is too, z is near zero: ReLU's slope at 0 is 0);
      * else x.W itself is on that side."""
    shares = _inactive_shares(t)
    if shares is None:
        return ""
    z_sign, m_share, b_share = shares
    side = "negative" if z_sign < 0 else "positive"
    if _bias_outweighs(z_sign, m_share, b_share):
        return (
            f"pre-activations are {side} because the bias outweighs x.W (x.W alone is on the active side in "
            f"{m_share[-z_sign]:.0%} of the inactive cells); look at the bias: its initialiser "
            f"(bias_initializer), or what pushed it there"
        )
    if m_share[0] >= 0.5 and b_share[0] >= 0.5:
        return (
            f"x.W is near zero in {m_share[0]:.0%} of the inactive cells (its input or weights are) and so is the "
            "bias: pre-activations are near zero, where the activation is off"
        )
    if m_share[0] >= 0.5:
        return (
            f"x.W is near zero in {m_share[0]:.0%} of the inactive cells (its input or weights are) and the bias "
            f"makes pre-activations {side}"
        )
    return (
        f"x.W is {side} in {m_share[z_sign]:.0%} of the inactive cells (the weights point "
        f"{'away from' if z_sign < 0 else 'along'} the data)"
    )
