"""The loss protocol, and Keras' reduction of per-sample losses with sample weights.

:class:`Loss` is what the model calls: ``loss(pred, target, sample_weight=None)`` gives the
value and keeps what ``backward()`` needs; ``backward()`` gives ``d value / d pred``.
:class:`ReducedLoss` is the base of Keras' losses: a subclass computes one loss per sample
(``_per_sample``) and its gradient (``_per_sample_grad``); the base weights and reduces them
exactly as ``keras.losses.Loss`` does, and chains the reduction into the gradient.
"""

from __future__ import annotations

from numbers import Real
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from minidl.functional._checks import _as_float_array
from minidl.registry import Configurable

#: Keras' ``backend.epsilon()``: the clipping bound of Keras' probability losses
EPSILON = 1e-7

REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)


class Loss(Configurable):
    """A loss ``L(pred, target)``: ``__call__`` computes it and keeps its inputs; ``backward``
    returns ``dL / d pred`` for the last call, with the shape and dtype of ``pred``.

    The argument order is minidl's, ``loss(pred, target, sample_weight=None)``, the reverse of
    Keras' ``loss(y_true, y_pred)``. Subclasses store their constructor arguments under the
    same names, so that ``get_config`` / ``from_config`` round-trip them.

    A loss that reads probabilities names the output activation it fuses with
    (``fuses_with``: "softmax", "sigmoid"). A model that ends in that activation then trains
    on the logits before it with ``on_logits()``, whose gradient never goes through the
    activation's Jacobian; ``predictions`` tells what the metrics see.
    """

    #: the output activation (a step's ``fused_activation()``) this loss fuses with, or None
    fuses_with: str | None = None
    #: True when targets may be class indices of shape (N,) against outputs of shape (N, C)
    index_targets: bool = False

    def on_logits(self) -> Loss:
        """This loss applied to the logits before the ``fuses_with`` activation."""
        raise TypeError(f"{type(self).__name__} fuses with no activation (its fuses_with is "
                        f"None), so it has no form on logits")

    def predictions(self, pred: np.ndarray) -> np.ndarray:
        """What the metrics see for ``pred``, this loss's input: probabilities, when this loss
        reads logits, so that accuracy thresholds a sigmoid's output at 0.5, never a logit."""
        return pred

    def __call__(self, pred: ArrayLike, target: ArrayLike,
                 sample_weight: ArrayLike | None = None) -> float | np.ndarray:
        raise NotImplementedError  # abstract

    def backward(self) -> np.ndarray:
        """``d loss / d pred`` for the inputs of the last call."""
        raise NotImplementedError  # abstract

    def shard_fraction(self, target: np.ndarray, batch_target: np.ndarray,
                       sample_weight: np.ndarray | None = None,
                       batch_sample_weight: np.ndarray | None = None) -> float:
        """The weight ``c`` of this loss on a shard of a batch (some of its rows, with
        ``target`` and ``sample_weight``) in the loss on the whole batch (``batch_target``,
        ``batch_sample_weight``): ``L(batch) = Σ over the shards of c · L(shard)``.
        Data-parallel training (``minidl.distributed``) splits each batch into shards, one
        per process, and relies on it.

        Here the loss of a batch is a mean over its rows: ``c`` = shard rows / batch rows.
        A loss of your own that is something else overrides this.
        """
        return len(target) / len(batch_target)

    def _backward_not_ready(self) -> RuntimeError:
        return RuntimeError(f"{type(self).__name__}.backward() was called before the loss was "
                            f"computed; call loss(pred, target) first")


def check_from_logits(from_logits: bool, owner: str) -> bool:
    if not isinstance(from_logits, (bool, np.bool_)):
        raise TypeError(f"{owner}: from_logits must be True or False, "
                        f"got {type(from_logits).__name__}")
    return bool(from_logits)


def check_label_smoothing(label_smoothing: float, owner: str) -> float:
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, Real):
        raise TypeError(f"{owner}: label_smoothing must be a number in [0, 1], "
                        f"got {type(label_smoothing).__name__}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{owner}: label_smoothing must be in [0, 1], got {label_smoothing}")
    return float(label_smoothing)


def check_axis_argument(axis: int, owner: str) -> int:
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise ValueError(f"{owner}: `axis` must be of type `int`. "
                         f"Received: axis={axis} of type {type(axis)}")
    return int(axis)


def resolve_axis(axis: int, x: np.ndarray, owner: str) -> int:
    """``axis`` as a non-negative index into ``x``'s dimensions."""
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"{owner}: axis {axis} is out of range for pred of shape {x.shape}")
    return axis % x.ndim


def same_rank(x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keras' ``squeeze_or_expand_to_same_rank``: when the ranks differ by one and the longer
    ends in a 1, expand a 1-D shorter one, else squeeze that 1 away."""
    if x1.ndim == x2.ndim + 1 and x1.shape[-1] == 1:
        if x2.ndim == 1:
            return x1, x2[:, None]
        return x1[..., 0], x2
    if x2.ndim == x1.ndim + 1 and x2.shape[-1] == 1:
        if x1.ndim == 1:
            return x1[:, None], x2
        return x1, x2[..., 0]
    return x1, x2


def _sum_to_shape(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The adjoint of broadcasting an array of ``shape`` up to ``grad.shape``."""
    extra = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(extra))) if extra else grad
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(axis=stretched, keepdims=True) if stretched else grad


class ReducedLoss(Loss):
    r"""A Keras loss: one loss ``ℓ`` per sample, weighted by ``w`` and reduced.

    ``ℓ`` has the shape of ``pred`` without its last axis (without ``axis`` where the loss has
    one): one loss per sample, or per pixel for outputs of shape ``(N, H, W, C)``. With the
    default ``reduction="sum_over_batch_size"`` (also ``"mean"``), over the ``n`` entries of
    ``ℓ``, and with ``"mean_with_sample_weight"``:

    .. math::
        L = \frac{1}{n} \sum_i w_i \ell_i, \qquad
        L = \frac{\sum_i w_i \ell_i}{\sum_i w_i}

    ``"sum"`` gives ``Σ w_i ℓ_i``; ``None`` or ``"none"`` give the array ``w ⊙ ℓ`` and then
    ``backward()`` is the gradient of its sum. A zero denominator gives 0 (Keras'
    ``divide_no_nan``). Weights broadcast as in Keras (a trailing axis of size 1 is squeezed
    or added first); beyond Keras, weights of shape ``(N,)`` apply to every pixel of
    per-pixel losses ``(N, H, W)``.
    """

    def __init__(self, reduction: str | None, name: str | None, default_name: str) -> None:
        if reduction not in REDUCTIONS:
            allowed = "{" + ", ".join(repr(r) for r in REDUCTIONS) + "}"
            raise ValueError(f"{type(self).__name__}: Invalid value for argument `reduction`. "
                             f"Expected one of {allowed}. Received: reduction={reduction!r}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}: name must be a string or None, "
                            f"got {type(name).__name__}")
        self.reduction = reduction
        self.name = name or default_name
        self._cache: Any = None
        self._grad_losses: np.ndarray | None = None
        self._pred_shape: tuple[int, ...] = ()

    # subclasses: one loss per sample and its gradient --------------------------------------

    def _per_sample(self, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
        """``ℓ`` for ``pred`` and ``target`` of the same rank; keeps in ``self._cache`` what
        ``_per_sample_grad`` needs."""
        raise NotImplementedError  # abstract

    def _per_sample_grad(self, grad_losses: np.ndarray) -> np.ndarray:
        """``Σ_i grad_losses_i · dℓ_i / d pred`` for the last ``_per_sample``."""
        raise NotImplementedError  # abstract

    def _mask(self) -> np.ndarray | None:
        """Entries of ``ℓ`` that count (a Keras mask), or None for all."""
        return None

    # the reduction -------------------------------------------------------------------------

    def __call__(self, pred: ArrayLike, target: ArrayLike,
                 sample_weight: ArrayLike | None = None) -> float | np.ndarray:
        owner = type(self).__name__
        pred = _as_float_array(pred, owner, "pred")
        if pred.ndim == 0:
            raise ValueError(f"{owner}: pred must have at least one axis, got a scalar")
        target = np.asarray(target)
        if target.dtype.kind not in "biuf":
            raise TypeError(f"{owner}: target must be a real numeric array, "
                            f"got dtype {target.dtype}")
        self._grad_losses = None
        self._pred_shape = pred.shape
        target, aligned = same_rank(target, pred)
        losses = self._per_sample(aligned, target)
        weights = self._weights(losses, sample_weight, pred.dtype)
        if weights is None:
            weighted = losses
            grad_weighted = np.ones_like(losses)
        else:
            losses_view, weights = same_rank(losses, weights)
            weights = _broadcastable(weights, losses_view, owner)
            weighted = losses_view * weights
            grad_weighted = np.broadcast_to(weights, weighted.shape)
            grad_weighted = _sum_to_shape(grad_weighted, losses_view.shape).reshape(losses.shape)
        if self.reduction in (None, "none"):
            self._grad_losses = grad_weighted
            return weighted
        total = np.sum(weighted)
        if self.reduction == "sum":
            divisor = 1
        elif self.reduction == "mean_with_sample_weight" and weights is not None:
            divisor = np.sum(weights)
        else:
            divisor = weighted.size
        value = total / divisor if divisor else total * 0
        self._grad_losses = grad_weighted / divisor if divisor else grad_weighted * 0
        return float(value)

    def shard_fraction(self, target: np.ndarray, batch_target: np.ndarray,
                       sample_weight: np.ndarray | None = None,
                       batch_sample_weight: np.ndarray | None = None) -> float:
        """``Loss.shard_fraction`` for Keras' reductions: 1 for "sum", else the shard's
        share of the divisor (its rows, or with "mean_with_sample_weight" its weights)."""
        if self.reduction == "sum":
            return 1.0
        batch = self._divisor_of(batch_target, batch_sample_weight)
        return self._divisor_of(target, sample_weight) / batch if batch else 0.0

    def _divisor_of(self, target: np.ndarray, sample_weight: np.ndarray | None) -> float:
        """What the reduction divides ``Σ w ℓ`` by for rows of ``target``, up to a factor
        that every row shares (its entries, for per-pixel losses)."""
        if self.reduction == "mean_with_sample_weight" and sample_weight is not None:
            return float(np.sum(sample_weight))
        return float(len(target))

    def _weights(self, losses: np.ndarray, sample_weight: ArrayLike | None,
                 dtype: np.dtype) -> np.ndarray | None:
        """``sample_weight`` merged with the mask, as Keras' ``apply_mask``."""
        owner = type(self).__name__
        weights = (None if sample_weight is None else
                   _as_float_array(sample_weight, owner, "sample_weight").astype(dtype, copy=False))
        mask = self._mask()
        if mask is None:
            return weights
        if self.reduction in ("mean", "sum_over_batch_size"):
            # valid entries weigh total/valid, so the mean over all is the mean over the valid
            valid = np.count_nonzero(mask)
            float_mask = np.where(mask, mask.size / valid if valid else 0, 0).astype(dtype)
        else:
            float_mask = mask.astype(dtype)
        if weights is None:
            return float_mask
        float_mask, weights = same_rank(float_mask, weights)
        return _broadcastable(weights, float_mask, owner) * float_mask

    def backward(self) -> np.ndarray:
        if self._grad_losses is None:
            raise self._backward_not_ready()
        grad = self._per_sample_grad(self._grad_losses)
        return grad.reshape(self._pred_shape)


def _broadcastable(weights: np.ndarray, losses: np.ndarray, owner: str) -> np.ndarray:
    """``weights`` shaped to broadcast against ``losses``: one weight per sample of per-pixel
    losses gets trailing axes; otherwise NumPy's rules, with an error naming both shapes."""
    if weights.ndim < losses.ndim and weights.shape == losses.shape[:weights.ndim]:
        return weights.reshape(weights.shape + (1,) * (losses.ndim - weights.ndim))
    try:
        np.broadcast_shapes(weights.shape, losses.shape)
    except ValueError:
        raise ValueError(f"{owner}: sample_weight of shape {weights.shape} does not broadcast "
                         f"to the losses of shape {losses.shape}; pass one weight per sample, "
                         f"shape ({losses.shape[0] if losses.ndim else 1},)") from None
    return weights

