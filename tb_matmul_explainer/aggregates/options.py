"""The options of the aggregate kernels: one validated, immutable `Options`, shared by the kernels, the `summary`
ops and the Keras recorder so that all three accept and reject the same values."""

import dataclasses
import numbers

import tensorflow as tf

from tb_matmul_explainer import threshold as threshold_lib
from tb_matmul_explainer import validation

ROLES = ("forward", "kernel_gradient", "input_gradient")
THRESHOLD_METHODS = ("sampled", "exact")
NEAR_ZERO_MODES = ("exact", "sampled", "off")
NEAR_ZERO_SAMPLE_SIZE = 1024


@dataclasses.dataclass(frozen=True)
class Options:
    """How the per-unit totals are computed; every field is checked (and normalised) on construction, and a bad
    value raises TypeError or ValueError naming the argument.

    confidence: in [0, 1]; derives the thresholds not given (see `threshold`).
    thresholds: None, one number (both operands and the result) or (first, second, result); stored as that triple,
      each entry None (derived from `confidence`), a non-negative float or a scalar tensor.
    threshold_method: "sampled" (`threshold.sampled_threshold`) or "exact" (O(N) percentile).
    near_zero: "exact", "sampled" (estimated from `near_zero_sample_size` batch rows or positions) or "off".
    sample_size: values sampled per threshold (int >= 1; None: `threshold.DEFAULT_SAMPLE_SIZE`).
    seed: None, an int or a shape-[2] integer tensor (stateless draws; None: unseeded).
    near_zero_sample_size: batch rows (dense) or (batch, position) pairs (convs) for near_zero="sampled"; int >= 1,
      or None for the caller's default (the kernels: NEAR_ZERO_SAMPLE_SIZE; the Keras recorder: one per layer kind).
    jit: run the kernels XLA-compiled (see `jit`); the values are the same either way.
    """

    confidence: float = 0.95
    thresholds: tuple = None
    threshold_method: str = "sampled"
    near_zero: str = "exact"
    sample_size: int = None
    seed: object = None
    near_zero_sample_size: int = NEAR_ZERO_SAMPLE_SIZE
    jit: bool = True

    def __post_init__(self):
        checked = {
            "confidence": validation.check_confidence(self.confidence),
            "thresholds": validation.parse_thresholds(self.thresholds, 3, "thresholds"),
            "threshold_method": _one_of(self.threshold_method, THRESHOLD_METHODS, "threshold_method"),
            "near_zero": _one_of(self.near_zero, NEAR_ZERO_MODES, "near_zero"),
            "sample_size": (
                threshold_lib.DEFAULT_SAMPLE_SIZE
                if self.sample_size is None
                else _positive_int(self.sample_size, "sample_size")
            ),
            "seed": _seed(self.seed),
            "near_zero_sample_size": (
                None
                if self.near_zero_sample_size is None
                else _positive_int(self.near_zero_sample_size, "near_zero_sample_size")
            ),
            "jit": _bool(self.jit, "jit"),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @classmethod
    def of(cls, options=None, **fields):
        """`options` (an `Options`) as it is, or an `Options` made from keyword `fields`; not both."""
        if options is None:
            return cls(**fields)
        if not isinstance(options, cls):
            raise TypeError(f"options must be an aggregates.Options, got {type(options).__name__}")
        if fields:
            raise TypeError(f"give options or keyword options, not both: got options and {sorted(fields)}")
        return options

    @property
    def near_zero_rows(self):
        """The near-zero sample size the kernels use (`near_zero_sample_size`, or its default when None)."""
        return NEAR_ZERO_SAMPLE_SIZE if self.near_zero_sample_size is None else self.near_zero_sample_size


def _one_of(value, allowed, name):
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _bool(value, name):
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def _seed(seed):
    if seed is None or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)):
        return seed
    tensor = tf.convert_to_tensor(seed)
    if tensor.shape.rank != 1 or tensor.shape[0] != 2 or not tensor.dtype.is_integer:
        raise ValueError(f"seed must be None, an int, or a shape-[2] integer tensor, got {seed!r}")
    return tensor
