"""Gradient checks and hypothesis strategies, for minidl's layers and for yours.

``gradcheck(fn, inputs)`` compares the gradients a function says it has with central
differences in float64; ``check_layer_gradients(layer, x)`` does it for a layer's input and
every one of its parameters. The strategies generate the inputs: ``arrays_for(shape)``,
``batch_shapes()``, ``layer_configs()`` and ``image_layer_configs()`` (the built-in layers
with random configurations, for feature vectors and for images),
``logits_and_labels()``.

The gradient checks need only NumPy. The strategies need hypothesis, a test-time
dependency (``pip install 'minidl[test]'``), which is imported when a strategy is first asked
for: ``import minidl.testing`` works without it.

Testing a layer you wrote yourself::

    import numpy as np
    from hypothesis import given

    from minidl.layers import Layer
    from minidl.testing import arrays_for, batch_shapes, check_layer_gradients


    class Square(Layer):
        \"\"\"y = x², so ∂L/∂x = 2x ⊙ ∂L/∂y.\"\"\"

        def forward(self, x, training=False):
            self.x = np.asarray(x)
            return self.x ** 2

        def backward(self, grad_y):
            return 2 * self.x * grad_y


    @given(batch_shapes(max_dims=2).flatmap(arrays_for))
    def test_square_gradients_match_central_differences(x):
        assert check_layer_gradients(Square(), x)

A wrong backward (say ``return self.x * grad_y``) makes ``check_layer_gradients`` raise an
AssertionError naming the input, the element, and the analytic and numeric values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from minidl import regularizers
from minidl.layers import (
    ACTIVATIONS,
    INITIALIZERS,
    AveragePooling2D,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    Layer,
    LayerNormalization,
    LeakyReLU,
    Linear,
    MaxPooling2D,
    Normalization,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
)

if TYPE_CHECKING:
    from hypothesis.strategies import DrawFn, SearchStrategy


def gradcheck(fn: Callable[..., tuple[float, Sequence[np.ndarray]]],
              inputs: Sequence[np.ndarray], eps: float = 1e-6, atol: float = 1e-5,
              rtol: float = 1e-4) -> bool:
    r"""Check the analytic gradients of ``fn`` against central differences.

    ``fn(*inputs)`` returns ``(value, grads)``: a scalar and one gradient
    :math:`\partial\,\text{value} / \partial\,\text{inputs}[i]` per input. Each element of each
    input is moved by ±``eps`` in turn:

    .. math::
        \frac{\partial v}{\partial x_j} \approx
            \frac{v(x + \epsilon e_j) - v(x - \epsilon e_j)}{2 \epsilon}

    (error :math:`O(\epsilon^2)`), and the analytic gradient must satisfy
    ``|analytic - numeric| <= atol + rtol * |numeric|`` everywhere.

    The inputs must be float64 arrays (in float32 the differences are mostly rounding); they
    are copied, so ``fn`` sees perturbed copies and the caller's arrays are never changed.

    Returns True; raises AssertionError naming the input index, the worst element, and the
    analytic and numeric values.
    """
    inputs = [_float64_input(x, index) for index, x in enumerate(inputs)]
    _, grads = fn(*inputs)
    # copies: fn may hand back arrays (such as p.grad) that its next call overwrites
    grads = [np.array(grad, dtype=np.float64) for grad in grads]
    return _compare_with_central_differences(lambda *xs: fn(*xs)[0], inputs, grads,
                                             eps, atol, rtol)


def _compare_with_central_differences(value_fn: Callable[..., float],
                                      inputs: list[np.ndarray], grads: list[np.ndarray],
                                      eps: float, atol: float, rtol: float) -> bool:
    if len(grads) != len(inputs):
        raise ValueError(f"gradcheck: fn returned {len(grads)} gradients for "
                         f"{len(inputs)} inputs; it must return one per input")
    for index, (x, analytic) in enumerate(zip(inputs, grads, strict=True)):
        if analytic.shape != x.shape:
            raise AssertionError(f"gradcheck: gradient of input {index} has shape "
                                 f"{analytic.shape} but the input has shape {x.shape}")
        numeric = _central_differences(value_fn, inputs, index, eps)
        _assert_close(analytic, numeric, index, atol, rtol)
    return True


def _float64_input(x: Any, index: int) -> np.ndarray:
    array = np.asarray(x)
    if array.dtype != np.float64:
        raise TypeError(f"gradcheck: input {index} must be a float64 array, got dtype "
                        f"{array.dtype}; central differences need float64 precision")
    return array.copy()


def _central_differences(value_fn: Callable[..., float], inputs: list[np.ndarray], index: int,
                         eps: float) -> np.ndarray:
    x = inputs[index]
    numeric = np.empty_like(x)
    for element in np.ndindex(x.shape):
        original = x[element]
        x[element] = original + eps
        value_plus = float(value_fn(*inputs))
        x[element] = original - eps
        value_minus = float(value_fn(*inputs))
        x[element] = original
        numeric[element] = (value_plus - value_minus) / (2 * eps)
    return numeric


def _assert_close(analytic: np.ndarray, numeric: np.ndarray, index: int, atol: float,
                  rtol: float) -> None:
    tolerance = atol + rtol * np.abs(numeric)
    excess = np.abs(analytic - numeric) - tolerance
    # a NaN anywhere is a failure, and the worst one
    excess = np.where(np.isnan(excess), np.inf, excess)
    failing = excess > 0
    if not failing.any():
        return
    worst = np.unravel_index(np.argmax(excess), excess.shape)
    worst_element = tuple(int(i) for i in worst)
    raise AssertionError(
        f"gradcheck: gradient of input {index} is wrong at element {worst_element}: "
        f"analytic {analytic[worst]:.8g}, numeric {numeric[worst]:.8g} "
        f"(allowed difference {tolerance[worst]:.3g}); "
        f"{int(failing.sum())} of {failing.size} elements differ")


def check_layer_gradients(layer: Layer, x: np.ndarray, eps: float = 1e-6, atol: float = 1e-5,
                          rtol: float = 1e-4, *, training: bool = False, seed: int = 0) -> bool:
    r"""``gradcheck`` of a layer's ``backward``: the input and every parameter, in float64.

    The scalar checked is :math:`v = \sum y \odot r` with ``y = layer.forward(x, training)``
    and ``r`` a fixed random projection (standard normal, from ``seed``), so
    :math:`\partial v / \partial y = r` is what ``backward`` receives: the check covers the
    whole vector-Jacobian product, not one output at a time.

    An unbuilt layer is built in float64 (its parameters drawn from ``seed``); a built one
    must already be float64. The parameters are put back as they were afterwards. Use
    ``training=True`` only for layers that are deterministic in training (not Dropout).
    """
    x = np.array(x, dtype=np.float64)  # a copy: the check perturbs it in place
    rng = np.random.default_rng(seed)
    if not layer.built:
        layer.build(x.shape[1:], dtype="float64", rng=rng)
    params = layer.parameters()
    for p in params:
        if p.dtype != np.float64:
            raise TypeError(f"check_layer_gradients: parameter {p.name!r} of "
                            f"{type(layer).__name__} is {p.dtype}; build the layer with "
                            "dtype='float64' to check its gradients")
    y = layer.forward(x.copy(), training=training)
    if y.dtype != np.float64:
        raise TypeError(f"check_layer_gradients: {type(layer).__name__} returned {y.dtype} "
                        "for a float64 input; the check needs float64 all the way")
    projection = rng.standard_normal(y.shape)
    grads = [layer.backward(projection)] + [p.grad.copy() for p in params]

    def projected_output(x_in: np.ndarray, *param_values: np.ndarray) -> float:
        for p, value in zip(params, param_values, strict=True):
            p.data[...] = value
        return float(np.sum(layer.forward(x_in, training=training) * projection))

    originals = [p.data.copy() for p in params]
    try:
        # the differences need only values: no backward per perturbed input
        return _compare_with_central_differences(projected_output, [x, *originals], grads,
                                                 eps, atol, rtol)
    finally:
        for p, original in zip(params, originals, strict=True):
            p.data[...] = original


# ----------------------------------------------------------------------------- strategies

def _hypothesis(strategy: str) -> tuple[ModuleType, ModuleType]:
    """``(hypothesis.strategies, hypothesis.extra.numpy)``, imported here rather than at the top
    of the module so that the gradient checks work where hypothesis is not installed."""
    try:
        import hypothesis.extra.numpy as hnp
        from hypothesis import strategies as st
    except ImportError as error:
        raise ModuleNotFoundError(f"minidl.testing.{strategy} needs hypothesis: "
                                  "pip install 'minidl[test]'", name="hypothesis") from error
    return st, hnp


def arrays_for(shape: tuple[int, ...] | SearchStrategy[tuple[int, ...]],
               min_value: float = -10.0, max_value: float = 10.0,
               dtype: Any = np.float64) -> SearchStrategy[np.ndarray]:
    """Arrays of ``shape`` (a tuple or a strategy of tuples) with finite elements in
    [``min_value``, ``max_value``]."""
    st, hnp = _hypothesis("arrays_for")
    dtype = np.dtype(dtype)
    elements = st.floats(min_value, max_value, allow_nan=False, allow_infinity=False,
                         width=dtype.itemsize * 8)
    return hnp.arrays(dtype, shape, elements=elements)


def batch_shapes(*, min_batch: int = 1, max_batch: int = 8, min_dims: int = 1,
                 max_dims: int = 1, min_side: int = 1,
                 max_side: int = 16) -> SearchStrategy[tuple[int, ...]]:
    """Shapes ``(batch, d_1, ..., d_k)`` with ``min_dims <= k <= max_dims``: the batch in
    [``min_batch``, ``max_batch``] (1 included by default), each ``d`` in
    [``min_side``, ``max_side``]."""
    st, hnp = _hypothesis("batch_shapes")
    return st.tuples(
        st.integers(min_batch, max_batch),
        hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                         max_side=max_side),
    ).map(lambda pair: (pair[0], *pair[1]))


def _regularizer_specs(st: ModuleType) -> SearchStrategy[dict | None]:
    strength = st.floats(0.0, 0.1)
    return st.one_of(
        st.none(),
        st.builds(regularizers.L1, strength).map(regularizers.serialize),
        st.builds(regularizers.L2, strength).map(regularizers.serialize),
        st.builds(regularizers.L1L2, strength, strength).map(regularizers.serialize),
    )


def layer_configs(*, max_units: int = 16) -> SearchStrategy[tuple[type[Layer], dict]]:
    """``(layer_class, config)`` for every built-in layer, with random constructor arguments.

    ``layer_class.from_config(config)`` makes the layer; every one of them accepts inputs of
    shape (batch, features). Dense gets up to ``max_units`` units.
    """
    st, _ = _hypothesis("layer_configs")
    dense = st.fixed_dictionaries({
        "units": st.integers(1, max_units),
        "activation": st.sampled_from([None, *ACTIVATIONS]),
        "use_bias": st.booleans(),
        "kernel_initializer": st.sampled_from(list(INITIALIZERS)),
        "bias_initializer": st.sampled_from(list(INITIALIZERS)),
        "kernel_regularizer": _regularizer_specs(st),
        "bias_regularizer": _regularizer_specs(st),
    })
    return st.one_of(
        st.tuples(st.just(Dense), dense),
        st.tuples(st.just(LeakyReLU),
                  st.fixed_dictionaries({"negative_slope": st.floats(0.0, 1.0)})),
        st.tuples(st.just(Softmax), st.fixed_dictionaries({"axis": st.sampled_from([-1, 1])})),
        st.tuples(st.just(Dropout), st.fixed_dictionaries({
            "rate": st.floats(0.0, 0.9),
            "seed": st.none() | st.integers(0, 2**32 - 1)})),
        st.tuples(st.just(Normalization), st.one_of(
            st.fixed_dictionaries({"invert": st.booleans()}),
            st.fixed_dictionaries({"mean": st.floats(-5.0, 5.0),
                                   "variance": st.floats(0.0, 10.0),
                                   "invert": st.booleans()}))),
        st.tuples(st.just(BatchNormalization), st.fixed_dictionaries({
            "momentum": st.floats(0.0, 0.999), "epsilon": st.floats(1e-5, 1e-2),
            "center": st.booleans(), "scale": st.booleans()})),
        st.tuples(st.just(LayerNormalization), st.fixed_dictionaries({
            "epsilon": st.floats(1e-5, 1e-2), "center": st.booleans(),
            "scale": st.booleans()})),
        st.sampled_from([(ReLU, {}), (Tanh, {}), (Sigmoid, {}), (Linear, {}), (Flatten, {})]),
    )


def image_layer_configs(*, max_window: int = 3) -> SearchStrategy[tuple[type[Layer], dict]]:
    """``(layer_class, config)`` for the built-in layers that take images, shape (batch,
    height, width, channels): every one accepts images of at least ``max_window`` pixels a
    side, its windows being at most that wide."""
    st, _ = _hypothesis("image_layer_configs")
    windows = st.one_of(st.integers(1, max_window),
                        st.tuples(st.integers(1, max_window), st.integers(1, max_window)))
    pooling = st.fixed_dictionaries({"pool_size": windows, "strides": st.none() | windows,
                                     "padding": st.sampled_from(["valid", "same"])})
    convolution = st.fixed_dictionaries({
        "filters": st.integers(1, 4), "kernel_size": windows,
        "padding": st.sampled_from(["valid", "same"]),
        "activation": st.sampled_from([None, "relu", "tanh"]), "use_bias": st.booleans()},
        optional={"strides": windows})
    return st.one_of(
        st.tuples(st.just(Conv2D), convolution),
        st.tuples(st.sampled_from([MaxPooling2D, AveragePooling2D]), pooling),
        st.tuples(st.sampled_from([GlobalAveragePooling2D, GlobalMaxPooling2D]),
                  st.fixed_dictionaries({"keepdims": st.booleans()})),
    )


def logits_and_labels(*, min_batch: int = 1, max_batch: int = 8, min_classes: int = 2,
                      max_classes: int = 10, min_value: float = -10.0, max_value: float = 10.0,
                      dtype: Any = np.float64) -> SearchStrategy[tuple[np.ndarray, np.ndarray]]:
    """``(logits, labels)``: logits (N, C) in [``min_value``, ``max_value``] and int64 class
    indices (N,) in [0, C)."""
    st, hnp = _hypothesis("logits_and_labels")

    @st.composite
    def pairs(draw: DrawFn) -> tuple[np.ndarray, np.ndarray]:
        batch_size = draw(st.integers(min_batch, max_batch))
        num_classes = draw(st.integers(min_classes, max_classes))
        logits = draw(arrays_for((batch_size, num_classes), min_value, max_value, dtype))
        labels = draw(hnp.arrays(np.int64, (batch_size,),
                                 elements=st.integers(0, num_classes - 1)))
        return logits, labels

    return pairs()
