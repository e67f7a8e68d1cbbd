"""Diagnosis: where near-zero values start, why, and ranked alerts, from recorded per-unit totals.

Inputs are records (`metadata.Record`) read through their layer totals (`table.Totals`). Every figure is a layer
total unless it says per unit. "Products" are the operand pairs that make up a result cell; shares are of products.
A cause that would print as 0% is never named.

Causes of near-zero results (matmul roles), from the products inside near-zero result cells:
  * near-zero first operand (ZP, ZZ, ZN) or second operand (PZ, ZZ, NZ): named when the share in near-zero
    cells exceeds the same share over all cells by LIFT (1.25x) and 10 points, or reaches DOMINANT (90%). After a
    ReLU half of every input is an exact zero everywhere, and a percentile threshold puts 1 - confidence of each
    operand in Z by construction: only a share above what is normal for the layer explains anything.
  * cancellation in near-zero cells (PP + NN - PN - NP at least CANCELLATION_RATIO = 4x what those results could
    total): named only for a layer that has an alert; every healthy layer's near-zero results are partly cancelled
    sums, so it separates nothing there.

Alerts (severity in [0, 1]; `first_step` = the first recorded step from which the alert's condition held without
a break; `layer` = where the problem starts):
  * dead units (activation role): units whose activation is inactive (`activations.py`: |f'(z)| <= 1% of its
    largest slope: ReLU off, sigmoid/tanh saturated, silu/gelu "flat") in >= 99% of their cells, for >= DEAD_UNITS
    (10%) of the units. The cause says which sets the sign of z in those cells: the bias outweighing x.W (the bias
    on the inactive side, x.W alone active in >= `causes.BIAS_TURNS` (5%) of the dead units' inactive cells: a unit
    active in a few percent of its cells is alive), x.W near zero (a dead input) with the bias deciding, or x.W
    itself. Severity = dead share. Not raised where the loss reads
    the layer's logits (metadata `loss_reads_logits`: Keras' cross-entropy on a sigmoid or softmax output): there
    dJ/dz = p - y whatever f'(z), and a confident classifier's output is saturated almost everywhere.
  * dead units (input features, across layers): >= 10% of a layer's input features near zero in every row. Named at
    the layer that produced them (from the Keras graph, through Flatten/pooling/Dropout/padding): an Activation,
    ReLU or BatchNormalization layer (e.g. `conv2_block1_1_relu`) gets the alert; a recorded layer with an
    activation of its own reports it in its activation record instead; the model's input never alerts.
  * dead units (forward, no activation involved): results near zero in >= 99% of a unit's cells for >= 10% of
    the units, unless the layer is starved (>= 90% of its near-zero cells' products have a near-zero input): a
    layer fed by dead units is not dead itself, and its text names the producer ("near-zero input from dense_2").
  * every dead-unit alert: where fewer units were dead at its first step than now, the text says how many
    ("since step 16, up from 6 then") and, where at most half as many were dead at the first recorded step, that
    most died during training, for which a learning rate too high is a common cause (not the initialisation).
  * cancellation (forward, input gradient): sum |result| <= CANCELLED (1e-3) x sum |product| over the products with
    no near-zero operand (exact: within PP, PN, NP, NN every product has one sign). A healthy layer keeps about
    1/sqrt(k) of k random-signed products; a layer whose every result cancels keeps ~1e-8. Scale-free: a
    percentile threshold, relative to the layer's own results, cannot see it.
  * excess near-zero results (matmul roles): the near-zero share (less non-finite results, and less kernel-gradient
    entries that only meet SAME padding, which are zero by construction and said so) exceeds what the threshold
    makes normal (1 - confidence) by EXCESS (20 points). Not raised for a starved layer; a kernel gradient is
    starved when >= 90% of its near-zero cells' products have either operand near zero (dead input features, or
    units after it that pass no gradient back: both made by other layers, which raise their own alerts).
  * vanishing gradients (kernel_gradient, across layers): on mean |dW| / mean |W| (relative to the layer's own
    weights, because BatchNorm makes a layer's output invariant to its weights' scale, so raw gradient magnitudes
    are not comparable across layers), gradients vanish going backward: a layer is named when the largest relative
    scale of the layers after it is at least VANISHING_RATIO (100x) the largest of it and all layers before it.
    Measured (bench/gradient_scales.py, 30 Adam steps): that ratio is at most 0.08 on ResNet50, 1.5 on
    MobileNetV2, 7.5 on a 2-block Transformer, 8.9 on a ReLU MLP, and 1e6 at the first layer of an 8-layer sigmoid
    MLP (whose healthy-looking last layers stay quiet). A plain "smaller than the largest layer" rule is wrong on
    real models: ResNet50's smallest relative scales are 4000x below its largest, in its last stage. Version-1
    records (no |W|) keep the old rule: sum(|pair sums|) / cells at most 1/100 of the largest layer's. Severity =
    log10(ratio) / 4, at most 1.
  * no gradient (kernel_gradient, across layers): dW exactly zero and >= NO_GRADIENT (99%) of the output gradient
    dJ/dz near zero, its input not (`run.gets_no_gradient`: no gradient reaches the layer at all: a loss weight of
    0, an output the loss does not read; a layer fed zeros is starved by what makes them), for layers without dead
    units of their own and without a dead or collapsed layer after them (which say why): one alert, at the one
    latest in model order (nearest the loss), naming the others; no vanishing-gradient alert for them (their scale
    is 0: not small, absent). Severity 1.
  * collapsed weights (forward): >= COLLAPSED (50%) of the kernel's products involve zero weights (a zero
    threshold), no weight non-finite; only where the second operand is a kernel (attention's query x key and
    attention x value einsums multiply two activations: a zero key is its projection's doing, and such an einsum
    is starved by either operand). Where >= 99% do (`run.WHOLLY_COLLAPSED`: an all-zero kernel), the layer's own
    dead-unit and excess-near-zero alerts follow from it: they are folded into it ("Its dead units and near-zero
    results follow from it"), one alert for one cause.
  * unscaled input (input_features, from the latest record with unit detail): a feature of the data (producer: the
    model's input, or a join of inputs) whose mean |x| is `run.UNSCALED` (1000x) the median feature's or more,
    among the features not near zero in most rows; the dead units of the layer reading it say so. Severity =
    log10(ratio) / 5, at most 1.
  * non-finite values in an operand or the result (severity 1, always first). In MANY_NON_FINITE (3) or more layers
    (a diverged training: one NaN update makes every weight NaN) the run's list holds one alert for them all, at the
    first layer in model order, naming the last recorded step without them (diagnose it for what led up to them);
    the run's other alerts that began at or after their first step read NaN-filled records and are left out.
  * dead output features at a producer without records, after a layer whose outputs are all zero (an all-zero
    kernel or every unit dead) in model order: "They may be <layer>'s zero outputs carried on" (BatchNormalization
    and an activation pass a zero input on as zero, whatever the slope), ranked after it.
  * dead units (activation) of a layer whose input comes, through recorded producers that each read one input,
    from a layer with every unit dead since its first record or an all-zero kernel: the input is made from biases
    alone, the same for every sample; "Its input does not depend on the data: <layer> ...; this follows from it"
    replaces their own cause, they rank after it and count for no learning-rate alert (`run._cut_off_from_data`).
  * attention einsums: dead units of an einsum whose near-zero operand comes from an all-zero query, key or value
    projection are folded into the projection's collapsed-weights alert; otherwise its alert names the near-zero
    operand and the projection that makes it.
Ranking: non-finite first, then origins before what follows from them, then severity, earliest step, model order
(an origin comes before what it starves). Dead units follow from their producer when x.W is near zero in their
inactive cells and their layer is starved by a producer that has a dead-unit alert itself (all of a ReLU layer's
inputs dead, its bias alone decides): their alert says so and ranks after the producer's.

Non-finite values: NaN is classed Z, so the rules that rest on Z discount the non-finite result fraction (dead
units, excess near-zero results) and collapsed weights is not raised with a non-finite weight; the non-finite
alert says what happened.

Version-1 records (no |result|, |W|, padding, activation or input-feature records) are diagnosed as before: the
rules that need the new columns are skipped, and vanishing gradients use the old measure.

Modules: `table.py` (the summary table every reader keeps), `causes.py` (causes and their wording), `rules.py`
(one record), `run.py` (across layers).
"""

from tb_matmul_explainer.explain.causes import CANCELLATION_RATIO, DOMINANT, LIFT, LIFT_POINTS  # noqa: F401
from tb_matmul_explainer.explain.rules import (  # noqa: F401
    CANCELLED,
    COLLAPSED,
    DEAD_UNITS,
    EXCESS,
    Alert,
    Diagnosis,
    diagnose,
    expected_near_zero_fraction,
)
from tb_matmul_explainer.explain.run import (  # noqa: F401
    NO_GRADIENT,
    V1_VANISHING_RATIO,
    VANISHING_RATIO,
    diagnose_run,
    gradient_scale,
    relative_scale,
    vanishing_gradient_alerts,
)
from tb_matmul_explainer.explain.table import (  # noqa: F401  (the summary table)
    DEAD_CELLS,
    SeriesTable,
    StepSummary,
    Totals,
    dead_count,
    dead_rows,
    index_at,
    near_zero_fraction,
    step_summary,
    summarise,
    totals,
)
