"""Training losses: a value for the batch and its gradient with respect to the predictions.

A loss is called as ``loss(pred, target) -> float``; the call keeps what ``backward()`` needs,
and ``backward()`` returns ``d loss / d pred`` with the shape and dtype of ``pred``. Every
loss averages over the batch ("mean" reduction), like PyTorch's defaults. The arithmetic
lives in :mod:`minidl.functional`; this module adds the stateful call/backward protocol,
the probability-space variants (``from_logits=False``) and configuration as data.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from numbers import Real
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from minidl import functional as F

# argument checks are shared with functional so that both give the same messages
from minidl.functional._checks import (
    _check_binary_target,
    _check_cross_entropy_args,
    _check_pair,
)
from minidl.registry import Configurable, class_and_config, to_spec


class Loss(Configurable):
    """A loss ``L(pred, target)`` averaged over the batch.

    ``__call__`` computes the value and keeps its inputs; ``backward`` returns
    ``dL / d pred`` for the last call, with the shape and dtype of ``pred``.
    Subclasses store their constructor arguments under the same names, so that
    ``get_config`` / ``from_config`` round-trip them.

    A loss that reads probabilities names the output activation it fuses with
    (``fuses_with``: "softmax", "sigmoid"). A model that ends in that activation then trains
    on the logits before it with ``on_logits()``, whose gradient never goes through the
    activation's Jacobian; ``predictions`` tells what the metrics see.
    """

    #: the output activation (a step's ``fused_activation()``) this loss fuses with, or None
    fuses_with: str | None = None
    #: True when targets may be class indices of shape (N,) against outputs of shape (N, C)
    index_targets: bool = False

    def __init__(self) -> None:
        self._inputs: tuple[np.ndarray, np.ndarray] | None = None

    def on_logits(self) -> Loss:
        """This loss applied to the logits before the ``fuses_with`` activation."""
        raise TypeError(f"{type(self).__name__} fuses with no activation (its fuses_with is "
                        f"None), so it has no form on logits")

    def predictions(self, pred: np.ndarray) -> np.ndarray:
        """What the metrics see for ``pred``, this loss's input: probabilities, when this loss
        reads logits, so that accuracy thresholds a sigmoid's output at 0.5, never a logit."""
        return pred

    def __call__(self, pred: ArrayLike, target: ArrayLike) -> float:
        raise NotImplementedError  # abstract

    def backward(self) -> np.ndarray:
        """``d loss / d pred`` for the inputs of the last call."""
        raise NotImplementedError  # abstract

    def _last_inputs(self) -> tuple[np.ndarray, np.ndarray]:
        if self._inputs is None:
            raise RuntimeError(f"{type(self).__name__}.backward() was called before the loss "
                               f"was computed; call loss(pred, target) first")
        return self._inputs


def _check_from_logits(from_logits: bool, owner: str) -> bool:
    if not isinstance(from_logits, (bool, np.bool_)):
        raise TypeError(f"{owner}: from_logits must be True or False, "
                        f"got {type(from_logits).__name__}")
    return bool(from_logits)


def _check_probabilities(probs: np.ndarray, owner: str) -> None:
    if probs.size and not (np.min(probs) >= 0 and np.max(probs) <= 1):
        raise ValueError(f"{owner}: with from_logits=False, pred must be probabilities in "
                         f"[0, 1], got values in [{np.min(probs)}, {np.max(probs)}]; "
                         f"pass from_logits=True for logits")


def _log_clipped(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(clip(p, tiny, 1), log of it)``: the floor keeps log and 1/p finite at p = 0."""
    clipped = np.clip(probs, np.finfo(probs.dtype).tiny, 1)
    return clipped, np.log(clipped)


class CrossEntropy(Loss):
    r"""Cross-entropy for ``C``-class classification, averaged over the ``N`` rows.

    ``target`` is class indices ``t`` of shape ``(N,)`` (``y = one_hot(t)``) or class
    probabilities ``y`` of shape ``(N, C)``; label smoothing ``ε`` mixes in the uniform
    distribution, ``ỹ = (1 - ε) y + ε / C``.

    With ``from_logits=True`` (default) ``pred`` are logits ``z`` and the softmax is fused
    into the loss, as :func:`minidl.functional.cross_entropy`:

    .. math::
        L = -\frac{1}{N} \sum_n \sum_c \tilde y_{nc} \log \operatorname{softmax}(z_n)_c,
        \qquad \frac{\partial L}{\partial z} = \frac{\operatorname{softmax}(z) - \tilde y}{N}

    With ``from_logits=False`` ``pred`` are probabilities ``p`` (rows of a softmax); their
    log is taken of ``p`` clipped to ``[tiny, 1]`` (``tiny`` the dtype's smallest normal
    number), so a zero probability costs a large but finite loss:

    .. math::
        L = -\frac{1}{N} \sum_{n,c} \tilde y_{nc} \log p_{nc}, \qquad
        \frac{\partial L}{\partial p} = -\frac{\tilde y}{N\, p}
    """

    fuses_with = "softmax"
    index_targets = True

    def __init__(self, from_logits: bool = True, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.from_logits = _check_from_logits(from_logits, "CrossEntropy")
        if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, Real):
            raise TypeError(f"CrossEntropy: label_smoothing must be a number in [0, 1], "
                            f"got {type(label_smoothing).__name__}")
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropy: label_smoothing must be in [0, 1], "
                             f"got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        self._probs: np.ndarray | None = None  # softmax kept by the one-pass training path
        self._labels: np.ndarray | None = None

    def on_logits(self) -> CrossEntropy:
        return CrossEntropy(label_smoothing=self.label_smoothing)

    def predictions(self, pred: np.ndarray) -> np.ndarray:
        return F.softmax(pred) if self.from_logits else pred

    def _probs_and_smoothed_targets(self, pred: ArrayLike,
                                    target: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        probs, labels, target_probs, _ = _check_cross_entropy_args(
            "CrossEntropy", pred, target, "mean", self.label_smoothing, None)
        _check_probabilities(probs, "CrossEntropy")
        if probs.shape[0] == 0:
            raise ValueError("CrossEntropy: the mean over an empty batch is undefined")
        num_classes = probs.shape[1]
        if target_probs is None:
            target_probs = F.one_hot(labels, num_classes, dtype=probs.dtype)
        smoothed = ((1 - self.label_smoothing) * target_probs
                    + self.label_smoothing / num_classes)
        return probs, smoothed

    def __call__(self, pred: ArrayLike, target: ArrayLike) -> float:
        self._probs = None
        if self.from_logits:
            logits, labels, _, _ = _check_cross_entropy_args(
                "cross_entropy", pred, target, "mean", self.label_smoothing, None)
            row_max = logits.max(axis=1, keepdims=True) if logits.size else None
            if labels is not None and row_max is not None and np.isfinite(row_max).all():
                value = self._index_targets_one_pass(logits, labels, row_max)
            else:
                value = F.cross_entropy(pred, target, label_smoothing=self.label_smoothing)
        else:
            probs, smoothed = self._probs_and_smoothed_targets(pred, target)
            _, log_probs = _log_clipped(probs)
            value = -np.sum(smoothed * log_probs) / probs.shape[0]
        self._inputs = (pred, target)
        return float(value)

    def _index_targets_one_pass(self, logits: np.ndarray, labels: np.ndarray,
                                row_max: np.ndarray) -> float:
        """The training path (class indices, finite logits): the value and the softmax for
        ``backward`` from one exponential of the shifted logits.

        ``log softmax(z)_c = s_c - log Σ_k e^{s_k}`` with ``s = z - max(z)``: the same
        arithmetic as :func:`minidl.functional.cross_entropy`, computed once instead of twice
        (the loss and its gradient), which halves the cost of a small model's step.
        """
        batch_size, num_classes = logits.shape
        with np.errstate(over="ignore"):  # s below -finfo.max is -inf: its exp is the 0 it is
            shifted = logits - row_max
        exp_shifted = np.exp(shifted)
        total = exp_shifted.sum(axis=1, keepdims=True)
        log_total = np.log(total)[:, 0]
        target_log_probs = shifted[np.arange(batch_size), labels] - log_total
        value = -(1 - self.label_smoothing) * np.mean(target_log_probs)
        if self.label_smoothing > 0:
            # the uniform part: Σ_c log softmax(z)_c = Σ_c s_c - C log Σ_k e^{s_k}
            all_log_probs = shifted.sum(axis=1) - num_classes * log_total
            value -= self.label_smoothing / num_classes * np.mean(all_log_probs)
        exp_shifted /= total
        self._probs, self._labels = exp_shifted, labels
        return float(value)

    def backward(self) -> np.ndarray:
        pred, target = self._last_inputs()
        if self._probs is not None:
            # (softmax(z) - ỹ) / N with ỹ = (1 - ε) one_hot(t) + ε / C
            batch_size, num_classes = self._probs.shape
            grad = self._probs * (1 / batch_size)
            if self.label_smoothing > 0:
                grad -= self.label_smoothing / (num_classes * batch_size)
            grad[np.arange(batch_size), self._labels] -= (1 - self.label_smoothing) / batch_size
            return grad
        if self.from_logits:
            return F.cross_entropy_grad(pred, target, label_smoothing=self.label_smoothing)
        probs, smoothed = self._probs_and_smoothed_targets(pred, target)
        clipped, _ = _log_clipped(probs)
        return (-smoothed / clipped / probs.shape[0]).astype(probs.dtype, copy=False)


class BinaryCrossEntropy(Loss):
    r"""Binary cross-entropy for independent yes/no outputs, averaged over all ``n`` elements.

    ``target`` has the shape of ``pred`` and holds probabilities ``y`` in [0, 1]. With
    ``from_logits=True`` (default) ``pred`` are logits ``x``, as
    :func:`minidl.functional.binary_cross_entropy_with_logits`:

    .. math::
        L = \frac{1}{n} \sum_i \max(x_i, 0) - x_i y_i + \log(1 + e^{-|x_i|}), \qquad
        \frac{\partial L}{\partial x} = \frac{\sigma(x) - y}{n}

    With ``from_logits=False`` ``pred`` are probabilities ``p``, clipped to ``[tiny, 1]``
    inside the logs (also ``1 - p``):

    .. math::
        L = -\frac{1}{n} \sum_i y_i \log p_i + (1 - y_i) \log(1 - p_i), \qquad
        \frac{\partial L}{\partial p} = \frac{1}{n}\left(\frac{1 - y}{1 - p} - \frac{y}{p}\right)
    """

    fuses_with = "sigmoid"

    def __init__(self, from_logits: bool = True) -> None:
        super().__init__()
        self.from_logits = _check_from_logits(from_logits, "BinaryCrossEntropy")

    def on_logits(self) -> BinaryCrossEntropy:
        return BinaryCrossEntropy(from_logits=True)

    def predictions(self, pred: np.ndarray) -> np.ndarray:
        return F.sigmoid(pred) if self.from_logits else pred

    def _probs_and_targets(self, pred: ArrayLike,
                           target: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        probs, target = _check_pair("BinaryCrossEntropy", pred, target, "mean")
        _check_binary_target(target, "BinaryCrossEntropy")
        _check_probabilities(probs, "BinaryCrossEntropy")
        if probs.size == 0:
            raise ValueError("BinaryCrossEntropy: the mean over an empty batch is undefined")
        return probs, target

    def __call__(self, pred: ArrayLike, target: ArrayLike) -> float:
        if self.from_logits:
            value = F.binary_cross_entropy_with_logits(pred, target)
        else:
            probs, target = self._probs_and_targets(pred, target)
            _, log_probs = _log_clipped(probs)
            _, log_complements = _log_clipped(1 - probs)
            value = -np.mean(target * log_probs + (1 - target) * log_complements)
        self._inputs = (pred, target)
        return float(value)

    def backward(self) -> np.ndarray:
        pred, target = self._last_inputs()
        if self.from_logits:
            return F.binary_cross_entropy_with_logits_grad(pred, target)
        probs, target = self._probs_and_targets(pred, target)
        clipped, _ = _log_clipped(probs)
        clipped_complements, _ = _log_clipped(1 - probs)
        return ((1 - target) / clipped_complements - target / clipped) / probs.size


class MeanSquaredError(Loss):
    r"""Mean squared error over all ``n`` elements (PyTorch's ``MSELoss``).

    .. math::
        L = \frac{1}{n} \sum_i (p_i - y_i)^2, \qquad
        \frac{\partial L}{\partial p} = \frac{2 (p - y)}{n}
    """

    def __call__(self, pred: ArrayLike, target: ArrayLike) -> float:
        value = F.mse(pred, target)
        self._inputs = (pred, target)
        return float(value)

    def backward(self) -> np.ndarray:
        return F.mse_grad(*self._last_inputs())


class MeanAbsoluteError(Loss):
    r"""Mean absolute error over all ``n`` elements (PyTorch's ``L1Loss``).

    .. math::
        L = \frac{1}{n} \sum_i |p_i - y_i|, \qquad
        \frac{\partial L}{\partial p} = \frac{\operatorname{sign}(p - y)}{n}

    with ``sign(0) = 0``: a prediction on its target gets no push.
    """

    def __call__(self, pred: ArrayLike, target: ArrayLike) -> float:
        value = F.mae(pred, target)
        self._inputs = (pred, target)
        return float(value)

    def backward(self) -> np.ndarray:
        return F.mae_grad(*self._last_inputs())


LOSSES: dict[str, type[Loss]] = {
    "CrossEntropy": CrossEntropy,
    "BinaryCrossEntropy": BinaryCrossEntropy,
    "MeanSquaredError": MeanSquaredError,
    "MeanAbsoluteError": MeanAbsoluteError,
}

# The names that compile(loss=...) accepts. minidl's own names read logits, as PyTorch's
# losses do; Keras' names keep Keras' default from_logits=False (the model's output is
# probabilities). Either way a softmax or sigmoid output layer is fused with the loss in
# training (minidl.model), so the two spellings train alike.
_NAMES: dict[str, Callable[[], Loss]] = {
    "cross_entropy": CrossEntropy,
    "binary_cross_entropy": BinaryCrossEntropy,
    "mse": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "mean_squared_error": MeanSquaredError,
    "MSE": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError,
    "MAE": MeanAbsoluteError,
    "categorical_crossentropy": partial(CrossEntropy, from_logits=False),
    "sparse_categorical_crossentropy": partial(CrossEntropy, from_logits=False),
    "binary_crossentropy": partial(BinaryCrossEntropy, from_logits=False),
}


def get(name_or_loss: str | Loss) -> Loss:
    """A new loss with default arguments for a name in ``_NAMES``, or the Loss itself."""
    if isinstance(name_or_loss, Loss):
        return name_or_loss
    if not isinstance(name_or_loss, str):
        raise TypeError(f"get: expected a loss name or a Loss instance, "
                        f"got {type(name_or_loss).__name__}")
    if name_or_loss not in _NAMES:
        raise ValueError(f"get: unknown loss {name_or_loss!r}; known: {', '.join(_NAMES)}")
    return _NAMES[name_or_loss]()


def serialize(loss: Loss | None) -> dict[str, Any] | None:
    """``{"class_name": ..., "config": ...}`` for a registered loss; None for None."""
    if loss is None:
        return None
    if not isinstance(loss, Loss):
        raise TypeError(f"serialize: expected a Loss or None, got {type(loss).__name__}")
    return to_spec(loss, LOSSES, "minidl.losses.LOSSES")


def deserialize(spec: dict[str, Any] | Loss | None) -> Loss | None:
    """The loss described by ``spec``: None, a Loss (returned as is), or a dict
    ``{"class_name": name in LOSSES, "config": {...}}``."""
    if spec is None or isinstance(spec, Loss):
        return spec
    cls, config = class_and_config(spec, LOSSES, "loss")
    return cls.from_config(config)
