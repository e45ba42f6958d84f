"""Preprocessing layers: ``Normalization``, the scaling that travels with the model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from minidl.layers.base import Layer, _layer_dtype

# Keras' backend epsilon: the smallest standard deviation Normalization divides by
_NORMALIZATION_EPSILON = 1e-7


class Normalization(Layer):
    r"""Shift and scale the inputs by fixed statistics (Keras' preprocessing layer).

    .. math::
        y = \frac{x - \mu}{\max(\sigma, \epsilon)}, \qquad
        \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}
            \frac{1}{\max(\sigma, \epsilon)}, \qquad \epsilon = 10^{-7}

    with one mean :math:`\mu` and variance :math:`\sigma^2` per position along ``axis``
    (default the last: one pair per feature; ``None``: one pair for the whole input), given
    as ``mean`` and ``variance`` or computed from the training data by ``adapt(x)``
    (the population variance, as Keras). The floor :math:`\epsilon` maps a constant feature
    to 0 instead of dividing by 0. ``invert=True`` undoes the normalization:
    :math:`y = \mu + x \max(\sigma, \epsilon)`.

    The statistics are the layer's state (``state()``), not parameters: training leaves them
    alone and the model file keeps them (``layers.0.mean``, ``layers.0.variance``), so a
    model that starts with this layer takes raw data wherever it is loaded or served.
    Building the layer again (as ``Sequential`` does) keeps adapted statistics.
    """

    def __init__(self, axis: int | Sequence[int] | None = -1, mean: Any = None,
                 variance: Any = None, invert: bool = False,
                 input_shape: Sequence[int] | None = None) -> None:
        super().__init__(input_shape=input_shape)
        if isinstance(axis, (list, tuple)):
            axis = list(axis)
        elif axis is not None and (isinstance(axis, bool) or not isinstance(axis, int)):
            axis = [axis]  # reported below, with the others
        if any(isinstance(a, bool) or not isinstance(a, int) for a in self._axes(axis)):
            raise TypeError(f"Normalization: axis must be an int, a list of ints or None, "
                            f"got {axis!r}")
        if (mean is None) != (variance is None):
            raise ValueError("Normalization: give both mean and variance, or neither (and "
                             "call adapt(x))")
        if variance is not None and np.min(variance) < 0:
            raise ValueError("Normalization: variance must be >= 0")
        if not isinstance(invert, bool):
            raise TypeError(f"Normalization: invert must be True or False, got {invert!r}")
        self.axis = axis
        # as JSON-able lists: they are part of the config, as in Keras
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64).tolist()
        self.variance = (None if variance is None
                         else np.asarray(variance, dtype=np.float64).tolist())
        self.invert = invert
        self.adapt_mean: np.ndarray | None = None
        self.adapt_variance: np.ndarray | None = None
        self._broadcast_shape: tuple[int, ...] | None = None
        self._scale: np.ndarray | None = None  # max(σ, ε), cached by forward for backward
        self._output_shape: tuple[int, ...] | None = None
        self._dtype: np.dtype | None = None

    @staticmethod
    def _axes(axis: int | list[int] | None) -> list[int]:
        if axis is None:
            return []
        return [axis] if isinstance(axis, int) else axis

    def _kept_axes(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The axes of a batch (axis 0 the batch) that have statistics of their own."""
        ndim = len(input_shape) + 1
        axes = self._axes(self.axis)
        kept = sorted({a % ndim for a in axes if -ndim <= a < ndim})
        if len(kept) != len(axes) or 0 in kept:
            raise ValueError(f"Normalization: axis {self.axis} does not name feature axes of "
                             f"inputs of shape (batch, {', '.join(map(str, input_shape))}); "
                             f"the batch axis 0 cannot be one")
        return tuple(kept)

    def weight_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        shape = tuple(input_shape[a - 1] for a in self._kept_axes(tuple(input_shape)))
        return {"mean": shape, "variance": shape}

    def build(self, input_shape: tuple[int, ...], *, dtype: DTypeLike = "float32",
              rng: np.random.Generator | None = None) -> None:
        """Hold ``mean``/``variance`` (as given, adapted before, or 0 and 1) in ``dtype``."""
        input_shape = tuple(input_shape)
        shape = self.weight_shapes(input_shape)["mean"]
        dtype = _layer_dtype(dtype, "Normalization")
        kept = self._kept_axes(input_shape)
        if self.mean is not None:
            try:
                mean = np.broadcast_to(np.asarray(self.mean), shape)
                variance = np.broadcast_to(np.asarray(self.variance), shape)
            except ValueError as error:
                raise ValueError(f"Normalization: mean and variance of shape "
                                 f"{np.shape(self.mean)} do not fit statistics of shape "
                                 f"{shape}") from error
        elif self.adapt_mean is not None:
            if self.adapt_mean.shape != shape:
                raise ValueError(f"Normalization: adapted to statistics of shape "
                                 f"{self.adapt_mean.shape}, but inputs of shape {input_shape} "
                                 f"need shape {shape}")
            mean, variance = self.adapt_mean, self.adapt_variance
        else:
            mean, variance = np.zeros(shape), np.ones(shape)
        self.adapt_mean = np.array(mean, dtype=dtype)
        self.adapt_variance = np.array(variance, dtype=dtype)
        self._checked_shape: tuple[int, ...] | None = None
        self._broadcast_shape = tuple(n if axis + 1 in kept else 1
                                      for axis, n in enumerate(input_shape))
        self.built = True

    def adapt(self, data: Any) -> None:
        """Compute the mean and (population) variance of ``data`` (a batch) per position
        along ``axis``, in float64, and keep them as the layer's state."""
        if self.mean is not None:
            raise ValueError("Normalization.adapt: this layer was given mean and variance; "
                             "adapt would overwrite them")
        data = np.asarray(data)
        if data.dtype.kind not in "biuf":
            raise TypeError(f"Normalization.adapt: data must be numeric, got dtype {data.dtype}")
        if data.ndim < 2 or len(data) == 0:
            raise ValueError(f"Normalization.adapt: data must be a non-empty batch of shape "
                             f"(rows, features...), got shape {data.shape}")
        if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
            where = tuple(int(i) for i in np.argwhere(~np.isfinite(data))[0])
            raise ValueError(f"Normalization.adapt: data holds NaN or infinite values (the "
                             f"first at index {where}); drop or fill them first")
        if not self.built:
            self.build(data.shape[1:], dtype=data.dtype if data.dtype.kind == "f"
                       else "float32")
        expected = self.weight_shapes(data.shape[1:])["mean"]
        if expected != self.adapt_mean.shape:
            raise ValueError(f"Normalization.adapt: data of shape {data.shape} gives "
                             f"statistics of shape {expected}, the layer holds "
                             f"{self.adapt_mean.shape}")
        reduced = tuple(a for a in range(data.ndim) if a not in self._kept_axes(data.shape[1:]))
        mean = data.mean(axis=reduced, dtype=np.float64)
        variance = data.var(axis=reduced, dtype=np.float64)
        # a constant feature's mean can be off by an ulp, and its variance then that error
        # squared: dividing by its root would turn the constant into ±1 instead of 0
        largest = data.max(axis=reduced)
        constant = largest == data.min(axis=reduced)
        mean = np.where(constant, largest, mean)
        variance = np.where(constant, 0.0, variance)
        dtype = self.adapt_mean.dtype
        with np.errstate(over="ignore"):  # an overflow is reported below, with the fix
            fits = np.isfinite(variance.astype(dtype)) & np.isfinite(mean.astype(dtype))
        if not fits.all():
            raise ValueError(f"Normalization.adapt: the data's mean or variance, up to "
                             f"{np.max(variance):.3g}, overflows the layer's {dtype}; build it "
                             f"in float64 (Sequential(..., dtype='float64')) or scale the "
                             f"data down")
        # in place: whoever holds the state arrays (a model's weights) sees the new values
        self.adapt_mean[...] = mean
        self.adapt_variance[...] = variance

    def check_state(self) -> None:
        if not (np.all(np.isfinite(self.adapt_mean)) and np.all(self.adapt_variance >= 0)
                and np.all(np.isfinite(self.adapt_variance))):
            raise ValueError("the mean must be finite and the variance finite and >= 0")

    def state(self) -> dict[str, np.ndarray]:
        if self.adapt_mean is None:
            return {}
        return {"mean": self.adapt_mean, "variance": self.adapt_variance}

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = self._float_input(x)
        expected = self._broadcast_shape
        # checked once per example shape: this layer runs first, on every batch
        if x.shape[1:] != self._checked_shape:
            if (x.ndim != len(expected) + 1
                    or self.weight_shapes(x.shape[1:])["mean"] != self.adapt_mean.shape):
                raise ValueError(f"Normalization: inputs of shape {x.shape} do not match "
                                 f"statistics of shape {self.adapt_mean.shape} (built for "
                                 f"examples of rank {len(expected)})")
            self._checked_shape = x.shape[1:]
        mean = self.adapt_mean.reshape(expected)
        self._scale = self.divisor().reshape(expected)
        y = mean + x * self._scale if self.invert else (x - mean) / self._scale
        self._output_shape, self._dtype = y.shape, y.dtype
        return y

    def divisor(self) -> np.ndarray:
        r"""What the mean-shifted inputs are divided by, one per statistic:
        :math:`\max(\sigma, \epsilon)` (what an exported graph divides by too)."""
        return np.maximum(np.sqrt(self.adapt_variance), _NORMALIZATION_EPSILON)

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        grad_y = self._incoming_grad(grad_y, self._output_shape, self._dtype)
        return grad_y * self._scale if self.invert else grad_y / self._scale
