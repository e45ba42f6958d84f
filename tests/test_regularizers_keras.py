"""minidl.regularizers against Keras: the values of keras/src/regularizers/regularizers_test.py
(ported), Keras' argument validation and names, OrthogonalRegularizer's value and gradient,
and direct comparison with Keras where it is installed."""

import json
import os

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from minidl import regularizers
from minidl.layers import Dense
from minidl.regularizers import L1, L1L2, L2, OrthogonalRegularizer
from minidl.testing import arrays_for, gradcheck

KERAS_TEST = "keras/src/regularizers/regularizers_test.py"


@pytest.fixture
def value():
    return np.random.default_rng(0).random((4, 4)).astype(np.float32)


def _keras_orthogonal(value, factor, axis):
    """RegularizersTest::test_orthogonal_regularizer's expected value."""
    units = value / np.linalg.norm(value, axis=axis, keepdims=True)
    product = units @ units.T if axis == 1 else units.T @ units
    size = product.shape[0]
    return factor * 0.5 * np.sum(np.abs(product * (1.0 - np.eye(size)))) / (
        size * (size - 1.0) / 2.0)


def test_l1_l2_and_l1l2_values(value):
    # RegularizersTest::test_l1, test_l2, test_l1_l2
    np.testing.assert_allclose(L1(0.1)(value), 0.1 * np.sum(np.abs(value)), rtol=1e-6)
    np.testing.assert_allclose(L2(0.1)(value), 0.1 * np.sum(np.square(value)), rtol=1e-6)
    np.testing.assert_allclose(
        L1L2(l1=0.1, l2=0.2)(value),
        0.1 * np.sum(np.abs(value)) + 0.2 * np.sum(np.square(value)), rtol=1e-6)


def test_orthogonal_regularizer_value(value):
    # RegularizersTest::test_orthogonal_regularizer, and its columns twin
    np.testing.assert_allclose(OrthogonalRegularizer(factor=0.1, mode="rows")(value),
                               _keras_orthogonal(value, 0.1, axis=1), rtol=1e-5)
    np.testing.assert_allclose(OrthogonalRegularizer(factor=0.1, mode="columns")(value),
                               _keras_orthogonal(value, 0.1, axis=0), rtol=1e-5)


def test_zero_weights_zero_factors_and_signs(value):
    # test_l1_with_zero_weights, test_l1_with_negative_weights, test_l1_zero_coefficient,
    # test_l2_with_zero_weights, test_l2_zero_coefficient, test_l1l2_zero_coefficients,
    # test_l1l2_only_l1, test_l1l2_only_l2, test_l1l2_with_zero_weights
    zeros, ones = np.zeros((4, 4), np.float32), np.ones((4, 4), np.float32)
    assert L1(0.1)(zeros) == 0.0 and L2(0.1)(zeros) == 0.0 and L1L2(0.1, 0.2)(zeros) == 0.0
    assert L1(0.1)(ones) == L1(0.1)(-ones)
    assert L1(0.0)(value) == 0.0 and L2(0.0)(value) == 0.0 and L1L2(0.0, 0.0)(value) == 0.0
    assert L1L2(l1=0.1, l2=0.0)(value) == pytest.approx(L1(0.1)(value))
    assert L1L2(l1=0.0, l2=0.1)(value) == pytest.approx(L2(0.1)(value))


def test_l2_against_l1_for_large_and_small_weights():
    # test_l2_is_larger_than_l1_for_large_weights, test_l2_is_smaller_than_l1_for_small_weights
    large, small = np.full((4, 4), 10.0, np.float32), np.full((4, 4), 0.1, np.float32)
    assert L2(1.0)(large) > L1(1.0)(large)
    assert L2(1.0)(small) < L1(1.0)(small)


def test_get_method():
    # RegularizersTest::test_get_method
    assert isinstance(regularizers.get("l1l2"), L1L2)
    assert isinstance(regularizers.get("l1"), L1)
    assert isinstance(regularizers.get("l2"), L2)
    assert isinstance(regularizers.get("orthogonal_regularizer"), OrthogonalRegularizer)
    assert regularizers.get(None) is None
    with pytest.raises(ValueError, match=r"^get: unknown regularizer 'typo'; known: l1, l2"):
        regularizers.get("typo")


def test_get_takes_class_names_classes_instances_and_config_dicts():
    assert regularizers.get("L2").get_config() == {"l2": 0.01}
    assert regularizers.get("l1_l2").get_config() == {"l1": 0.01, "l2": 0.01}
    assert type(regularizers.get(OrthogonalRegularizer)) is OrthogonalRegularizer
    penalty = L1(0.3)
    assert regularizers.get(penalty) is penalty
    spec = {"class_name": "OrthogonalRegularizer", "config": {"factor": 0.2, "mode": "columns"}}
    assert regularizers.get(spec).get_config() == {"factor": 0.2, "mode": "columns"}
    with pytest.raises(TypeError, match=r"^get: expected a regularizer name"):
        regularizers.get(0.1)


def test_none_means_keras_defaults():
    assert L1(None).l1 == 0.01
    assert L2(None).l2 == 0.01
    assert L1L2(None, None).get_config() == {"l1": 0.0, "l2": 0.0}


@pytest.mark.parametrize("penalty", [L1(0.1), L2(0.1), L1L2(l1=0.1, l2=0.2),
                                     OrthogonalRegularizer(factor=0.1, mode="rows"),
                                     OrthogonalRegularizer(factor=0.01, mode="columns")])
def test_config_round_trips(penalty):
    # RegularizersTest::test_config, test_l1l2_get_config,
    # test_orthogonal_regularizer_get_config
    spec = json.loads(json.dumps(regularizers.serialize(penalty)))
    restored = regularizers.deserialize(spec)
    assert type(restored) is type(penalty) and restored.get_config() == penalty.get_config()
    assert type(penalty).from_config(penalty.get_config()).get_config() == penalty.get_config()


def test_orthogonal_regularizer_mode_and_rank_validation():
    # test_orthogonal_regularizer_mode_validation, test_orthogonal_regularizer_input_rank_...
    with pytest.raises(ValueError) as error:
        OrthogonalRegularizer(factor=0.01, mode="invalid_mode")
    assert str(error.value) == ('Invalid value for argument `mode`. Expected one of {"rows", '
                                '"columns"}. Received: mode=invalid_mode')
    with pytest.raises(ValueError) as error:
        OrthogonalRegularizer(factor=0.1)(np.random.default_rng(1).random((4, 4, 4)))
    assert str(error.value) == ("Inputs to OrthogonalRegularizer must have rank 2. "
                                "Received: inputs.shape=(4, 4, 4)")
    with pytest.raises(ValueError, match=r"^OrthogonalRegularizer: mode='columns' needs at "
                                         r"least 2 columns to compare, got weights of shape"):
        OrthogonalRegularizer(mode="columns").grad(np.ones((3, 1)))


@pytest.mark.parametrize("argument", ["not_a_number", float("nan"), float("inf"),
                                      -float("inf"), -1, -0.001, None, [0.1]])
def test_factors_are_validated_as_keras_validate_float_arg(argument):
    # ValidateFloatArgTest: the invalid types, nan, inf, negatives, None and a list
    with pytest.raises(ValueError, match=r"^OrthogonalRegularizer: Invalid value for argument "
                                         r"factor: expected a non-negative float"):
        OrthogonalRegularizer(factor=argument)
    if argument is not None:  # L1(None), L2(None) and L1L2(None) mean their defaults
        for penalty in (L1, L2, L1L2):
            with pytest.raises(ValueError, match="expected a non-negative float"):
                penalty(argument)


@pytest.mark.parametrize("argument", [1, 1.0, 0, 0.0, 1e-10, 1e6])
def test_valid_factors_become_floats(argument):
    # ValidateFloatArgTest: valid args, zero, very small, large, returns a float
    factor = OrthogonalRegularizer(factor=argument).factor
    assert type(factor) is float and factor == pytest.approx(argument)


@given(st.tuples(st.integers(2, 5), st.integers(1, 5)).flatmap(arrays_for),
       st.sampled_from(["rows", "columns"]), st.floats(0.0, 2.0))
def test_orthogonal_regularizer_gradient_matches_central_differences(w, mode, factor):
    penalty = OrthogonalRegularizer(factor, mode)
    # w's rows are the vectors compared: as the rows, or as the columns of its transpose
    rows, w = w, (w if mode == "rows" else w.T)
    # |cos| has a kink at 0, and a row of norm near 0 has no direction to difference
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    assume(np.min(norms) > 1e-2)
    cosines = (rows / norms) @ (rows / norms).T
    np.fill_diagonal(cosines, 1)
    assume(np.min(np.abs(cosines)) > 1e-3)
    assert gradcheck(lambda x: (penalty(x), [penalty.grad(x)]), [w])


def test_orthogonal_regularizer_gradient_keeps_float32_and_handles_zero_rows():
    w = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]], np.float32)
    penalty = OrthogonalRegularizer(0.1)
    grad = penalty.grad(w)
    assert grad.dtype == np.float32 and np.all(np.isfinite(grad))
    assert np.isfinite(penalty(w))


def test_dense_layer_saves_and_loads_an_orthogonal_regularizer_and_takes_keras_strings():
    layer = Dense(3, kernel_regularizer=OrthogonalRegularizer(0.2, "columns"),
                  bias_regularizer="l2")
    config = json.loads(json.dumps(layer.get_config()))
    restored = Dense.from_config(config)
    assert restored.kernel_regularizer.get_config() == {"factor": 0.2, "mode": "columns"}
    assert type(restored.bias_regularizer) is L2


# ------------------------------------------------------------------------- against Keras itself

def test_values_and_gradients_equal_keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    torch = pytest.importorskip("torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("the gradient comparison needs Keras' torch backend")
    rng = np.random.default_rng(3)
    w = rng.normal(size=(5, 3))
    pairs = [(L1(0.3), keras.regularizers.L1(0.3)), (L2(0.3), keras.regularizers.L2(0.3)),
             (L1L2(0.1, 0.2), keras.regularizers.L1L2(0.1, 0.2))] + [
        (OrthogonalRegularizer(0.5, mode), keras.regularizers.OrthogonalRegularizer(0.5, mode))
        for mode in ("rows", "columns")]
    for ours, theirs in pairs:
        w_t = torch.tensor(w, requires_grad=True)
        expected = theirs(w_t)
        expected.backward()
        # Keras' torch backend rounds some steps to float32: float32 tolerances
        assert ours(w) == pytest.approx(expected.item(), rel=1e-6)
        np.testing.assert_allclose(ours.grad(w), w_t.grad.numpy(), rtol=1e-5, atol=1e-7)
    assert type(keras.regularizers.get("l1l2")).__name__ == type(regularizers.get("l1l2")).__name__
