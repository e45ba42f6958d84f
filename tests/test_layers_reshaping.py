"""minidl.layers.reshaping: Reshape's gradients, its -1, its errors, its config and its use
in a model."""

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minidl
from minidl.layers import Dense, Flatten
from minidl.layers.reshaping import Reshape
from minidl.testing import arrays_for, check_layer_gradients


@st.composite
def shapes_and_targets(draw):
    """``(batch shape, target_shape)``: the target the example's sides in another order and
    grouping (so the sizes agree), one of its entries -1 half the time."""
    sides = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    shuffled = draw(st.permutations(sides))
    cuts = sorted(set(draw(st.lists(st.integers(1, len(sides)), max_size=3))) | {len(sides)})
    groups = zip([0, *cuts[:-1]], cuts, strict=True)
    target = [math.prod(shuffled[start:stop]) for start, stop in groups]
    if draw(st.booleans()):
        target[draw(st.integers(0, len(target) - 1))] = -1
    batch_shape = (draw(st.integers(1, 4)), *draw(st.permutations(sides)))
    return batch_shape, target


@given(shapes_and_targets().flatmap(
    lambda case: st.tuples(st.just(case[1]), arrays_for(case[0]))))
def test_reshape_gradients_match_central_differences(case):
    target_shape, x = case
    assert check_layer_gradients(Reshape(target_shape), x)


@given(shapes_and_targets())
def test_forward_is_numpy_reshape_and_compute_output_shape_matches(case):
    batch_shape, target_shape = case
    x = np.arange(math.prod(batch_shape), dtype=np.float64).reshape(batch_shape)
    layer = Reshape(target_shape)
    y = layer.forward(x)
    np.testing.assert_array_equal(y, x.reshape(len(x), *target_shape))  # row-major order
    assert y.shape[1:] == layer.compute_output_shape(batch_shape[1:])
    assert -1 not in y.shape


def test_minus_one_is_inferred_from_the_example_size():
    layer = Reshape((-1, 4))
    assert layer.compute_output_shape((2, 6)) == (3, 4)
    assert layer.forward(np.zeros((5, 2, 6))).shape == (5, 3, 4)
    assert Reshape([2, -1, 3]).compute_output_shape((12,)) == (2, 2, 3)
    assert Reshape([-1]).compute_output_shape((3, 5, 2)) == (30,)


def test_backward_gives_the_gradient_the_input_shape():
    layer = Reshape((6,))
    layer.forward(np.zeros((2, 3, 2)))
    grad_x = layer.backward(np.arange(12.0).reshape(2, 6))
    np.testing.assert_array_equal(grad_x, np.arange(12.0).reshape(2, 3, 2))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept_forward_and_backward(dtype):
    layer = Reshape((2, 2))
    y = layer.forward(np.ones((3, 4), dtype=dtype))
    assert y.dtype == dtype and layer.backward(np.ones_like(y)).dtype == dtype


# ----------------------------------------------------------------------------- errors

def test_mismatched_sizes_name_both_shapes():
    with pytest.raises(ValueError, match=r"Reshape: cannot reshape examples of shape \(2, 3\) "
                                         r"\(6 values\) into target_shape \(4,\) \(4 values\)"):
        Reshape((4,)).forward(np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match=r"examples of shape \(7,\) \(7 values\) into "
                                         r"target_shape \(-1, 2\): 7 is not a multiple of 2"):
        Reshape((-1, 2)).compute_output_shape((7,))


@pytest.mark.parametrize("target_shape", [(), [0, 3], (-2, 3), (2.0,), (True,), 6, "6", None])
def test_target_shape_must_be_positive_ints_or_one_minus_one(target_shape):
    with pytest.raises(ValueError, match="Reshape: target_shape must be a list of positive ints"):
        Reshape(target_shape)


def test_two_minus_ones_are_refused():
    with pytest.raises(ValueError, match=r"one -1 entry \(inferred\), got \[-1, 2, -1\]"):
        Reshape((-1, 2, -1))


def test_backward_before_forward_says_so_and_a_wrong_gradient_shape_is_named():
    layer = Reshape((4,))
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((1, 4)))
    layer.forward(np.ones((1, 2, 2)))
    with pytest.raises(ValueError, match=r"grad_y has shape \(1, 2, 2\) but the forward output "
                                         r"had shape \(1, 4\)"):
        layer.backward(np.ones((1, 2, 2)))


# ----------------------------------------------------------------------------- config, model

def test_config_round_trips_through_json():
    layer = Reshape((-1, 3), input_shape=(2, 3))
    config = json.loads(json.dumps(layer.get_config()))
    assert config == {"target_shape": [-1, 3], "input_shape": [2, 3]}
    again = Reshape.from_config(config)
    assert again.get_config() == layer.get_config()
    assert again.declared_input_shape() == (2, 3)
    assert again.compute_output_shape((2, 3)) == (2, 3)


def test_model_trains_through_a_reshape_and_saves_and_loads(tmp_path, monkeypatch):
    monkeypatch.setitem(minidl.layers.LAYERS, "Reshape", Reshape)
    model = minidl.Sequential([Reshape((8,), input_shape=(2, 4)), Dense(6, activation="tanh"),
                               Reshape((3, -1)), Flatten(), Dense(2, activation="softmax")],
                              seed=0)
    assert model.built and model.output_shape == (2,)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 2, 4))
    y = (x[:, 0, 0] + x[:, 1, 3] > 0).astype(np.int64)
    model.compile(optimizer=minidl.Adam(model.parameters(), lr=0.02), loss="cross_entropy",
                  metrics=["accuracy"])

    losses = model.fit(x, y, epochs=20, batch_size=16, verbose=0).history["loss"]

    assert losses[-1] < 0.5 * losses[0]
    assert model.evaluate(x, y)["accuracy"] > 0.9
    model.save(tmp_path / "model.npz")
    np.testing.assert_array_equal(minidl.load_model(tmp_path / "model.npz").predict(x),
                                  model.predict(x))


def test_model_names_the_reshape_whose_sizes_do_not_match():
    with pytest.raises(ValueError, match=r"layers\[1\] \(Reshape\): Reshape: cannot reshape "
                                         r"examples of shape \(6,\)"):
        minidl.Sequential([Dense(6, input_dim=3), Reshape((4,))])
