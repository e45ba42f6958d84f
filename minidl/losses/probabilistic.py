"""Keras' probabilistic losses: the three cross-entropies, KL divergence and Poisson.

Each computes one loss per sample (``_per_sample``) and its gradient (``_per_sample_grad``)
side by side; :class:`~minidl.losses.base.ReducedLoss` weights and reduces them. On
probabilities they clip with Keras' epsilon (1e-7), and the gradient is that of the clipped
value: zero where the clip is active.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from minidl import functional as F
from minidl.functional._checks import _check_labels
from minidl.losses.base import (
    EPSILON,
    ReducedLoss,
    check_axis_argument,
    check_from_logits,
    check_label_smoothing,
    resolve_axis,
)


def check_same_shape(pred: np.ndarray, target: np.ndarray, owner: str) -> None:
    if target.shape != pred.shape:
        raise ValueError(f"{owner}: target and pred must have the same shape, got "
                         f"target.shape={target.shape}, pred.shape={pred.shape}")


def _clip_bounds(dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Keras' clip range ``[ε_K, 1 - ε_K]`` in ``dtype``."""
    eps = np.asarray(EPSILON, dtype)
    return eps, np.asarray(1, dtype) - eps


class BinaryCrossentropy(ReducedLoss):
    r"""Keras' binary cross-entropy, the mean over ``axis`` (the last) of each sample.

    Label smoothing ``ε`` pulls targets towards ½: ``ỹ = (1 - ε) y + ε / 2``. On logits
    ``x`` (``from_logits=True``), per element:

    .. math::
        \ell = \max(x, 0) - x \tilde y + \log(1 + e^{-|x|}), \qquad
        \frac{\partial \ell}{\partial x} = \sigma(x) - \tilde y

    On probabilities (the default), ``q = clip(p, ε_K, 1 - ε_K)`` with ``ε_K = 1e-7``:

    .. math::
        \ell = -\tilde y \log q - (1 - \tilde y) \log(1 - q), \qquad
        \frac{\partial \ell}{\partial p} = \left(\frac{1 - \tilde y}{1 - q}
        - \frac{\tilde y}{q}\right) [\varepsilon_K \le p \le 1 - \varepsilon_K]

    so ``p = 1`` for a 0 target costs ``-log(1e-7) ≈ 16.118``. Fuses with a sigmoid output
    when ``from_logits=False``. PyTorch's definition is :class:`~minidl.losses.BinaryCrossEntropy`.
    """

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: str | None = "sum_over_batch_size",
                 name: str | None = "binary_crossentropy") -> None:
        super().__init__(reduction, name, "binary_crossentropy")
        self.from_logits = check_from_logits(from_logits, "BinaryCrossentropy")
        self.label_smoothing = check_label_smoothing(label_smoothing, "BinaryCrossentropy")
        self.axis = check_axis_argument(axis, "BinaryCrossentropy")

    @property
    def fuses_with(self) -> str | None:
        return None if self.from_logits else "sigmoid"

    def on_logits(self) -> BinaryCrossentropy:
        return BinaryCrossentropy(True, self.label_smoothing, self.axis, self.reduction,
                                  self.name)

    def predictions(self, pred: np.ndarray) -> np.ndarray:
        return F.sigmoid(pred) if self.from_logits else pred

    def _per_sample(self, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
        check_same_shape(pred, target, "BinaryCrossentropy")
        axis = resolve_axis(self.axis, pred, "BinaryCrossentropy")
        target = target.astype(pred.dtype, copy=False)
        smoothed = (1 - self.label_smoothing) * target + 0.5 * self.label_smoothing
        if self.from_logits:
            losses = (np.maximum(pred, 0) - pred * smoothed
                      + np.log1p(np.exp(-np.abs(pred))))
            grad = F.sigmoid(pred) - smoothed
        else:
            low, high = _clip_bounds(pred.dtype)
            clipped = np.clip(pred, low, high)
            losses = -(smoothed * np.log(clipped) + (1 - smoothed) * np.log(1 - clipped))
            inside = (pred >= low) & (pred <= high)
            grad = np.where(inside, (1 - smoothed) / (1 - clipped) - smoothed / clipped, 0)
        self._cache = (grad, axis, pred.shape[axis])
        return np.mean(losses, axis=axis)

    def _per_sample_grad(self, grad_losses: np.ndarray) -> np.ndarray:
        grad, axis, size = self._cache
        return (grad * (np.expand_dims(grad_losses, axis) / size)).astype(grad.dtype, copy=False)


class CategoricalCrossentropy(ReducedLoss):
    r"""Keras' categorical cross-entropy against class probabilities ``y`` (one-hot rows).

    Label smoothing: ``ỹ = (1 - ε) y + ε / C``. On logits ``z`` (``from_logits=True``):

    .. math::
        \ell = -\sum_c \tilde y_c \log \operatorname{softmax}(z)_c, \qquad
        \frac{\partial \ell}{\partial z} = \operatorname{softmax}(z) \sum_c \tilde y_c - \tilde y

    On probabilities (the default) each row is divided by its sum and clipped to
    ``[ε_K, 1 - ε_K]``, ``ε_K = 1e-7``, as Keras does: ``s = p / Σ_c p_c``, ``q = clip(s)``,

    .. math::
        \ell = -\sum_c \tilde y_c \log q_c, \qquad
        \frac{\partial \ell}{\partial p} = \frac{g - \langle g, s \rangle}{\sum_c p_c},
        \quad g_c = -\frac{\tilde y_c}{q_c} [\varepsilon_K \le s_c \le 1 - \varepsilon_K]

    The sums run over ``axis``. Fuses with a softmax output when ``from_logits=False`` and
    ``axis=-1``.
    """

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: str | None = "sum_over_batch_size",
                 name: str | None = "categorical_crossentropy") -> None:
        super().__init__(reduction, name, "categorical_crossentropy")
        self.from_logits = check_from_logits(from_logits, "CategoricalCrossentropy")
        self.label_smoothing = check_label_smoothing(label_smoothing, "CategoricalCrossentropy")
        self.axis = check_axis_argument(axis, "CategoricalCrossentropy")

    @property
    def fuses_with(self) -> str | None:
        return None if self.from_logits or self.axis != -1 else "softmax"

    def on_logits(self) -> CategoricalCrossentropy:
        return CategoricalCrossentropy(True, self.label_smoothing, self.axis, self.reduction,
                                       self.name)

    def predictions(self, pred: np.ndarray) -> np.ndarray:
        return F.softmax(pred, axis=self.axis) if self.from_logits else pred

    def _per_sample(self, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
        check_same_shape(pred, target, "CategoricalCrossentropy")
        if pred.ndim == 0:
            raise ValueError(f"CategoricalCrossentropy: pred must have a class axis, "
                             f"got shape {pred.shape}")
        if pred.shape[-1] == 1:
            warnings.warn(
                "In loss categorical_crossentropy, expected y_pred.shape to be (batch_size, "
                f"num_classes) with num_classes > 1. Received: y_pred.shape={pred.shape}. "
                "Consider using 'binary_crossentropy' if you only have 2 classes.",
                SyntaxWarning, stacklevel=3)
        axis = resolve_axis(self.axis, pred, "CategoricalCrossentropy")
        target = target.astype(pred.dtype, copy=False)
        if self.label_smoothing:
            # Keras counts the classes on the last axis, whatever `axis` is
            target = ((1 - self.label_smoothing) * target
                      + self.label_smoothing / target.shape[-1])
        if self.from_logits:
            log_probs = F.log_softmax(pred, axis=axis)
            grad = np.exp(log_probs) * np.sum(target, axis=axis, keepdims=True) - target
        else:
            log_probs, grad = _normalised_log_probs(pred, target, axis)
        self._cache = (grad, axis)
        return -np.sum(target * log_probs, axis=axis)

    def _per_sample_grad(self, grad_losses: np.ndarray) -> np.ndarray:
        grad, axis = self._cache
        return (grad * np.expand_dims(grad_losses, axis)).astype(grad.dtype, copy=False)


def _normalised_log_probs(probs: np.ndarray, weights: np.ndarray,
                          axis: int) -> tuple[np.ndarray, np.ndarray]:
    """``log q`` of Keras' normalised, clipped probabilities, and the gradient of
    ``-Σ_c weights_c log q_c`` with respect to the unnormalised ``probs``."""
    total = np.sum(probs, axis=axis, keepdims=True)
    shares = probs / total
    low, high = _clip_bounds(probs.dtype)
    clipped = np.clip(shares, low, high)
    grad_shares = np.where((shares >= low) & (shares <= high), -weights / clipped, 0)
    # through s = p / Σ p: ds_c/dp_k = (δ_ck - s_c) / Σ p
    grad = (grad_shares - np.sum(grad_shares * shares, axis=axis, keepdims=True)) / total
    return np.log(clipped), grad


class SparseCategoricalCrossentropy(ReducedLoss):
    r"""Keras' cross-entropy against class indices ``t``: :class:`CategoricalCrossentropy`
    with ``y = one_hot(t)`` (no label smoothing), computed without the one-hot matrix.

    ``target`` has the shape of ``pred`` without its class axis, or with a class axis of
    size 1: ``(N,)`` or ``(N, 1)`` against ``(N, C)``, ``(N, H, W)`` or ``(N, H, W, 1)``
    against per-pixel outputs ``(N, H, W, C)``. On logits:

    .. math::
        \ell = -\log \operatorname{softmax}(z)_t, \qquad
        \frac{\partial \ell}{\partial z} = \operatorname{softmax}(z) - \operatorname{one\_hot}(t)

    and on probabilities ``ℓ = -log q_t`` with Keras' normalised, clipped ``q`` (see
    :class:`CategoricalCrossentropy`). Entries whose label is ``ignore_class`` have loss 0
    and are masked out of the mean, as Keras does. Fuses with a softmax output when
    ``from_logits=False`` and ``axis=-1``.
    """

    index_targets = True

    def __init__(self, from_logits: bool = False, ignore_class: int | None = None,
                 reduction: str | None = "sum_over_batch_size", axis: int = -1,
                 name: str | None = "sparse_categorical_crossentropy") -> None:
        super().__init__(reduction, name, "sparse_categorical_crossentropy")
        self.from_logits = check_from_logits(from_logits, "SparseCategoricalCrossentropy")
        if ignore_class is not None and (isinstance(ignore_class, (bool, np.bool_))
                                         or not isinstance(ignore_class, (int, np.integer))):
            raise TypeError(f"SparseCategoricalCrossentropy: ignore_class must be an integer "
                            f"class index or None, got {ignore_class!r}")
        self.ignore_class = None if ignore_class is None else int(ignore_class)
        self.axis = check_axis_argument(axis, "SparseCategoricalCrossentropy")
        self._valid: np.ndarray | None = None

    @property
    def fuses_with(self) -> str | None:
        return None if self.from_logits or self.axis != -1 else "softmax"

    def on_logits(self) -> SparseCategoricalCrossentropy:
        return SparseCategoricalCrossentropy(True, self.ignore_class, self.reduction, self.axis,
                                             self.name)

    def predictions(self, pred: np.ndarray) -> np.ndarray:
        return F.softmax(pred, axis=self.axis) if self.from_logits else pred

    def _mask(self) -> np.ndarray | None:
        return self._valid

    def _divisor_of(self, target: np.ndarray, sample_weight: np.ndarray | None) -> float:
        # ignored entries are out of the mean: the divisor counts (or weighs) the valid ones
        if self.ignore_class is None:
            return super()._divisor_of(target, sample_weight)
        valid = np.asarray(target) != self.ignore_class
        valid = valid.reshape(len(valid), math.prod(valid.shape[1:]))
        if self.reduction == "mean_with_sample_weight" and sample_weight is not None:
            return float(np.sum(valid * np.reshape(sample_weight, (-1, 1))))
        return float(np.count_nonzero(valid))

    def _labels(self, pred: np.ndarray, target: np.ndarray, axis: int) -> np.ndarray:
        owner = "SparseCategoricalCrossentropy"
        if target.ndim == pred.ndim and target.shape[axis] == 1:
            target = np.squeeze(target, axis=axis)
        expected = pred.shape[:axis] + pred.shape[axis + 1:]
        if target.shape != expected:
            raise ValueError(f"{owner}: target must hold class indices of shape {expected} "
                             f"(or {(*pred.shape[:axis], 1, *pred.shape[axis + 1:])}) for "
                             f"pred of shape {pred.shape}, got shape {target.shape}")
        self._valid = None if self.ignore_class is None else target != self.ignore_class
        if self._valid is not None:
            target = np.where(self._valid, target, 0)
        return _check_labels(target, pred.shape[axis], owner, "target")

    def _per_sample(self, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
        if pred.ndim == 0:
            raise ValueError(f"SparseCategoricalCrossentropy: pred must have a class axis, "
                             f"got shape {pred.shape}")
        axis = resolve_axis(self.axis, pred, "SparseCategoricalCrossentropy")
        labels = self._labels(pred, target, axis)
        # one row per sample (or pixel), classes last: the 2-D case of fancy indexing
        rows = np.moveaxis(pred, axis, -1)
        moved_shape = rows.shape
        rows = rows.reshape(-1, pred.shape[axis])
        labels = labels.reshape(-1)
        index = np.arange(len(rows))
        if self.from_logits:
            row_max = rows.max(axis=1, keepdims=True) if rows.size else 0
            with np.errstate(over="ignore"):  # s below -finfo.max is -inf: its exp is 0
                shifted = rows - row_max
            exp_shifted = np.exp(shifted)
            total = exp_shifted.sum(axis=1, keepdims=True)
            losses = np.log(total)[:, 0] - shifted[index, labels]
            exp_shifted /= total
            grad = exp_shifted  # softmax(z); one_hot(t) is subtracted in _per_sample_grad
        else:
            one_hot = F.one_hot(labels, rows.shape[1], dtype=rows.dtype)
            log_probs, grad = _normalised_log_probs(rows, one_hot, axis=1)
            losses = -log_probs[index, labels]
        if self._valid is not None:
            losses = np.where(self._valid.reshape(-1), losses, 0)
        self._cache = (grad, labels, moved_shape, axis)
        return losses.reshape(moved_shape[:-1])

    def _per_sample_grad(self, grad_losses: np.ndarray) -> np.ndarray:
        grad, labels, moved_shape, axis = self._cache
        coefficients = grad_losses.reshape(-1).astype(grad.dtype, copy=False)
        if self._valid is not None:
            coefficients = np.where(self._valid.reshape(-1), coefficients, 0)
        grad = grad * coefficients[:, None]
        if self.from_logits:
            grad[np.arange(len(grad)), labels] -= coefficients
        return np.moveaxis(grad.reshape(moved_shape), -1, axis)


class KLDivergence(ReducedLoss):
    r"""Keras' Kullback-Leibler divergence of ``pred`` from ``target``, over the last axis.

    Both are clipped to ``[ε_K, 1]``, ``ε_K = 1e-7``: ``ŷ = clip(y)``, ``q = clip(p)``,

    .. math::
        \ell = \sum_c \hat y_c \log \frac{\hat y_c}{q_c}, \qquad
        \frac{\partial \ell}{\partial p} = -\frac{\hat y}{q} [\varepsilon_K \le p \le 1]
    """

    def __init__(self, reduction: str | None = "sum_over_batch_size",
                 name: str | None = "kl_divergence") -> None:
        super().__init__(reduction, name, "kl_divergence")

    def _per_sample(self, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
        check_same_shape(pred, target, "KLDivergence")
        eps = np.asarray(EPSILON, pred.dtype)
        target = np.clip(target.astype(pred.dtype, copy=False), eps, 1)
        clipped = np.clip(pred, eps, 1)
        self._cache = np.where((pred >= eps) & (pred <= 1), -target / clipped, 0)
        return np.sum(target * np.log(target / clipped), axis=-1)

    def _per_sample_grad(self, grad_losses: np.ndarray) -> np.ndarray:
        return self._cache * grad_losses[..., None]


class Poisson(ReducedLoss):
    r"""Keras' Poisson loss for predicted rates ``p`` of counts ``y``, over the last axis
    (``d`` entries), with ``ε_K = 1e-7`` keeping the log finite at ``p = 0``:

    .. math::
        \ell = \frac{1}{d} \sum_k p_k - y_k \log(p_k + \varepsilon_K), \qquad
        \frac{\partial \ell}{\partial p} = \frac{1}{d}\left(1 - \frac{y}{p + \varepsilon_K}\right)
    """

    def __init__(self, reduction: str | None = "sum_over_batch_size",
                 name: str | None = "poisson") -> None:
        super().__init__(reduction, name, "poisson")

    def _per_sample(self, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
        check_same_shape(pred, target, "Poisson")
        target = target.astype(pred.dtype, copy=False)
        shifted = pred + np.asarray(EPSILON, pred.dtype)
        self._cache = (1 - target / shifted) / pred.shape[-1]
        return np.mean(pred - target * np.log(shifted), axis=-1)

    def _per_sample_grad(self, grad_losses: np.ndarray) -> np.ndarray:
        return self._cache * grad_losses[..., None]
