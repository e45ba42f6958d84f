"""minidl.layers.embedding: the lookup, its gradient per index (repeats included), the
indices it refuses, its config, and a model that trains and saves with it."""

import json
import tracemalloc

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import minidl
from minidl import regularizers
from minidl.layers import Dense, Flatten
from minidl.layers.embedding import Embedding
from minidl.testing import gradcheck


@st.composite
def tables_and_indices(draw):
    """``(input_dim, output_dim, indices)``: int64 indices of shape (batch, ...), batch 1
    included, with at least one index used twice whenever there are two positions."""
    input_dim = draw(st.integers(1, 6))
    output_dim = draw(st.integers(1, 4))
    shape = (draw(st.integers(1, 4)), *draw(st.lists(st.integers(1, 3), max_size=2)))
    size = int(np.prod(shape))
    flat = draw(st.lists(st.integers(0, input_dim - 1), min_size=size, max_size=size))
    if size > 1:
        flat[-1] = flat[0]  # a repeated index: its rows of the gradient must add up
    return input_dim, output_dim, np.array(flat, dtype=np.int64).reshape(shape)


def built_embedding(input_dim, output_dim, dtype="float64", seed=0):
    layer = Embedding(input_dim, output_dim)
    layer.build((1,), dtype=dtype, rng=np.random.default_rng(seed))
    return layer


def one_hot(indices, input_dim):
    return (indices[..., None] == np.arange(input_dim)).astype(np.float64)


# ----------------------------------------------------------------------------- gradients

@given(tables_and_indices())
@example((3, 2, np.array([[1]])))  # batch 1, one position
@example((3, 2, np.array([[2, 2, 2]])))  # batch 1, one index three times
def test_embeddings_gradient_matches_central_differences_with_repeated_indices(case):
    input_dim, output_dim, indices = case
    layer = built_embedding(input_dim, output_dim)
    projection = np.random.default_rng(1).standard_normal((*indices.shape, output_dim))

    def projected_output(embeddings):
        layer.embeddings.data[...] = embeddings
        value = float(np.sum(layer.forward(indices) * projection))
        assert layer.backward(projection) is None  # indices have no gradient
        return value, [layer.embeddings.grad]

    assert gradcheck(projected_output, [layer.embeddings.data.copy()])


@given(tables_and_indices())
def test_forward_is_one_hot_times_table_and_gradient_its_transpose(case):
    input_dim, output_dim, indices = case
    layer = built_embedding(input_dim, output_dim)
    grad_y = np.random.default_rng(2).standard_normal((*indices.shape, output_dim))
    hot = one_hot(indices, input_dim).reshape(-1, input_dim)

    y = layer.forward(indices)
    layer.backward(grad_y)

    np.testing.assert_allclose(
        y, (hot @ layer.embeddings.data).reshape(*indices.shape, output_dim), rtol=1e-12)
    np.testing.assert_allclose(layer.embeddings.grad, hot.T @ grad_y.reshape(-1, output_dim),
                               rtol=1e-12, atol=1e-12)


@given(tables_and_indices())
def test_forward_and_embeddings_gradient_agree_with_torch(case):
    torch = pytest.importorskip("torch")
    input_dim, output_dim, indices = case
    layer = built_embedding(input_dim, output_dim)
    grad_y = np.random.default_rng(3).standard_normal((*indices.shape, output_dim))
    weight = torch.tensor(layer.embeddings.data, requires_grad=True)

    expected = torch.nn.functional.embedding(torch.from_numpy(indices), weight)
    (expected * torch.from_numpy(grad_y)).sum().backward()
    y = layer.forward(indices)
    layer.backward(grad_y)

    np.testing.assert_array_equal(y, expected.detach().numpy())
    np.testing.assert_allclose(layer.embeddings.grad, weight.grad.numpy(), rtol=1e-12,
                               atol=1e-12)


def test_backward_assigns_the_gradient_into_the_same_array_each_time():
    layer = built_embedding(4, 2)
    grad = layer.embeddings.grad
    layer.forward(np.array([[0, 0]]))
    layer.backward(np.ones((1, 2, 2)))
    layer.forward(np.array([[3]]))
    layer.backward(np.ones((1, 1, 2)))
    assert layer.embeddings.grad is grad
    np.testing.assert_array_equal(grad, [[0, 0], [0, 0], [0, 0], [1, 1]])  # not accumulated


def test_backward_before_forward_says_so():
    with pytest.raises(RuntimeError, match="before forward"):
        built_embedding(4, 2).backward(np.ones((1, 1, 2)))


def test_backward_rejects_a_gradient_of_the_wrong_shape():
    layer = built_embedding(4, 2)
    layer.forward(np.array([[1, 2, 3]]))
    with pytest.raises(ValueError, match=r"grad_y has shape \(1, 3\) but the forward output "
                                         r"had shape \(1, 3, 2\)"):
        layer.backward(np.ones((1, 3)))


# ----------------------------------------------------------------------------- forward

def test_output_shape_appends_output_dim_to_indices_of_any_shape():
    layer = Embedding(7, 5)
    for shape in [(2,), (2, 3), (1, 3, 4)]:
        assert layer.forward(np.zeros(shape, dtype=np.int32)).shape == (*shape, 5)
        assert layer.compute_output_shape(shape[1:]) == (*shape[1:], 5)


def test_whole_floats_pick_the_same_rows_as_integers():
    layer = built_embedding(10, 3)
    indices = np.array([[0, 9, 4], [4, 4, 1]])
    from_ints = layer.forward(indices)
    for dtype in (np.float16, np.float32, np.float64):
        np.testing.assert_array_equal(layer.forward(indices.astype(dtype)), from_ints)


@pytest.mark.parametrize("x_dtype, layer_dtype", [(np.int64, np.float32), (np.uint8, np.float32),
                                                  (np.float32, np.float32),
                                                  (np.float64, np.float64)])
def test_first_call_builds_in_the_float_dtype_of_the_input_or_float32(x_dtype, layer_dtype):
    layer = Embedding(4, 2)
    y = layer.forward(np.array([[1, 3]], dtype=x_dtype))
    assert layer.embeddings.dtype == layer_dtype and y.dtype == layer_dtype


def test_uniform_initializer_is_keras_random_uniform_of_five_hundredths():
    layer = Embedding(200, 50)
    layer.build((1,), rng=np.random.default_rng(0))
    table = layer.embeddings.data
    assert table.shape == (200, 50) and table.dtype == np.float32
    assert -0.05 <= table.min() < -0.049 and 0.049 < table.max() <= 0.05


def test_same_seed_gives_the_same_table_and_other_initializers_are_accepted():
    tables = []
    for _ in range(2):
        layer = Embedding(6, 3, embeddings_initializer="glorot_uniform")
        layer.build((1,), rng=np.random.default_rng(7))
        tables.append(layer.embeddings.data)
    np.testing.assert_array_equal(*tables)
    zeros = Embedding(6, 3, embeddings_initializer="zeros")
    zeros.build((1,))
    assert not zeros.embeddings.data.any()


# ----------------------------------------------------------------------------- refused indices

@pytest.mark.parametrize("bad, problem", [
    (10, r"index 10 at position \(1, 2\) of the input is out of range: indices must be in "
         r"\[0, 10\) for input_dim=10"),
    (-1, r"index -1 at position \(1, 2\) .* out of range"),
    (1.5, r"index 1.5 at position \(1, 2\) of the input is not a whole number"),
    (np.nan, r"index nan at position \(1, 2\) .* not a whole number"),
    (np.inf, r"index inf at position \(1, 2\) .* out of range"),
])
def test_indices_outside_the_table_or_not_whole_are_refused_by_value(bad, problem):
    layer = built_embedding(10, 2)
    x = np.array([[0.0, 1.0, 2.0], [3.0, 4.0, bad]])
    if float(bad).is_integer():
        x = x.astype(np.int64)
    with pytest.raises(ValueError, match=problem):
        layer.forward(x)


def test_float_indices_that_may_have_been_rounded_are_refused():
    # float16 holds every integer exactly below 2**11 (float32: 2**24): 2049 becomes 2048
    layer = built_embedding(3000, 1)
    assert np.float16(2049) == 2048
    np.testing.assert_array_equal(layer.forward(np.array([[2047.0]], dtype=np.float16)),
                                  layer.embeddings.data[[[2047]]])
    with pytest.raises(ValueError, match=r"index 2048 at position \(0, 0\) of the input may be "
                                         r"a rounded integer: float16 holds every integer "
                                         r"exactly only below 2\*\*11"):
        layer.forward(np.array([[2048.0]], dtype=np.float16))
    np.testing.assert_array_equal(layer.forward(np.array([[2049]])),
                                  layer.embeddings.data[[[2049]]])  # integers are exact


def test_float32_indices_from_2_to_the_24_on_are_refused_but_float64_and_int_accepted():
    layer = Embedding(2**24 + 2, 1, embeddings_initializer="zeros")
    layer.build((1,), dtype="float32")
    with pytest.raises(ValueError, match=r"float32 holds every integer exactly only below "
                                         r"2\*\*24; pass integer indices, or use "
                                         r"Sequential\(..., dtype='float64'\)"):
        layer.forward(np.array([[2.0**24]], dtype=np.float32))
    assert layer.forward(np.array([[2**24 + 1]])).shape == (1, 1, 1)
    assert layer.forward(np.array([[2.0**24 + 1]], dtype=np.float64)).shape == (1, 1, 1)


@pytest.mark.parametrize("x", [np.array([["a"]]), np.array([[True]]), np.array([[1j]])])
def test_indices_that_are_not_numbers_are_a_type_error(x):
    with pytest.raises(TypeError, match="Embedding: input x must hold integer indices"):
        Embedding(3, 2).forward(x)


def test_indices_need_a_batch_axis():
    with pytest.raises(ValueError, match="batch axis"):
        Embedding(3, 2).forward(np.array(1))


@pytest.mark.parametrize("argument", ["input_dim", "output_dim"])
@pytest.mark.parametrize("value, error", [(0, ValueError), (-3, ValueError), (2.0, TypeError),
                                          (True, TypeError), (None, TypeError)])
def test_sizes_must_be_positive_ints(argument, value, error):
    sizes = {"input_dim": 4, "output_dim": 2, argument: value}
    with pytest.raises(error, match=f"Embedding: {argument} must be a positive int"):
        Embedding(**sizes)


def test_unknown_initializer_lists_the_known_names():
    with pytest.raises(ValueError, match=r"unknown embeddings_initializer 'normal'; known "
                                         r"initializers: glorot_uniform, .*, uniform, zeros"):
        Embedding(4, 2, embeddings_initializer="normal")


# ----------------------------------------------------------------------------- config, shapes

@given(st.integers(1, 50), st.integers(1, 20), st.lists(st.integers(1, 9), min_size=1,
                                                        max_size=3))
def test_weight_shapes_equal_the_built_shapes(input_dim, output_dim, input_shape):
    layer = Embedding(input_dim, output_dim)
    declared = layer.weight_shapes(tuple(input_shape))
    layer.build(tuple(input_shape), dtype="float64")
    assert declared == {p.name: p.shape for p in layer.parameters()} == {
        "embeddings": (input_dim, output_dim)}


def test_config_round_trips_through_json():
    layer = Embedding(12, 3, embeddings_initializer="he_normal",
                      embeddings_regularizer=regularizers.L2(0.01), input_shape=[5])
    config = json.loads(json.dumps(layer.get_config()))
    assert config == {"input_dim": 12, "output_dim": 3, "embeddings_initializer": "he_normal",
                      "embeddings_regularizer": regularizers.serialize(regularizers.L2(0.01)),
                      "input_shape": [5]}
    again = Embedding.from_config(config)
    assert again.get_config() == layer.get_config()
    assert again.declared_input_shape() == (5,)
    again.build((5,))
    assert isinstance(again.embeddings.regularizer, regularizers.L2)


# ----------------------------------------------------------------------------- in a model

def integer_data(rows=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 10, size=(rows, 3))
    return x, (x[:, 0] >= 5).astype(np.int64)  # the class is which half the first token is in


def test_model_trains_on_integer_inputs_and_saves_and_loads(tmp_path, monkeypatch):
    monkeypatch.setitem(minidl.layers.LAYERS, "Embedding", Embedding)
    model = minidl.Sequential([Embedding(10, 4, input_shape=(3,)), Flatten(),
                               Dense(2, activation="softmax")], seed=0)
    assert model.built and model.output_shape == (2,)
    model.compile(optimizer=minidl.Adam(model.parameters(), lr=0.05), loss="cross_entropy",
                  metrics=["accuracy"])
    x, y = integer_data()

    losses = model.fit(x, y, epochs=10, batch_size=32, verbose=0).history["loss"]

    assert losses[-1] < 0.5 * losses[0]
    assert model.evaluate(x, y)["accuracy"] > 0.95
    model.save(tmp_path / "model.npz")
    loaded = minidl.load_model(tmp_path / "model.npz")
    assert isinstance(loaded.layers[0], Embedding)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_a_file_whose_config_implies_a_huge_table_is_refused_before_building(tmp_path,
                                                                            monkeypatch):
    monkeypatch.setitem(minidl.layers.LAYERS, "Embedding", Embedding)
    minidl.Sequential([Embedding(10, 4, input_shape=(3,)), Flatten(), Dense(2)]).save(
        tmp_path / "model.npz")
    meta, arrays = minidl.io.load_npz(tmp_path / "model.npz")
    for field in ("format", "format_version", "minidl_version", "arrays"):
        del meta[field]  # save_npz writes them itself
    meta["model"]["config"]["layers"][0]["config"].update(input_dim=10**8)
    minidl.io.save_npz(tmp_path / "bomb.npz", meta, arrays)
    tracemalloc.start()
    try:
        with pytest.raises(minidl.ModelFormatError,
                           match=r"array 'layers\.0\.embeddings' has shape \(10, 4\) and dtype "
                                 r"float32 but the architecture implies \(100000000, 4\)"):
            minidl.load_model(tmp_path / "bomb.npz")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 22  # nowhere near the 1.6 GB table


def test_model_refuses_out_of_range_indices_naming_the_value_it_was_given():
    # the model casts x to float32 first: the message still says 10, not 10.0
    model = minidl.Sequential([Embedding(10, 4, input_shape=(3,)), Flatten(), Dense(2)])
    with pytest.raises(ValueError, match=r"Embedding: index 10 at position \(0, 2\)"):
        model.predict(np.array([[1, 2, 10]]))


def test_a_float32_model_gives_integer_indices_to_its_embedding_unrounded():
    # the model does not cast the data to float32 for an Embedding (Layer.input_dtype):
    # 2**24 + 1 would become 2**24 there
    index = 2**24 + 1
    model = minidl.Sequential([Embedding(index + 1, 1, input_shape=(1,)), Flatten()], seed=0)
    table = model.layers[0].embeddings.data
    table[index - 1, 0], table[index, 0] = 1.0, 2.0
    np.testing.assert_array_equal(model.predict(np.array([[index]])), [[2.0]])
