"""minidl.testing: gradcheck catches wrong gradients, passes right ones; the strategies."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from minidl.layers import LAYERS, Dense, Layer
from minidl.parameter import Parameter
from minidl.testing import (
    arrays_for,
    batch_shapes,
    check_layer_gradients,
    gradcheck,
    image_layer_configs,
    layer_configs,
    logits_and_labels,
)

# ----------------------------------------------------------------------------- user layers


class Square(Layer):
    """y = x², so ∂L/∂x = 2x ⊙ ∂L/∂y (the module docstring's example)."""

    def forward(self, x, training=False):
        self.x = np.asarray(x)
        return self.x ** 2

    def backward(self, grad_y):
        return 2 * self.x * grad_y


class SquareMissingTheTwo(Square):
    def backward(self, grad_y):
        return self.x * grad_y


class Scale(Layer):
    """y = x ⊙ w with w (features,): ∂L/∂w = Σ_n x_n ⊙ ∂L/∂y_n, ∂L/∂x = w ⊙ ∂L/∂y."""

    def build(self, input_shape, *, dtype="float32", rng=None):
        rng = np.random.default_rng() if rng is None else rng
        self.weight = Parameter(rng.normal(size=input_shape).astype(dtype), name="weight")
        self.built = True

    def parameters(self):
        return [self.weight]

    def forward(self, x, training=False):
        if not self.built:
            self.build(x.shape[1:], dtype=x.dtype)
        self.x = x
        return x * self.weight.data

    def backward(self, grad_y):
        self.weight.grad[...] = np.sum(self.x * grad_y, axis=0)
        return self.weight.data * grad_y


class ScaleWithFirstExampleOnly(Scale):
    def backward(self, grad_y):
        self.weight.grad[...] = self.x[0] * grad_y[0]  # bug: forgets the sum over the batch
        return self.weight.data * grad_y


class DenseWithoutBiasGradient(Dense):
    def linear_backward(self, grad_z, input_grad=True):
        grad_x = super().linear_backward(grad_z, input_grad)
        self.bias.grad[...] = 0  # bug: the bias never learns
        return grad_x


@given(batch_shapes(max_dims=2).flatmap(arrays_for))
def test_square_gradients_match_central_differences(x):
    assert check_layer_gradients(Square(), x)


@given(batch_shapes(max_dims=2).flatmap(lambda shape: arrays_for(shape, 0.5, 10.0)))
def test_gradcheck_catches_a_user_layer_missing_a_factor(x):
    with pytest.raises(AssertionError, match="gradient of input 0 is wrong at element"):
        check_layer_gradients(SquareMissingTheTwo(), x)


@given(batch_shapes(max_side=6).flatmap(arrays_for))
def test_user_layer_with_a_parameter_passes(x):
    assert check_layer_gradients(Scale(), x)


def test_gradcheck_catches_a_wrong_parameter_gradient():
    x = np.random.default_rng(0).normal(size=(4, 3))
    with pytest.raises(AssertionError, match="gradient of input 1 is wrong"):
        check_layer_gradients(ScaleWithFirstExampleOnly(), x)


def test_gradcheck_catches_a_missing_bias_gradient_in_a_dense_subclass():
    x = np.random.default_rng(0).normal(size=(4, 3))
    with pytest.raises(AssertionError, match=r"gradient of input 2 is wrong .*3 of 3 elements"):
        check_layer_gradients(DenseWithoutBiasGradient(3, activation="tanh"), x)


def test_check_layer_gradients_builds_in_float64_and_restores_parameters():
    layer = Dense(3)
    check_layer_gradients(layer, np.ones((2, 4)), seed=5)
    assert layer.kernel.dtype == np.float64
    kernel = layer.kernel.data.copy()
    check_layer_gradients(layer, np.ones((2, 4)))
    np.testing.assert_array_equal(layer.kernel.data, kernel)


def test_check_layer_gradients_refuses_a_float32_layer():
    layer = Dense(3)
    layer.build((4,), dtype="float32")
    with pytest.raises(TypeError, match="parameter 'kernel' of Dense is float32; build the "
                                        "layer with dtype='float64'"):
        check_layer_gradients(layer, np.ones((2, 4)))


def test_check_layer_gradients_does_not_change_the_callers_input():
    x = np.random.default_rng(0).normal(size=(3, 4))
    before = x.copy()
    check_layer_gradients(Square(), x)
    np.testing.assert_array_equal(x, before)


# ----------------------------------------------------------------------------- gradcheck


def sum_of_sines(x, y):
    return float(np.sum(np.sin(x) * y)), [np.cos(x) * y, np.sin(x)]


def test_gradcheck_passes_a_correct_function():
    rng = np.random.default_rng(0)
    assert gradcheck(sum_of_sines, [rng.normal(size=(3, 4)), rng.normal(size=(3, 4))])


def test_gradcheck_names_the_worst_element_with_analytic_and_numeric_values():
    x = np.zeros((2, 3))

    def sum_with_one_wrong_element(x):
        grad = np.ones_like(x)
        grad[1, 2] = 3.0
        return float(np.sum(x)), [grad]

    with pytest.raises(AssertionError, match=r"input 0 is wrong at element \(1, 2\): "
                                             r"analytic 3, numeric 1\b.*1 of 6 elements"):
        gradcheck(sum_with_one_wrong_element, [x])


def test_gradcheck_keeps_the_first_gradients_when_fn_reuses_its_arrays():
    shared_grad = np.empty(3)

    def square_sum(x):
        shared_grad[...] = 2 * x  # like a layer writing p.grad in place on every call
        return float(np.sum(x ** 2)), [shared_grad]

    assert gradcheck(square_sum, [np.array([1.0, -2.0, 3.0])])


def test_gradcheck_fails_on_nan_gradients():
    with pytest.raises(AssertionError, match="analytic nan"):
        gradcheck(lambda x: (float(np.sum(x)), [np.full_like(x, np.nan)]), [np.ones(2)])


def test_gradcheck_rejects_non_float64_inputs():
    with pytest.raises(TypeError, match="input 1 must be a float64 array, got dtype float32"):
        gradcheck(sum_of_sines, [np.ones(2), np.ones(2, dtype=np.float32)])


def test_gradcheck_rejects_a_wrong_number_of_gradients():
    with pytest.raises(ValueError, match="fn returned 1 gradients for 2 inputs"):
        gradcheck(lambda x, y: (0.0, [x]), [np.ones(2), np.ones(2)])


def test_gradcheck_rejects_a_gradient_of_the_wrong_shape():
    with pytest.raises(AssertionError, match=r"input 0 has shape \(3,\) but the input has "
                                             r"shape \(2,\)"):
        gradcheck(lambda x: (0.0, [np.zeros(3)]), [np.ones(2)])


def test_gradcheck_leaves_the_callers_arrays_alone():
    x = np.array([0.5, 1.5])
    gradcheck(lambda x: (float(np.sum(x ** 2)), [2 * x]), [x])
    np.testing.assert_array_equal(x, [0.5, 1.5])


# ----------------------------------------------------------------------------- strategies


@given(st.data())
def test_arrays_for_respects_shape_dtype_and_bounds(data):
    shape = data.draw(batch_shapes(max_dims=2))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    x = data.draw(arrays_for(shape, -2.0, 3.0, dtype=dtype))
    assert x.shape == shape and x.dtype == dtype
    assert np.all((x >= -2.0) & (x <= 3.0))


@given(batch_shapes(min_batch=2, max_batch=5, min_dims=2, max_dims=3, max_side=4))
def test_batch_shapes_stay_within_their_bounds(shape):
    assert 2 <= shape[0] <= 5 and 2 <= len(shape) - 1 <= 3
    assert all(1 <= side <= 4 for side in shape[1:])


def drawn_values(strategy, max_examples=200):
    """Everything ``strategy`` generates in ``max_examples`` draws (no shrinking)."""
    values = []

    @settings(max_examples=max_examples, phases=[Phase.generate])
    @given(strategy)
    def collect(value):
        values.append(value)

    collect()
    return values


def test_batch_shapes_reach_batch_size_one():
    assert any(shape[0] == 1 for shape in drawn_values(batch_shapes(), max_examples=50))


def test_layer_configs_and_image_layer_configs_cover_every_builtin_layer():
    specs = (drawn_values(layer_configs(), max_examples=80)
             + drawn_values(image_layer_configs(), max_examples=40))
    drawn = {layer_class.__name__ for layer_class, _ in specs}
    # these two need inputs of their own: integer indices, a size that fits the target shape
    assert drawn == set(LAYERS) - {"Embedding", "Reshape"}


@given(image_layer_configs(max_window=3))
def test_image_layer_configs_make_layers_that_run_on_images(spec):
    layer_class, config = spec
    layer = layer_class.from_config(config)
    images = np.arange(2 * 4 * 5 * 3, dtype=np.float64).reshape(2, 4, 5, 3)
    output = layer(images, training=True)
    assert output.shape == (2, *layer.compute_output_shape((4, 5, 3)))


@given(layer_configs())
def test_layer_configs_make_layers_that_run_on_a_batch(spec):
    layer_class, config = spec
    layer = layer_class.from_config(config)
    assert layer(np.ones((2, 3)), training=True).shape[0] == 2


@given(logits_and_labels(max_batch=4, min_classes=3, max_classes=5))
def test_logits_and_labels_agree_on_classes(pair):
    logits, labels = pair
    assert logits.shape[0] == labels.shape[0] and 3 <= logits.shape[1] <= 5
    assert labels.dtype == np.int64 and np.all((labels >= 0) & (labels < logits.shape[1]))
    assert np.all(np.isfinite(logits))


# ----------------------------------------------------------------------------- without hypothesis

WITHOUT_HYPOTHESIS = """
import sys

sys.modules["hypothesis"] = None  # import hypothesis now fails, as after a plain install

import numpy as np

from minidl.layers import Dense
from minidl.testing import (arrays_for, batch_shapes, check_layer_gradients, gradcheck,
                            layer_configs, logits_and_labels)

# the README's snippet
assert check_layer_gradients(Dense(2), np.random.default_rng(0).normal(size=(4, 3)))
assert gradcheck(lambda x: (float(np.sum(x ** 2)), [2 * x]), [np.array([0.5, -1.5])])
for strategy, arguments in [(arrays_for, ((2, 3),)), (batch_shapes, ()), (layer_configs, ()),
                            (logits_and_labels, ())]:
    try:
        strategy(*arguments)
    except ModuleNotFoundError as error:
        print(type(error).__name__, error.name, error)
    else:
        raise SystemExit(f"{strategy.__name__} worked without hypothesis")
"""


def test_gradient_checks_work_without_hypothesis_and_strategies_name_the_extra():
    repository = Path(__file__).resolve().parents[1]
    environment = {**os.environ, "PYTHONPATH": str(repository)}
    result = subprocess.run([sys.executable, "-c", WITHOUT_HYPOTHESIS], capture_output=True,
                            text=True, env=environment, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"ModuleNotFoundError hypothesis minidl.testing.{name} needs hypothesis: "
        "pip install 'minidl[test]'"
        for name in ("arrays_for", "batch_shapes", "layer_configs", "logits_and_labels")]
