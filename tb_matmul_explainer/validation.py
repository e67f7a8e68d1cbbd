"""Argument checks and the dtype policy shared by every public function.

Dtype policy (documented in the README):
  * float32 and float64 operands are computed in their own dtype;
  * float16 and bfloat16 operands are computed in float32;
  * integer and boolean operands are cast to float32 (exact for |values| < 2**24);
  * two operands of different float dtypes are promoted to the wider one;
  * anything else (complex, string) raises TypeError naming the argument.

Every error names the argument and what was wrong with it.
"""

import numbers

import numpy as np
import tensorflow as tf

_COMPUTED_AS_FLOAT32 = (tf.float16, tf.bfloat16)


def as_float_tensor(x, name):
    """Returns `x` as a float32 or float64 `tf.Tensor` under the dtype policy above."""
    try:
        t = tf.convert_to_tensor(x)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a tensor or array of numbers, got {type(x).__name__}: {e}") from None
    dtype = t.dtype
    if dtype in (tf.float32, tf.float64):
        return t
    if dtype in _COMPUTED_AS_FLOAT32 or dtype.is_integer or dtype == tf.bool:
        return tf.cast(t, tf.float32)
    raise TypeError(f"{name} must have a real numeric dtype, got {dtype.name}")


def promote_floats(x, y):
    """Casts two float tensors to a common dtype (float64 if either is float64)."""
    if x.dtype == y.dtype:
        return x, y
    return tf.cast(x, tf.float64), tf.cast(y, tf.float64)


def check_rank(x, name, min_rank, max_rank=None):
    """Raises ValueError unless `min_rank <= rank(x) <= max_rank` (static rank must be known)."""
    check_shape_rank(x.shape, name, min_rank, max_rank)


def check_shape_rank(shape, name, min_rank, max_rank=None):
    """Like `check_rank`, for a `tf.TensorShape`."""
    rank = shape.rank
    if rank is None:
        raise ValueError(f"{name} must have a known rank, got shape {shape}")
    if rank < min_rank or (max_rank is not None and rank > max_rank):
        wanted = f"at least {min_rank}" if max_rank is None else f"between {min_rank} and {max_rank}"
        raise ValueError(f"{name} must have rank {wanted}, got rank {rank} (shape {shape})")


def check_confidence(confidence, name="confidence"):
    """Returns `confidence` as a Python float in [0, 1]; raises TypeError/ValueError otherwise."""
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real):
        raise TypeError(f"{name} must be a real number in [0, 1], got {type(confidence).__name__}: {confidence!r}")
    value = float(confidence)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1], got {confidence!r}")
    return value


def check_threshold(threshold, name):
    """Returns None, a non-negative Python float, or a scalar tensor; raises otherwise."""
    if threshold is None:
        return None
    if isinstance(threshold, (tf.Tensor, tf.Variable)):
        if threshold.shape.rank not in (None, 0):
            raise ValueError(f"{name} must be a scalar, got shape {threshold.shape}")
        return threshold
    if isinstance(threshold, np.ndarray) and threshold.ndim == 0:
        threshold = threshold.item()
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(f"{name} must be None or a non-negative number, got {type(threshold).__name__}: {threshold!r}")
    value = float(threshold)
    if not value >= 0.0:  # rejects negatives and NaN
        raise ValueError(f"{name} must be None or a non-negative number, got {threshold!r}")
    return value


def parse_thresholds(thresholds, count=2, name="thresholds"):
    """Normalises a `thresholds` argument to a tuple of `count` entries, each None or a threshold.

    Accepts None (all derived from confidence), one number (used for every operand), or a sequence of
    exactly `count` entries, each None or a number.
    """
    if thresholds is None:
        return (None,) * count
    if isinstance(thresholds, (numbers.Real, np.ndarray, tf.Tensor)) and np.ndim(thresholds) == 0:
        value = check_threshold(thresholds, name)
        return (value,) * count
    if isinstance(thresholds, (str, bytes)) or not hasattr(thresholds, "__len__"):
        raise TypeError(
            f"{name} must be None, a number, or a sequence of {count} numbers or Nones, "
            f"got {type(thresholds).__name__}: {thresholds!r}"
        )
    if len(thresholds) != count:
        raise ValueError(
            f"{name} must have length {count} (one per operand), got length {len(thresholds)}: {thresholds!r}"
        )
    return tuple(check_threshold(t, f"{name}[{i}]") for i, t in enumerate(thresholds))


def normalize_padding(padding, name="padding"):
    """Returns 'VALID' or 'SAME' for any letter case; raises ValueError otherwise."""
    if not isinstance(padding, str) or padding.upper() not in ("VALID", "SAME"):
        raise ValueError(f"{name} must be 'VALID' or 'SAME' (any case), got {padding!r}")
    return padding.upper()


def normalize_strides(strides, spatial_rank, name="strides"):
    """Returns a tuple of `spatial_rank` positive ints.

    Accepts an int, a sequence of `spatial_rank` ints, or a sequence of `spatial_rank + 2` ints whose first
    and last entries (batch and channel) are 1.
    """
    if isinstance(strides, numbers.Integral) and not isinstance(strides, bool):
        strides = (int(strides),) * spatial_rank
    try:
        strides = tuple(strides)
    except TypeError:
        raise TypeError(f"{name} must be an int or a sequence of ints, got {type(strides).__name__}") from None
    if len(strides) == spatial_rank + 2:
        if strides[0] != 1 or strides[-1] != 1:
            raise ValueError(f"{name} for the batch and channel axes must be 1, got {strides}")
        strides = strides[1:-1]
    if len(strides) != spatial_rank:
        raise ValueError(f"{name} must have {spatial_rank} entries (one per spatial axis), got {strides}")
    for s in strides:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1:
            raise ValueError(f"{name} must be positive ints, got {strides}")
    return tuple(int(s) for s in strides)
