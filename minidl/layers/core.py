"""The core layers: ``Dense``, ``Dropout`` and ``Flatten``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from minidl import regularizers
from minidl.layers.activations import activation_from_name
from minidl.layers.base import (
    Layer,
    LinearThenActivation,
    _example_shape,
    _layer_dtype,
    positive_int,
)
from minidl.layers.initializers import INITIALIZERS, check_initializer
from minidl.parameter import Parameter
from minidl.regularizers import Regularizer


class Dense(LinearThenActivation):
    r"""Fully connected layer: a linear map followed by an activation :math:`f`.

    Shapes: ``x`` (N, in), kernel ``W`` (in, out), bias ``b`` (out,), ``z`` and ``y`` (N, out).

    .. math::
        z = x W + b, \qquad y = f(z)

    Backward, given :math:`G = \partial L / \partial y`; the activation turns it into
    :math:`\partial L / \partial z = f'(z) \odot G` (or its Jacobian product for softmax):

    .. math::
        \frac{\partial L}{\partial W} = x^\top \frac{\partial L}{\partial z}, \qquad
        \frac{\partial L}{\partial b} = \sum_{n} \frac{\partial L}{\partial z_{n,:}}, \qquad
        \frac{\partial L}{\partial x} = \frac{\partial L}{\partial z} W^\top

    ``linear_forward``/``linear_backward`` are the linear map alone. With an activation the
    layer is two steps (``steps()``): the affine map, then the activation, so that a model can
    fuse a final softmax with cross-entropy and train on the logits ``z``.

    Initializers, Keras' definitions (``fan_in = in``, ``fan_out = out``):

    * ``glorot_uniform``: U(-limit, limit), limit = sqrt(6 / (fan_in + fan_out))
    * ``he_uniform``: U(-limit, limit), limit = sqrt(6 / fan_in)
    * ``glorot_normal``: *truncated* normal, stddev = sqrt(2 / (fan_in + fan_out)) / 0.8796,
      draws further than 2 stddev from 0 redrawn
    * ``he_normal``: *truncated* normal, stddev = sqrt(2 / fan_in) / 0.8796, truncated likewise
    * ``zeros``, ``ones``

    Dividing by 0.8796 (the std of a unit normal truncated at ±2) makes the truncated draws
    have the std of the formula, as in Keras. Draws come from the ``numpy.random.Generator``
    given to ``build``, so the same seed gives the same weights.

    ``kernel_regularizer``/``bias_regularizer``: a ``minidl.regularizers`` penalty, its
    serialized dict, or None; attached to the parameter as ``.regularizer``.

    ``input_dim=64`` or Keras' ``input_shape=[64]`` (the same thing for vectors) fixes the
    number of input features; as a model's first layer it builds the model at once. Without
    them the layer builds itself on its first call, from ``x.shape[1]`` and ``x.dtype``
    (float32 for integer input), with an unseeded generator.
    """

    def __init__(self, units: int, activation: str | None = None, use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform", bias_initializer: str = "zeros",
                 kernel_regularizer: Regularizer | dict | None = None,
                 bias_regularizer: Regularizer | dict | None = None,
                 input_dim: int | None = None,
                 input_shape: Sequence[int] | None = None) -> None:
        super().__init__()
        self.units = positive_int(units, "units", "Dense")
        if input_shape is not None:
            input_dim = _input_dim_of_shape(input_shape, input_dim)
        self.input_dim = (None if input_dim is None
                          else positive_int(input_dim, "input_dim", "Dense"))
        self.activation = activation_from_name(activation)
        self._activation_name = activation
        if not isinstance(use_bias, bool):
            raise TypeError(f"Dense: use_bias must be True or False, got {use_bias!r}")
        self.use_bias = use_bias
        self.kernel_initializer = check_initializer(kernel_initializer, "kernel_initializer",
                                                    "Dense")
        self.bias_initializer = check_initializer(bias_initializer, "bias_initializer", "Dense")
        self.kernel_regularizer = regularizers.deserialize(kernel_regularizer)
        self.bias_regularizer = regularizers.deserialize(bias_regularizer)
        self.kernel: Parameter | None = None
        self.bias: Parameter | None = None
        self.dtype: np.dtype | None = None
        self._x: np.ndarray | None = None

    def build(self, input_shape: tuple[int, ...], *, dtype: DTypeLike = "float32",
              rng: np.random.Generator | None = None) -> None:
        """Create ``kernel`` (in, units) and ``bias`` (units,) in ``dtype``, drawn from ``rng``.

        Building again draws fresh parameters (new Parameter objects).
        """
        shapes = self.weight_shapes(tuple(input_shape))
        self.dtype = _layer_dtype(dtype, "Dense")
        rng = np.random.default_rng() if rng is None else rng
        kernel = INITIALIZERS[self.kernel_initializer](shapes["kernel"], rng)
        self.kernel = Parameter(kernel.astype(self.dtype), name="kernel",
                                regularizer=self.kernel_regularizer)
        if self.use_bias:
            bias = INITIALIZERS[self.bias_initializer](shapes["bias"], rng)
            self.bias = Parameter(bias.astype(self.dtype), name="bias",
                                  regularizer=self.bias_regularizer)
        self.input_dim = shapes["kernel"][0]
        self._x = None
        if self.activation is not None:
            self.activation.build((self.units,), dtype=self.dtype, rng=rng)
        self.built = True

    def _check_input_shape(self, input_shape: tuple[int, ...]) -> int:
        if len(input_shape) != 1:
            raise ValueError(f"Dense: expected inputs of shape (batch, features), got examples "
                             f"of shape {input_shape}; put a Flatten layer before Dense")
        if self.input_dim is not None and input_shape[0] != self.input_dim:
            raise ValueError(f"Dense: expected input with {self.input_dim} features, "
                             f"found {input_shape[0]}")
        return int(input_shape[0])

    def weight_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        fan_in = self._check_input_shape(tuple(input_shape))
        shapes = {"kernel": (fan_in, self.units)}
        if self.use_bias:
            shapes["bias"] = (self.units,)
        return shapes

    def declared_input_shape(self) -> tuple[int, ...] | None:
        return None if self.input_dim is None else (self.input_dim,)

    def parameters(self) -> list[Parameter]:
        """``[kernel, bias]`` (``[kernel]`` without bias); empty before the layer is built."""
        return [p for p in (self.kernel, self.bias) if p is not None]

    def linear_forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """``z = x @ kernel + bias``, computed in the layer's dtype; caches ``x``."""
        if not (type(x) is np.ndarray and x.dtype == self.dtype and x.ndim == 2
                and x.shape[1] == self.input_dim):  # the checks below, unless all is in order
            x = self._checked_input(x)
        self._x = x
        z = x @ self.kernel.data
        if self.bias is not None:
            z += self.bias.data
        return z

    def _checked_input(self, x: Any) -> np.ndarray:
        """``x`` as a (batch, features) array in the layer's dtype; builds the layer if needed."""
        x = self._numeric_input(x, 2, "(batch, features)", "; put a Flatten layer before Dense")
        self._check_input_shape(x.shape[1:])
        return np.asarray(x, dtype=self.dtype)

    def linear_backward(self, grad_z: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Write ∂L/∂kernel and ∂L/∂bias into their ``.grad``; return ∂L/∂x.

        ``input_grad=False`` skips ∂L/∂x (and returns None): nobody needs the gradient with
        respect to the data, and for a model's first layer it is a third of its backward work.
        """
        x = self._x
        grad_z = self._incoming_grad(grad_z, None if x is None else (len(x), self.units),
                                     self.dtype)
        # out=: assign into the existing arrays, which optimizers hold by reference
        np.matmul(x.T, grad_z, out=self.kernel.grad)
        if self.bias is not None:
            np.sum(grad_z, axis=0, out=self.bias.grad)
        return grad_z @ self.kernel.data.T if input_grad else None

    def _linear_cache(self) -> np.ndarray | None:
        return self._x

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        self._check_input_shape(tuple(input_shape))
        return (self.units,)

    def get_config(self) -> dict[str, Any]:
        return {
            "units": self.units,
            "activation": self._activation_name,
            "use_bias": self.use_bias,
            "kernel_initializer": self.kernel_initializer,
            "bias_initializer": self.bias_initializer,
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "input_dim": self.input_dim,
        }


def _input_dim_of_shape(input_shape: Any, input_dim: int | None) -> int:
    """Keras' ``input_shape=[n]`` for a Dense layer: the number of features ``n``."""
    shape = _example_shape(input_shape, "Dense")
    if len(shape) != 1:
        raise ValueError(f"Dense: input_shape must have one entry (features per example), "
                         f"got {list(shape)}; put a Flatten(input_shape=...) layer first")
    if input_dim is not None and input_dim != shape[0]:
        raise ValueError(f"Dense: input_dim={input_dim} and input_shape={list(shape)} "
                         f"disagree; give one of them")
    return shape[0]


class Dropout(Layer):
    r"""Inverted dropout: in training, zero each unit with probability ``rate`` and scale the
    kept ones so that the expected output equals the input; at inference, the identity.

    .. math::
        m_i = \frac{[u_i \ge p]}{1 - p}, \quad u_i \sim U[0, 1), \qquad
        y = x \odot m, \qquad
        \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y} \odot m

    so :math:`E[y_i] = x_i`. The masks come from the layer's own ``numpy.random.Generator``,
    the public attribute ``rng`` (a model saves and restores its state to resume training):
    seeded by ``seed`` when given, otherwise drawn from the ``rng`` given to ``build``. In
    data-parallel training (``batch_shard``) every process draws the mask of the whole
    batch and keeps its rows, so the masks are those of one process.
    """

    def __init__(self, rate: float, seed: int | None = None,
                 input_shape: Sequence[int] | None = None) -> None:
        super().__init__(input_shape=input_shape)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)):
            raise TypeError(f"Dropout: rate must be a number in [0, 1), got {rate!r}")
        if not 0 <= rate < 1:
            raise ValueError(f"Dropout: rate must be in [0, 1), got {rate}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                                 or seed < 0):
            raise ValueError(f"Dropout: seed must be a non-negative int or None, got {seed!r}")
        self.rate = float(rate)
        self.seed = seed
        self.rng: np.random.Generator | None = None
        self._mask: np.ndarray | None = None
        self._output_shape: tuple[int, ...] | None = None
        self._dtype: np.dtype | None = None

    def build(self, input_shape: tuple[int, ...], *, dtype: DTypeLike = "float32",
              rng: np.random.Generator | None = None) -> None:
        """Start the mask generator: from ``seed``, else from a draw of ``rng``, else fresh."""
        if self.seed is not None:
            self.rng = np.random.default_rng(self.seed)
        elif rng is not None:
            # a child generator: the masks do not shift the draws of whoever owns rng
            self.rng = np.random.default_rng(int(rng.integers(2**63)))
        else:
            self.rng = np.random.default_rng()
        self.built = True

    def generator(self) -> np.random.Generator | None:
        return self.rng

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = self._float_input(x)
        self._output_shape, self._dtype = x.shape, x.dtype
        if not training:
            self._mask = None
            return x
        shard = self.batch_shard
        if shard is None:
            keep = self.rng.random(x.shape) >= self.rate
        else:
            # data-parallel training: the mask one process would draw for the whole batch,
            # and this process's rows of it
            keep = self.rng.random((shard.rows, *x.shape[1:]))[shard.start:shard.stop]
            keep = keep >= self.rate
        self._mask = keep.astype(x.dtype)
        self._mask *= 1.0 / (1.0 - self.rate)  # in place: stays in x's dtype
        return x * self._mask

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        grad_y = self._incoming_grad(grad_y, self._output_shape, self._dtype)
        if self._mask is None:
            return grad_y
        return grad_y * self._mask

    def get_config(self) -> dict[str, Any]:
        return {"rate": self.rate, "seed": self.seed}


class Flatten(Layer):
    r"""Flatten each example into a vector: (N, d₁, ..., d_k) → (N, d₁·…·d_k).

    .. math::
        y = \operatorname{reshape}(x), \qquad
        \frac{\partial L}{\partial x} = \operatorname{reshape}^{-1}
            \Big(\frac{\partial L}{\partial y}\Big)
    """

    def __init__(self, input_shape: Sequence[int] | None = None) -> None:
        super().__init__(input_shape=input_shape)
        self._input_shape: tuple[int, ...] | None = None
        self._dtype: np.dtype | None = None

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = self._float_input(x)
        self._input_shape, self._dtype = x.shape, x.dtype
        return x.reshape(len(x), math.prod(x.shape[1:]))

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        input_shape = self._input_shape
        output_shape = None if input_shape is None else (
            input_shape[0], math.prod(input_shape[1:]))
        grad_y = self._incoming_grad(grad_y, output_shape, self._dtype)
        return grad_y.reshape(input_shape)

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (math.prod(input_shape),)
