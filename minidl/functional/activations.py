"""The softmax family (logsumexp, softmax, log_softmax), the sigmoid and its log, and one_hot.

Stability: every exponential is taken of a number that is at most 0 (shift by the maximum,
or ``exp(-|x|)`` for the sigmoid), so nothing overflows or warns for finite inputs up to
±1e300 in float64. ``one_hot`` turns class indices into the rows the losses compare against.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from minidl.functional._checks import _as_float_array, _check_axis, _check_labels


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
    x_max = x.max(axis=axis, keepdims=True)
    if np.isfinite(x_max).all():
        # every row has a finite max (nearly always): one shift, no masks, no undefined rows;
        # x - max below -finfo.max rounds to -inf, whose exp is exactly the 0 it stands for
        with np.errstate(over="ignore"):
            exp_shifted = np.exp(x - x_max)
        return exp_shifted / exp_shifted.sum(axis=axis, keepdims=True)
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
