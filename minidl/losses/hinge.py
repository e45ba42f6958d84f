"""Keras' hinge losses for maximum-margin classifiers: hinge, squared hinge, categorical hinge.

Targets of :class:`Hinge` and :class:`SquaredHinge` are -1 or 1; when every target is 0 or 1
they are mapped to -1 and 1 first (``2y - 1``), as Keras does.
"""

from __future__ import annotations

import numpy as np

from minidl.losses.base import ReducedLoss
from minidl.losses.probabilistic import check_same_shape


def _signed_labels(target: np.ndarray) -> np.ndarray:
    """Keras' ``convert_binary_labels_to_hinge``: 0/1 labels become -1/1, others stay."""
    if np.all((target == 0) | (target == 1)):
        return 2 * target - 1
    return target


class _Margin(ReducedLoss):
    """``ℓ = mean(f(m), axis=-1)`` of the margins ``m = 1 - y p``."""

    #: the power of the hinge: 1 for Hinge, 2 for SquaredHinge
    power = 1

    def _per_sample(self, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
        check_same_shape(pred, target, type(self).__name__)
        signs = _signed_labels(target.astype(pred.dtype, copy=False))
        slack = np.maximum(1 - signs * pred, 0)
        # d slack^k / dp = -k slack^(k-1) y where the margin is violated, else 0
        grad = -signs * (slack > 0) if self.power == 1 else -2 * slack * signs
        self._cache = grad / pred.shape[-1]
        return np.mean(slack**self.power, axis=-1)

    def _per_sample_grad(self, grad_losses: np.ndarray) -> np.ndarray:
        return self._cache * grad_losses[..., None]


class Hinge(_Margin):
    r"""Keras' hinge loss, over the last axis (``d`` entries), targets ``y`` in {-1, 1}:

    .. math::
        \ell = \frac{1}{d} \sum_k \max(1 - y_k p_k, 0), \qquad
        \frac{\partial \ell}{\partial p} = -\frac{y}{d} [1 - y p > 0]
    """

    def __init__(self, reduction: str | None = "sum_over_batch_size",
                 name: str | None = "hinge") -> None:
        super().__init__(reduction, name, "hinge")


class SquaredHinge(_Margin):
    r"""Keras' squared hinge loss, over the last axis, targets ``y`` in {-1, 1}:

    .. math::
        \ell = \frac{1}{d} \sum_k \max(1 - y_k p_k, 0)^2, \qquad
        \frac{\partial \ell}{\partial p} = -\frac{2 y}{d} \max(1 - y p, 0)
    """

    power = 2

    def __init__(self, reduction: str | None = "sum_over_batch_size",
                 name: str | None = "squared_hinge") -> None:
        super().__init__(reduction, name, "squared_hinge")


class CategoricalHinge(ReducedLoss):
    r"""Keras' categorical hinge loss against one-hot targets ``y`` (classes on the last axis):
    the best wrong score must trail the right one by a margin of 1.

    .. math::
        \text{pos} = \sum_c y_c p_c, \quad \text{neg} = \max_c (1 - y_c) p_c, \quad
        \ell = \max(\text{neg} - \text{pos} + 1, 0)

    .. math::
        \frac{\partial \ell}{\partial p} = [\ell > 0] \left((1 - y_{c^*}) e_{c^*} - y\right),
        \quad c^* = \arg\max_c (1 - y_c) p_c
    """

    def __init__(self, reduction: str | None = "sum_over_batch_size",
                 name: str | None = "categorical_hinge") -> None:
        super().__init__(reduction, name, "categorical_hinge")

    def _per_sample(self, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
        check_same_shape(pred, target, "CategoricalHinge")
        target = target.astype(pred.dtype, copy=False)
        positive = np.sum(target * pred, axis=-1)
        wrong_scores = (1 - target) * pred
        best_wrong = np.argmax(wrong_scores, axis=-1)[..., None]
        negative = np.take_along_axis(wrong_scores, best_wrong, axis=-1)[..., 0]
        losses = np.maximum(negative - positive + 1, 0)
        grad = -target
        np.put_along_axis(grad, best_wrong,
                          np.take_along_axis(grad, best_wrong, axis=-1)
                          + np.take_along_axis(1 - target, best_wrong, axis=-1), axis=-1)
        self._cache = grad * (losses > 0)[..., None]
        return losses

    def _per_sample_grad(self, grad_losses: np.ndarray) -> np.ndarray:
        return self._cache * grad_losses[..., None]
