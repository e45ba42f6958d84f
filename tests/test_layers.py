"""minidl.layers: gradients, initializers, dtypes, Dropout, Normalization, configs, and every
bad input."""

import json
import warnings

import numpy as np
import pytest
import scipy.special
import scipy.stats
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from minidl import regularizers
from minidl.layers import (
    ACTIVATIONS,
    LAYERS,
    Dense,
    Dropout,
    Flatten,
    LeakyReLU,
    Linear,
    Normalization,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
    activation_from_name,
    layer_from_config,
    layer_to_config,
)
from minidl.model import Sequential
from minidl.testing import (
    arrays_for,
    batch_shapes,
    check_layer_gradients,
    gradcheck,
    layer_configs,
)

ELEMENTWISE = [ReLU, LeakyReLU, Tanh, Sigmoid, Linear]
KINKED = {"relu", "leaky_relu"}


def away_from_zero(x: np.ndarray) -> np.ndarray:
    # ReLU's derivative jumps at 0: a central difference straddling 0 measures neither side
    return np.where(np.abs(x) < 1e-3, 0.5, x)


# one of each layer, as (class, config): every test makes its own fresh instance
EVERY_LAYER = [(Dense, {"units": 3}), (Dense, {"units": 4, "activation": "softmax"}),
               (ReLU, {}), (LeakyReLU, {"negative_slope": 0.2}), (Tanh, {}), (Sigmoid, {}),
               (Softmax, {}), (Linear, {}), (Dropout, {"rate": 0.5, "seed": 0}), (Flatten, {}),
               (Normalization, {}), (Normalization, {"mean": 1.0, "variance": 4.0, "invert": True})]
each_layer = pytest.mark.parametrize(
    "layer_class, config", EVERY_LAYER,
    ids=[f"{layer_class.__name__}{config or ''}" for layer_class, config in EVERY_LAYER])


# ----------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("layer_class", [*ELEMENTWISE, Softmax, Flatten])
@given(data=st.data())
def test_parameterless_layer_gradients_match_central_differences(layer_class, data):
    x = data.draw(batch_shapes(max_dims=3, max_side=5).flatmap(arrays_for))
    layer = (LeakyReLU(data.draw(st.floats(0.0, 1.0))) if layer_class is LeakyReLU
             else layer_class())
    assert check_layer_gradients(layer, away_from_zero(x))


@given(x=batch_shapes(min_dims=2, max_dims=3, max_side=5).flatmap(arrays_for), data=st.data())
def test_softmax_gradients_along_any_axis(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    assert check_layer_gradients(Softmax(axis=axis), x)


@given(shape=batch_shapes(max_side=12), units=st.integers(1, 12),
       activation=st.sampled_from([None, *ACTIVATIONS]), use_bias=st.booleans(),
       data=st.data())
def test_dense_gradients_match_central_differences(shape, units, activation, use_bias, data):
    x = data.draw(arrays_for(shape))
    layer = Dense(units, activation=activation, use_bias=use_bias)
    layer.build(shape[1:], dtype="float64", rng=np.random.default_rng(units))
    if use_bias:
        layer.bias.data[...] = np.random.default_rng(1).normal(size=units)
    if activation in KINKED:
        assume(np.all(np.abs(layer.linear_forward(x)) > 1e-4))
    assert check_layer_gradients(layer, x)


@settings(max_examples=2)
@given(batch_size=st.integers(1, 2), input_dim=st.integers(1, 2),
       units=st.integers(1000, 1100), seed=st.integers(0, 2**32 - 1))
def test_wide_dense_softmax_classifier_gradients(batch_size, input_dim, units, seed):
    rng = np.random.default_rng(seed)
    layer = Dense(units, activation="softmax")
    layer.build((input_dim,), dtype="float64", rng=rng)
    assert check_layer_gradients(layer, rng.uniform(-10, 10, size=(batch_size, input_dim)))


@settings(max_examples=2)
@given(x=st.tuples(st.integers(1, 2), st.integers(1000, 1200)).flatmap(arrays_for))
def test_wide_softmax_gradients_with_1000_classes(x):
    assert check_layer_gradients(Softmax(), x)


@given(x=batch_shapes(max_side=10).flatmap(arrays_for), rate=st.floats(0.0, 0.9),
       seed=st.integers(0, 2**32 - 1))
def test_dropout_training_gradient_is_the_mask(x, rate, seed):
    layer = Dropout(rate, seed=seed)

    def dropped_sum(x_in):
        layer.build(x_in.shape[1:])  # restarts the seeded generator: the same mask each call
        y = layer.forward(x_in, training=True)
        return float(np.sum(y)), [layer.backward(np.ones_like(y))]

    assert gradcheck(dropped_sum, [x])


@given(x=batch_shapes(max_side=10).flatmap(arrays_for))
def test_dropout_inference_gradients_match_central_differences(x):
    assert check_layer_gradients(Dropout(0.5), x)


def test_dense_linear_forward_and_backward_skip_the_activation():
    rng = np.random.default_rng(0)
    layer = Dense(4, activation="softmax")
    layer.build((3,), dtype="float64", rng=rng)
    x = rng.normal(size=(5, 3))
    projection = rng.normal(size=(5, 4))

    def projected_logits(x_in, kernel, bias):
        layer.kernel.data[...], layer.bias.data[...] = kernel, bias
        logits = layer.linear_forward(x_in)
        grad_x = layer.linear_backward(projection)
        return float(np.sum(logits * projection)), [grad_x, layer.kernel.grad.copy(),
                                                     layer.bias.grad.copy()]

    np.testing.assert_allclose(layer.linear_forward(x), x @ layer.kernel.data + layer.bias.data)
    assert gradcheck(projected_logits, [x, layer.kernel.data.copy(), layer.bias.data.copy()])


def test_backward_assigns_parameter_gradients_into_the_same_arrays():
    rng = np.random.default_rng(0)
    layer = Dense(3)
    layer.build((4,), dtype="float64", rng=rng)
    kernel_grad, bias_grad = layer.kernel.grad, layer.bias.grad
    x, grad_y = rng.normal(size=(5, 4)), rng.normal(size=(5, 3))
    for _ in range(2):  # twice: assigned, not accumulated
        layer.forward(x)
        layer.backward(grad_y)
    assert layer.kernel.grad is kernel_grad and layer.bias.grad is bias_grad
    np.testing.assert_allclose(kernel_grad, np.einsum("ni,nj->ij", x, grad_y))
    np.testing.assert_allclose(bias_grad, grad_y.sum(axis=0))


def test_relu_derivative_at_zero_is_zero():
    layer = ReLU()
    layer.forward(np.zeros((1, 3)))
    np.testing.assert_array_equal(layer.backward(np.ones((1, 3))), np.zeros((1, 3)))


# ----------------------------------------------------------------------------- forward values

def test_activations_match_scipy_and_numpy():
    x = np.random.default_rng(0).normal(scale=5, size=(6, 7))
    np.testing.assert_array_equal(ReLU()(x), np.maximum(x, 0))
    np.testing.assert_allclose(LeakyReLU(0.1)(x), np.where(x > 0, x, 0.1 * x))
    np.testing.assert_allclose(Tanh()(x), np.tanh(x), rtol=1e-15)
    np.testing.assert_allclose(Sigmoid()(x), scipy.special.expit(x), rtol=1e-14)
    np.testing.assert_allclose(Softmax()(x), scipy.special.softmax(x, axis=-1), rtol=1e-14)
    np.testing.assert_allclose(Softmax(axis=0)(x), scipy.special.softmax(x, axis=0), rtol=1e-14)
    np.testing.assert_array_equal(Linear()(x), x)
    np.testing.assert_array_equal(Flatten()(x.reshape(6, 7, 1)), x)


def test_dense_computes_x_times_kernel_plus_bias_with_kernel_shape_in_out():
    rng = np.random.default_rng(0)
    layer = Dense(3, activation="tanh", bias_initializer="ones")
    x = rng.normal(size=(4, 5))
    y = layer(x)
    assert layer.kernel.shape == (5, 3) and layer.bias.shape == (3,)
    expected = np.tanh(np.einsum("ni,io->no", x, layer.kernel.data) + 1.0)
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    assert [p.name for p in layer.parameters()] == ["kernel", "bias"]
    assert layer.parameters() == [layer.kernel, layer.bias]
    assert Dense(3, use_bias=False).bias is None


@pytest.mark.parametrize("dtype, big", [(np.float32, 1e4), (np.float64, 1e300)])
@pytest.mark.parametrize("layer_class", [Sigmoid, Softmax, Tanh])
def test_saturating_layers_stay_finite_for_extreme_inputs(layer_class, dtype, big):
    x = np.array([[big, -big, 0.0], [-big, -big, -big], [big, big, big]], dtype=dtype)
    layer = layer_class()
    y = layer(x)
    grad_x = layer.backward(np.ones_like(y))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(grad_x))
    if layer_class is Softmax:
        np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-6)


# ----------------------------------------------------------------------------- building

@pytest.mark.parametrize("x_dtype, layer_dtype", [
    (np.float32, np.float32), (np.float64, np.float64), (np.int64, np.float32)])
def test_dense_infers_input_size_and_dtype_on_first_call(x_dtype, layer_dtype):
    layer = Dense(3)
    assert not layer.built and layer.parameters() == []
    y = layer(np.ones((2, 7), dtype=x_dtype))
    assert layer.built and layer.input_dim == 7 and layer.kernel.shape == (7, 3)
    assert layer.kernel.dtype == layer_dtype and y.dtype == layer_dtype


def test_dense_built_float32_computes_float64_input_in_float32():
    layer = Dense(3)
    layer.build((4,), dtype="float32", rng=np.random.default_rng(0))
    assert layer(np.ones((2, 4))).dtype == np.float32


def test_dense_compute_output_shape_is_units():
    assert Dense(7).compute_output_shape((5,)) == (7,)


@given(spec=layer_configs(), shape=batch_shapes(max_side=6))
def test_compute_output_shape_matches_forward(spec, shape):
    layer_class, config = spec
    layer = layer_class.from_config(config)
    y = layer(np.ones(shape), training=True)
    assert layer.compute_output_shape(shape[1:]) == y.shape[1:]


def test_flatten_compute_output_shape_multiplies_the_example_axes():
    assert Flatten().compute_output_shape((2, 3, 4)) == (24,)
    assert Flatten()(np.ones((5, 2, 3, 4))).shape == (5, 24)


# ----------------------------------------------------------------------------- initializers

FAN_IN, FAN_OUT = 300, 500


def kernel_for(initializer: str, seed: int = 0) -> np.ndarray:
    layer = Dense(FAN_OUT, kernel_initializer=initializer)
    layer.build((FAN_IN,), dtype="float64", rng=np.random.default_rng(seed))
    return layer.kernel.data


@pytest.mark.parametrize("initializer, limit", [
    ("glorot_uniform", np.sqrt(6 / (FAN_IN + FAN_OUT))), ("he_uniform", np.sqrt(6 / FAN_IN))])
def test_uniform_initializers_follow_keras_limits(initializer, limit):
    kernel = kernel_for(initializer)
    assert np.abs(kernel).max() <= limit
    assert np.abs(kernel).max() > 0.999 * limit
    assert np.std(kernel) == pytest.approx(limit / np.sqrt(3), rel=0.02)
    assert scipy.stats.kstest(kernel.ravel(), scipy.stats.uniform(-limit, 2 * limit).cdf
                              ).pvalue > 1e-3


def test_truncated_normal_constant_is_the_std_of_a_unit_normal_cut_at_two():
    assert scipy.stats.truncnorm(-2, 2).std() == pytest.approx(0.87962566103423978, rel=1e-12)


@pytest.mark.parametrize("initializer, target_std", [
    ("glorot_normal", np.sqrt(2 / (FAN_IN + FAN_OUT))), ("he_normal", np.sqrt(2 / FAN_IN))])
def test_normal_initializers_are_keras_truncated_normals(initializer, target_std):
    kernel = kernel_for(initializer)
    stddev = target_std / 0.87962566103423978  # before truncation, as Keras computes it
    assert np.abs(kernel).max() <= 2 * stddev
    assert np.std(kernel) == pytest.approx(target_std, rel=0.02)
    assert scipy.stats.kstest(kernel.ravel() / stddev, scipy.stats.truncnorm(-2, 2).cdf
                              ).pvalue > 1e-3


def test_zeros_and_ones_initializers_and_bias_fans():
    layer = Dense(40, kernel_initializer="ones", bias_initializer="glorot_uniform")
    layer.build((3,), dtype="float64", rng=np.random.default_rng(0))
    np.testing.assert_array_equal(layer.kernel.data, np.ones((3, 40)))
    # Keras counts a bias (n,) as fan_in = fan_out = n
    assert np.abs(layer.bias.data).max() <= np.sqrt(6 / 80)
    zero_bias = Dense(5)
    zero_bias.build((2,), rng=np.random.default_rng(0))
    np.testing.assert_array_equal(zero_bias.bias.data, np.zeros(5))


@pytest.mark.parametrize("initializer", ["glorot_uniform", "glorot_normal", "he_uniform",
                                         "he_normal"])
def test_same_seed_gives_the_same_weights(initializer):
    np.testing.assert_array_equal(kernel_for(initializer, seed=3), kernel_for(initializer, 3))
    assert not np.array_equal(kernel_for(initializer, seed=3), kernel_for(initializer, 4))


# ----------------------------------------------------------------------------- dtypes

@each_layer
@pytest.mark.parametrize("training", [False, True])
def test_float32_in_float32_out_and_float32_gradients(layer_class, config, training):
    layer = layer_class.from_config(config)
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    y = layer(x, training=training)
    assert y.dtype == np.float32
    # an incoming float64 gradient must not promote the layer's arithmetic either
    assert layer.backward(np.ones(y.shape, dtype=np.float64)).dtype == np.float32
    assert all(p.data.dtype == np.float32 and p.grad.dtype == np.float32
               for p in layer.parameters())


@each_layer
def test_float64_in_float64_out(layer_class, config):
    layer = layer_class.from_config(config)
    y = layer(np.ones((2, 3)), training=True)
    assert y.dtype == np.float64 and layer.backward(np.ones_like(y)).dtype == np.float64


# ----------------------------------------------------------------------------- Dropout

def test_dropout_is_the_identity_at_inference():
    x = np.random.default_rng(0).normal(size=(8, 5))
    layer = Dropout(0.7, seed=0)
    np.testing.assert_array_equal(layer(x), x)
    grad = np.arange(40.0).reshape(8, 5)
    np.testing.assert_array_equal(layer.backward(grad), grad)


@given(rate=st.floats(0.0, 0.95), seed=st.integers(0, 2**32 - 1))
def test_dropout_training_keeps_units_scaled_by_one_over_keep_probability(rate, seed):
    x = np.random.default_rng(seed).uniform(1, 2, size=(6, 50))
    layer = Dropout(rate, seed=seed)
    y = layer(x, training=True)
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / (1 - rate), rtol=1e-15)
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), np.where(kept, 1 / (1 - rate),
                                                                             0))


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_dropout_preserves_the_expected_value(rate):
    n = 200_000
    y = Dropout(rate, seed=1)(np.ones((n // 100, 100)), training=True)
    dropped = int(np.sum(y == 0))
    assert scipy.stats.binomtest(dropped, n, rate).pvalue > 1e-3
    # mean of n draws of Bernoulli(1 - rate) / (1 - rate): std sqrt(rate / (1 - rate) / n)
    assert abs(y.mean() - 1.0) < 5 * np.sqrt(rate / (1 - rate) / n)


def test_dropout_rate_zero_is_the_identity_in_training():
    x = np.random.default_rng(0).normal(size=(3, 4))
    np.testing.assert_array_equal(Dropout(0.0)(x, training=True), x)


def test_dropout_masks_repeat_with_the_seed_or_the_build_rng():
    x = np.ones((10, 10))
    assert np.array_equal(Dropout(0.5, seed=4)(x, training=True),
                          Dropout(0.5, seed=4)(x, training=True))
    assert not np.array_equal(Dropout(0.5, seed=4)(x, training=True),
                              Dropout(0.5, seed=5)(x, training=True))
    masks = []
    for _ in range(2):
        layer = Dropout(0.5)
        layer.build((10,), rng=np.random.default_rng(9))
        masks.append(layer(x, training=True))
    np.testing.assert_array_equal(*masks)


def test_dropout_rng_state_restores_the_masks_that_follow():
    x = np.ones((10, 10))
    layer = Dropout(0.5)
    layer.build((10,), rng=np.random.default_rng(0))
    state = layer.rng.bit_generator.state
    first = layer(x, training=True)
    layer.rng.bit_generator.state = state
    np.testing.assert_array_equal(layer(x, training=True), first)


# ----------------------------------------------------------------------------- configs

@given(spec=layer_configs())
def test_every_layer_config_round_trips_through_json(spec):
    layer_class, config = spec
    layer = layer_class.from_config(config)
    serialized = json.loads(json.dumps(layer_to_config(layer)))
    rebuilt = layer_from_config(serialized)
    assert type(rebuilt) is layer_class
    assert rebuilt.get_config() == layer.get_config()


def test_registry_holds_every_builtin_layer():
    assert set(LAYERS) == {"Dense", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "Softmax", "Linear",
                           "Dropout", "Flatten", "Reshape", "Conv2D", "MaxPooling2D",
                           "AveragePooling2D",
                           "GlobalAveragePooling2D", "GlobalMaxPooling2D", "BatchNormalization",
                           "LayerNormalization", "Embedding", "Normalization"}


def test_dense_config_records_input_dim_once_known_and_serializes_regularizers():
    layer = Dense(3, activation="relu", kernel_regularizer=regularizers.L2(0.1),
                  bias_regularizer={"class_name": "L1", "config": {"l1": 0.2}})
    assert layer.get_config()["input_dim"] is None
    layer(np.ones((2, 4)))
    config = layer.get_config()
    assert config["input_dim"] == 4
    assert config["kernel_regularizer"] == {"class_name": "L2", "config": {"l2": 0.1}}
    rebuilt = layer_from_config(json.loads(json.dumps(layer_to_config(layer))))
    rebuilt.build((4,), rng=np.random.default_rng(0))
    assert isinstance(rebuilt.activation, ReLU)
    assert isinstance(rebuilt.kernel.regularizer, regularizers.L2)
    assert rebuilt.kernel.regularizer.l2 == 0.1
    assert isinstance(rebuilt.bias.regularizer, regularizers.L1)


@pytest.mark.parametrize("name, layer_class", [
    ("relu", ReLU), ("leaky_relu", LeakyReLU), ("tanh", Tanh), ("sigmoid", Sigmoid),
    ("softmax", Softmax), ("linear", Linear)])
def test_activation_names_give_activation_layers(name, layer_class):
    assert type(activation_from_name(name)) is layer_class
    assert type(Dense(2, activation=name).activation) is layer_class
    assert activation_from_name(None) is None


# ----------------------------------------------------------------------------- bad input

def test_unknown_activation_lists_the_known_names():
    with pytest.raises(ValueError, match=r"unknown activation 'gelu'.*relu, leaky_relu, tanh"):
        Dense(3, activation="gelu")
    with pytest.raises(TypeError, match="activation must be a name"):
        activation_from_name(np.tanh)


@pytest.mark.parametrize("argument", ["kernel_initializer", "bias_initializer"])
def test_unknown_initializer_lists_the_known_names(argument):
    with pytest.raises(ValueError, match=rf"unknown {argument} 'lecun_normal'.*glorot_uniform"):
        Dense(3, **{argument: "lecun_normal"})


@pytest.mark.parametrize("units, error", [(0, ValueError), (-2, ValueError),
                                          (2.5, TypeError), (True, TypeError)])
def test_dense_units_must_be_a_positive_int(units, error):
    with pytest.raises(error, match="Dense: units must be a positive int"):
        Dense(units)


def test_dense_use_bias_must_be_a_bool():
    with pytest.raises(TypeError, match="use_bias must be True or False"):
        Dense(2, use_bias="yes")


def test_dense_rejects_inputs_that_are_not_2d_and_suggests_flatten():
    with pytest.raises(ValueError, match=r"shape \(2, 3, 4\); put a Flatten layer"):
        Dense(3)(np.ones((2, 3, 4)))


def test_dense_rejects_a_wrong_input_width_naming_expected_and_found():
    layer = Dense(3)
    layer(np.ones((2, 5)))
    with pytest.raises(ValueError, match="expected input with 5 features, found 4"):
        layer(np.ones((2, 4)))
    with pytest.raises(ValueError, match="expected input with 6 features, found 4"):
        Dense(3, input_dim=6).build((4,))
    with pytest.raises(ValueError, match="expected input with 5 features, found 4"):
        layer.compute_output_shape((4,))


def test_dense_rejects_a_non_float_dtype():
    with pytest.raises(TypeError, match="dtype must be a floating-point type"):
        Dense(3).build((2,), dtype="int32")


@each_layer
def test_backward_before_forward_says_so(layer_class, config):
    layer = layer_class.from_config(config)
    with pytest.raises(RuntimeError, match="backward called before forward"):
        layer.backward(np.ones((2, 3)))


@each_layer
def test_backward_rejects_a_gradient_of_the_wrong_shape(layer_class, config):
    layer = layer_class.from_config(config)
    y = layer(np.ones((2, 6)))
    with pytest.raises(ValueError, match=rf"grad_y has shape \(3, 1\) but the forward output "
                                         rf"had shape \(2, {y.shape[1]}\)"):
        layer.backward(np.ones((3, 1)))


@each_layer
@pytest.mark.parametrize("bad", [np.array([["a", "b"]]), np.ones((1, 2), dtype=complex)])
def test_non_numeric_input_is_a_type_error(layer_class, config, bad):
    layer = layer_class.from_config(config)
    with pytest.raises(TypeError, match="input x must be a real numeric array"):
        layer(bad)


def test_activation_input_needs_a_batch_axis():
    with pytest.raises(ValueError, match="must have a batch axis"):
        ReLU()(np.float64(1.0))


def test_softmax_axis_out_of_range_is_named():
    with pytest.raises(ValueError, match=r"Softmax: axis 2 is out of range.*\(3, 4\)"):
        Softmax(axis=2)(np.ones((3, 4)))
    with pytest.raises(TypeError, match="axis must be an int"):
        Softmax(axis=1.0)


@pytest.mark.parametrize("slope, error", [(-0.1, ValueError), (float("nan"), ValueError),
                                          ("0.1", TypeError)])
def test_leaky_relu_slope_must_be_non_negative(slope, error):
    with pytest.raises(error, match="LeakyReLU: negative_slope must be"):
        LeakyReLU(slope)


@pytest.mark.parametrize("rate, error", [(1.0, ValueError), (-0.1, ValueError),
                                         (1.5, ValueError), ("0.5", TypeError)])
def test_dropout_rate_must_be_in_zero_one(rate, error):
    with pytest.raises(error, match=r"Dropout: rate must be .*\[0, 1\)"):
        Dropout(rate)


@pytest.mark.parametrize("seed", [-1, 1.5, "3"])
def test_dropout_seed_must_be_a_non_negative_int(seed):
    with pytest.raises(ValueError, match="Dropout: seed must be a non-negative int"):
        Dropout(0.5, seed=seed)


def test_layer_from_config_rejects_unknown_or_malformed_specs():
    with pytest.raises(ValueError, match=r"unknown layer 'os.system'; known: Dense, ReLU"):
        layer_from_config({"class_name": "os.system", "config": {}})
    with pytest.raises(ValueError, match=r"exactly the keys 'class_name' and 'config', got"):
        layer_from_config({"class_name": "Dense"})
    with pytest.raises(TypeError, match="the config of Dense must be a dict"):
        layer_from_config({"class_name": "Dense", "config": [3]})
    with pytest.raises(TypeError, match="a layer spec must be a"):
        layer_from_config(["Dense"])
    with pytest.raises(ValueError, match=r"Dense.from_config: unknown key\(s\) \['size'\]"):
        layer_from_config({"class_name": "Dense", "config": {"units": 3, "size": 4}})


def test_dense_rejects_an_unknown_regularizer():
    with pytest.raises(ValueError, match="unknown regularizer 'L3'"):
        Dense(3, kernel_regularizer={"class_name": "L3", "config": {}})


# ----------------------------------------------------------------------------- Normalization

def tuple_axes(example_dims: int):
    """A non-empty tuple of distinct feature axes of a batch with ``example_dims`` example
    axes, each written either way (axis 1 of a 4-D batch as 1 or -3)."""
    ndim = example_dims + 1
    return st.sets(st.integers(1, example_dims), min_size=1).flatmap(
        lambda axes: st.tuples(*[st.sampled_from([a, a - ndim]) for a in sorted(axes)]))


# name: (axes of one example, strategy of the axis argument)
NORMALIZATION_AXES = {
    "axis=-1 on vectors": (1, st.just(-1)),
    "axis=-1 on 3-D examples": (3, st.just(-1)),
    "axis=None": (2, st.just(None)),
    "tuple axis on 3-D examples": (3, tuple_axes(3)),
}


@pytest.mark.parametrize("invert", [False, True], ids=["normalize", "invert"])
@pytest.mark.parametrize("case", NORMALIZATION_AXES)
@given(data=st.data())
def test_normalization_gradients_match_central_differences(case, invert, data):
    example_dims, axes = NORMALIZATION_AXES[case]
    shape = data.draw(batch_shapes(min_dims=example_dims, max_dims=example_dims, max_side=4))
    layer = Normalization(axis=data.draw(axes), invert=invert)
    rows = data.draw(st.integers(2, 8))
    # random data plus a ramp of step 25 down the rows: values in [-10, 10] can never cancel
    # it, so no std reaches the 1e-7 floor, whose outputs of ~1e7 would drown the central
    # differences in rounding (the floor has a closed-form test of its own)
    ramp = 25.0 * np.arange(rows).reshape(rows, *[1] * (len(shape) - 1))
    layer.adapt(data.draw(arrays_for((rows, *shape[1:]))) + ramp)
    assert check_layer_gradients(layer, data.draw(arrays_for(shape)))


@pytest.mark.parametrize("loc, scale", [(0.0, 1.0), (-3.0, 50.0), (1e4, 1e-2)])
def test_normalization_adapted_on_x_gives_the_zscore_of_x(loc, scale):
    x = np.random.default_rng(0).normal(loc, scale, size=(40, 4)) * [1.0, 2.0, 0.5, 7.0]
    layer = Normalization()
    layer.adapt(x)
    # scipy's zscore with ddof=0: the population standard deviation, as Keras
    np.testing.assert_allclose(layer(x), scipy.stats.zscore(x, axis=0), rtol=1e-10,
                               atol=1e-10)


def test_normalization_adapt_then_call_as_in_the_keras_documentation():
    adapt_data = np.array([[0.0, 7.0, 4.0], [2.0, 9.0, 6.0], [0.0, 7.0, 4.0], [2.0, 9.0, 6.0]],
                          dtype="float32")
    layer = Normalization(axis=-1)
    layer.adapt(adapt_data)
    np.testing.assert_array_equal(layer(np.array([[0.0, 7.0, 4.0]])), [[-1.0, -1.0, -1.0]])


def test_normalization_with_given_mean_and_variance_as_in_the_keras_documentation():
    layer = Normalization(mean=3.0, variance=2.0)
    y = layer(np.array([[1.0], [2.0], [3.0]], dtype="float32"))
    np.testing.assert_allclose(y, [[-1.4142135], [-0.70710677], [0.0]], rtol=1e-7)


def test_normalization_invert_as_in_the_keras_documentation():
    layer = Normalization(axis=-1, invert=True)
    layer.adapt(np.array([[0.0], [2.0], [0.0], [2.0]]))  # mean 1, variance 1
    np.testing.assert_array_equal(layer(np.array([[-1.0], [1.0]])), [[0.0], [2.0]])


def test_normalization_invert_undoes_the_normalization_both_ways():
    rng = np.random.default_rng(1)
    x = rng.normal(5.0, 3.0, size=(30, 3)) * [1.0, 100.0, 0.01]
    normalize, denormalize = Normalization(), Normalization(invert=True)
    normalize.adapt(x)
    denormalize.adapt(x)
    np.testing.assert_allclose(denormalize(normalize(x)), x, rtol=1e-12)
    z = rng.normal(size=(6, 3))
    np.testing.assert_allclose(normalize(denormalize(z)), z, rtol=1e-10, atol=1e-12)
    assert not np.allclose(normalize(x), x)  # the round trip went somewhere


def per_channel_zscore(x: np.ndarray) -> np.ndarray:
    """The slow way: for each channel c of (batch, h, w, c) images, the zscore of all its
    pixels in all images."""
    expected = np.empty_like(x)
    for channel in range(x.shape[-1]):
        expected[..., channel] = scipy.stats.zscore(x[..., channel], axis=None)
    return expected


def row_and_channel_zscore(x: np.ndarray) -> np.ndarray:
    """The slow way for axis=(1, 3): one zscore per (row, channel) pair, over images and
    columns."""
    expected = np.empty_like(x)
    for row in range(x.shape[1]):
        for channel in range(x.shape[3]):
            expected[:, row, :, channel] = scipy.stats.zscore(x[:, row, :, channel], axis=None)
    return expected


@pytest.mark.parametrize("axis, oracle, statistics_shape", [
    (-1, per_channel_zscore, (3,)), ((1, -1), row_and_channel_zscore, (4, 3)),
    (None, lambda x: scipy.stats.zscore(x, axis=None), ())])
def test_normalization_of_images_matches_a_slow_loop(axis, oracle, statistics_shape):
    rng = np.random.default_rng(2)
    images = rng.normal(size=(6, 4, 5, 3)) * [1.0, 10.0, 100.0] + [0.0, -5.0, 50.0]
    layer = Normalization(axis=axis)
    layer.adapt(images)
    assert layer.state()["mean"].shape == statistics_shape
    np.testing.assert_allclose(layer(images), oracle(images), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(value=st.floats(-2.0**40, 2.0**40, width=32), rows=st.integers(1, 50))
@example(value=5e8 + 0.3, rows=11)  # float64's mean of 11 of these is off by an ulp
def test_normalization_maps_a_constant_feature_to_zero_without_warning(dtype, value, rows):
    x = np.column_stack([np.full(rows, value), np.arange(rows)]).astype(dtype)
    layer = Normalization()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a division by a zero std would warn
        layer.adapt(x)
        y = layer(x)
    assert layer.state()["variance"][0] == 0
    np.testing.assert_array_equal(y[:, 0], np.zeros(rows))


@pytest.mark.parametrize("invert", [False, True])
def test_normalization_with_variance_zero_divides_by_the_floor_not_by_zero(invert):
    layer = Normalization(mean=[2.0, 2.0], variance=[0.0, 4.0], invert=invert)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = layer(np.array([[2.0, 2.0], [2.5, 4.0]]))
        grad_x = layer.backward(np.ones((2, 2)))
    # closed form: a std of 0 is floored at 1e-7; the other feature divides by sqrt(4) = 2
    if invert:
        expected, expected_grad = [[2.0 + 2.0e-7, 6.0], [2.0 + 2.5e-7, 10.0]], [1e-7, 2.0]
    else:
        expected, expected_grad = [[0.0, 0.0], [0.5e7, 1.0]], [1e7, 0.5]
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    np.testing.assert_allclose(grad_x, [expected_grad] * 2, rtol=1e-12)


def test_normalization_of_values_near_1e30_in_float64_stays_finite():
    x = np.array([[1e30, -1.0], [-1e30, 1.0], [3e30, 3.0]])
    layer = Normalization()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer.adapt(x)
        y = layer(x)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y, scipy.stats.zscore(x, axis=0), rtol=1e-10, atol=1e-10)


def test_normalization_adapt_whose_variance_overflows_float32_says_to_build_in_float64():
    x = np.array([[1e30], [-1e30], [3e30]])
    in_float32 = Sequential([Normalization(), Dense(1)], input_dim=1, seed=0)
    # (1e30)² is beyond float32's 3.4e38, although the std and the outputs are not
    with pytest.raises(ValueError, match=r"overflows the layer's float32; build it in float64 "
                                         r"\(Sequential\(..., dtype='float64'\)\)"):
        in_float32.layers[0].adapt(x)
    in_float64 = Sequential([Normalization(), Dense(1)], input_dim=1, seed=0, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        in_float64.layers[0].adapt(x)
        y = in_float64.layers[0](x)
    np.testing.assert_allclose(y, scipy.stats.zscore(x, axis=0), rtol=1e-10)
    assert np.all(np.isfinite(in_float64.predict(x)))


def test_normalization_of_float32_inputs_near_1e30_with_moderate_statistics_stays_finite():
    layer = Normalization(mean=[1.0, 0.0], variance=[4.0, 1.0])
    x = np.array([[1e30, -1e30], [3e30, 3e30]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = layer(x)
        round_trip = Normalization(mean=[1.0, 0.0], variance=[4.0, 1.0], invert=True)(y)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [[5e29, -1e30], [1.5e30, 3e30]], rtol=1e-6)
    np.testing.assert_allclose(round_trip, x, rtol=1e-6)


@pytest.mark.parametrize("axis, input_shape, statistics_shape", [
    (-1, (5,), (5,)), (-1, (2, 3, 4), (4,)), (None, (2, 3), ()), ((1, 3), (2, 3, 4), (2, 4)),
    ((-3, 2), (2, 3, 4), (2, 3))])
def test_normalization_statistics_are_state_not_parameters(axis, input_shape,
                                                            statistics_shape):
    layer = Normalization(axis=axis)
    # weight_shapes answers for any input shape without building anything
    assert layer.weight_shapes(input_shape) == {"mean": statistics_shape,
                                                "variance": statistics_shape}
    assert not layer.built and layer.state() == {} and layer.parameters() == []
    layer.adapt(np.random.default_rng(0).normal(size=(3, *input_shape)))
    assert layer.parameters() == []
    assert set(layer.state()) == {"mean", "variance"}
    assert all(array.shape == statistics_shape for array in layer.state().values())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_normalization_adapted_before_the_model_is_built_keeps_its_statistics(dtype):
    x = np.random.default_rng(3).normal(10.0, 4.0, size=(50, 3))
    layer = Normalization()
    layer.adapt(x)  # as Keras users write it: adapt, then put the layer in a model
    model = Sequential([layer, Dense(1)], input_dim=3, seed=0, dtype=dtype)
    np.testing.assert_allclose(layer.state()["mean"], x.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(layer.state()["variance"], x.var(axis=0), rtol=1e-6)
    assert layer.state()["mean"].dtype == np.dtype(dtype)
    np.testing.assert_allclose(model.layers[0](x), scipy.stats.zscore(x, axis=0), rtol=1e-5,
                               atol=1e-5)


def test_normalization_adapted_after_the_model_is_built_updates_the_models_weights():
    model = Sequential([Normalization(), Dense(1)], input_dim=2, seed=0)
    x = np.array([[1.0, 10.0], [3.0, 30.0]])
    model.layers[0].adapt(x)
    mean, variance, _, _ = model.get_weights()
    np.testing.assert_array_equal(mean, [2.0, 20.0])
    np.testing.assert_array_equal(variance, [1.0, 100.0])


def test_normalization_adapt_to_data_of_another_shape_names_both_shapes():
    layer = Normalization()
    layer.adapt(np.ones((5, 3)))
    with pytest.raises(ValueError, match=r"data of shape \(5, 4\) gives statistics of shape "
                                         r"\(4,\), the layer holds \(3,\)"):
        layer.adapt(np.ones((5, 4)))
    with pytest.raises(ValueError, match=r"inputs of shape \(2, 4\) do not match statistics of "
                                         r"shape \(3,\)"):
        layer(np.ones((2, 4)))
    adapted = Normalization()
    adapted.adapt(np.ones((5, 3)))
    with pytest.raises(ValueError, match=r"layers\[0\].*adapted to statistics of shape \(3,\)"):
        Sequential([adapted, Dense(1)], input_dim=4)


def test_normalization_rejects_inputs_of_another_rank_than_it_was_built_for():
    layer = Normalization()
    layer.adapt(np.random.default_rng(0).normal(size=(5, 2, 2, 3)))  # images, one pair a channel
    with pytest.raises(ValueError, match=r"inputs of shape \(4, 3\) do not match statistics of "
                                         r"shape \(3,\) \(built for examples of rank 3"):
        layer(np.ones((4, 3)))  # broadcasting would silently give shape (1, 4, 3)
    assert layer(np.ones((4, 7, 1, 3))).shape == (4, 7, 1, 3)  # any height and width


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_normalization_adapt_names_non_finite_data(bad):
    data = np.ones((4, 3))
    data[2, 1] = bad
    with pytest.raises(ValueError, match=r"data holds NaN or infinite values \(the first at "
                                         r"index \(2, 1\)\); drop or fill them first"):
        Normalization().adapt(data)


def test_normalization_adapted_to_one_feature_rejects_five():
    layer = Normalization()
    layer.adapt(np.array([[1.0], [3.0]]))
    with pytest.raises(ValueError, match=r"inputs of shape \(2, 5\) do not match statistics of "
                                         r"shape \(1,\)"):
        layer(np.ones((2, 5)))


@pytest.mark.parametrize("given", [{"mean": 1.0}, {"variance": 1.0}])
def test_normalization_needs_both_mean_and_variance_or_neither(given):
    with pytest.raises(ValueError, match="give both mean and variance, or neither"):
        Normalization(**given)


def test_normalization_adapt_refuses_to_overwrite_given_statistics():
    layer = Normalization(mean=1.0, variance=2.0)
    with pytest.raises(ValueError, match="was given mean and variance; adapt would overwrite"):
        layer.adapt(np.ones((3, 1)))


@pytest.mark.parametrize("bad, error, message", [
    (np.ones(3), ValueError, r"non-empty batch of shape \(rows, features...\), got shape \(3,\)"),
    (np.ones((0, 3)), ValueError, r"non-empty batch.*got shape \(0, 3\)"),
    (np.array([["a"]]), TypeError, "data must be numeric")])
def test_normalization_adapt_rejects_data_that_is_not_a_numeric_batch(bad, error, message):
    with pytest.raises(error, match=message):
        Normalization().adapt(bad)


def test_normalization_rejects_negative_variance_and_the_batch_axis():
    with pytest.raises(ValueError, match="variance must be >= 0"):
        Normalization(mean=0.0, variance=-1.0)
    with pytest.raises(ValueError, match="the batch axis 0 cannot be one"):
        Normalization(axis=0).adapt(np.ones((2, 3)))
    for axis in (1.5, [1, 2.0], "1"):
        with pytest.raises(TypeError, match="axis must be an int, a list of ints or None"):
            Normalization(axis=axis)


@pytest.mark.parametrize("config", [
    {}, {"axis": None}, {"axis": [1, -1], "invert": True},
    {"mean": [1.0, 2.0], "variance": [4.0, 9.0], "input_shape": [2]}])
def test_normalization_config_round_trips_through_json(config):
    layer = Normalization(**config)
    rebuilt = layer_from_config(json.loads(json.dumps(layer_to_config(layer))))
    assert type(rebuilt) is Normalization and rebuilt.get_config() == layer.get_config()


def test_normalization_rebuilt_from_its_config_keeps_the_given_statistics():
    layer = Normalization(mean=[1.0, 2.0], variance=[4.0, 9.0], invert=True)
    rebuilt = Normalization.from_config(layer.get_config())
    x = np.random.default_rng(4).normal(size=(4, 2))
    np.testing.assert_allclose(rebuilt(x), x * [2.0, 3.0] + [1.0, 2.0], rtol=1e-12)


def test_normalization_config_leaves_adapted_statistics_to_the_state():
    layer = Normalization()
    layer.adapt(np.array([[1.0], [3.0]]))
    assert layer.get_config()["mean"] is None and layer.get_config()["variance"] is None
    np.testing.assert_array_equal(layer.state()["mean"], [2.0])
