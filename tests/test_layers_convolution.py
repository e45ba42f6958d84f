"""minidl.layers.convolution: Conv2D's gradients, its agreement with PyTorch and with a slow
loop, TensorFlow's output shapes and padding, Keras' initializer fans, configs, dtypes, a
small CNN that trains and saves, and every bad argument."""

import json
import math

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import minidl
from minidl import Dense, Flatten, Sequential, regularizers
from minidl.layers import ReLU, layer_from_config, layer_to_config
from minidl.layers.convolution import Conv2D
from minidl.testing import arrays_for, check_layer_gradients

# ----------------------------------------------------------------------------- oracles


def tf_padding(n: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's "same" padding along one side of n pixels: (before, after)."""
    total = max((math.ceil(n / stride) - 1) * stride + (kernel - 1) * dilation + 1 - n, 0)
    return total // 2, total - total // 2


def output_size(n: int, kernel: int, stride: int, dilation: int, padding: str) -> int:
    """TensorFlow's output size along one side of n pixels."""
    if padding == "same":
        return math.ceil(n / stride)
    return (n - (kernel - 1) * dilation - 1) // stride + 1


def tf_pads(layer: Conv2D, shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """[(top, bottom), (left, right)]: how TensorFlow pads images of ``shape`` (N, H, W, C)."""
    if layer.padding == "valid":
        return [(0, 0), (0, 0)]
    return [tf_padding(n, k, s, d) for n, k, s, d in zip(
        shape[1:3], layer.kernel_size, layer.strides, layer.dilation_rate, strict=True)]


def pad_as_tf(x: np.ndarray, layer: Conv2D) -> tuple[np.ndarray, tuple[int, int]]:
    """``x`` (N, H, W, C) zero-padded as TensorFlow pads it, and the (top, left) padding."""
    rows, cols = tf_pads(layer, x.shape)
    return np.pad(x, [(0, 0), rows, cols, (0, 0)]), (rows[0], cols[0])


def loop_convolution(layer: Conv2D, x: np.ndarray, grad_z: np.ndarray):
    """The slow, obvious way: for every output pixel and kernel offset, the products the
    definition sums, and for the gradients the chain rule term by term.
    Returns (z, grad_x, grad_kernel, grad_bias)."""
    kernel = layer.kernel.data
    bias = layer.bias.data if layer.bias is not None else np.zeros(layer.filters)
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel_size, layer.strides, layer.dilation_rate
    padded, (top, left) = pad_as_tf(x, layer)
    out_height = output_size(x.shape[1], kh, sh, dh, layer.padding)
    out_width = output_size(x.shape[2], kw, sw, dw, layer.padding)
    z = np.zeros((len(x), out_height, out_width, layer.filters))
    grad_padded = np.zeros_like(padded)
    grad_kernel = np.zeros_like(kernel)
    for a in range(out_height):
        for b in range(out_width):
            z[:, a, b] = bias
            for i in range(kh):
                for j in range(kw):
                    row, col = a * sh + i * dh, b * sw + j * dw
                    z[:, a, b] += padded[:, row, col] @ kernel[i, j]
                    grad_kernel[i, j] += padded[:, row, col].T @ grad_z[:, a, b]
                    grad_padded[:, row, col] += grad_z[:, a, b] @ kernel[i, j].T
    grad_x = grad_padded[:, top:top + x.shape[1], left:left + x.shape[2]]
    return z, grad_x, grad_kernel, grad_z.sum(axis=(0, 1, 2))


@st.composite
def conv_cases(draw, max_side: int = 7, max_batch: int = 3):
    """(layer config, input shape): random kernel sizes, strides or dilations (Keras forbids
    both above 1), paddings and biases, with inputs the kernel fits in."""
    kernel_size = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pairs = st.tuples(st.integers(1, 3), st.integers(1, 3))
    if draw(st.booleans()):
        strides, dilation_rate = draw(pairs), (1, 1)
    else:
        strides, dilation_rate = (1, 1), draw(pairs)
    padding = draw(st.sampled_from(["valid", "same"]))
    spans = [(k - 1) * d + 1 for k, d in zip(kernel_size, dilation_rate, strict=True)]
    low = spans if padding == "valid" else [1, 1]
    assume(all(low_side <= max_side for low_side in low))
    shape = (draw(st.integers(1, max_batch)), draw(st.integers(low[0], max_side)),
             draw(st.integers(low[1], max_side)), draw(st.integers(1, 3)))
    config = {"filters": draw(st.integers(1, 3)), "kernel_size": kernel_size,
              "strides": strides, "padding": padding, "dilation_rate": dilation_rate,
              "use_bias": draw(st.booleans())}
    return config, shape


def built_layer(config: dict, shape: tuple[int, ...], seed: int = 0) -> Conv2D:
    rng = np.random.default_rng(seed)
    layer = Conv2D(**config)
    layer.build(shape[1:], dtype="float64", rng=rng)
    if layer.bias is not None:
        layer.bias.data[...] = rng.normal(size=layer.filters)  # zeros would hide a bias bug
    return layer


# configs with something to get wrong each: odd "same" padding (the extra pixel at the
# bottom/right), strides that skip the last rows, dilation, rectangular kernels, 1x1
CASES = [
    ({"filters": 4, "kernel_size": 3}, (2, 6, 5, 3)),
    ({"filters": 3, "kernel_size": 3, "padding": "same"}, (2, 5, 6, 2)),
    ({"filters": 2, "kernel_size": (2, 4), "padding": "same"}, (1, 5, 7, 3)),
    ({"filters": 3, "kernel_size": 3, "strides": 2, "padding": "same"}, (2, 8, 7, 2)),
    ({"filters": 2, "kernel_size": (3, 2), "strides": (3, 2)}, (3, 8, 7, 2)),
    ({"filters": 2, "kernel_size": 4, "strides": (1, 3), "padding": "same"}, (1, 6, 10, 1)),
    ({"filters": 3, "kernel_size": 3, "dilation_rate": 2}, (2, 7, 8, 2)),
    ({"filters": 2, "kernel_size": (2, 3), "dilation_rate": (3, 2), "padding": "same"},
     (2, 6, 5, 3)),
    ({"filters": 5, "kernel_size": 1, "use_bias": False}, (2, 3, 4, 3)),
]
each_case = pytest.mark.parametrize("config, shape", CASES,
                                    ids=[f"{c}-{s}" for c, s in CASES])


# ----------------------------------------------------------------------------- gradients

@given(case=conv_cases(), activation=st.sampled_from([None, "tanh", "sigmoid"]),
       data=st.data())
@example(case=({"filters": 2, "kernel_size": (3, 2), "strides": (2, 3), "padding": "same",
                "dilation_rate": (1, 1), "use_bias": True}, (1, 5, 7, 2)),
         activation=None, data=None)  # batch 1, odd "same" padding with strides
def test_conv2d_gradients_match_central_differences(case, activation, data):
    config, shape = case
    layer = built_layer({**config, "activation": activation}, shape)
    if data is None:
        x = np.random.default_rng(1).uniform(-10, 10, size=shape)
    else:
        x = data.draw(arrays_for(shape))
    assert check_layer_gradients(layer, x)


@each_case
def test_conv2d_matches_a_slow_loop_over_pixels_and_offsets(config, shape):
    layer = built_layer(config, shape)
    rng = np.random.default_rng(2)
    x = rng.normal(size=shape)
    z = layer.forward(x)
    grad_z = rng.normal(size=z.shape)
    grad_x = layer.backward(grad_z)
    expected_z, expected_grad_x, expected_grad_kernel, expected_grad_bias = loop_convolution(
        layer, x, grad_z)
    np.testing.assert_allclose(z, expected_z, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad_x, expected_grad_x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.kernel.grad, expected_grad_kernel, rtol=1e-12, atol=1e-12)
    if layer.bias is not None:
        np.testing.assert_allclose(layer.bias.grad, expected_grad_bias, rtol=1e-12)


@settings(max_examples=15)
@given(case=conv_cases(), seed=st.integers(0, 2**32 - 1))
def test_conv2d_matches_a_slow_loop_for_random_configurations(case, seed):
    config, shape = case
    layer = built_layer(config, shape, seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape)
    z = layer.forward(x)
    grad_z = rng.normal(size=z.shape)
    grad_x = layer.backward(grad_z)
    expected = loop_convolution(layer, x, grad_z)
    for actual, wanted in zip([z, grad_x, layer.kernel.grad], expected[:3], strict=True):
        np.testing.assert_allclose(actual, wanted, rtol=1e-12, atol=1e-12)


@each_case
def test_conv2d_forward_and_gradients_match_pytorch(config, shape):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    layer = built_layer(config, shape)
    rng = np.random.default_rng(3)
    x = rng.normal(size=shape)
    z = layer.forward(x)
    grad_z = rng.normal(size=z.shape)
    grad_x = layer.backward(grad_z)

    # TensorFlow's padding, explicitly: PyTorch's own padding="same" is symmetric
    (top, bottom), (left, right) = tf_pads(layer, shape)
    x_torch = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)  # NHWC -> NCHW
    # (kh, kw, in, out) -> (out, in, kh, kw)
    kernel_torch = torch.tensor(layer.kernel.data.transpose(3, 2, 0, 1), requires_grad=True)
    bias_torch = (torch.tensor(layer.bias.data, requires_grad=True)
                  if layer.bias is not None else None)
    z_torch = functional.conv2d(
        functional.pad(x_torch, (left, right, top, bottom)),
        kernel_torch, bias_torch, stride=layer.strides, dilation=layer.dilation_rate)
    z_torch.backward(torch.tensor(grad_z.transpose(0, 3, 1, 2)))

    np.testing.assert_allclose(z, z_torch.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(grad_x, x_torch.grad.numpy().transpose(0, 2, 3, 1),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.kernel.grad, kernel_torch.grad.numpy().transpose(2, 3, 1, 0),
                               rtol=1e-12, atol=1e-12)
    if bias_torch is not None:
        np.testing.assert_allclose(layer.bias.grad, bias_torch.grad.numpy(), rtol=1e-12)


def test_first_layer_skips_the_input_gradient_and_still_assigns_the_parameter_gradients():
    config, shape = CASES[3]
    layer = built_layer(config, shape)
    x = np.random.default_rng(4).normal(size=shape)
    grad_z = np.ones(layer.forward(x).shape)
    layer.backward(grad_z)
    expected_kernel_grad, expected_bias_grad = layer.kernel.grad.copy(), layer.bias.grad.copy()
    kernel_grad = layer.kernel.grad
    layer.kernel.grad[...] = 0
    layer.needs_input_grad = False
    layer.forward(x)
    assert layer.backward(grad_z) is None
    assert layer.kernel.grad is kernel_grad  # assigned into the array optimizers hold
    np.testing.assert_allclose(layer.kernel.grad, expected_kernel_grad, rtol=1e-14)
    np.testing.assert_allclose(layer.bias.grad, expected_bias_grad, rtol=1e-14)


def test_inference_keeps_no_window_matrix_and_backward_after_it_builds_it_again():
    config, shape = CASES[3]
    layer = built_layer(config, shape)
    x = np.random.default_rng(5).normal(size=shape)
    grad_z = np.random.default_rng(6).normal(size=layer.forward(x, training=True).shape)
    grad_x_training = layer.backward(grad_z)
    kernel_grad_training = layer.kernel.grad.copy()
    assert layer._cols is not None  # training keeps the windows for backward
    layer.forward(x, training=False)
    assert layer._cols is None  # a server's predict leaves no kh·kw-fold copy of its batch
    np.testing.assert_allclose(layer.backward(grad_z), grad_x_training, rtol=1e-14)
    np.testing.assert_allclose(layer.kernel.grad, kernel_grad_training, rtol=1e-14)


def test_a_1x1_convolution_is_a_dense_layer_on_every_pixel():
    layer = built_layer({"filters": 4, "kernel_size": 1}, (2, 3, 5, 6))
    x = np.random.default_rng(5).normal(size=(2, 3, 5, 6))
    np.testing.assert_allclose(layer(x), x @ layer.kernel.data[0, 0] + layer.bias.data,
                               rtol=1e-13)


# ----------------------------------------------------------------------------- shapes

@given(n=st.tuples(st.integers(1, 12), st.integers(1, 12)),
       kernel_size=st.tuples(st.integers(1, 5), st.integers(1, 5)),
       step=st.tuples(st.integers(1, 4), st.integers(1, 4)), dilate=st.booleans(),
       padding=st.sampled_from(["valid", "same"]))
def test_output_shape_follows_tensorflows_formula(n, kernel_size, step, dilate, padding):
    strides, dilation_rate = ((1, 1), step) if dilate else (step, (1, 1))
    spans = [(k - 1) * d + 1 for k, d in zip(kernel_size, dilation_rate, strict=True)]
    assume(padding == "same" or all(span <= side for span, side in zip(spans, n, strict=True)))
    layer = Conv2D(3, kernel_size, strides=strides, padding=padding,
                   dilation_rate=dilation_rate)
    expected = (*(output_size(side, k, s, d, padding) for side, k, s, d in zip(
        n, kernel_size, strides, dilation_rate, strict=True)), 3)
    assert layer.compute_output_shape((*n, 2)) == expected
    assert layer(np.ones((2, *n, 2))).shape == (2, *expected)


def test_same_padding_puts_the_odd_pixel_at_the_bottom_and_right():
    layer = Conv2D(1, 2, padding="same", kernel_initializer="ones", use_bias=False)
    x = np.arange(16.0).reshape(1, 4, 4, 1)
    z = layer(x)[0, :, :, 0]
    # total padding 1 per side, all of it after the image: windows start at each pixel
    assert z[0, 0] == 0 + 1 + 4 + 5
    assert z[3, 3] == 15
    assert z[3, 0] == 12 + 13


def test_same_padding_with_strides_pads_as_tensorflow():
    # n = 6, k = 3, s = 2: ceil(6/2) = 3 outputs, total padding (3-1)*2 + 3 - 6 = 1, at the end
    layer = Conv2D(1, 3, strides=2, padding="same", kernel_initializer="ones", use_bias=False)
    x = np.arange(36.0).reshape(1, 6, 6, 1)
    z = layer(x)[0, :, :, 0]
    assert z.shape == (3, 3)
    assert z[0, 0] == x[0, 0:3, 0:3].sum()
    assert z[2, 2] == x[0, 4:6, 4:6].sum()  # the last window hangs over the bottom right


# ----------------------------------------------------------------------------- building

def test_kernel_and_bias_have_keras_names_and_shapes():
    layer = Conv2D(8, (3, 5))
    assert layer.weight_shapes((10, 12, 3)) == {"kernel": (3, 5, 3, 8), "bias": (8,)}
    assert not layer.built and layer.parameters() == []
    layer(np.ones((2, 10, 12, 3), dtype=np.float32))
    assert [(p.name, p.shape) for p in layer.parameters()] == [("kernel", (3, 5, 3, 8)),
                                                               ("bias", (8,))]
    assert Conv2D(8, 3, use_bias=False).weight_shapes((5, 5, 2)) == {"kernel": (3, 3, 2, 8)}


RECEPTIVE_FIELD, IN_CHANNELS, FILTERS = 25, 32, 64  # a (5, 5, 32, 64) kernel
FAN_IN, FAN_OUT = RECEPTIVE_FIELD * IN_CHANNELS, RECEPTIVE_FIELD * FILTERS


@pytest.mark.parametrize("initializer, std", [
    ("glorot_uniform", math.sqrt(2 / (FAN_IN + FAN_OUT))),
    ("glorot_normal", math.sqrt(2 / (FAN_IN + FAN_OUT))),
    ("he_uniform", math.sqrt(2 / FAN_IN)), ("he_normal", math.sqrt(2 / FAN_IN))])
def test_kernel_initializers_count_the_receptive_field_in_the_fans_as_keras(initializer, std):
    layer = Conv2D(FILTERS, 5, kernel_initializer=initializer)
    layer.build((9, 9, IN_CHANNELS), dtype="float64", rng=np.random.default_rng(0))
    kernel = layer.kernel.data
    assert kernel.shape == (5, 5, IN_CHANNELS, FILTERS)
    assert np.std(kernel) == pytest.approx(std, rel=0.02)
    if initializer.endswith("uniform"):
        limit = math.sqrt(3) * std
        assert limit * 0.999 < np.abs(kernel).max() <= limit


def test_declared_input_shape_builds_a_model_at_once():
    model = Sequential([Conv2D(2, 3, input_shape=(6, 5, 1)), Flatten()], seed=0)
    assert model.built and model.output_shape == (4 * 3 * 2,)
    assert Conv2D(2, 3, input_shape=[6, 5, 1]).declared_input_shape() == (6, 5, 1)


def test_regularizers_are_attached_to_the_parameters():
    layer = Conv2D(2, 3, kernel_regularizer=regularizers.L2(0.1),
                   bias_regularizer={"class_name": "L1", "config": {"l1": 0.2}})
    layer.build((4, 4, 1), rng=np.random.default_rng(0))
    assert isinstance(layer.kernel.regularizer, regularizers.L2)
    assert layer.kernel.regularizer.l2 == 0.1
    assert isinstance(layer.bias.regularizer, regularizers.L1)


def test_an_activation_is_a_step_of_its_own():
    layer = built_layer({"filters": 3, "kernel_size": 2, "activation": "relu"}, (2, 4, 4, 2))
    convolution, activation = layer.steps()
    assert isinstance(activation, ReLU) and convolution.parameters() == layer.parameters()
    x = np.random.default_rng(6).normal(size=(2, 4, 4, 2))
    np.testing.assert_array_equal(activation(convolution(x)), layer(x))
    assert Conv2D(3, 2).steps()[0].filters == 3


@pytest.mark.parametrize("config", [
    {"filters": 4, "kernel_size": 3},
    {"filters": 2, "kernel_size": [3, 1], "strides": [2, 1], "padding": "same",
     "activation": "relu", "use_bias": False, "kernel_initializer": "he_normal",
     "kernel_regularizer": {"class_name": "L2", "config": {"l2": 0.01}},
     "input_shape": [8, 8, 3]},
    {"filters": 1, "kernel_size": 2, "dilation_rate": (2, 3), "bias_initializer": "ones"}])
def test_config_round_trips_through_json(monkeypatch, config):
    monkeypatch.setitem(minidl.layers.LAYERS, "Conv2D", Conv2D)
    layer = Conv2D(**config)
    rebuilt = layer_from_config(json.loads(json.dumps(layer_to_config(layer))))
    assert type(rebuilt) is Conv2D and rebuilt.get_config() == layer.get_config()
    assert rebuilt.kernel_size == layer.kernel_size and rebuilt.strides == layer.strides


# ----------------------------------------------------------------------------- dtypes

@pytest.mark.parametrize("activation", [None, "relu"])
def test_float32_in_float32_out_and_float32_gradients(activation):
    layer = Conv2D(3, 3, padding="same", activation=activation)
    x = np.random.default_rng(7).normal(size=(2, 5, 5, 2)).astype(np.float32)
    y = layer(x)
    assert y.dtype == np.float32
    # an incoming float64 gradient must not promote the layer's arithmetic
    assert layer.backward(np.ones(y.shape)).dtype == np.float32
    assert all(p.data.dtype == np.float32 and p.grad.dtype == np.float32
               for p in layer.parameters())


def test_integer_input_builds_a_float32_layer():
    layer = Conv2D(2, 2)
    assert layer(np.ones((1, 3, 3, 1), dtype=np.int64)).dtype == np.float32


def test_backward_before_forward_is_a_runtime_error():
    for layer in (Conv2D(2, 3), Conv2D(2, 3, activation="relu")):
        with pytest.raises(RuntimeError, match="backward called before forward"):
            layer.backward(np.ones((1, 2, 2, 2)))


def test_backward_rejects_a_gradient_of_the_wrong_shape():
    layer = Conv2D(2, 3)
    layer(np.ones((2, 5, 5, 1)))
    with pytest.raises(ValueError, match=r"grad_y has shape \(2, 3, 3, 3\) but the forward "
                                         r"output had shape \(2, 3, 3, 2\)"):
        layer.backward(np.ones((2, 3, 3, 3)))


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("arguments, error, message", [
    ({"filters": 0, "kernel_size": 3}, ValueError, "filters must be a positive int"),
    ({"filters": 2.0, "kernel_size": 3}, TypeError, "filters must be a positive int"),
    ({"filters": 2, "kernel_size": 0}, ValueError, "kernel_size must be a positive int"),
    ({"filters": 2, "kernel_size": (3, 3, 3)}, ValueError,
     "kernel_size must be a positive int or a pair"),
    ({"filters": 2, "kernel_size": 3, "strides": (1, 0)}, ValueError, "strides must be"),
    ({"filters": 2, "kernel_size": 3, "dilation_rate": "2"}, TypeError, "dilation_rate must"),
    ({"filters": 2, "kernel_size": 3, "strides": 2, "dilation_rate": 2}, ValueError,
     r"strides > 1 and dilation_rate > 1 cannot be combined.*strides=\(2, 2\)"),
    ({"filters": 2, "kernel_size": 3, "padding": "full"}, ValueError,
     "padding must be 'valid' or 'same', got 'full'"),
    ({"filters": 2, "kernel_size": 3, "use_bias": 1}, TypeError, "use_bias must be True or"),
    ({"filters": 2, "kernel_size": 3, "activation": "gelu"}, ValueError, "unknown activation"),
    ({"filters": 2, "kernel_size": 3, "kernel_initializer": "orthogonal"}, ValueError,
     "Conv2D: unknown kernel_initializer 'orthogonal'; known initializers: glorot_uniform"),
    ({"filters": 2, "kernel_size": 3, "bias_initializer": None}, ValueError,
     "Conv2D: unknown bias_initializer None"),
    ({"filters": 2, "kernel_size": 3, "input_shape": (28, 28)}, ValueError,
     r"examples of shape \(height, width, channels\), got \(28, 28\)"),
    ({"filters": 2, "kernel_size": 5, "input_shape": (4, 6, 1)}, ValueError,
     r"kernel \(5, 5\).*spans 5 pixels, more than the input's 4.*padding='same'"),
])
def test_bad_arguments_name_the_argument(arguments, error, message):
    with pytest.raises(error, match=message):
        Conv2D(**arguments)


def test_a_kernel_larger_than_the_input_names_both_shapes():
    with pytest.raises(ValueError, match=r"kernel \(3, 3\) with dilation_rate \(2, 2\) spans 5 "
                                         r"pixels, more than the input's 4 \(input height and "
                                         r"width \(4, 9\)"):
        Conv2D(1, 3, dilation_rate=2)(np.ones((1, 4, 9, 1)))
    assert Conv2D(1, 3, dilation_rate=2, padding="same")(np.ones((1, 4, 9, 1))).shape == (
        1, 4, 9, 1)


def test_inputs_that_are_not_images_of_the_built_channels_are_refused():
    layer = Conv2D(2, 3)
    with pytest.raises(ValueError, match=r"shape \(batch, height, width, channels\), got shape "
                                         r"\(2, 5, 5\)"):
        layer(np.ones((2, 5, 5)))
    layer(np.ones((2, 5, 5, 3)))
    with pytest.raises(ValueError, match="expected inputs with 3 channels, found 1"):
        layer(np.ones((2, 5, 5, 1)))
    with pytest.raises(TypeError, match="input x must be a real numeric array"):
        layer(np.ones((2, 5, 5, 3), dtype=complex))
    with pytest.raises(ValueError, match="Sequential: layers\\[0\\] \\(Conv2D\\)"):
        Sequential([Conv2D(2, 3)], input_dim=(5, 5))


# ----------------------------------------------------------------------------- in a model

def bars(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """6x6 images holding a noisy horizontal bar in the top, middle or bottom third: the
    class."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=count)
    images = rng.normal(0.0, 0.3, size=(count, 6, 6, 1))
    for third in range(3):
        images[labels == third, 2 * third:2 * third + 2, :, 0] += 1.0
    return images.astype(np.float32), labels


def tiny_cnn() -> Sequential:
    return Sequential([Conv2D(4, 3, padding="same", activation="relu", input_shape=(6, 6, 1)),
                       Flatten(), Dense(3, activation="softmax")], seed=0)


def test_a_tiny_cnn_trains_and_its_loss_goes_down():
    x, y = bars(240, seed=0)
    model = tiny_cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0]
    assert history.history["accuracy"][-1] > 0.9


def test_a_tiny_cnn_saves_and_loads_when_conv2d_is_registered(monkeypatch, tmp_path):
    monkeypatch.setitem(minidl.layers.LAYERS, "Conv2D", Conv2D)
    x, y = bars(64, seed=1)
    model = tiny_cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    model.save(tmp_path / "cnn.npz")
    loaded = minidl.load_model(tmp_path / "cnn.npz")
    assert type(loaded.layers[0]) is Conv2D
    assert loaded.layers[0].get_config() == model.layers[0].get_config()
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
