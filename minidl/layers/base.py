"""The ``Layer`` protocol that every layer follows, and the input checks layers share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from minidl.parameter import Parameter
from minidl.registry import Configurable


@dataclass(frozen=True)
class BatchShard:
    """One process's part of a batch in data-parallel training (``minidl.distributed``):
    rows ``start:stop`` of the batch's ``rows``, and ``sum_across``, which sums an array
    over every process in place (an MPI Allreduce) and returns it.

    The training forward of most layers is row by row, and a shard changes nothing for
    them. The two whose forward looks at the whole batch read it from ``batch_shard``, so
    that N processes compute what one process computes on the whole batch: ``Dropout``
    draws the mask of all ``rows`` and keeps its own, ``BatchNormalization`` sums its
    statistics over the processes.
    """

    start: int
    stop: int
    rows: int
    sum_across: Callable[[np.ndarray], np.ndarray]


class Layer(Configurable):
    """Base class: ``forward``/``backward`` plus the plumbing every layer shares.

    Subclasses implement ``forward(x, training)`` and ``backward(grad_y)``; layers with
    parameters also override ``build`` and ``parameters``. ``get_config`` returns the
    constructor arguments (JSON-able; a layer that keeps them under other names overrides
    it), so ``type(layer).from_config(layer.get_config())`` makes an equivalent, unbuilt
    layer.
    """

    #: False when nobody needs the gradient with respect to the input: a model sets it on
    #: its first step with parameters, whose input is the data; ``backward`` may then skip
    #: that product (a third of a Dense layer's backward work) and return None.
    needs_input_grad: bool = True

    #: Set on every step of a model while a data-parallel ``fit`` or ``evaluate`` runs it
    #: (``minidl.distributed``): which rows of the whole batch this process's batch holds;
    #: None otherwise, and then nothing is different. See ``BatchShard``.
    batch_shard: BatchShard | None = None

    def __init__(self, input_shape: Sequence[int] | None = None) -> None:
        self.built = False
        # Keras' input_shape= (one example, no batch axis), which any layer may be given
        self.input_shape = None if input_shape is None else list(
            _example_shape(input_shape, type(self).__name__))

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

    def weight_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]] | None:
        """The shape of every array the layer saves (parameters and state), by name, for
        inputs of ``input_shape``, computed without building anything: ``load_model`` checks
        a file against them before it allocates. None (the default) means not declared:
        the layer's arrays are then checked once it is built, which a layer with large
        parameters should not leave to chance."""
        return None

    def check_state(self) -> None:
        """Raise ValueError if the state read from a file cannot be right (a negative
        variance): ``load_model`` refuses such a file. Nothing to check for most layers."""

    def steps(self) -> list[Layer]:
        """The layer as a chain of steps, each a layer itself: ``[self]`` for most; a Dense
        layer with an activation is its affine step followed by its activation step. A model
        runs the steps, so that a loss can fuse with a final activation step (see
        ``fused_activation``) whichever layer it belongs to."""
        return [self]

    def fused_activation(self) -> str | None:
        """The name a loss may fuse with when this step ends the model ("softmax",
        "sigmoid"; ``Loss.fuses_with``), or None: the model then trains on this step's input
        with the loss's gradient on it, never this step's Jacobian."""
        return None

    def generator(self) -> np.random.Generator | None:
        """The layer's own random generator (``Dropout``'s masks), whose state a model saves
        so that resumed training draws what uninterrupted training would; None for most."""
        return None

    def input_dtype(self, model_dtype: np.dtype) -> np.dtype | None:
        """The dtype a model gives the data when this is its first layer: the model's float
        dtype for most; None to pass the data as it came (``Embedding``'s indices, which a
        cast to float could round)."""
        return model_dtype

    def declared_input_shape(self) -> tuple[int, ...] | None:
        """The example shape this layer was told to expect (Keras' ``input_shape=``), or
        None: a ``Sequential`` whose first layer declares one is built at construction."""
        return None if self.input_shape is None else tuple(self.input_shape)

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


class LinearStep(Layer):
    """The linear part ``z = linear(x)`` of a layer with an activation (``Dense``,
    ``Conv2D``: their ``linear_forward``/``linear_backward``) as a step of its own. It shares
    the layer's parameters; a model may stop at it to train on the logits (``steps()``)."""

    def __init__(self, layer: Any) -> None:
        super().__init__()
        self.layer = layer
        self.built = True

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        return self.layer.linear_forward(x, training=training)

    def backward(self, grad_z: np.ndarray) -> np.ndarray | None:
        return self.layer.linear_backward(grad_z, input_grad=self.needs_input_grad)

    def parameters(self) -> list[Parameter]:
        return self.layer.parameters()



class LinearThenActivation(Layer):
    """The plumbing of a layer that is a linear map ``z = linear(x)`` followed by an optional
    activation ``y = f(z)`` (``Dense``, ``Conv2D``). Subclasses set ``activation`` (a layer or
    None) and implement ``linear_forward``, ``linear_backward(grad_z, input_grad)`` and
    ``_linear_cache`` (what ``linear_forward`` kept, None before it ran)."""

    activation: Layer | None = None

    def __init__(self, input_shape: Sequence[int] | None = None) -> None:
        super().__init__(input_shape=input_shape)
        self._linear_step = LinearStep(self)

    def _linear_cache(self) -> Any:
        raise NotImplementedError(  # abstract
            f"{type(self).__name__} must implement _linear_cache()")

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        z = self.linear_forward(x, training=training)
        if self.activation is None:
            return z
        return self.activation.forward(z, training=training)

    def backward(self, grad_y: np.ndarray) -> np.ndarray | None:
        """∂L/∂x from ∂L/∂y through the activation, then the linear map (None when
        ``needs_input_grad`` is False)."""
        self._require_forward(self._linear_cache())
        if self.activation is not None:
            grad_y = self.activation.backward(grad_y)
        return self.linear_backward(grad_y, input_grad=self.needs_input_grad)

    def _numeric_input(self, x: Any, ndim: int, expected: str, hint: str = "") -> np.ndarray:
        """``x`` as an array of ``ndim`` axes (``expected`` names them) of real numbers; builds
        the layer for it if needed (float inputs keep their dtype, integers become float32)."""
        name = type(self).__name__
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise TypeError(f"{name}: input x must be a real numeric array, got dtype {x.dtype}")
        if x.ndim != ndim:
            raise ValueError(f"{name}: expected input of shape {expected}, got shape "
                             f"{x.shape}{hint}")
        if not self.built:
            self.build(x.shape[1:], dtype=x.dtype if x.dtype.kind == "f" else "float32")
        return x

    def steps(self) -> list[Layer]:
        """``[self]``, or with an activation its two steps: the linear map, the activation."""
        return [self] if self.activation is None else [self._linear_step, self.activation]

def _layer_dtype(dtype: DTypeLike, layer_name: str) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"{layer_name}: dtype must be a floating-point type such as "
                        f"'float32' or 'float64', got {dtype}")
    return dtype


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


def positive_int(value: Any, argument: str, layer_name: str) -> int:
    """``value`` as an int after checking it is one, and positive (``units``, ``filters``)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{layer_name}: {argument} must be a positive int, got {value!r}")
    if value < 1:
        raise ValueError(f"{layer_name}: {argument} must be a positive int, got {value}")
    return int(value)


def positive_pair(value: Any, argument: str, layer_name: str) -> tuple[int, int]:
    """``value`` (an int, or a pair of ints) as a pair of positive ints."""
    if isinstance(value, (int, np.integer)):
        value = (value, value)
    if not (isinstance(value, (tuple, list)) and all(
            isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in value)):
        raise TypeError(f"{layer_name}: {argument} must be an int or a pair of ints, "
                        f"got {value!r}")
    if len(value) != 2 or min(value) < 1:
        raise ValueError(f"{layer_name}: {argument} must be a positive int or a pair of "
                         f"positive ints (height, width), got {value!r}")
    return int(value[0]), int(value[1])
