"""minidl.regularizers: Keras' penalty values, gradients against central differences, config
round trips and argument checks."""

import json

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minidl import regularizers
from minidl.regularizers import L1, L1L2, L2, REGULARIZERS, deserialize, serialize
from minidl.testing import arrays_for, gradcheck

factors = st.floats(0.0, 10.0)
penalties = st.one_of(st.builds(L1, factors), st.builds(L2, factors),
                      st.builds(L1L2, factors, factors))
weights = arrays_for(hnp.array_shapes(min_dims=1, max_dims=3, max_side=6))


def test_penalties_match_keras_closed_forms():
    w = np.array([[1.0, -2.0], [0.0, 3.0]])
    assert L1(0.1)(w) == pytest.approx(0.1 * 6)
    assert L2(0.1)(w) == pytest.approx(0.1 * 14)  # no factor 1/2
    assert L1L2(l1=0.1, l2=0.2)(w) == pytest.approx(0.1 * 6 + 0.2 * 14)
    np.testing.assert_allclose(L1(0.1).grad(w), [[0.1, -0.1], [0.0, 0.1]])
    np.testing.assert_allclose(L2(0.1).grad(w), [[0.2, -0.4], [0.0, 0.6]])
    np.testing.assert_allclose(L1L2(0.1, 0.2).grad(w), [[0.5, -0.9], [0.0, 1.3]])


def test_defaults_are_keras_defaults():
    assert L1().l1 == 0.01
    assert L2().l2 == 0.01
    assert L1L2().get_config() == {"l1": 0.0, "l2": 0.0}


@given(penalties, weights)
def test_penalty_gradients_match_central_differences(penalty, w):
    # |w| has a kink at 0; a weight within eps of it would make the difference quotient wrong
    w = np.where(np.abs(w) < 1e-3, 0.5, w)
    assert gradcheck(lambda x: (penalty(x), [penalty.grad(x)]), [w])


@given(penalties, weights)
def test_penalties_are_non_negative_and_zero_at_zero(penalty, w):
    assert penalty(w) >= 0
    assert penalty(np.zeros_like(w)) == 0
    np.testing.assert_array_equal(penalty.grad(np.zeros_like(w)), 0)


def test_l1_gradient_is_zero_at_zero():
    np.testing.assert_array_equal(L1(0.5).grad(np.array([-0.0, 0.0, 2.0])), [0.0, 0.0, 0.5])


@pytest.mark.parametrize("penalty", [L1(0.3), L2(0.3), L1L2(0.1, 0.2)])
def test_gradient_keeps_float32_and_value_is_a_float(penalty):
    w = np.array([[1.5, -2.0]], dtype=np.float32)
    assert penalty.grad(w).dtype == np.float32
    assert isinstance(penalty(w), float)
    assert penalty.grad(np.array([1, -2])).dtype == np.float64


@given(penalties)
def test_serialize_round_trips_through_json(penalty):
    spec = json.loads(json.dumps(serialize(penalty)))
    assert spec["class_name"] == type(penalty).__name__
    restored = deserialize(spec)
    assert type(restored) is type(penalty)
    assert restored.get_config() == penalty.get_config()
    assert type(penalty).from_config(penalty.get_config()).get_config() == penalty.get_config()


def test_deserialize_passes_none_and_instances_through():
    assert deserialize(None) is None
    assert serialize(None) is None
    penalty = L2(0.5)
    assert deserialize(penalty) is penalty


def test_registry_and_repr():
    assert list(REGULARIZERS.items()) == [
        ("L1", L1), ("L2", L2), ("L1L2", L1L2),
        ("OrthogonalRegularizer", regularizers.OrthogonalRegularizer)]
    assert repr(L1L2(0.1, 0.2)) == "L1L2(l1=0.1, l2=0.2)"


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda: L1(-0.1), ValueError,
     r"^L1: Invalid value for argument l1: expected a non-negative float. Received: l1=-0.1"),
    (lambda: L2(float("nan")), ValueError,
     r"^L2: Invalid value for argument l2: expected a non-negative float. Received: l2=nan"),
    (lambda: L1L2(l2=float("inf")), ValueError,
     r"^L1L2: Invalid value for argument l2: expected a non-negative float"),
    (lambda: L1L2(l1=-1), ValueError, r"^L1L2: Invalid value for argument l1"),
    (lambda: L1("0.1"), ValueError, r"^L1: Invalid value for argument l1: expected a "
                                    r"non-negative float. Received: l1='0.1'"),
    (lambda: L2(True), ValueError, r"^L2: Invalid value for argument l2: .* Received: l2=True"),
    (lambda: L2()(np.array(["a"])), TypeError, r"^L2: w must be a real numeric array"),
    (lambda: L1().grad(np.array([None])), TypeError,
     r"^L1: w must be a real numeric array, got dtype object"),
    (lambda: deserialize({"class_name": "L3", "config": {}}), ValueError,
     r"^deserialize: unknown regularizer 'L3'; known: L1, L2, L1L2, OrthogonalRegularizer"),
    (lambda: deserialize({"class_name": "L1"}), ValueError,
     r"^deserialize: a regularizer spec must have exactly the keys 'class_name' and 'config'"),
    (lambda: deserialize({"class_name": "L1", "config": [0.1]}), TypeError,
     r"^deserialize: the config of L1 must be a dict"),
    (lambda: deserialize(["l2"]), TypeError,
     r"^deserialize: a regularizer spec must be a \{'class_name', 'config'\} dict"),
    (lambda: deserialize("l3"), ValueError,
     r"^get: unknown regularizer 'l3'; known: l1, l2, l1l2, l1_l2"),
    (lambda: deserialize({"class_name": "L1", "config": {"l2": 0.1}}), ValueError,
     r"^L1.from_config: unknown key\(s\) \['l2'\]; expected \['l1'\]"),
    (lambda: serialize("L1"), TypeError, r"^serialize: expected a Regularizer or None"),
])
def test_bad_arguments_raise_errors_naming_them(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_serialize_refuses_an_unregistered_penalty():
    class Scaled(regularizers.L2):
        pass

    with pytest.raises(ValueError, match=r"^serialize: Scaled is not in .*REGULARIZERS"):
        serialize(Scaled())
