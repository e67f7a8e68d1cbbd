"""The recorder's constants, its option checks and its warning class."""

from tb_matmul_explainer import aggregates, metadata

DEFAULT_RUN = "train"
# Tag prefix of the text summaries naming the matmuls that are not recorded (one per layer path, the reason as text).
NOT_RECORDED_TAG_PREFIX = "matmul_explainer/not_recorded/"
# ... and the recorded layers whose records miss part of a step (`PartlyRecordedWarning`), one per layer.
PARTLY_RECORDED_TAG_PREFIX = "matmul_explainer/partly_recorded/"
# The matmul roles plus the steps around them (metadata.py): what makes a layer's inputs and outputs near zero.
DEFAULT_ROLES = ("forward", "kernel_gradient", "activation", "activation_gradient", "input_features")
# near_zero="sampled" (the default): batch rows (dense), batch positions (convolutions) or batch entries (attention's
# einsums: each holds every query and key position of every head) whose near-zero cells are explained, the totals
# rescaled to the whole batch (see `aggregates`); all-cells totals are always exact.
DEFAULT_NEAR_ZERO_SAMPLE = {"dense": 32, "conv": 1024, "attention": 8}


class UnsupportedLayerWarning(UserWarning):
    """A layer (or a matmul inside one) that the recorder cannot explain; the message names it and the reason."""


class PartlyRecordedWarning(UnsupportedLayerWarning):
    """A recorded layer whose records miss part of a step (called several times, or no gradient reached it);
    the message names it and what is missing."""


def check_options(
    *,
    roles,
    confidence,
    thresholds,
    threshold_method,
    near_zero,
    sample_size,
    near_zero_sample_size,
    seed,
    max_units,
    jit=False,
    share_records=True,
):
    """Validates the recorder's options; returns the normalised roles and the `aggregates.Options` (its
    near_zero_sample_size None where the per-kind default applies)."""
    roles = (roles,) if isinstance(roles, str) else tuple(roles)
    if not roles:
        raise ValueError("roles must name at least one role")
    for role in roles:
        if role not in metadata.ROLES:
            raise ValueError(f"roles must be among {metadata.ROLES}, got {role!r}")
    if not isinstance(share_records, bool):
        raise ValueError(f"share_records must be True or False, got {share_records!r}")
    if max_units is not None and (isinstance(max_units, bool) or not isinstance(max_units, int) or max_units < 1):
        raise ValueError(f"max_units must be a positive int, got {max_units!r}")
    options = aggregates.Options(
        confidence=confidence,
        thresholds=thresholds,
        threshold_method=threshold_method,
        near_zero=near_zero,
        sample_size=sample_size,
        near_zero_sample_size=near_zero_sample_size,
        seed=seed,
        jit=jit,
    )
    return tuple(r for r in metadata.ROLES if r in roles), options
