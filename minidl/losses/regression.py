"""Keras' regression losses: squared, absolute, percentage, logarithmic, Huber, log-cosh and
cosine similarity, each a mean (or a sum) over the last axis of every sample.

In each docstring ``e = p - y`` is the error of ``pred`` against ``target`` and ``d`` the size
of the last axis; ``ℓ`` is one sample's loss, and the gradient is taken of it.
"""

from __future__ import annotations

import math

import numpy as np

from minidl.losses.base import EPSILON, ReducedLoss, check_axis_argument, resolve_axis
from minidl.losses.probabilistic import check_same_shape


class _MeanOverLastAxis(ReducedLoss):
    """``ℓ = mean(f(p, y), axis=-1)``: a subclass gives ``f`` and ``∂f/∂p``, element by
    element, in ``_elementwise``."""

    def _elementwise(self, pred: np.ndarray,
                     target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError  # abstract

    def _per_sample(self, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
        check_same_shape(pred, target, type(self).__name__)
        values, grad = self._elementwise(pred, target.astype(pred.dtype, copy=False))
        self._cache = grad / pred.shape[-1]
        return np.mean(values, axis=-1)

    def _per_sample_grad(self, grad_losses: np.ndarray) -> np.ndarray:
        return self._cache * grad_losses[..., None]


class MeanSquaredError(_MeanOverLastAxis):
    r"""Keras' mean squared error (also minidl's, whose unweighted value is PyTorch's
    ``MSELoss``: the mean over all elements).

    .. math::
        \ell = \frac{1}{d} \sum_k e_k^2, \qquad \frac{\partial \ell}{\partial p} = \frac{2e}{d}
    """

    def __init__(self, reduction: str | None = "sum_over_batch_size",
                 name: str | None = "mean_squared_error") -> None:
        super().__init__(reduction, name, "mean_squared_error")

    def _elementwise(self, pred, target):
        error = pred - target
        return error**2, 2 * error


class MeanAbsoluteError(_MeanOverLastAxis):
    r"""Keras' mean absolute error (also minidl's, whose unweighted value is PyTorch's
    ``L1Loss``).

    .. math::
        \ell = \frac{1}{d} \sum_k |e_k|, \qquad
        \frac{\partial \ell}{\partial p} = \frac{\operatorname{sign}(e)}{d}

    with ``sign(0) = 0``: a prediction on its target gets no push.
    """

    def __init__(self, reduction: str | None = "sum_over_batch_size",
                 name: str | None = "mean_absolute_error") -> None:
        super().__init__(reduction, name, "mean_absolute_error")

    def _elementwise(self, pred, target):
        error = pred - target
        return np.abs(error), np.sign(error)


class MeanAbsolutePercentageError(_MeanOverLastAxis):
    r"""Keras' mean absolute percentage error; ``ε_K = 1e-7`` keeps a zero target finite.

    .. math::
        \ell = \frac{100}{d} \sum_k \frac{|e_k|}{\max(|y_k|, \varepsilon_K)}, \qquad
        \frac{\partial \ell}{\partial p} = \frac{100}{d}
        \frac{\operatorname{sign}(e)}{\max(|y|, \varepsilon_K)}
    """

    def __init__(self, reduction: str | None = "sum_over_batch_size",
                 name: str | None = "mean_absolute_percentage_error") -> None:
        super().__init__(reduction, name, "mean_absolute_percentage_error")

    def _elementwise(self, pred, target):
        scale = 100 / np.maximum(np.abs(target), np.asarray(EPSILON, pred.dtype))
        error = pred - target
        return np.abs(error) * scale, np.sign(error) * scale


class MeanSquaredLogarithmicError(_MeanOverLastAxis):
    r"""Keras' mean squared logarithmic error; values below ``ε_K = 1e-7`` count as ``ε_K``.

    .. math::
        \ell = \frac{1}{d} \sum_k \left(\log(1 + \hat p_k) - \log(1 + \hat y_k)\right)^2,
        \quad \hat x = \max(x, \varepsilon_K), \qquad
        \frac{\partial \ell}{\partial p} = \frac{2}{d}
        \frac{\log(1 + \hat p) - \log(1 + \hat y)}{1 + \hat p} [p > \varepsilon_K]
    """

    def __init__(self, reduction: str | None = "sum_over_batch_size",
                 name: str | None = "mean_squared_logarithmic_error") -> None:
        super().__init__(reduction, name, "mean_squared_logarithmic_error")

    def _elementwise(self, pred, target):
        eps = np.asarray(EPSILON, pred.dtype)
        floored = np.maximum(pred, eps)
        gap = np.log1p(floored) - np.log1p(np.maximum(target, eps))
        return gap**2, np.where(pred > eps, 2 * gap / (1 + floored), 0)


class Huber(_MeanOverLastAxis):
    r"""Keras' Huber loss: squared for small errors, linear beyond ``delta`` (``δ``).

    .. math::
        f(e) = \begin{cases} \tfrac12 e^2 & |e| \le \delta \\
                             \delta |e| - \tfrac12 \delta^2 & |e| > \delta \end{cases},
        \qquad \ell = \frac{1}{d} \sum_k f(e_k), \qquad
        \frac{\partial \ell}{\partial p} = \frac{\operatorname{clip}(e, -\delta, \delta)}{d}
    """

    def __init__(self, delta: float = 1.0, reduction: str | None = "sum_over_batch_size",
                 name: str | None = "huber_loss") -> None:
        super().__init__(reduction, name, "huber_loss")
        if isinstance(delta, bool) or not isinstance(delta, (int, float, np.floating)) or (
                not math.isfinite(delta)) or delta < 0:
            raise ValueError(f"Huber: delta must be a finite number >= 0, got {delta!r}")
        self.delta = float(delta)

    def _elementwise(self, pred, target):
        error = pred - target
        delta = np.asarray(self.delta, pred.dtype)
        small = np.abs(error) <= delta
        values = np.where(small, 0.5 * error**2, delta * np.abs(error) - 0.5 * delta**2)
        return values, np.clip(error, -delta, delta)


class LogCosh(_MeanOverLastAxis):
    r"""Keras' log-cosh loss: like half the squared error near 0, like ``|e| - log 2`` far.

    .. math::
        \ell = \frac{1}{d} \sum_k \log\cosh e_k, \qquad
        \frac{\partial \ell}{\partial p} = \frac{\tanh e}{d}

    computed as ``|e| + log(1 + e^{-2|e|}) - log 2``, which never overflows.
    """

    def __init__(self, reduction: str | None = "sum_over_batch_size",
                 name: str | None = "log_cosh") -> None:
        super().__init__(reduction, name, "log_cosh")

    def _elementwise(self, pred, target):
        error = pred - target
        magnitude = np.abs(error)
        values = magnitude + np.log1p(np.exp(-2 * magnitude)) - np.log(2).astype(pred.dtype)
        return values, np.tanh(error)


class CosineSimilarity(ReducedLoss):
    r"""Keras' cosine similarity loss along ``axis``: -1 for vectors pointing the same way.

    With ``p̂ = p / max(‖p‖, ε_K)`` and ``ŷ`` likewise (``ε_K = 1e-7``, so a zero vector
    scores 0):

    .. math::
        \ell = -\langle \hat y, \hat p \rangle, \qquad
        \frac{\partial \ell}{\partial p} = -\frac{\hat y - \hat p \langle \hat y, \hat p \rangle}
        {\lVert p \rVert} \text{ if } \lVert p \rVert > \varepsilon_K, \text{ else }
        -\frac{\hat y}{\varepsilon_K}
    """

    def __init__(self, axis: int = -1, reduction: str | None = "sum_over_batch_size",
                 name: str | None = "cosine_similarity") -> None:
        super().__init__(reduction, name, "cosine_similarity")
        self.axis = check_axis_argument(axis, "CosineSimilarity")

    def _per_sample(self, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
        check_same_shape(pred, target, "CosineSimilarity")
        axis = resolve_axis(self.axis, pred, "CosineSimilarity")
        eps = np.asarray(EPSILON, pred.dtype)
        target = target.astype(pred.dtype, copy=False)
        pred_norm = np.sqrt(np.sum(pred**2, axis=axis, keepdims=True))
        unit_pred = pred / np.maximum(pred_norm, eps)
        unit_target = target / np.maximum(np.sqrt(np.sum(target**2, axis=axis, keepdims=True)),
                                          eps)
        similarity = np.sum(unit_target * unit_pred, axis=axis, keepdims=True)
        # below ε_K the norm is the constant ε_K, so p̂ = p / ε_K is linear in p
        projected = np.where(pred_norm > eps, unit_target - unit_pred * similarity, unit_target)
        self._cache = (-projected / np.maximum(pred_norm, eps), axis)
        return -np.squeeze(similarity, axis=axis)

    def _per_sample_grad(self, grad_losses: np.ndarray) -> np.ndarray:
        grad, axis = self._cache
        return grad * np.expand_dims(grad_losses, axis)
