r"""Layers: each one a forward pass and, right beside it, its backward pass.

A layer maps a batch ``x`` (the first axis is the batch) to ``y = layer(x)``. ``forward``
caches exactly what the chain rule needs; ``backward`` takes ``grad_y = ∂L/∂y`` and returns
``grad_x = ∂L/∂x``, writing ``∂L/∂θ`` into ``p.grad`` for each of its parameters ``p``.
Gradients are *assigned*, not accumulated: one ``backward`` per ``forward``.

Layers keep the dtype they compute in: parameters are created in the layer's dtype (float32
by default) and a float32 batch gives float32 outputs and float32 gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from minidl import functional, regularizers
from minidl.parameter import Parameter
from minidl.registry import Configurable, class_and_config, to_spec
from minidl.regularizers import Regularizer

# Keras divides the wanted std by the std of a unit normal truncated at ±2, so that the
# truncated draws end up with the std the formula asks for.
_TRUNCATED_NORMAL_STD = 0.87962566103423978


class Layer(Configurable):
    """Base class: ``forward``/``backward`` plus the plumbing every layer shares.

    Subclasses implement ``forward(x, training)`` and ``backward(grad_y)``; layers with
    parameters also override ``build`` and ``parameters``. ``get_config`` returns the
    constructor arguments (JSON-able; a layer that keeps them under other names overrides
    it), so ``type(layer).from_config(layer.get_config())`` makes an equivalent, unbuilt
    layer.
    """

    def __init__(self) -> None:
        self.built = False

    def build(self, input_shape: tuple[int, ...], *, dtype: DTypeLike = "float32",
              rng: np.random.Generator | None = None) -> None:
        """Create the parameters for inputs of ``input_shape`` (without the batch axis).

        Layers without parameters have nothing to create; they only record that they are built.
        """
        self.built = True

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        raise NotImplementedError(  # abstract
            f"{type(self).__name__} must implement forward(x, training)")

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        raise NotImplementedError(  # abstract
            f"{type(self).__name__} must implement backward(grad_y)")

    def __call__(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        return self.forward(x, training=training)

    def parameters(self) -> list[Parameter]:
        return []

    def state(self) -> dict[str, np.ndarray]:
        """The arrays the layer keeps but does not train (``Normalization``'s mean and
        variance), by name: saved with the model beside the parameters and written back in
        place by ``load_model``. Empty for most layers."""
        return {}

    def weight_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """The shape of every array the layer saves (parameters and state), by name, for
        inputs of ``input_shape``; computed without building anything, so that a loader can
        check a file against the architecture before it allocates."""
        return {}

    def declared_input_shape(self) -> tuple[int, ...] | None:
        """The example shape this layer was told to expect (Keras' ``input_shape=``), or
        None: a ``Sequential`` whose first layer declares one is built at construction."""
        return None

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one output example for one input example of ``input_shape``."""
        return tuple(input_shape)

    def _float_input(self, x: Any) -> np.ndarray:
        """``x`` as a floating array with a batch axis; builds the layer on its first call.

        Floating inputs keep their dtype; integers and bools become float64, as in
        ``minidl.functional``.
        """
        if self.built and type(x) is np.ndarray and x.dtype.kind == "f" and x.ndim:
            return x  # the common case, checked with attribute reads only: it runs every step
        x = np.asarray(x)
        if x.dtype.kind in "biu":
            x = x.astype(np.float64)
        elif x.dtype.kind != "f":
            raise TypeError(f"{type(self).__name__}: input x must be a real numeric array, "
                            f"got dtype {x.dtype}")
        if x.ndim == 0:
            raise ValueError(f"{type(self).__name__}: input x must have a batch axis, "
                             "got a 0-d array")
        if not self.built:
            self.build(x.shape[1:], dtype=x.dtype)
        return x

    def _require_forward(self, cached: Any) -> None:
        if cached is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward: call "
                               "forward(x) first, it caches what backward needs")

    def _incoming_grad(self, grad_y: Any, shape: tuple[int, ...] | None,
                       dtype: np.dtype | None) -> np.ndarray:
        """Check that forward ran (``shape``: its output's), return ``grad_y`` in ``dtype``."""
        if type(grad_y) is np.ndarray and grad_y.shape == shape and grad_y.dtype == dtype:
            return grad_y  # the common case, checked with attribute reads only
        self._require_forward(shape)
        grad_y = np.asarray(grad_y, dtype=dtype)
        if grad_y.shape != shape:
            raise ValueError(f"{type(self).__name__}.backward: grad_y has shape {grad_y.shape} "
                             f"but the forward output had shape {shape}")
        return grad_y

    def _incoming_grad_like(self, grad_y: Any, y: np.ndarray | None) -> np.ndarray:
        """``_incoming_grad`` for a layer that cached its output ``y`` (None before forward)."""
        self._require_forward(y)
        return self._incoming_grad(grad_y, y.shape, y.dtype)


def _layer_dtype(dtype: DTypeLike, layer_name: str) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"{layer_name}: dtype must be a floating-point type such as "
                        f"'float32' or 'float64', got {dtype}")
    return dtype


# ----------------------------------------------------------------------------- activations


class ReLU(Layer):
    r"""Rectified linear unit.

    .. math::
        y = \max(x, 0), \qquad
        \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y} \odot [y > 0]

    ``y > 0`` exactly where ``x > 0``, so the output is all backward needs; the derivative at
    0 is taken as 0, as PyTorch and Keras do.
    """

    def __init__(self) -> None:
        super().__init__()
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

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
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

    def __init__(self) -> None:
        super().__init__()
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

    def __init__(self) -> None:
        super().__init__()
        self._y: np.ndarray | None = None

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

    def __init__(self, axis: int = -1) -> None:
        super().__init__()
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise TypeError(f"Softmax: axis must be an int, got {type(axis).__name__}")
        self.axis = axis
        self._y: np.ndarray | None = None

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

    def __init__(self) -> None:
        super().__init__()
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


# ----------------------------------------------------------------------------- initializers

def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) as Keras counts them: (in, out) for a kernel, (n, n) for a bias (n,)."""
    if len(shape) == 1:
        return shape[0], shape[0]
    return shape[0], shape[1]


def _truncated_normal(rng: np.random.Generator, stddev: float,
                      shape: tuple[int, ...]) -> np.ndarray:
    """Normal(0, stddev) draws, each redrawn until it lies within two stddev of 0."""
    values = rng.normal(0.0, stddev, size=shape)
    outside = np.abs(values) > 2 * stddev
    while outside.any():
        values[outside] = rng.normal(0.0, stddev, size=int(outside.sum()))
        outside = np.abs(values) > 2 * stddev
    return values


def _glorot_uniform(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    fan_in, fan_out = _fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


def _glorot_normal(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    fan_in, fan_out = _fans(shape)
    return _truncated_normal(rng, math.sqrt(2.0 / (fan_in + fan_out)) / _TRUNCATED_NORMAL_STD,
                             shape)


def _he_uniform(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    fan_in, _ = _fans(shape)
    limit = math.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, size=shape)


def _he_normal(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    fan_in, _ = _fans(shape)
    return _truncated_normal(rng, math.sqrt(2.0 / fan_in) / _TRUNCATED_NORMAL_STD, shape)


def _zeros(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    return np.zeros(shape)


def _ones(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    return np.ones(shape)


INITIALIZERS: dict[str, Callable[[tuple[int, ...], np.random.Generator], np.ndarray]] = {
    "glorot_uniform": _glorot_uniform,
    "glorot_normal": _glorot_normal,
    "he_uniform": _he_uniform,
    "he_normal": _he_normal,
    "zeros": _zeros,
    "ones": _ones,
}


def _check_initializer(name: Any, argument: str) -> str:
    if not isinstance(name, str) or name not in INITIALIZERS:
        raise ValueError(f"Dense: unknown {argument} {name!r}; known initializers: "
                         f"{', '.join(INITIALIZERS)}")
    return name


# ----------------------------------------------------------------------------- Dense

class Dense(Layer):
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

    ``linear_forward``/``linear_backward`` are the linear map alone: the model calls them for
    the fused softmax + cross-entropy gradient.

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
        self.units = _positive_int(units, "units")
        if input_shape is not None:
            input_dim = _input_dim_of_shape(input_shape, input_dim)
        self.input_dim = None if input_dim is None else _positive_int(input_dim, "input_dim")
        self.activation = activation_from_name(activation)
        self._activation_name = activation
        if not isinstance(use_bias, bool):
            raise TypeError(f"Dense: use_bias must be True or False, got {use_bias!r}")
        self.use_bias = use_bias
        self.kernel_initializer = _check_initializer(kernel_initializer, "kernel_initializer")
        self.bias_initializer = _check_initializer(bias_initializer, "bias_initializer")
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
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise TypeError(f"Dense: input x must be a real numeric array, got dtype {x.dtype}")
        if x.ndim != 2:
            raise ValueError(f"Dense: expected input of shape (batch, features), got shape "
                             f"{x.shape}; put a Flatten layer before Dense")
        if not self.built:
            self.build(x.shape[1:], dtype=x.dtype if x.dtype.kind == "f" else "float32")
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

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        z = self.linear_forward(x, training=training)
        if self.activation is None:
            return z
        return self.activation.forward(z, training=training)

    def backward(self, grad_y: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """∂L/∂x from ∂L/∂y through the activation, then the linear map (see
        ``linear_backward`` for ``input_grad``)."""
        self._require_forward(self._x)
        if self.activation is not None:
            grad_y = self.activation.backward(grad_y)
        return self.linear_backward(grad_y, input_grad=input_grad)

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


def _example_shape(input_shape: Any, layer_name: str) -> tuple[int, ...]:
    """``input_shape`` (one example, no batch axis) as a tuple of positive ints."""
    if isinstance(input_shape, (int, np.integer)) and not isinstance(input_shape, bool):
        input_shape = (input_shape,)
    if not isinstance(input_shape, (list, tuple)) or not input_shape or any(
            isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1
            for n in input_shape):
        raise ValueError(f"{layer_name}: input_shape must be a list of positive ints (one "
                         f"example, without the batch axis), got {input_shape!r}")
    return tuple(int(n) for n in input_shape)


def _positive_int(value: Any, argument: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"Dense: {argument} must be a positive int, got {value!r}")
    if value < 1:
        raise ValueError(f"Dense: {argument} must be a positive int, got {value}")
    return int(value)


# ----------------------------------------------------------------------------- Dropout, Flatten

class Dropout(Layer):
    r"""Inverted dropout: in training, zero each unit with probability ``rate`` and scale the
    kept ones so that the expected output equals the input; at inference, the identity.

    .. math::
        m_i = \frac{[u_i \ge p]}{1 - p}, \quad u_i \sim U[0, 1), \qquad
        y = x \odot m, \qquad
        \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y} \odot m

    so :math:`E[y_i] = x_i`. The masks come from the layer's own ``numpy.random.Generator``,
    the public attribute ``rng`` (a model saves and restores its state to resume training):
    seeded by ``seed`` when given, otherwise drawn from the ``rng`` given to ``build``.
    """

    def __init__(self, rate: float, seed: int | None = None) -> None:
        super().__init__()
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

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = self._float_input(x)
        self._output_shape, self._dtype = x.shape, x.dtype
        if not training:
            self._mask = None
            return x
        keep = self.rng.random(x.shape) >= self.rate
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
        super().__init__()
        self.input_shape = None if input_shape is None else list(
            _example_shape(input_shape, "Flatten"))
        self._input_shape: tuple[int, ...] | None = None
        self._dtype: np.dtype | None = None

    def declared_input_shape(self) -> tuple[int, ...] | None:
        return None if self.input_shape is None else tuple(self.input_shape)

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


# ----------------------------------------------------------------------------- Normalization

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
        super().__init__()
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
        self.input_shape = None if input_shape is None else list(
            _example_shape(input_shape, "Normalization"))
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

    def declared_input_shape(self) -> tuple[int, ...] | None:
        return None if self.input_shape is None else tuple(self.input_shape)

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

    def state(self) -> dict[str, np.ndarray]:
        if self.adapt_mean is None:
            return {}
        return {"mean": self.adapt_mean, "variance": self.adapt_variance}

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = self._float_input(x)
        expected = self._broadcast_shape
        if (x.ndim != len(expected) + 1
                or self.weight_shapes(x.shape[1:])["mean"] != self.adapt_mean.shape):
            raise ValueError(f"Normalization: inputs of shape {x.shape} do not match "
                             f"statistics of shape {self.adapt_mean.shape} (built for examples "
                             f"of rank {len(expected)})")
        mean = self.adapt_mean.reshape(expected)
        self._scale = np.maximum(np.sqrt(self.adapt_variance),
                                 _NORMALIZATION_EPSILON).reshape(expected)
        y = mean + x * self._scale if self.invert else (x - mean) / self._scale
        self._output_shape, self._dtype = y.shape, y.dtype
        return y

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        grad_y = self._incoming_grad(grad_y, self._output_shape, self._dtype)
        return grad_y * self._scale if self.invert else grad_y / self._scale


# ----------------------------------------------------------------------------- registry

LAYERS: dict[str, type[Layer]] = {
    cls.__name__: cls
    for cls in (Dense, ReLU, LeakyReLU, Tanh, Sigmoid, Softmax, Linear, Dropout, Flatten,
                Normalization)
}


def layer_to_config(layer: Layer) -> dict[str, Any]:
    """``{"class_name": ..., "config": ...}``: what ``layer_from_config`` rebuilds from."""
    return to_spec(layer, LAYERS, "minidl.layers.LAYERS")


def layer_from_config(spec: dict[str, Any]) -> Layer:
    """A new, unbuilt layer from ``{"class_name": ..., "config": ...}``.

    The class is looked up in ``LAYERS`` only; nothing is ever imported by name.
    """
    cls, config = class_and_config(spec, LAYERS, "layer")
    return cls.from_config(config)
