"""minidl.layers.pooling: gradients, a slow loop and PyTorch as oracles, TensorFlow's output
shapes and "same" padding, Keras' examples, dtypes, configs, bad arguments, a model."""

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minidl.layers import LAYERS, Dense, Flatten, layer_from_config, layer_to_config
from minidl.layers.pooling import (
    AveragePooling2D,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    MaxPooling2D,
)
from minidl.model import Sequential, load_model
from minidl.optim import Adam
from minidl.testing import check_layer_gradients

WINDOWED = [MaxPooling2D, AveragePooling2D]
GLOBAL = [GlobalMaxPooling2D, GlobalAveragePooling2D]

# one of each layer, as (class, config), for inputs of shape (batch, 5, 6, channels)
EVERY_POOLING = [(MaxPooling2D, {}), (MaxPooling2D, {"pool_size": 3, "strides": 2,
                                                     "padding": "same"}),
                 (AveragePooling2D, {}), (AveragePooling2D, {"pool_size": (2, 3), "strides": 1,
                                                             "padding": "same"}),
                 (GlobalMaxPooling2D, {}), (GlobalAveragePooling2D, {"keepdims": True})]
POOLING_IDS = [f"{layer_class.__name__}{config or ''}" for layer_class, config in EVERY_POOLING]
each_pooling = pytest.mark.parametrize("layer_class, config", EVERY_POOLING, ids=POOLING_IDS)


def untied(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Distinct values 0.1 apart: no window has two maxima, so central differences of 1e-6
    never move the argmax."""
    return np.random.default_rng(seed).permutation(math.prod(shape)).reshape(shape) * 0.1 - 3.0


@st.composite
def pooling_cases(draw):
    """``(config, shape)``: a random MaxPooling2D/AveragePooling2D config and a batch shape
    (batch, height, width, channels) it accepts (the pool fits in "valid" mode)."""
    padding = draw(st.sampled_from(["valid", "same"]))
    height, width = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    limit_h, limit_w = (3, 3) if padding == "same" else (min(3, height), min(3, width))
    pool_size = draw(st.one_of(
        st.integers(1, min(limit_h, limit_w)),
        st.tuples(st.integers(1, limit_h), st.integers(1, limit_w))))
    strides = draw(st.one_of(st.none(), st.integers(1, 3),
                             st.tuples(st.integers(1, 3), st.integers(1, 3))))
    shape = (draw(st.integers(1, 3)), height, width, draw(st.integers(1, 3)))
    return {"pool_size": pool_size, "strides": strides, "padding": padding}, shape


def pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def tf_output_size(size: int, pool: int, stride: int, padding: str) -> int:
    """TensorFlow's documented formula, written as it documents it (not as the layer does)."""
    if padding == "same":
        return math.ceil(size / stride)
    return math.ceil((size - pool + 1) / stride)


def tf_pad_before_after(size: int, pool: int, stride: int) -> tuple[int, int]:
    total = max((math.ceil(size / stride) - 1) * stride + pool - size, 0)
    return total // 2, total - total // 2


# ----------------------------------------------------------------------------- slow oracle

def slow_pooling(x, config, kind, grad_y=None):
    """Pool with one Python loop per example, output pixel and channel, over each window's
    real elements only (no padding array): ``(y, grad_x)`` (grad_x None without grad_y).

    Max pooling's gradient goes to the window's first maximum in row-major order."""
    (pool_h, pool_w), padding = pair(config["pool_size"]), config["padding"]
    stride_h, stride_w = pair(config["strides"] or config["pool_size"])
    batch_size, height, width, channels = x.shape
    out_h = tf_output_size(height, pool_h, stride_h, padding)
    out_w = tf_output_size(width, pool_w, stride_w, padding)
    top = tf_pad_before_after(height, pool_h, stride_h)[0] if padding == "same" else 0
    left = tf_pad_before_after(width, pool_w, stride_w)[0] if padding == "same" else 0
    y = np.empty((batch_size, out_h, out_w, channels))
    grad_x = None if grad_y is None else np.zeros(x.shape)
    for n, i, j, c in itertools.product(range(batch_size), range(out_h), range(out_w),
                                        range(channels)):
        rows = range(max(i * stride_h - top, 0), min(i * stride_h - top + pool_h, height))
        cols = range(max(j * stride_w - left, 0), min(j * stride_w - left + pool_w, width))
        window = [(p, q) for p in rows for q in cols]  # row-major order
        values = [x[n, p, q, c] for p, q in window]
        if kind == "max":
            y[n, i, j, c] = max(values)
            if grad_x is not None:
                p, q = window[values.index(max(values))]  # index(): the first maximum
                grad_x[n, p, q, c] += grad_y[n, i, j, c]
        else:
            y[n, i, j, c] = sum(values) / len(values)
            if grad_x is not None:
                for p, q in window:
                    grad_x[n, p, q, c] += grad_y[n, i, j, c] / len(values)
    return y, grad_x


# ----------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("layer_class", WINDOWED)
@given(case=pooling_cases(), seed=st.integers(0, 2**32 - 1))
def test_windowed_pooling_gradients_match_central_differences(layer_class, case, seed):
    config, shape = case
    assert check_layer_gradients(layer_class(**config), untied(shape, seed))


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("layer_class", GLOBAL)
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5),
                       st.integers(1, 3)),
       seed=st.integers(0, 2**32 - 1))
def test_global_pooling_gradients_match_central_differences(layer_class, keepdims, shape,
                                                            seed):
    assert check_layer_gradients(layer_class(keepdims=keepdims), untied(shape, seed))


def test_overlapping_max_windows_add_their_gradients_at_a_shared_maximum():
    x = np.zeros((1, 3, 3, 1))
    x[0, 1, 1, 0] = 1.0  # the maximum of all four 2x2 windows
    layer = MaxPooling2D(2, strides=1)
    np.testing.assert_array_equal(layer(x), np.ones((1, 2, 2, 1)))
    grad_x = layer.backward(np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 2, 2, 1))
    expected = np.zeros((1, 3, 3, 1))
    expected[0, 1, 1, 0] = 10.0
    np.testing.assert_array_equal(grad_x, expected)


@pytest.mark.parametrize("layer", [MaxPooling2D(2), MaxPooling2D(3, strides=2, padding="same")],
                         ids=repr)
def test_tied_max_windows_send_the_gradient_to_their_first_element_in_row_major_order(layer):
    x = np.ones((1, 4, 4, 1))  # every element of every window is a maximum
    grad_y = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    layer(x)
    expected = np.zeros_like(x)
    expected[0, ::2, ::2, 0] = grad_y[0, :, :, 0]  # the top-left element of each window
    np.testing.assert_array_equal(layer.backward(grad_y), expected)


def test_global_max_ties_send_the_gradient_to_the_first_pixel_in_row_major_order():
    x = np.zeros((1, 3, 3, 2))
    x[0, 1:, 1:, :] = 1.0  # four maxima per channel; (1, 1) comes first
    layer = GlobalMaxPooling2D()
    layer(x)
    expected = np.zeros_like(x)
    expected[0, 1, 1, :] = [5.0, 7.0]
    np.testing.assert_array_equal(layer.backward(np.array([[5.0, 7.0]])), expected)


# ----------------------------------------------------------------------------- oracles

@pytest.mark.parametrize("kind, layer_class", [("max", MaxPooling2D), ("avg", AveragePooling2D)])
@given(case=pooling_cases(), seed=st.integers(0, 2**32 - 1))
def test_windowed_pooling_matches_a_slow_loop_ties_included(kind, layer_class, case, seed):
    config, shape = case
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, size=shape).astype(np.float64)  # few values: many ties
    layer = layer_class(**config)
    y = layer(x)
    grad_y = rng.normal(size=y.shape)
    expected_y, expected_grad_x = slow_pooling(x, config, kind, grad_y)
    np.testing.assert_allclose(y, expected_y, rtol=1e-14)
    np.testing.assert_allclose(layer.backward(grad_y), expected_grad_x, rtol=1e-13, atol=1e-15)


def torch_windowed_pooling(torch, x, grad_y, config, kind):
    """PyTorch's max_pool2d/avg_pool2d on NCHW, padded explicitly as TensorFlow pads: -inf
    for max; for average, the zero-padded sum over the count of real elements (what
    count_include_pad=False means, for asymmetric padding too). ``(y, grad_x)`` in NHWC."""
    functional = torch.nn.functional
    pool, padding = pair(config["pool_size"]), config["padding"]
    strides = pair(config["strides"] or config["pool_size"])
    x_nchw = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    pads = [0, 0, 0, 0]  # F.pad's order: left, right, top, bottom
    if padding == "same":
        pads[2:] = tf_pad_before_after(x.shape[1], pool[0], strides[0])
        pads[:2] = tf_pad_before_after(x.shape[2], pool[1], strides[1])
    if kind == "max":
        y = functional.max_pool2d(functional.pad(x_nchw, pads, value=-math.inf), pool, strides)
    else:
        ones = torch.ones_like(x_nchw)
        y = (functional.avg_pool2d(functional.pad(x_nchw, pads), pool, strides)
             / functional.avg_pool2d(functional.pad(ones, pads), pool, strides))
    y.backward(torch.tensor(grad_y.transpose(0, 3, 1, 2)))
    return (y.detach().numpy().transpose(0, 2, 3, 1),
            x_nchw.grad.numpy().transpose(0, 2, 3, 1))


@pytest.mark.parametrize("kind, layer_class", [("max", MaxPooling2D), ("avg", AveragePooling2D)])
@given(case=pooling_cases(), seed=st.integers(0, 2**32 - 1))
def test_windowed_pooling_matches_torch_forward_and_input_gradient(kind, layer_class, case,
                                                                   seed):
    torch = pytest.importorskip("torch")
    config, shape = case
    x = untied(shape, seed)
    layer = layer_class(**config)
    y = layer(x)
    grad_y = np.random.default_rng(seed).normal(size=y.shape)
    expected_y, expected_grad_x = torch_windowed_pooling(torch, x, grad_y, config, kind)
    np.testing.assert_allclose(y, expected_y, rtol=1e-14)
    np.testing.assert_allclose(layer.backward(grad_y), expected_grad_x, rtol=1e-13,
                               atol=1e-15)


def test_max_pooling_ties_go_where_torch_sends_them():
    torch = pytest.importorskip("torch")
    config = {"pool_size": 3, "strides": 1, "padding": "valid"}
    x = np.random.default_rng(0).integers(0, 2, size=(2, 6, 5, 3)).astype(np.float64)
    layer = MaxPooling2D(**config)
    grad_y = np.random.default_rng(1).normal(size=layer(x).shape)
    _, torch_grad_x = torch_windowed_pooling(torch, x, grad_y, config, "max")
    np.testing.assert_allclose(layer.backward(grad_y), torch_grad_x, rtol=1e-14)


@pytest.mark.parametrize("keepdims", [False, True])
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5),
                       st.integers(1, 3)),
       seed=st.integers(0, 2**32 - 1), ties=st.booleans())
def test_global_pooling_matches_torch_forward_and_input_gradient(keepdims, shape, seed, ties):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, size=shape).astype(np.float64) if ties else untied(shape, seed)
    grad_y = rng.normal(size=(shape[0], shape[3]))
    for layer, reduce in [
            (GlobalAveragePooling2D(keepdims), lambda t: t.mean(dim=(2, 3))),
            # max_pool2d over the whole image: one pixel per channel gets the gradient, as in
            # minidl (torch.amax would share it among ties)
            (GlobalMaxPooling2D(keepdims), lambda t: torch.nn.functional.max_pool2d(
                t, t.shape[2:]).flatten(2)[..., 0])]:
        x_nchw = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
        expected_y = reduce(x_nchw)
        expected_y.backward(torch.tensor(grad_y))
        y = layer(x)
        assert y.shape == ((shape[0], 1, 1, shape[3]) if keepdims else grad_y.shape)
        np.testing.assert_allclose(y.reshape(grad_y.shape), expected_y.detach().numpy(),
                                   rtol=1e-14)
        np.testing.assert_allclose(layer.backward(grad_y.reshape(y.shape)),
                                   x_nchw.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-14)


# ----------------------------------------------------------------------------- shapes, padding

@pytest.mark.parametrize("layer_class", WINDOWED)
@given(case=pooling_cases())
def test_output_shape_is_tensorflows_formula_for_valid_and_same(layer_class, case):
    config, shape = case
    pool, strides = pair(config["pool_size"]), pair(config["strides"] or config["pool_size"])
    expected = (tf_output_size(shape[1], pool[0], strides[0], config["padding"]),
                tf_output_size(shape[2], pool[1], strides[1], config["padding"]), shape[3])
    layer = layer_class(**config)
    assert layer.compute_output_shape(shape[1:]) == expected
    assert layer(np.ones(shape)).shape == (shape[0], *expected)


@pytest.mark.parametrize("keepdims, expected", [(False, (3,)), (True, (1, 1, 3))])
@pytest.mark.parametrize("layer_class", GLOBAL)
def test_global_pooling_output_shape_is_channels(layer_class, keepdims, expected):
    layer = layer_class(keepdims=keepdims)
    assert layer.compute_output_shape((4, 5, 3)) == expected
    assert layer(np.ones((2, 4, 5, 3))).shape == (2, *expected)


KERAS_IMAGE = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)  # [[1, 2, 3], [4, 5, 6], [7, 8, 9]]


@pytest.mark.parametrize("layer, expected", [
    (MaxPooling2D((2, 2), strides=(1, 1), padding="valid"), [[5, 6], [8, 9]]),
    (MaxPooling2D((2, 2), strides=(1, 1), padding="same"), [[5, 6, 6], [8, 9, 9], [8, 9, 9]]),
    (AveragePooling2D((2, 2), strides=(1, 1), padding="valid"), [[3, 4], [6, 7]]),
    (AveragePooling2D((2, 2), strides=(1, 1), padding="same"),
     [[3, 4, 4.5], [6, 7, 7.5], [7.5, 8.5, 9]])], ids=repr)
def test_pooling_of_a_3x3_image_as_in_the_keras_documentation(layer, expected):
    np.testing.assert_array_equal(layer(KERAS_IMAGE)[0, :, :, 0], expected)


def test_max_pooling_with_strides_2_as_in_the_keras_documentation():
    x = np.arange(1.0, 13.0).reshape(1, 3, 4, 1)
    np.testing.assert_array_equal(MaxPooling2D(2, strides=2)(x)[0, :, :, 0], [[6, 8]])


def test_same_padding_puts_the_extra_row_and_column_at_the_bottom_and_right():
    # a 2x2 image, 2x2 windows, stride 1: one row and one column of padding, after the image;
    # average pooling divides by the real elements only, so the padding's place shows
    x = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    layer = AveragePooling2D(2, strides=1, padding="same")
    np.testing.assert_array_equal(layer(x)[0, :, :, 0], [[2.5, 3.0], [3.5, 4.0]])
    np.testing.assert_array_equal(layer.backward(np.ones((1, 2, 2, 1)))[0, :, :, 0],
                                  [[0.25, 0.25 + 0.5], [0.25 + 0.5, 0.25 + 0.5 + 0.5 + 1]])


def test_max_pooling_same_pads_with_minus_infinity_not_zero():
    x = np.full((1, 3, 3, 2), -5.0)
    np.testing.assert_array_equal(MaxPooling2D(2, padding="same")(x), np.full((1, 2, 2, 2), -5.0))


def test_max_pooling_of_a_window_holding_nan_is_nan():
    x = np.zeros((1, 2, 2, 1))
    x[0, 1, 1, 0] = np.nan
    assert np.isnan(MaxPooling2D()(x)).all()


@pytest.mark.parametrize("layer_class", WINDOWED)
def test_a_pool_larger_than_the_image_in_valid_mode_names_both_shapes(layer_class):
    layer = layer_class((3, 2))
    message = (r"pool_size \(3, 2\) is larger than the input images \(height, width\) = "
               r"\(2, 5\) with padding='valid'")
    with pytest.raises(ValueError, match=message):
        layer.compute_output_shape((2, 5, 1))
    with pytest.raises(ValueError, match=message):
        layer(np.ones((4, 2, 5, 1)))
    with pytest.raises(ValueError, match=r"layers\[0\] \(" + layer_class.__name__):
        Sequential([layer_class(3), Flatten()], input_dim=(2, 5, 1))
    assert layer_class((3, 2), padding="same").compute_output_shape((2, 5, 1)) == (1, 3, 1)


@each_pooling
def test_inputs_that_are_not_images_are_refused_with_their_shape(layer_class, config):
    layer = layer_class.from_config(config)
    with pytest.raises(ValueError, match=r"expected inputs of shape \(batch, height, width, "
                                         r"channels\), got shape \(2, 5, 6\)"):
        layer(np.ones((2, 5, 6)))
    with pytest.raises(ValueError, match=r"expected examples of shape \(height, width, "
                                         r"channels\), got \(5, 6\)"):
        layer.compute_output_shape((5, 6))


# ----------------------------------------------------------------------------- dtypes, protocol

@each_pooling
def test_float32_in_float32_out_and_float32_gradients(layer_class, config):
    layer = layer_class.from_config(config)
    y = layer(np.random.default_rng(0).normal(size=(2, 5, 6, 3)).astype(np.float32))
    assert y.dtype == np.float32
    # an incoming float64 gradient must not promote the layer's arithmetic either
    assert layer.backward(np.ones(y.shape, dtype=np.float64)).dtype == np.float32


@each_pooling
def test_backward_before_forward_is_a_runtime_error(layer_class, config):
    with pytest.raises(RuntimeError, match="backward called before forward"):
        layer_class.from_config(config).backward(np.ones((2, 2, 3, 3)))


@each_pooling
def test_backward_rejects_a_gradient_of_the_wrong_shape(layer_class, config):
    layer = layer_class.from_config(config)
    y = layer(np.ones((2, 5, 6, 3)))
    with pytest.raises(ValueError, match=rf"grad_y has shape \(3, 1\) but the forward output "
                                         rf"had shape \({', '.join(map(str, y.shape))}\)"):
        layer.backward(np.ones((3, 1)))


@each_pooling
def test_get_config_round_trips_through_json_and_the_registry(layer_class, config,
                                                               monkeypatch):
    monkeypatch.setitem(LAYERS, layer_class.__name__, layer_class)  # the lead registers them
    layer = layer_class.from_config(config)
    rebuilt = layer_from_config(json.loads(json.dumps(layer_to_config(layer))))
    assert type(rebuilt) is layer_class and rebuilt.get_config() == layer.get_config()
    x = np.random.default_rng(0).normal(size=(2, 5, 6, 3))
    np.testing.assert_array_equal(rebuilt(x), layer(x))


def test_keras_defaults_and_strides_none_meaning_pool_size():
    for layer_class in WINDOWED:
        assert layer_class().get_config() == {"pool_size": (2, 2), "strides": (2, 2),
                                              "padding": "valid", "input_shape": None}
        assert layer_class(3).get_config() == {"pool_size": (3, 3), "strides": (3, 3),
                                               "padding": "valid", "input_shape": None}
        assert layer_class([2, 3], strides=1, padding="SAME").get_config() == {
            "pool_size": (2, 3), "strides": (1, 1), "padding": "same", "input_shape": None}
    for layer_class in GLOBAL:
        assert layer_class().get_config() == {"keepdims": False, "input_shape": None}


@pytest.mark.parametrize("layer_class", WINDOWED)
@pytest.mark.parametrize("argument", ["pool_size", "strides"])
@pytest.mark.parametrize("value, error", [
    (0, ValueError), (-1, ValueError), ((2, 0), ValueError), ((2, 2, 2), ValueError),
    ((2,), ValueError), (2.0, TypeError), ((2, 1.5), TypeError), (True, TypeError),
    ("2", TypeError)])
def test_bad_pool_size_or_strides_names_the_argument(layer_class, argument, value, error):
    with pytest.raises(error, match=rf"{layer_class.__name__}: {argument} must be"):
        layer_class(**{argument: value})


@pytest.mark.parametrize("layer_class", WINDOWED)
@pytest.mark.parametrize("padding", ["full", "causal", None, 1])
def test_bad_padding_names_the_argument_and_the_choices(layer_class, padding):
    with pytest.raises(ValueError, match=r"padding must be 'valid' or 'same'"):
        layer_class(padding=padding)


@pytest.mark.parametrize("layer_class", GLOBAL)
def test_keepdims_must_be_a_bool(layer_class):
    with pytest.raises(TypeError, match=rf"{layer_class.__name__}: keepdims must be True or "
                                        r"False"):
        layer_class(keepdims=1)


# ----------------------------------------------------------------------------- in a model

def image_classes(n=60, seed=0):
    """(n, 4, 4, 2) noise images of three classes: 0 plain, 1 with a bright 2x2 patch in
    channel 0, 2 with one in channel 1; the patch anywhere, so any pooling can tell them."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = rng.normal(scale=0.1, size=(n, 4, 4, 2)).astype(np.float32)
    for image, label, (row, col) in zip(images, labels, rng.integers(0, 3, (n, 2)),
                                        strict=True):
        if label:
            image[row:row + 2, col:col + 2, label - 1] += 1.0
    return images, labels


@each_pooling
def test_a_small_model_trains_and_round_trips_through_save_and_load(
        layer_class, config, tmp_path, monkeypatch):
    monkeypatch.setitem(LAYERS, layer_class.__name__, layer_class)  # the lead registers them
    x, labels = image_classes()
    model = Sequential([layer_class(**config), Flatten(), Dense(3, activation="softmax")],
                       input_dim=(4, 4, 2), seed=0)
    model.compile(Adam(model.parameters(), lr=0.05), "sparse_categorical_crossentropy")
    history = model.fit(x, labels, epochs=20, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < 0.6 * history.history["loss"][0]
    model.save(tmp_path / "pooling.npz")
    loaded = load_model(tmp_path / "pooling.npz")
    assert loaded.layers[0].get_config() == model.layers[0].get_config()
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
