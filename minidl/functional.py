"""Pure array functions: stable softmax family, sigmoid, one-hot, losses and their gradients.

Everything here takes and returns NumPy arrays and imports nothing but NumPy, so it can be
read, tested and reused without the rest of minidl. The functions keep the floating dtype of
their input (float32 in, float32 out); integer and boolean inputs are computed in float64.

Stability: every exponential is taken of a number that is at most 0 (shift by the maximum,
or ``exp(-|x|)`` for the sigmoid), so nothing overflows or warns for finite inputs up to
±1e300 in float64.

The ``*_grad`` functions are the analytic derivatives of the losses with respect to their
first argument, with the same arguments. With ``reduction="none"`` row (or element) ``i`` of
the gradient is the derivative of the ``i``-th loss, which is the gradient of their sum.
"""

from __future__ import annotations

from numbers import Real
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

Reduction = Literal["mean", "sum", "none"]
_REDUCTIONS = ("mean", "sum", "none")


# ---------------------------------------------------------------------------------------------
# argument checks shared by the functions below


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


def _reduce(losses: np.ndarray, reduction: str,
            normaliser: float | np.floating) -> np.ndarray | np.floating:
    if reduction == "none":
        return losses
    total = np.sum(losses)
    return total if reduction == "sum" else total / normaliser


def _elementwise_normaliser(pred: np.ndarray, reduction: str, fn: str) -> int:
    """How many elements a "mean" divides by (1 for the other reductions)."""
    if reduction != "mean":
        return 1
    if pred.size == 0:
        raise ValueError(f"{fn}: the mean over an empty batch is undefined; "
                         f"use reduction='sum' or 'none'")
    return pred.size


# ---------------------------------------------------------------------------------------------
# the softmax family


def _max_shifted(x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x - m, m, finite)``: ``m`` the max along ``axis`` (kept), so every ``x - m <= 0``.

    A row whose max is not finite (all -inf, or holding +inf or NaN) has no meaningful
    shift; ``finite`` marks the others, and the undefined rows are returned as zeros so that
    the arithmetic after this never meets inf - inf.
    """
    x_max = np.max(x, axis=axis, keepdims=True)
    finite = np.isfinite(x_max)
    # x - max below -finfo.max rounds to -inf, whose exp is exactly the 0 it stands for
    with np.errstate(over="ignore"):
        shifted = x - np.where(finite, x_max, 0)
    return np.where(finite, shifted, 0), x_max, finite


def _log_sum_exp_shifted(shifted: np.ndarray, axis: int) -> np.ndarray:
    """``log(sum(exp(shifted)))`` for rows whose max is 0, as ``log1p`` of the other terms.

    The max contributes exactly 1; ``log(1 + rest)`` would round away the digits of a small
    ``rest`` that ``log1p(rest)`` keeps.
    """
    exp_shifted = np.exp(shifted)
    np.put_along_axis(exp_shifted, np.argmax(shifted, axis=axis, keepdims=True), 0, axis=axis)
    return np.log1p(np.sum(exp_shifted, axis=axis, keepdims=True))


def logsumexp(x: ArrayLike, axis: int = -1, keepdims: bool = False) -> np.ndarray:
    r"""``log(sum(exp(x), axis))`` computed without overflow.

    .. math::
        \operatorname{logsumexp}(x) = m + \log\Bigl(1 + \sum_{j \ne j^*} e^{x_j - m}\Bigr),
        \quad m = x_{j^*} = \max_j x_j

    A row of -inf gives -inf, a row holding +inf gives +inf and a row holding NaN gives NaN,
    as in ``scipy.special.logsumexp``.
    """
    x = _as_float_array(x, "logsumexp", "x")
    _check_axis(x, axis, "logsumexp")
    shifted, x_max, finite = _max_shifted(x, axis)
    # where the max is not finite, it is the answer: -inf, +inf or NaN
    result = np.where(finite, x_max + _log_sum_exp_shifted(shifted, axis), x_max)
    return result if keepdims else np.squeeze(result, axis=axis)


def softmax(x: ArrayLike, axis: int = -1) -> np.ndarray:
    r"""Probabilities along ``axis``: non-negative, summing to 1.

    .. math::
        \operatorname{softmax}(x)_i = \frac{e^{x_i - m}}{\sum_j e^{x_j - m}},
        \quad m = \max_j x_j

    Rows with no finite maximum (all -inf, or holding +inf or NaN) are undefined: NaN.
    """
    x = _as_float_array(x, "softmax", "x")
    _check_axis(x, axis, "softmax")
    shifted, _, finite = _max_shifted(x, axis)
    exp_shifted = np.exp(shifted)
    return np.where(finite, exp_shifted / np.sum(exp_shifted, axis=axis, keepdims=True), np.nan)


def log_softmax(x: ArrayLike, axis: int = -1) -> np.ndarray:
    r"""``log(softmax(x))`` without taking the log of a probability that underflowed to 0.

    .. math::
        \operatorname{log\_softmax}(x)_i = (x_i - m) - \operatorname{logsumexp}(x - m)

    Rows with no finite maximum are undefined: NaN.
    """
    x = _as_float_array(x, "log_softmax", "x")
    _check_axis(x, axis, "log_softmax")
    shifted, _, finite = _max_shifted(x, axis)
    return np.where(finite, shifted - _log_sum_exp_shifted(shifted, axis), np.nan)


def sigmoid(x: ArrayLike) -> np.ndarray:
    r"""The logistic function, with the two-branch form so that ``exp`` never overflows.

    .. math::
        \sigma(x) = \frac{1}{1 + e^{-x}} \ (x \ge 0), \qquad
        \sigma(x) = \frac{e^{x}}{1 + e^{x}} \ (x < 0)
    """
    x = _as_float_array(x, "sigmoid", "x")
    exp_neg_abs = np.exp(-np.abs(x))  # in (0, 1]: the same number serves both branches
    return np.where(x >= 0, 1 / (1 + exp_neg_abs), exp_neg_abs / (1 + exp_neg_abs))


def log_sigmoid(x: ArrayLike) -> np.ndarray:
    r"""``log(sigmoid(x))``, exact also where ``sigmoid(x)`` underflows to 0.

    .. math::
        \log \sigma(x) = \min(x, 0) - \log\left(1 + e^{-|x|}\right)
    """
    x = _as_float_array(x, "log_sigmoid", "x")
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


def one_hot(labels: ArrayLike, num_classes: int, dtype: DTypeLike = np.float32) -> np.ndarray:
    """Rows of the identity: ``one_hot(labels, C)[..., c] = 1`` where ``labels == c``.

    ``labels`` of any shape gives an array of shape ``labels.shape + (num_classes,)``.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise TypeError(f"one_hot: num_classes must be an int, got {type(num_classes).__name__}")
    if num_classes < 1:
        raise ValueError(f"one_hot: num_classes must be at least 1, got {num_classes}")
    indices = _check_labels(labels, int(num_classes), "one_hot", "labels")
    return np.eye(num_classes, dtype=dtype)[indices]


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


def _rowwise_dot(coefficients: np.ndarray, log_probs: np.ndarray) -> np.ndarray:
    """``sum_c coefficients[n, c] * log_probs[n, c]`` with ``0 * log 0`` taken as 0."""
    # a class whose probability underflowed has log_prob -inf; with coefficient 0 it must
    # contribute nothing, not NaN
    products = np.multiply(coefficients, log_probs, out=np.zeros_like(log_probs),
                           where=coefficients != 0)
    return np.sum(products, axis=1)


def _cross_entropy_normaliser(labels: np.ndarray | None, weight: np.ndarray | None,
                              batch_size: int, reduction: str, fn: str) -> float | np.ndarray:
    """What a "mean" divides by: the summed weight of the target classes, or the batch size."""
    if reduction != "mean":
        return 1
    if batch_size == 0:
        raise ValueError(f"{fn}: the mean over an empty batch is undefined; "
                         f"use reduction='sum' or 'none'")
    if labels is None or weight is None:
        return batch_size
    total_weight = np.sum(weight[labels])
    if total_weight == 0:
        raise ValueError(f"{fn}: the weights of the batch's target classes sum to 0, so the "
                         f"weighted mean is undefined; use reduction='sum' or positive weights")
    return total_weight


def cross_entropy(
    logits: ArrayLike, target: ArrayLike, *, reduction: Reduction = "mean",
    label_smoothing: float = 0.0, weight: ArrayLike | None = None,
) -> np.ndarray | np.floating:
    r"""Cross-entropy between ``softmax(logits)`` and a target, as ``torch.nn.functional``'s.

    ``logits`` has shape ``(N, C)``. ``target`` is either class indices ``t`` of shape
    ``(N,)`` (``y`` below is then ``one_hot(t)``) or class probabilities ``y`` of shape
    ``(N, C)``. With label smoothing ``ε`` and per-class weights ``w`` (default all 1):

    .. math::
        \tilde y_{nc} = (1 - ε)\, y_{nc} + \frac{ε}{C}, \qquad
        \ell_n = -\sum_c w_c\, \tilde y_{nc} \log \operatorname{softmax}(z_n)_c

    ``reduction="none"`` returns ``ℓ`` (shape ``(N,)``), ``"sum"`` returns ``Σ ℓ_n``, and
    ``"mean"`` returns ``Σ ℓ_n / D`` with ``D = Σ_n w_{t_n}`` for class indices (the weighted
    mean) but ``D = N`` for class probabilities.
    """
    logits, labels, target_probs, weight = _check_cross_entropy_args(
        "cross_entropy", logits, target, reduction, label_smoothing, weight)
    batch_size, num_classes = logits.shape
    log_probs = log_softmax(logits, axis=1)
    if labels is None:
        smoothed = (1 - label_smoothing) * target_probs + label_smoothing / num_classes
        losses = -_rowwise_dot(smoothed if weight is None else smoothed * weight, log_probs)
    else:
        # gather the true class instead of multiplying by a one-hot matrix
        target_weight = 1 if weight is None else weight[labels]
        losses = -(1 - label_smoothing) * target_weight * log_probs[np.arange(batch_size), labels]
        if label_smoothing > 0:
            uniform_part = (np.sum(log_probs, axis=1) if weight is None
                            else _rowwise_dot(np.broadcast_to(weight, log_probs.shape), log_probs))
            losses = losses - label_smoothing / num_classes * uniform_part
    normaliser = _cross_entropy_normaliser(labels, weight, batch_size, reduction,
                                           "cross_entropy")
    return _reduce(losses.astype(logits.dtype, copy=False), reduction, normaliser)


def cross_entropy_grad(
    logits: ArrayLike, target: ArrayLike, *, reduction: Reduction = "mean",
    label_smoothing: float = 0.0, weight: ArrayLike | None = None,
) -> np.ndarray:
    r"""``d cross_entropy / d logits``, fused: never through the softmax Jacobian.

    With ``a_{nc} = w_c \tilde y_{nc}`` (see :func:`cross_entropy`) and ``p = softmax(z)``:

    .. math::
        \frac{\partial \ell_n}{\partial z_{nc}} = p_{nc} \sum_k a_{nk} - a_{nc}

    divided by the same ``D`` as the mean. Without weights ``Σ_k a_{nk} = 1`` and this is the
    familiar ``(p - ỹ) / N``. Every term is bounded, so it is finite for any finite logits.
    """
    logits, labels, target_probs, weight = _check_cross_entropy_args(
        "cross_entropy_grad", logits, target, reduction, label_smoothing, weight)
    batch_size, num_classes = logits.shape
    probs = softmax(logits, axis=1)
    if labels is None:
        smoothed = (1 - label_smoothing) * target_probs + label_smoothing / num_classes
        coefficients = smoothed if weight is None else smoothed * weight
        grad = probs * np.sum(coefficients, axis=1, keepdims=True) - coefficients
    else:
        # a = (1 - ε) w_t one_hot(t) + (ε / C) w, kept sparse: a scaled row plus the true class
        target_part = (1 - label_smoothing) * (np.ones(batch_size, logits.dtype)
                                               if weight is None else weight[labels])
        uniform_part = label_smoothing / num_classes * (1 if weight is None else weight)
        row_total = target_part + (label_smoothing if weight is None
                                   else label_smoothing / num_classes * np.sum(weight))
        grad = probs * row_total[:, None] - uniform_part
        grad[np.arange(batch_size), labels] -= target_part
    normaliser = _cross_entropy_normaliser(labels, weight, batch_size, reduction,
                                           "cross_entropy_grad")
    return (grad / normaliser).astype(logits.dtype, copy=False)


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


def binary_cross_entropy_with_logits(
    logits: ArrayLike, target: ArrayLike, *, reduction: Reduction = "mean",
) -> np.ndarray | np.floating:
    r"""Binary cross-entropy of ``sigmoid(logits)`` against targets ``y`` in [0, 1].

    .. math::
        \ell = -y \log \sigma(x) - (1 - y) \log(1 - \sigma(x))
             = \max(x, 0) - x y + \log\left(1 + e^{-|x|}\right)

    The right-hand form never takes the log of 0 nor the exp of a positive number.
    ``target`` has the shape of ``logits``; "mean" averages over all elements.
    """
    fn = "binary_cross_entropy_with_logits"
    logits, target = _check_pair(fn, logits, target, reduction, "logits")
    _check_binary_target(target, fn)
    losses = np.maximum(logits, 0) - logits * target + np.log1p(np.exp(-np.abs(logits)))
    return _reduce(losses, reduction, _elementwise_normaliser(logits, reduction, fn))


def binary_cross_entropy_with_logits_grad(
    logits: ArrayLike, target: ArrayLike, *, reduction: Reduction = "mean",
) -> np.ndarray:
    r"""``d binary_cross_entropy_with_logits / d logits = (σ(x) - y) / n``."""
    fn = "binary_cross_entropy_with_logits_grad"
    logits, target = _check_pair(fn, logits, target, reduction, "logits")
    _check_binary_target(target, fn)
    return (sigmoid(logits) - target) / _elementwise_normaliser(logits, reduction, fn)


def mse(pred: ArrayLike, target: ArrayLike, *,
        reduction: Reduction = "mean") -> np.ndarray | np.floating:
    r"""Squared error; "mean" averages over all elements.

    .. math:: \ell = \frac{1}{n} \sum_i (p_i - y_i)^2
    """
    pred, target = _check_pair("mse", pred, target, reduction)
    return _reduce((pred - target) ** 2, reduction,
                   _elementwise_normaliser(pred, reduction, "mse"))


def mse_grad(pred: ArrayLike, target: ArrayLike, *, reduction: Reduction = "mean") -> np.ndarray:
    r"""``d mse / d pred = 2 (p - y) / n``."""
    pred, target = _check_pair("mse_grad", pred, target, reduction)
    return 2 * (pred - target) / _elementwise_normaliser(pred, reduction, "mse_grad")


def mae(pred: ArrayLike, target: ArrayLike, *,
        reduction: Reduction = "mean") -> np.ndarray | np.floating:
    r"""Absolute error; "mean" averages over all elements.

    .. math:: \ell = \frac{1}{n} \sum_i |p_i - y_i|
    """
    pred, target = _check_pair("mae", pred, target, reduction)
    return _reduce(np.abs(pred - target), reduction,
                   _elementwise_normaliser(pred, reduction, "mae"))


def mae_grad(pred: ArrayLike, target: ArrayLike, *, reduction: Reduction = "mean") -> np.ndarray:
    r"""``d mae / d pred = sign(p - y) / n``, taken as 0 where ``p = y``."""
    pred, target = _check_pair("mae_grad", pred, target, reduction)
    return np.sign(pred - target) / _elementwise_normaliser(pred, reduction, "mae_grad")
