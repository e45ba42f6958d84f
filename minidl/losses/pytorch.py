"""minidl's first losses, with PyTorch's definitions: ``CrossEntropy`` and ``BinaryCrossEntropy``.

They read logits by default, as ``torch.nn.CrossEntropyLoss`` and ``BCEWithLogitsLoss`` do,
and average over the batch (PyTorch's "mean"). The arithmetic lives in
:mod:`minidl.functional`; these classes add the call/backward protocol, the probability-space
variants (``from_logits=False``), per-sample weights and configuration as data.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from minidl import functional as F

# argument checks are shared with functional so that both give the same messages
from minidl.functional._checks import (
    _as_float_array,
    _check_binary_target,
    _check_cross_entropy_args,
    _check_pair,
)
from minidl.losses.base import Loss, check_from_logits, check_label_smoothing


def _check_probabilities(probs: np.ndarray, owner: str) -> None:
    if probs.size and not (np.min(probs) >= 0 and np.max(probs) <= 1):
        raise ValueError(f"{owner}: with from_logits=False, pred must be probabilities in "
                         f"[0, 1], got values in [{np.min(probs)}, {np.max(probs)}]; "
                         f"pass from_logits=True for logits")


def _log_clipped(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(clip(p, tiny, 1), log of it)``: the floor keeps log and 1/p finite at p = 0."""
    clipped = np.clip(probs, np.finfo(probs.dtype).tiny, 1)
    return clipped, np.log(clipped)


def _sample_weights(owner: str, sample_weight: ArrayLike | None, batch_size: int,
                    dtype: np.dtype) -> np.ndarray | None:
    """One weight per sample, shape ``(N,)`` (``(N, 1)`` is accepted too), or None."""
    if sample_weight is None:
        return None
    weights = _as_float_array(sample_weight, owner, "sample_weight").astype(dtype, copy=False)
    if weights.shape == (batch_size, 1):
        weights = weights[:, 0]
    if weights.shape != (batch_size,):
        raise ValueError(f"{owner}: sample_weight must have shape ({batch_size},), one weight "
                         f"per sample, got shape {weights.shape}")
    return weights


class CrossEntropy(Loss):
    r"""Cross-entropy for ``C``-class classification, averaged over the rows (PyTorch's
    ``CrossEntropyLoss``, with the class axis last).

    ``pred`` has shape ``(N, C)``, or ``(N, ..., C)`` for one prediction per pixel (each pixel
    is a row). ``target`` is class indices ``t`` of shape ``(N,)`` (or ``(N, 1)``, or
    ``pred.shape[:-1]``; then ``y = one_hot(t)``) or class probabilities ``y`` of the shape of
    ``pred``; label smoothing ``ε`` mixes in the uniform distribution,
    ``ỹ = (1 - ε) y + ε / C``. The loss is the mean over the ``M`` rows, each scaled by its
    sample's weight ``w`` (``sample_weight``, default 1; one weight covers every pixel of its
    sample; the sum is divided by ``M`` whatever the weights, as Keras' default reduction).

    With ``from_logits=True`` (default) ``pred`` are logits ``z`` and the softmax is fused
    into the loss, as :func:`minidl.functional.cross_entropy`:

    .. math::
        L = -\frac{1}{M} \sum_m w_m \sum_c \tilde y_{mc} \log \operatorname{softmax}(z_m)_c,
        \qquad \frac{\partial L}{\partial z_m} = \frac{w_m}{M}(\operatorname{softmax}(z_m)
        - \tilde y_m)

    With ``from_logits=False`` ``pred`` are probabilities ``p`` (rows of a softmax); their
    log is taken of ``p`` clipped to ``[tiny, 1]`` (``tiny`` the dtype's smallest normal
    number), so a zero probability costs a large but finite loss:

    .. math::
        L = -\frac{1}{M} \sum_{m,c} w_m \tilde y_{mc} \log p_{mc}, \qquad
        \frac{\partial L}{\partial p_m} = -\frac{w_m \tilde y_m}{M\, p_m}

    Keras' probability-space loss, which normalises and clips at 1e-7, is
    :class:`~minidl.losses.CategoricalCrossentropy`.
    """

    fuses_with = "softmax"
    index_targets = True

    def __init__(self, from_logits: bool = True, label_smoothing: float = 0.0) -> None:
        self.from_logits = check_from_logits(from_logits, "CrossEntropy")
        self.label_smoothing = check_label_smoothing(label_smoothing, "CrossEntropy")
        self._grad: np.ndarray | None = None
        self._pred_shape: tuple[int, ...] = ()

    def on_logits(self) -> CrossEntropy:
        return CrossEntropy(label_smoothing=self.label_smoothing)

    def predictions(self, pred: np.ndarray) -> np.ndarray:
        return F.softmax(pred) if self.from_logits else pred

    def _rows(self, pred: ArrayLike,
              target: ArrayLike) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """``(logits or probs, labels, target_probs)`` with one row per sample or pixel."""
        fn = "cross_entropy" if self.from_logits else "CrossEntropy"
        pred = _as_float_array(pred, fn, "logits" if self.from_logits else "pred")
        target = np.asarray(target)
        if pred.ndim >= 2 and target.shape in (pred.shape[:-1], (*pred.shape[:-1], 1)) and (
                target.shape != pred.shape):
            # class indices, also Keras' (N, 1) and per-pixel (N, H, W[, 1]) labels
            target = target.reshape(-1)
            pred = pred.reshape(-1, pred.shape[-1])
        elif pred.ndim > 2 and target.shape == pred.shape:
            target = target.reshape(-1, pred.shape[-1])
            pred = pred.reshape(-1, pred.shape[-1])
        rows, labels, target_probs, _ = _check_cross_entropy_args(
            fn, pred, target, "mean", self.label_smoothing, None)
        if not self.from_logits:
            _check_probabilities(rows, fn)
        if rows.shape[0] == 0:
            raise ValueError(f"{fn}: the mean over an empty batch is undefined")
        return rows, labels, target_probs

    def __call__(self, pred: ArrayLike, target: ArrayLike,
                 sample_weight: ArrayLike | None = None) -> float:
        self._grad = None
        rows, labels, target_probs = self._rows(pred, target)
        num_rows, num_classes = rows.shape
        weights = _sample_weights("CrossEntropy", sample_weight, np.shape(pred)[0], rows.dtype)
        # d L / d ℓ_m: w_m / M, each sample's weight repeated over its pixels
        row_coefficients = (np.full(num_rows, 1 / num_rows, rows.dtype) if weights is None
                            else np.repeat(weights, num_rows // len(weights)) / num_rows)
        smoothing = self.label_smoothing
        if self.from_logits:
            row_max = rows.max(axis=1, keepdims=True)
            if labels is not None and np.isfinite(row_max).all():
                row_losses, grad = self._index_targets_one_pass(rows, labels, row_max,
                                                                row_coefficients)
            else:
                row_losses = F.cross_entropy(rows, labels if target_probs is None
                                             else target_probs, reduction="none",
                                             label_smoothing=smoothing)
                grad = F.cross_entropy_grad(rows, labels if target_probs is None
                                            else target_probs, reduction="none",
                                            label_smoothing=smoothing)
                grad *= row_coefficients[:, None]
        else:
            if target_probs is None:
                target_probs = F.one_hot(labels, num_classes, dtype=rows.dtype)
            smoothed = (1 - smoothing) * target_probs + smoothing / num_classes
            clipped, log_probs = _log_clipped(rows)
            row_losses = -np.sum(smoothed * log_probs, axis=1)
            grad = (-smoothed / clipped * row_coefficients[:, None]).astype(rows.dtype,
                                                                             copy=False)
        value = np.mean(row_losses) if weights is None else row_losses @ row_coefficients
        self._grad, self._pred_shape = grad, np.shape(pred)
        return float(value)

    def _index_targets_one_pass(self, logits: np.ndarray, labels: np.ndarray,
                                row_max: np.ndarray, row_coefficients: np.ndarray,
                                ) -> tuple[np.ndarray, np.ndarray]:
        """The training path (class indices, finite logits): the losses and their gradient
        from one exponential of the shifted logits.

        ``log softmax(z)_c = s_c - log Σ_k e^{s_k}`` with ``s = z - max(z)``: the same
        arithmetic as :func:`minidl.functional.cross_entropy`, computed once instead of twice
        (the loss and its gradient), which halves the cost of a small model's step.
        """
        num_rows, num_classes = logits.shape
        rows = np.arange(num_rows)
        with np.errstate(over="ignore"):  # s below -finfo.max is -inf: its exp is the 0 it is
            shifted = logits - row_max
        exp_shifted = np.exp(shifted)
        total = exp_shifted.sum(axis=1, keepdims=True)
        log_total = np.log(total)[:, 0]
        row_losses = log_total - shifted[rows, labels]
        if self.label_smoothing > 0:
            # the uniform part: Σ_c log softmax(z)_c = Σ_c s_c - C log Σ_k e^{s_k}
            all_log_probs = shifted.sum(axis=1) - num_classes * log_total
            row_losses = ((1 - self.label_smoothing) * row_losses
                          - self.label_smoothing / num_classes * all_log_probs)
        # (softmax(z) - ỹ) w / M with ỹ = (1 - ε) one_hot(t) + ε / C, in place
        exp_shifted /= total
        grad = exp_shifted
        grad *= row_coefficients[:, None]
        if self.label_smoothing > 0:
            grad -= (self.label_smoothing / num_classes) * row_coefficients[:, None]
        grad[rows, labels] -= (1 - self.label_smoothing) * row_coefficients
        return row_losses, grad

    def backward(self) -> np.ndarray:
        if self._grad is None:
            raise self._backward_not_ready()
        return self._grad.reshape(self._pred_shape)


class BinaryCrossEntropy(Loss):
    r"""Binary cross-entropy for independent yes/no outputs, averaged over all ``n`` elements
    (PyTorch's ``BCEWithLogitsLoss``).

    ``target`` has the shape of ``pred`` and holds probabilities ``y`` in [0, 1]; per-sample
    weights ``w`` (default 1) scale every element of their sample. With ``from_logits=True``
    (default) ``pred`` are logits ``x``, as
    :func:`minidl.functional.binary_cross_entropy_with_logits`:

    .. math::
        L = \frac{1}{n} \sum_i w_i \left(\max(x_i, 0) - x_i y_i + \log(1 + e^{-|x_i|})\right),
        \qquad \frac{\partial L}{\partial x} = \frac{w (\sigma(x) - y)}{n}

    With ``from_logits=False`` ``pred`` are probabilities ``p``, clipped to ``[tiny, 1]``
    inside the logs (also ``1 - p``):

    .. math::
        L = -\frac{1}{n} \sum_i w_i (y_i \log p_i + (1 - y_i) \log(1 - p_i)), \qquad
        \frac{\partial L}{\partial p} = \frac{w}{n}\left(\frac{1 - y}{1 - p} - \frac{y}{p}\right)

    Keras' loss, which clips at 1e-7 and averages over the last axis, is
    :class:`~minidl.losses.BinaryCrossentropy`.
    """

    fuses_with = "sigmoid"

    def __init__(self, from_logits: bool = True) -> None:
        self.from_logits = check_from_logits(from_logits, "BinaryCrossEntropy")
        self._grad: np.ndarray | None = None

    def on_logits(self) -> BinaryCrossEntropy:
        return BinaryCrossEntropy(from_logits=True)

    def predictions(self, pred: np.ndarray) -> np.ndarray:
        return F.sigmoid(pred) if self.from_logits else pred

    def __call__(self, pred: ArrayLike, target: ArrayLike,
                 sample_weight: ArrayLike | None = None) -> float:
        self._grad = None
        fn = "binary_cross_entropy_with_logits" if self.from_logits else "BinaryCrossEntropy"
        pred, target = _check_pair(fn, pred, target, "mean",
                                   "logits" if self.from_logits else "pred")
        _check_binary_target(target, fn)
        if pred.size == 0:
            raise ValueError(f"{fn}: the mean over an empty batch is undefined; "
                             f"use reduction='sum' or 'none'")
        if self.from_logits:
            losses = F.binary_cross_entropy_with_logits(pred, target, reduction="none")
            grad = F.sigmoid(pred) - target
        else:
            _check_probabilities(pred, fn)
            clipped, log_probs = _log_clipped(pred)
            clipped_complements, log_complements = _log_clipped(1 - pred)
            losses = -(target * log_probs + (1 - target) * log_complements)
            grad = (1 - target) / clipped_complements - target / clipped
        weights = _sample_weights("BinaryCrossEntropy", sample_weight,
                                  pred.shape[0] if pred.ndim else 1, pred.dtype)
        if weights is None:
            value = np.mean(losses)
            grad /= pred.size
        else:
            weights = weights.reshape(weights.shape + (1,) * (pred.ndim - 1))
            value = np.sum(losses * weights) / pred.size
            grad *= weights / pred.size
        self._grad = grad
        return float(value)

    def backward(self) -> np.ndarray:
        if self._grad is None:
            raise self._backward_not_ready()
        return self._grad
