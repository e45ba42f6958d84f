"""Argument checks shared by :mod:`minidl.functional` and :mod:`minidl.losses`.

Each check raises a ``TypeError`` or ``ValueError`` that names the calling function (``fn``)
and the argument, so that a function and the loss class built on it fail with the same
message. ``_as_float_array`` (also used by :mod:`minidl.regularizers`) fixes the dtype rule:
a float array keeps its dtype, integers and booleans become float64.
"""

from __future__ import annotations

from numbers import Real
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

Reduction = Literal["mean", "sum", "none"]
_REDUCTIONS = ("mean", "sum", "none")


def _as_float_array(x: ArrayLike, fn: str, name: str) -> np.ndarray:
    """``x`` as an array of its own float dtype; integers and booleans become float64."""
    array = np.asarray(x)
    if array.dtype.kind == "f":
        return array
    if array.dtype.kind in "biu":
        return array.astype(np.float64)
    raise TypeError(f"{fn}: {name} must be a real numeric array, got dtype {array.dtype}")


def _check_reduction(reduction: str, fn: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(
            f"{fn}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _check_axis(x: np.ndarray, axis: int, fn: str) -> None:
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"{fn}: axis {axis} is out of range for x of shape {x.shape}")
    if x.shape[axis] == 0:
        raise ValueError(f"{fn}: x has no entries along axis {axis} (shape {x.shape})")


def _check_labels(labels: ArrayLike, num_classes: int, fn: str, name: str) -> np.ndarray:
    """Class indices as an intp array; whole-valued floats are accepted, nothing else."""
    array = np.asarray(labels)
    if array.dtype.kind == "f":
        not_whole = ~np.isfinite(array) | (array != np.round(array))
        if np.any(not_whole):
            raise ValueError(f"{fn}: {name} must hold whole-number class indices, got "
                             f"{array[not_whole][0]}")
    elif array.dtype.kind not in "iu":
        raise TypeError(f"{fn}: {name} must be an array of integer class indices, "
                        f"got dtype {array.dtype}")
    if array.size:
        # checked before the cast to intp, which would wrap around a too-large float
        low, high = array.min(), array.max()
        if low < 0 or high >= num_classes:
            bad = low if low < 0 else high
            raise ValueError(f"{fn}: {name} holds class index {bad}, outside [0, {num_classes}) "
                             f"for {num_classes} classes")
    return array.astype(np.intp, copy=False)


def _check_same_shape(pred: np.ndarray, target: np.ndarray, fn: str, pred_name: str) -> None:
    if target.shape != pred.shape:
        raise ValueError(f"{fn}: target has shape {target.shape} but {pred_name} has shape "
                         f"{pred.shape}; they must match (reshape target to {pred.shape})")


# ---------------------------------------------------------------------------------------------
# cross-entropy


def _check_cross_entropy_args(
    fn: str, logits: ArrayLike, target: ArrayLike, reduction: str, label_smoothing: float,
    weight: ArrayLike | None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Validated ``(logits, labels, target_probs, weight)``; one of labels/target_probs is None."""
    logits = _as_float_array(logits, fn, "logits")
    if logits.ndim != 2:
        raise ValueError(f"{fn}: logits must be 2-D (batch, classes), got shape {logits.shape}")
    batch_size, num_classes = logits.shape
    if num_classes == 0:
        raise ValueError(f"{fn}: logits must have at least one column (class), "
                         f"got shape {logits.shape}")
    _check_reduction(reduction, fn)
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, Real):
        raise TypeError(f"{fn}: label_smoothing must be a number in [0, 1], "
                        f"got {type(label_smoothing).__name__}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{fn}: label_smoothing must be in [0, 1], got {label_smoothing}")

    target = np.asarray(target)
    if target.ndim == 1:
        if target.shape[0] != batch_size:
            raise ValueError(f"{fn}: target has {target.shape[0]} labels but logits have "
                             f"{batch_size} rows")
        labels = _check_labels(target, num_classes, fn, "target")
        target_probs = None
    elif target.ndim == 2:
        target_probs = _as_float_array(target, fn, "target").astype(logits.dtype, copy=False)
        if target_probs.shape[0] != batch_size:
            raise ValueError(f"{fn}: target has {target_probs.shape[0]} rows but logits have "
                             f"{batch_size}")
        if target_probs.shape[1] != num_classes:
            raise ValueError(f"{fn}: target has {target_probs.shape[1]} classes but logits "
                             f"have {num_classes} columns")
        labels = None
    else:
        raise ValueError(f"{fn}: target must be class indices of shape ({batch_size},) or "
                         f"class probabilities of shape {logits.shape}, got shape {target.shape}")

    if weight is not None:
        weight = _as_float_array(weight, fn, "weight").astype(logits.dtype, copy=False)
        if weight.shape != (num_classes,):
            raise ValueError(f"{fn}: weight must have shape ({num_classes},), one per class, "
                             f"got shape {weight.shape}")
        if not np.all(np.isfinite(weight)) or np.any(weight < 0):
            raise ValueError(f"{fn}: weight must be finite and non-negative")
    return logits, labels, target_probs, weight


# ---------------------------------------------------------------------------------------------
# binary cross-entropy and the regression losses


def _check_pair(fn: str, pred: ArrayLike, target: ArrayLike, reduction: str,
                pred_name: str = "pred") -> tuple[np.ndarray, np.ndarray]:
    pred = _as_float_array(pred, fn, pred_name)
    target = _as_float_array(target, fn, "target").astype(pred.dtype, copy=False)
    _check_same_shape(pred, target, fn, pred_name)
    _check_reduction(reduction, fn)
    return pred, target


def _check_binary_target(target: np.ndarray, fn: str) -> None:
    if target.size and not (np.min(target) >= 0 and np.max(target) <= 1):
        raise ValueError(f"{fn}: target must hold probabilities in [0, 1], got values in "
                         f"[{np.min(target)}, {np.max(target)}]")
