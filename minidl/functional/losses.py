"""Losses and their gradients: cross-entropy, binary cross-entropy on logits, MSE and MAE.

The ``*_grad`` functions are the analytic derivatives of the losses with respect to their
first argument, with the same arguments. With ``reduction="none"`` row (or element) ``i`` of
the gradient is the derivative of the ``i``-th loss, which is the gradient of their sum.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from minidl.functional._checks import (
    Reduction,
    _check_binary_target,
    _check_cross_entropy_args,
    _check_pair,
)
from minidl.functional.activations import log_softmax, sigmoid, softmax


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
# cross-entropy


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
