"""minidl.layers.normalization: BatchNormalization and LayerNormalization: gradients in both
modes, PyTorch as an oracle, closed forms, the moving statistics, state and files, configs,
and bad arguments."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minidl
from minidl.io import ModelFormatError
from minidl.layers import Dense, ReLU
from minidl.layers.normalization import BatchNormalization, LayerNormalization
from minidl.testing import arrays_for, batch_shapes, check_layer_gradients

# random gamma and beta: the gradient checks and the oracles then see a real affine step
RANDOM_AFFINE = {"gamma_initializer": "glorot_uniform", "beta_initializer": "glorot_uniform"}


def small_batches(min_batch: int):
    return batch_shapes(min_batch=min_batch, max_batch=4, max_dims=3, max_side=3)


@st.composite
def batch_norm_cases(draw, min_batch=1):
    """(x, axis): a batch of rank 2 to 4 and one of its feature axes, positive or negative."""
    x = draw(small_batches(min_batch).flatmap(arrays_for))
    feature = draw(st.integers(1, x.ndim - 1))
    return x, draw(st.sampled_from([feature, feature - x.ndim]))


@st.composite
def layer_norm_cases(draw):
    """(x, axis): a batch and some of its feature axes: an int or an increasing list."""
    x = draw(small_batches(1).flatmap(arrays_for))
    axes = sorted(draw(st.lists(st.integers(1, x.ndim - 1), min_size=1, unique=True)))
    if draw(st.booleans()):
        axes = [a - x.ndim for a in axes]
    return x, axes[0] if len(axes) == 1 and draw(st.booleans()) else axes


def built_batch_norm(x, rng, **config):
    """A float64 BatchNormalization for ``x`` with random moving statistics."""
    layer = BatchNormalization(**{**RANDOM_AFFINE, **config})
    layer.build(x.shape[1:], dtype="float64", rng=rng)
    layer.moving_mean[...] = rng.normal(size=layer.moving_mean.shape)
    layer.moving_variance[...] = rng.uniform(0.1, 3.0, size=layer.moving_variance.shape)
    return layer


# ----------------------------------------------------------------------------- gradients

@given(case=batch_norm_cases(min_batch=2), center=st.booleans(), scale=st.booleans(),
       epsilon=st.sampled_from([1e-3, 0.5]))
def test_batch_normalization_training_gradients_match_central_differences(case, center, scale,
                                                                          epsilon):
    x, axis = case
    layer = BatchNormalization(axis=axis, epsilon=epsilon, center=center, scale=scale,
                               **RANDOM_AFFINE)
    assert check_layer_gradients(layer, x, training=True)


@given(case=batch_norm_cases(min_batch=1), center=st.booleans(), scale=st.booleans())
def test_batch_normalization_inference_gradients_match_central_differences(case, center,
                                                                           scale):
    x, axis = case
    layer = built_batch_norm(x, np.random.default_rng(0), axis=axis, center=center,
                             scale=scale)
    assert check_layer_gradients(layer, x, training=False)


@given(case=layer_norm_cases(), center=st.booleans(), scale=st.booleans(),
       training=st.booleans())
def test_layer_normalization_gradients_match_central_differences(case, center, scale,
                                                                 training):
    x, axis = case
    layer = LayerNormalization(axis=axis, center=center, scale=scale, **RANDOM_AFFINE)
    assert check_layer_gradients(layer, x, training=training)


def test_without_input_gradient_backward_returns_none_and_the_same_parameter_gradients():
    x = np.random.default_rng(1).normal(size=(6, 3))
    grad_y = np.random.default_rng(2).normal(size=x.shape)
    for make, training in [(BatchNormalization, True), (BatchNormalization, False),
                           (LayerNormalization, False)]:
        grads = []
        for needs_input_grad in (True, False):
            layer = make(**RANDOM_AFFINE)
            layer.build((3,), dtype="float64", rng=np.random.default_rng(0))
            layer.needs_input_grad = needs_input_grad
            layer(x, training=training)
            grad_x = layer.backward(grad_y)
            assert (grad_x is None) is not needs_input_grad
            grads.append([p.grad.copy() for p in layer.parameters()])
        for with_input, without in zip(*grads, strict=True):
            np.testing.assert_array_equal(with_input, without)


# ----------------------------------------------------------------------------- PyTorch

@pytest.mark.parametrize("training", [True, False])
@given(data=st.data(), center=st.booleans(), scale=st.booleans())
def test_batch_normalization_matches_torch_forward_gradients_and_moving_mean(training, data,
                                                                             center, scale):
    torch = pytest.importorskip("torch")
    x, axis = data.draw(batch_norm_cases(min_batch=2 if training else 1))
    rng = np.random.default_rng(0)
    layer = built_batch_norm(x, rng, axis=axis, momentum=0.9, center=center, scale=scale)
    initial_variance = layer.moving_variance.copy()
    feature = axis % x.ndim

    def to_torch(array):  # torch wants the channels at axis 1
        return torch.tensor(np.moveaxis(array, feature, 1), requires_grad=True)

    x_torch = to_torch(x)
    weight = torch.tensor(layer.gamma.data, requires_grad=True) if scale else None
    bias = torch.tensor(layer.beta.data, requires_grad=True) if center else None
    running_mean = torch.tensor(layer.moving_mean.copy())
    running_var = torch.tensor(layer.moving_variance.copy())
    # torch's momentum weighs the new batch, Keras' the old average
    y_torch = torch.nn.functional.batch_norm(x_torch, running_mean, running_var, weight, bias,
                                             training=training, momentum=1 - layer.momentum,
                                             eps=layer.epsilon)
    grad_y = rng.normal(size=x.shape)
    (y_torch * torch.tensor(np.moveaxis(grad_y, feature, 1))).sum().backward()

    y = layer.forward(x, training=training)
    grad_x = layer.backward(grad_y)
    np.testing.assert_allclose(y, np.moveaxis(y_torch.detach().numpy(), 1, feature),
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(grad_x, np.moveaxis(x_torch.grad.numpy(), 1, feature),
                               rtol=1e-8, atol=1e-8)
    if scale:
        np.testing.assert_allclose(layer.gamma.grad, weight.grad.numpy(), rtol=1e-9, atol=1e-9)
    if center:
        np.testing.assert_allclose(layer.beta.grad, bias.grad.numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(layer.moving_mean, running_mean.numpy(), rtol=1e-12, atol=1e-15)
    if training:
        # Keras averages the biased batch variance; torch the unbiased one, m/(m-1) times it
        others = tuple(a for a in range(x.ndim) if a != feature)
        m = x.size // x.shape[feature]
        biased = x.var(axis=others)
        expected = 0.9 * initial_variance + 0.1 * biased
        np.testing.assert_allclose(layer.moving_variance, expected, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(running_var.numpy(),
                                   0.9 * initial_variance + 0.1 * biased * m / (m - 1),
                                   rtol=1e-12, atol=1e-15)
    else:
        np.testing.assert_array_equal(layer.moving_variance, initial_variance)


@given(case=layer_norm_cases(), center=st.booleans(), scale=st.booleans())
def test_layer_normalization_matches_torch_forward_and_gradients(case, center, scale):
    torch = pytest.importorskip("torch")
    x, axis = case
    layer = LayerNormalization(axis=axis, center=center, scale=scale, **RANDOM_AFFINE)
    layer.build(x.shape[1:], dtype="float64", rng=np.random.default_rng(0))
    axes = sorted(a % x.ndim for a in (axis if isinstance(axis, list) else [axis]))
    # torch normalises the last axes: move ours there, in order
    order = [a for a in range(x.ndim) if a not in axes] + axes
    back = np.argsort(order)
    x_torch = torch.tensor(x.transpose(order), requires_grad=True)
    weight = torch.tensor(layer.gamma.data, requires_grad=True) if scale else None
    bias = torch.tensor(layer.beta.data, requires_grad=True) if center else None
    y_torch = torch.nn.functional.layer_norm(x_torch, [x.shape[a] for a in axes], weight, bias,
                                             eps=layer.epsilon)
    grad_y = np.random.default_rng(1).normal(size=x.shape)
    (y_torch * torch.tensor(grad_y.transpose(order))).sum().backward()

    y = layer.forward(x)
    grad_x = layer.backward(grad_y)
    np.testing.assert_allclose(y, y_torch.detach().numpy().transpose(back), rtol=1e-9,
                               atol=1e-9)
    np.testing.assert_allclose(grad_x, x_torch.grad.numpy().transpose(back), rtol=1e-8,
                               atol=1e-8)
    if scale:
        np.testing.assert_allclose(layer.gamma.grad, weight.grad.numpy(), rtol=1e-9, atol=1e-9)
    if center:
        np.testing.assert_allclose(layer.beta.grad, bias.grad.numpy(), rtol=1e-9, atol=1e-9)


# ----------------------------------------------------------------------------- closed forms

@pytest.mark.parametrize("axis, shape", [(-1, (50, 3)), (1, (20, 3, 4)), (-2, (8, 5, 4, 2))])
def test_batch_normalization_training_output_has_mean_0_and_variance_1_per_feature(axis,
                                                                                   shape):
    rng = np.random.default_rng(0)
    x = rng.normal(loc=7.0, scale=5.0, size=shape) * rng.uniform(1, 3, size=shape[1:])
    y = BatchNormalization(axis=axis)(x, training=True)
    feature = axis % len(shape)
    others = tuple(a for a in range(len(shape)) if a != feature)
    np.testing.assert_allclose(y.mean(axis=others), 0.0, atol=1e-12)
    # exactly σ²/(σ² + ε): 1 up to ε/σ²
    variance = x.var(axis=others)
    np.testing.assert_allclose(y.var(axis=others), variance / (variance + 1e-3), rtol=1e-10)
    np.testing.assert_allclose(y.var(axis=others), 1.0, atol=1e-4)


@pytest.mark.parametrize("axis", [-1, [1, 2], 1])
def test_layer_normalization_output_has_mean_0_and_variance_1_per_example(axis):
    rng = np.random.default_rng(0)
    x = rng.normal(loc=-3.0, scale=4.0, size=(6, 5, 7)) * rng.uniform(1, 3, size=(6, 1, 1))
    y = LayerNormalization(axis=axis)(x)
    axes = tuple(axis) if isinstance(axis, list) else (axis,)
    variance = x.var(axis=axes)
    np.testing.assert_allclose(y.mean(axis=axes), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=axes), variance / (variance + 1e-3), rtol=1e-10)


def test_moving_statistics_after_k_steps_are_the_closed_form_momentum_average():
    rng = np.random.default_rng(0)
    momentum, steps = 0.8, 6
    layer = BatchNormalization(momentum=momentum)
    batches = [rng.normal(loc=step, scale=1 + step, size=(10, 4)) for step in range(steps)]
    for x in batches:
        layer(x, training=True)
    weights = [(1 - momentum) * momentum ** (steps - 1 - i) for i in range(steps)]
    expected_mean = sum(w * x.mean(axis=0) for w, x in zip(weights, batches, strict=True))
    expected_variance = momentum ** steps * 1.0 + sum(
        w * x.var(axis=0) for w, x in zip(weights, batches, strict=True))  # biased, ddof=0
    np.testing.assert_allclose(layer.moving_mean, expected_mean, rtol=1e-12)
    np.testing.assert_allclose(layer.moving_variance, expected_variance, rtol=1e-12)


def test_inference_uses_the_moving_statistics_and_leaves_them_alone():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3))
    layer = built_batch_norm(x, rng)
    mean, variance = layer.moving_mean.copy(), layer.moving_variance.copy()
    y = layer(x, training=False)
    expected = (x - mean) / np.sqrt(variance + 1e-3) * layer.gamma.data + layer.beta.data
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    # each example on its own: nothing of the batch enters
    np.testing.assert_allclose(layer(x[2:3], training=False)[0], y[2], rtol=1e-12)
    np.testing.assert_array_equal(layer.moving_mean, mean)
    np.testing.assert_array_equal(layer.moving_variance, variance)
    assert not np.allclose(layer(x, training=True), y)  # training uses the batch's instead


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("value", [0.0, -3.7, 1e6])
def test_a_constant_feature_gives_beta_without_nan_or_warning(dtype, value):
    x = np.random.default_rng(0).normal(size=(8, 3)).astype(dtype)
    x[:, 1] = value
    layer = BatchNormalization(beta_initializer="ones")
    y = layer(x, training=True)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y[:, 1], 1.0)  # x̂ exactly 0: beta alone
    grad_x = layer.backward(np.ones_like(y))
    assert np.all(np.isfinite(grad_x)) and np.all(np.isfinite(layer.gamma.grad))
    assert np.isfinite(layer(x, training=False)).all()
    row = np.full((2, 4), value, dtype=dtype)
    np.testing.assert_array_equal(LayerNormalization()(row), 0.0)


def test_a_batch_of_one_trains_to_beta_as_in_keras():
    layer = BatchNormalization(beta_initializer="ones")
    np.testing.assert_array_equal(layer(np.array([[3.0, -2.0]]), training=True), 1.0)


def test_float32_in_float32_out_and_float64_input_computed_in_float32():
    x = np.random.default_rng(0).normal(size=(4, 6))
    for layer in (BatchNormalization(), LayerNormalization()):
        layer.build((6,))
        for training in (True, False):
            y = layer(x, training=training)
            assert y.dtype == np.float32
            assert layer.backward(np.ones(y.shape)).dtype == np.float32
            assert all(p.grad.dtype == np.float32 for p in layer.parameters())


# ----------------------------------------------------------------------------- state

def test_parameters_are_gamma_and_beta_and_the_moving_statistics_are_state():
    layer = BatchNormalization()
    layer.build((3,))
    assert [p.name for p in layer.parameters()] == ["gamma", "beta"]
    assert list(layer.state()) == ["moving_mean", "moving_variance"]
    np.testing.assert_array_equal(layer.state()["moving_variance"], 1.0)
    bare = BatchNormalization(center=False, scale=False)
    bare.build((3,))
    assert bare.parameters() == [] and list(bare.state()) == ["moving_mean", "moving_variance"]
    layer_norm = LayerNormalization(center=False)
    layer_norm.build((3,))
    assert [p.name for p in layer_norm.parameters()] == ["gamma"] and layer_norm.state() == {}


@given(bn_case=batch_norm_cases(), ln_case=layer_norm_cases(), center=st.booleans(),
       scale=st.booleans())
def test_weight_shapes_are_the_built_shapes(bn_case, ln_case, center, scale):
    for layer, x in [(BatchNormalization(axis=bn_case[1], center=center, scale=scale),
                      bn_case[0]),
                     (LayerNormalization(axis=ln_case[1], center=center, scale=scale),
                      ln_case[0])]:
        declared = layer.weight_shapes(x.shape[1:])
        layer.build(x.shape[1:], dtype="float64")
        built = {p.name: p.shape for p in layer.parameters()}
        built.update({name: array.shape for name, array in layer.state().items()})
        assert declared == built
        assert list(declared) == list(built)  # Keras' order: gamma, beta, moving_*
        assert layer.compute_output_shape(x.shape[1:]) == x.shape[1:]
        assert layer(x, training=True).shape == x.shape


def test_check_state_refuses_a_negative_or_nan_moving_statistic():
    layer = BatchNormalization()
    layer.build((3,))
    layer.check_state()
    layer.moving_variance[1] = -0.5
    with pytest.raises(ValueError, match="moving variance finite and >= 0"):
        layer.check_state()
    layer.moving_variance[1] = 1.0
    layer.moving_mean[0] = np.nan
    with pytest.raises(ValueError, match="moving mean must be finite"):
        layer.check_state()


# ----------------------------------------------------------------------------- in a model

def three_classes(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, 4)) * [1.0, 10.0, 0.1, 3.0] + 5.0).astype(np.float32)
    y = (x[:, 0] > 5.0).astype(np.int64) + (x[:, 1] > 5.0)
    return x, y


def test_model_trains_predicts_with_moving_statistics_and_saves_them(tmp_path, monkeypatch):
    monkeypatch.setitem(minidl.layers.LAYERS, "BatchNormalization", BatchNormalization)
    x, y = three_classes()
    # momentum 0.9: 0.99 would leave the moving statistics near their start after 120 steps
    model = minidl.Sequential([Dense(8), BatchNormalization(momentum=0.9), ReLU(),
                               Dense(3, activation="softmax")], input_dim=4, seed=0)
    model.compile(minidl.Adam(model.parameters(), lr=0.01), "sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=20, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < 0.6 * history.history["loss"][0]
    dense, norm, _, output = model.layers
    mean, variance = norm.moving_mean.copy(), norm.moving_variance.copy()
    assert not np.allclose(mean, 0.0)  # training moved them

    # predict and evaluate: the moving statistics, written out by hand
    hidden = (x @ dense.kernel.data + dense.bias.data - mean) / np.sqrt(variance + 1e-3)
    logits = np.maximum(hidden * norm.gamma.data + norm.beta.data, 0) @ output.kernel.data
    logits += output.bias.data
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    predictions = model.predict(x)
    np.testing.assert_allclose(predictions, probs, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model.predict(x[:1]), predictions[:1], rtol=1e-6)
    loss = -np.mean(np.log(probs[np.arange(len(y)), y]))
    assert model.evaluate(x, y)["loss"] == pytest.approx(loss, rel=1e-4)
    assert loss < 0.6 * history.history["loss"][0]
    np.testing.assert_array_equal(norm.moving_mean, mean)
    np.testing.assert_array_equal(norm.moving_variance, variance)

    # Keras' order of weights, and a file that keeps the state
    weights = model.get_weights()
    for array, expected in zip(weights[2:6], [norm.gamma.data, norm.beta.data, mean, variance],
                               strict=True):
        np.testing.assert_array_equal(array, expected)
    model.save(tmp_path / "model.npz")
    loaded = minidl.load_model(tmp_path / "model.npz")
    np.testing.assert_array_equal(loaded.layers[1].moving_mean, mean)
    np.testing.assert_array_equal(loaded.layers[1].moving_variance, variance)
    np.testing.assert_array_equal(loaded.predict(x), predictions)


def test_load_model_refuses_a_file_with_a_negative_moving_variance(tmp_path, monkeypatch):
    monkeypatch.setitem(minidl.layers.LAYERS, "BatchNormalization", BatchNormalization)
    model = minidl.Sequential([Dense(3), BatchNormalization()], input_dim=2, seed=0)
    model.layers[1].moving_variance[0] = -1.0
    model.save(tmp_path / "model.npz")
    with pytest.raises(ModelFormatError, match=r"layers\[1\] \(BatchNormalization\): the "
                                               r"moving mean must be finite"):
        minidl.load_model(tmp_path / "model.npz")


# ----------------------------------------------------------------------------- configs, errors

@pytest.mark.parametrize("layer", [
    BatchNormalization(),
    BatchNormalization(axis=1, momentum=0.9, epsilon=1e-5, center=False, scale=True,
                       beta_initializer="ones", gamma_initializer="he_normal",
                       moving_mean_initializer="ones", moving_variance_initializer="zeros",
                       input_shape=[3, 4]),
    LayerNormalization(),
    LayerNormalization(axis=[1, -1], epsilon=1e-6, center=True, scale=False,
                       beta_initializer="glorot_uniform", input_shape=(2, 5)),
], ids=repr)
def test_config_round_trips_through_json(layer):
    config = json.loads(json.dumps(layer.get_config()))
    assert type(layer).from_config(config).get_config() == layer.get_config()


def test_config_holds_keras_defaults():
    assert BatchNormalization().get_config() == {
        "axis": -1, "momentum": 0.99, "epsilon": 1e-3, "center": True, "scale": True,
        "beta_initializer": "zeros", "gamma_initializer": "ones",
        "moving_mean_initializer": "zeros", "moving_variance_initializer": "ones",
        "input_shape": None}
    assert LayerNormalization(axis=(1, 2)).get_config()["axis"] == [1, 2]


def test_input_shape_builds_a_model_at_once():
    model = minidl.Sequential([BatchNormalization(input_shape=[3]), Dense(2)], seed=0)
    assert model.built and model.input_shape == (3,)


@pytest.mark.parametrize("make, error, message", [
    (lambda: BatchNormalization(axis=[1]), TypeError, "axis must be an int"),
    (lambda: BatchNormalization(momentum=1.5), ValueError, r"momentum must be a number in \[0"),
    (lambda: BatchNormalization(epsilon=0), ValueError, "epsilon must be a number > 0"),
    (lambda: LayerNormalization(epsilon=-1e-3), ValueError, "epsilon must be a number > 0"),
    (lambda: BatchNormalization(center="yes"), TypeError, "center must be True or False"),
    (lambda: BatchNormalization(moving_variance_initializer="twos"), ValueError,
     "BatchNormalization: unknown moving_variance_initializer 'twos'; known initializers"),
    (lambda: LayerNormalization(gamma_initializer=None), ValueError,
     "LayerNormalization: unknown gamma_initializer"),
    (lambda: LayerNormalization(axis=[]), TypeError, "non-empty list of ints"),
    (lambda: LayerNormalization(axis=1.0), TypeError, "an int or a non-empty list"),
])
def test_bad_arguments_are_named(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize("layer, message", [
    (BatchNormalization(axis=0), r"axis 0 does not name feature axes.*batch axis 0"),
    (BatchNormalization(axis=3), r"axis 3 does not name feature axes of inputs of shape "
                                 r"\(batch, 4, 5\)"),
    (LayerNormalization(axis=[2, 1]), r"axis \[2, 1\] .*distinct and in increasing order"),
    (LayerNormalization(axis=[1, -2]), "distinct"),
])
def test_axes_that_name_no_feature_axis_are_refused(layer, message):
    with pytest.raises(ValueError, match=message):
        layer.build((4, 5))


def test_inputs_unlike_those_built_for_are_refused():
    layer = BatchNormalization(axis=1)
    layer(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match=r"built for inputs of shape \(batch, 3, \*\), got "
                                         r"inputs of shape \(2, 4, 4\)"):
        layer(np.ones((2, 4, 4)))
    with pytest.raises(ValueError, match="built for inputs of shape"):
        layer(np.ones((2, 3)))


@pytest.mark.parametrize("layer", [BatchNormalization(), LayerNormalization()], ids=repr)
def test_backward_before_forward_says_so(layer):
    with pytest.raises(RuntimeError, match="backward called before forward"):
        layer.backward(np.ones((2, 3)))
