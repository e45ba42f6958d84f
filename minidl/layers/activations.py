"""Activations: element-wise (and softmax) layers with no parameters, each its derivative
beside it; ``Dense(..., activation=name)`` makes one from ``ACTIVATIONS``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from minidl import functional
from minidl.layers.base import Layer


class ReLU(Layer):
    r"""Rectified linear unit.

    .. math::
        y = \max(x, 0), \qquad
        \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y} \odot [y > 0]

    ``y > 0`` exactly where ``x > 0``, so the output is all backward needs; the derivative at
    0 is taken as 0, as PyTorch and Keras do.
    """

    def __init__(self, input_shape: Sequence[int] | None = None) -> None:
        super().__init__(input_shape=input_shape)
        self._y: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = self._float_input(x)
        self._y = np.maximum(x, 0)
        return self._y

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        y = self._y
        grad_y = self._incoming_grad_like(grad_y, y)
        return grad_y * (y > 0)  # a product with the mask: several times faster than np.where


class LeakyReLU(Layer):
    r"""Leaky ReLU with slope :math:`\alpha` = ``negative_slope`` for negative inputs.

    .. math::
        y = \begin{cases} x & x > 0 \\ \alpha x & x \le 0 \end{cases}, \qquad
        \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y} \odot
            \begin{cases} 1 & x > 0 \\ \alpha & x \le 0 \end{cases}

    With :math:`\alpha \ge 0`, ``y > 0`` exactly where ``x > 0``: backward reads the output.
    """

    def __init__(self, negative_slope: float = 0.01,
                 input_shape: Sequence[int] | None = None) -> None:
        super().__init__(input_shape=input_shape)
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)):
            raise TypeError(f"LeakyReLU: negative_slope must be a number, "
                            f"got {type(negative_slope).__name__}")
        if not (math.isfinite(negative_slope) and negative_slope >= 0):
            raise ValueError(f"LeakyReLU: negative_slope must be a finite number >= 0, "
                             f"got {negative_slope}")
        # a Python float: NumPy does not let it promote a float32 array to float64
        self.negative_slope = float(negative_slope)
        self._y: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = self._float_input(x)
        self._y = np.where(x > 0, x, self.negative_slope * x)
        return self._y

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        y = self._y
        grad_y = self._incoming_grad_like(grad_y, y)
        return np.where(y > 0, grad_y, self.negative_slope * grad_y)

    def get_config(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope}


class Tanh(Layer):
    r"""Hyperbolic tangent.

    .. math::
        y = \tanh(x), \qquad
        \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y} \odot (1 - y^2)
    """

    def __init__(self, input_shape: Sequence[int] | None = None) -> None:
        super().__init__(input_shape=input_shape)
        self._y: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = self._float_input(x)
        self._y = np.tanh(x)
        return self._y

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        y = self._y
        grad_y = self._incoming_grad_like(grad_y, y)
        return grad_y * (1 - y * y)


class Sigmoid(Layer):
    r"""Logistic sigmoid (computed by ``functional.sigmoid``, stable for any x).

    .. math::
        y = \sigma(x) = \frac{1}{1 + e^{-x}}, \qquad
        \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y} \odot y (1 - y)
    """

    def __init__(self, input_shape: Sequence[int] | None = None) -> None:
        super().__init__(input_shape=input_shape)
        self._y: np.ndarray | None = None

    def fused_activation(self) -> str | None:
        return "sigmoid"

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = self._float_input(x)
        self._y = functional.sigmoid(x)
        return self._y

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        y = self._y
        grad_y = self._incoming_grad_like(grad_y, y)
        return grad_y * y * (1 - y)


class Softmax(Layer):
    r"""Softmax along ``axis`` (computed by ``functional.softmax``, stable for any x).

    .. math::
        y_i = \frac{e^{x_i}}{\sum_j e^{x_j}}, \qquad
        \frac{\partial y_i}{\partial x_k} = y_i (\delta_{ik} - y_k)

    so the Jacobian-vector product never forms the Jacobian:

    .. math::
        \frac{\partial L}{\partial x_k} = \sum_i g_i\, y_i (\delta_{ik} - y_k)
            = y_k \Big(g_k - \sum_i g_i y_i\Big), \qquad g = \frac{\partial L}{\partial y}

    This is exact for a softmax on its own. Followed by cross-entropy, the model skips this
    layer and uses the fused gradient ``softmax(z) - target`` instead, which stays accurate
    when probabilities underflow to 0.
    """

    def __init__(self, axis: int = -1, input_shape: Sequence[int] | None = None) -> None:
        super().__init__(input_shape=input_shape)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise TypeError(f"Softmax: axis must be an int, got {type(axis).__name__}")
        self.axis = axis
        self._example_rank: int | None = None
        self._y: np.ndarray | None = None

    def build(self, input_shape: tuple[int, ...], *, dtype: DTypeLike = "float32",
              rng: np.random.Generator | None = None) -> None:
        self._example_rank = len(input_shape)
        self.built = True

    def fused_activation(self) -> str | None:
        # cross-entropy reads one distribution per row: a softmax over the last axis only
        return "softmax" if self.axis in (-1, self._example_rank) else None

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = self._float_input(x)
        if not -x.ndim <= self.axis < x.ndim:
            raise ValueError(f"Softmax: axis {self.axis} is out of range for an input of "
                             f"shape {x.shape}")
        self._y = functional.softmax(x, axis=self.axis)
        return self._y

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        y = self._y
        grad_y = self._incoming_grad_like(grad_y, y)
        return y * (grad_y - np.sum(grad_y * y, axis=self.axis, keepdims=True))

    def get_config(self) -> dict[str, Any]:
        return {"axis": self.axis}


class Linear(Layer):
    r"""Identity, the activation of ``Dense(..., activation="linear")``.

    .. math::
        y = x, \qquad \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}
    """

    def __init__(self, input_shape: Sequence[int] | None = None) -> None:
        super().__init__(input_shape=input_shape)
        self._y: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        # the output is the input itself: nothing computed, nothing copied
        self._y = self._float_input(x)
        return self._y

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        return self._incoming_grad_like(grad_y, self._y)


ACTIVATIONS: dict[str, type[Layer]] = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "tanh": Tanh,
    "sigmoid": Sigmoid,
    "softmax": Softmax,
    "linear": Linear,
}


def activation_from_name(name: str | None) -> Layer | None:
    """A new activation layer for ``name`` (one of ``ACTIVATIONS``), or None for None."""
    if name is None:
        return None
    if not isinstance(name, str):
        raise TypeError(f"activation must be a name (one of {', '.join(ACTIVATIONS)}) or "
                        f"None, got {type(name).__name__}")
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; known activations: "
                         f"{', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()
