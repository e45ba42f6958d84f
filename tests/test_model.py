"""Sequential: training end to end, the fused softmax path, penalties, Keras' ways of writing a
model (input_shape=, loss names, 1-D x, folder paths), layer state, and errors for bad input."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.datasets import load_digits

from minidl import (
    L1,
    L1L2,
    L2,
    SGD,
    Adam,
    BinaryCrossEntropy,
    CrossEntropy,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    LambdaCallback,
    Layer,
    MaxPooling2D,
    MeanAbsoluteError,
    MeanSquaredError,
    Normalization,
    Parameter,
    ReLU,
    Sequential,
    Softmax,
    load_model,
)
from minidl.data import StandardScaler, make_moons, train_test_split
from minidl.losses import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    SparseCategoricalCrossentropy,
)
from minidl.metrics import accuracy
from minidl.testing import gradcheck


def small_classification(n=24, features=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, features)).astype(np.float32), rng.integers(0, classes, n)


def same_weights(first, second):
    return all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def small_classifier(seed=0, dtype="float32", dropout=0.0):
    layers = [Dense(8, activation="relu")]
    if dropout:
        layers.append(Dropout(dropout))
    layers.append(Dense(3, activation="softmax"))
    return Sequential(layers, input_dim=4, seed=seed, dtype=dtype)


# ---------------------------------------------------------------------------- learning


def test_classic_first_example_learns_y_equals_2x_minus_1():
    xs = np.array([[-1.0], [0.0], [1.0], [2.0], [3.0], [4.0]])
    ys = np.array([[-3.0], [-1.0], [1.0], [3.0], [5.0], [7.0]])
    model = Sequential([Dense(1)], input_dim=1, seed=0)
    model.compile(optimizer=SGD(model.parameters(), lr=0.01), loss="mse")
    model.fit(xs, ys, epochs=500, verbose=0)
    assert abs(model.predict([[10.0]])[0, 0] - 19.0) < 0.1


def test_mlp_reaches_96_percent_test_accuracy_on_sklearn_digits():
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data.astype(np.float32), digits.target, test_size=0.2, seed=0, stratify=True)
    scaler = StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    model = Sequential([Dense(64, activation="relu"), Dense(10, activation="softmax")],
                       input_dim=64, seed=0)
    model.compile(optimizer=Adam(model.parameters(), lr=0.01), loss="cross_entropy",
                  metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=30, batch_size=64, verbose=0)
    assert model.evaluate(x_test, y_test)["accuracy"] >= 0.96


def test_same_seed_gives_bit_identical_weights_with_shuffle_and_dropout():
    x, y = small_classification()

    def train(seed):
        model = small_classifier(seed=seed, dropout=0.3)
        model.compile("adam", "cross_entropy")
        model.fit(x, y, epochs=3, batch_size=5, shuffle=True, verbose=0)
        return model.get_weights()

    first, second, other = train(7), train(7), train(8)
    assert same_weights(first, second)
    assert not same_weights(first, other)


def test_nan_producing_learning_rate_raises_floating_point_error_and_keeps_finite_weights():
    xs = np.linspace(-2, 2, 12).reshape(-1, 1)
    ys = 3 * xs + 1
    model = Sequential([Dense(8, activation="relu"), Dense(1)], input_dim=1, seed=0)
    model.compile(SGD(model.parameters(), lr=1e3), "mse")
    after_each_step = []
    record = LambdaCallback(on_batch_end=lambda batch, logs: after_each_step.append(
        model.get_weights()))
    with pytest.raises(FloatingPointError, match=r"epoch 1/50, batch \d+.*learning rate"):
        model.fit(xs, ys, epochs=50, batch_size=4, callbacks=[record], verbose=0)
    weights = model.get_weights()
    assert all(np.isfinite(w).all() for w in weights)
    # the failing batch took no step: the weights are those after the last finite one
    assert same_weights(weights, after_each_step[-1])


# ---------------------------------------------------------------------------- fused softmax


def logits_twin(model):
    """The same network without its final softmax, with the same weights."""
    twin = Sequential([Dense(8, activation="relu"), Dense(3)], input_dim=4, dtype="float64")
    twin.set_weights(model.get_weights())
    return twin


@pytest.mark.parametrize("softmax_as", ["activation", "layer"])
def test_softmax_model_gets_the_gradients_of_the_logits_model_with_from_logits(softmax_as):
    x, y = small_classification(n=10)
    if softmax_as == "activation":
        layers = [Dense(8, activation="relu"), Dense(3, activation="softmax")]
    else:
        layers = [Dense(8, activation="relu"), Dense(3), Softmax()]
    model = Sequential(layers, input_dim=4, seed=1, dtype="float64")
    twin = logits_twin(model)
    model.compile(SGD(model.parameters(), lr=0.1), "cross_entropy")
    twin.compile(SGD(twin.parameters(), lr=0.1), CrossEntropy(from_logits=True))
    assert model.fused_output and not twin.fused_output
    history = model.fit(x, y, batch_size=len(x), shuffle=False, verbose=0)
    twin_history = twin.fit(x, y, batch_size=len(x), shuffle=False, verbose=0)
    for param, twin_param in zip(model.parameters(), twin.parameters(), strict=True):
        np.testing.assert_allclose(param.grad, twin_param.grad, rtol=1e-12, atol=1e-15)
    assert history.history["loss"] == pytest.approx(twin_history.history["loss"], rel=1e-12)


@pytest.mark.parametrize("penalty", [None, L1L2(l1=0.01, l2=0.02)])
def test_training_gradients_match_central_differences_of_the_reported_loss(penalty):
    x, y = small_classification(n=6)
    model = Sequential([Dense(5, activation="tanh", kernel_regularizer=penalty),
                        Dense(3, activation="softmax")], input_dim=4, seed=2, dtype="float64")
    model.compile(SGD(model.parameters(), lr=0.0), "cross_entropy")

    def loss_and_gradients(*weights):
        model.set_weights(weights)
        history = model.fit(x, y, batch_size=len(x), shuffle=False, verbose=0)
        return history.history["loss"][0], [p.grad.copy() for p in model.parameters()]

    # L1's kink at 0 is out of reach: glorot draws are never exactly 0
    assert gradcheck(loss_and_gradients, model.get_weights())


def test_fused_path_stays_finite_for_logits_of_1e4():
    model = Sequential([Dense(3, activation="softmax")], input_dim=2, dtype="float64")
    model.set_weights([np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]]), np.zeros(3)])
    x = np.eye(2)
    y = np.array([1, 0])  # each row's largest logit is on the wrong class
    model.compile(SGD(model.parameters(), lr=0.0), "cross_entropy")
    history = model.fit(x, y, batch_size=2, shuffle=False, verbose=0)
    # closed form: loss = logsumexp(z) - z_label = 2e4 per row; softmax(z) is exactly one-hot
    assert history.history["loss"] == [pytest.approx(2e4)]
    kernel, bias = model.parameters()
    np.testing.assert_array_equal(kernel.grad, [[0.5, -0.5, 0.0], [-0.5, 0.5, 0.0]])
    np.testing.assert_array_equal(bias.grad, [0.0, 0.0, 0.0])
    probs = model.predict(x)
    np.testing.assert_array_equal(probs, [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def test_predict_of_a_softmax_model_returns_probabilities():
    x, y = small_classification()
    model = small_classifier()
    model.compile("adam", "cross_entropy")
    model.fit(x, y, epochs=2, verbose=0)
    probs = model.predict(x)
    assert probs.shape == (len(x), 3) and probs.dtype == np.float32
    assert (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)


def test_fused_path_is_only_used_for_a_final_softmax_with_cross_entropy():
    model = small_classifier()
    model.compile("sgd", "mse")
    assert not model.fused_output
    model.compile("sgd", "cross_entropy")
    assert model.fused_output
    relu_last = Sequential([Dense(3), ReLU()], input_dim=4)
    relu_last.compile("sgd", "cross_entropy")
    assert not relu_last.fused_output


# ---------------------------------------------------------------------------- penalties


def test_reported_loss_and_gradients_include_the_l1_l2_penalties():
    model = Sequential([Dense(2, kernel_regularizer=L1L2(l1=0.1, l2=0.2),
                              bias_regularizer=L2(0.3))], input_dim=3, dtype="float64")
    kernel0 = np.array([[0.5, -1.0], [0.25, 0.0], [-0.75, 2.0]])
    bias0 = np.array([0.1, -0.2])
    model.set_weights([kernel0, bias0])
    x = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0], [2.0, -1.0, 1.0], [0.0, 0.0, 1.0]])
    y = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, -1.0], [0.5, 0.5]])
    lr = 0.1
    model.compile(SGD(model.parameters(), lr=lr), "mse")
    history = model.fit(x, y, batch_size=len(x), shuffle=False, verbose=0)

    residual = x @ kernel0 + bias0 - y
    penalty = (0.1 * np.abs(kernel0).sum() + 0.2 * (kernel0**2).sum()
               + 0.3 * (bias0**2).sum())
    assert history.history["loss"] == [pytest.approx((residual**2).mean() + penalty, rel=1e-12)]
    grad_z = 2 * residual / residual.size
    kernel_grad = x.T @ grad_z + 0.1 * np.sign(kernel0) + 2 * 0.2 * kernel0
    bias_grad = grad_z.sum(axis=0) + 2 * 0.3 * bias0
    kernel, bias = model.parameters()
    np.testing.assert_allclose(kernel.grad, kernel_grad, rtol=1e-12)
    np.testing.assert_allclose(bias.grad, bias_grad, rtol=1e-12)
    np.testing.assert_allclose(kernel.data, kernel0 - lr * kernel_grad, rtol=1e-12)
    np.testing.assert_allclose(bias.data, bias0 - lr * bias_grad, rtol=1e-12)


def test_evaluate_loss_includes_the_penalty():
    model = Sequential([Dense(1, kernel_regularizer=L1(0.5), use_bias=False)],
                       input_dim=2, dtype="float64")
    model.set_weights([np.array([[1.0], [-2.0]])])
    model.compile("sgd", "mse")
    x, y = np.array([[1.0, 1.0]]), np.array([[0.0]])
    assert model.evaluate(x, y)["loss"] == pytest.approx(1.0 + 0.5 * 3.0)


# ---------------------------------------------------------------------------- validation, metrics


def test_validation_split_holds_out_the_last_fraction_of_the_rows():
    x, y = small_classification(n=10)
    model = small_classifier()
    model.compile(SGD(model.parameters(), lr=0.1), "cross_entropy")
    rows_trained = []
    count = LambdaCallback(on_batch_end=lambda batch, logs: rows_trained.append(logs["size"]))
    history = model.fit(x, y, batch_size=3, validation_split=0.2, callbacks=[count], verbose=0)
    assert sum(rows_trained) == 8
    assert history.history["val_loss"] == [model.evaluate(x[8:], y[8:])["loss"]]
    assert history.history["val_loss"] != [model.evaluate(x[:2], y[:2])["loss"]]


def test_validation_data_is_evaluated_after_every_epoch():
    x, y = small_classification()
    x_val, y_val = small_classification(n=7, seed=1)
    model = small_classifier()
    model.compile("adam", "cross_entropy", metrics=["accuracy"])
    val_losses = []
    probe = LambdaCallback(on_epoch_end=lambda epoch, logs: val_losses.append(
        model.evaluate(x_val, y_val)["loss"]))
    history = model.fit(x, y, epochs=3, validation_data=(x_val, y_val), callbacks=[probe],
                        verbose=0)
    assert history.history["val_loss"] == val_losses


def test_history_has_loss_metrics_and_their_validation_twins():
    x, y = small_classification()
    model = small_classifier()
    model.compile("adam", "cross_entropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=3, validation_split=0.25, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history.epoch == [0, 1, 2]
    assert all(len(values) == 3 for values in history.history.values())
    assert model.history is history


def test_evaluate_matches_an_oracle_computed_from_predict():
    x, y = small_classification(n=30)
    model = small_classifier(dtype="float64")
    model.compile("adam", "cross_entropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, verbose=0)
    probs = model.predict(x)
    scores = model.evaluate(x, y, batch_size=7)
    assert set(scores) == {"loss", "accuracy"}
    assert scores["loss"] == pytest.approx(-np.log(probs[np.arange(len(y)), y]).mean(), rel=1e-9)
    assert scores["accuracy"] == pytest.approx(np.mean(probs.argmax(axis=1) == y))
    assert scores["accuracy"] == accuracy(y, probs)


def test_metric_functions_are_accepted_and_named_after_the_function():
    x, y = small_classification()

    def wrong_rate(y_true, y_pred):
        return float(np.mean(np.argmax(y_pred, axis=1) != y_true))

    model = small_classifier()
    model.compile("sgd", "cross_entropy", metrics=["accuracy", wrong_rate])
    history = model.fit(x, y, verbose=0)
    assert history.history["accuracy"][0] + history.history["wrong_rate"][0] == pytest.approx(1)


BATCHED_MODEL = small_classifier(seed=5)


@given(rows=st.integers(1, 40), batch_size=st.integers(1, 50))
def test_predict_in_batches_equals_predict_all_at_once(rows, batch_size):
    x, _ = small_classification(n=rows)
    batched = BATCHED_MODEL.predict(x, batch_size=batch_size)
    assert batched.shape == (rows, 3)
    np.testing.assert_allclose(batched, BATCHED_MODEL.predict(x), rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------- structure


def test_summary_lists_layers_output_shapes_and_parameter_counts(capsys):
    model = Sequential([Flatten(), Dense(64, activation="relu"), Dropout(0.5), Dense(10)],
                       input_dim=(8, 8))
    text = model.summary()
    assert capsys.readouterr().out.strip() == text.strip()
    lines = text.splitlines()
    flatten = next(line for line in lines if "Flatten" in line)
    hidden = next(line for line in lines if "Dense, ReLU" in line)
    assert "(None, 64)" in flatten and "(None, 64)" in hidden and hidden.endswith("4,160")
    assert any("Dropout" in line for line in lines)
    assert lines[-4].endswith(" 650") and "(None, 10)" in lines[-4]
    assert "Total params: 4,810" in text


def test_get_weights_lists_each_layers_kernel_before_its_bias():
    model = Sequential([Dense(5, activation="relu"), Dense(3)], input_dim=4, seed=0)
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(4, 5), (5,), (5, 3), (3,)]
    assert [p.name for p in model.parameters()] == ["kernel", "bias", "kernel", "bias"]
    weights[0][...] = 99.0  # a copy: the model is unchanged
    assert not (model.get_weights()[0] == 99.0).any()


def test_set_weights_overwrites_in_place_so_the_optimizer_still_updates_them():
    model = Sequential([Dense(2)], input_dim=2, seed=0)
    optimizer = SGD(model.parameters(), lr=0.1)
    model.compile(optimizer, "mse")
    new = [np.ones((2, 2), np.float32), np.zeros(2, np.float32)]
    model.set_weights(new)
    np.testing.assert_array_equal(model.get_weights()[0], new[0])
    assert optimizer.params[0] is model.parameters()[0]
    model.fit(np.ones((4, 2)), np.zeros((4, 2)), verbose=0)
    assert not np.array_equal(optimizer.params[0].data, new[0])


def test_set_weights_rejects_wrong_count_shape_and_dtype():
    model = Sequential([Dense(2)], input_dim=3)
    kernel, bias = model.get_weights()
    with pytest.raises(ValueError, match="got 1 arrays but the model has 2 weights"):
        model.set_weights([kernel])
    with pytest.raises(ValueError, match=r"weights\[0\] has shape \(2, 3\).*\(3, 2\)"):
        model.set_weights([kernel.T, bias])
    with pytest.raises(TypeError, match=r"weights\[1\] must be numeric"):
        model.set_weights([kernel, np.array(["a", "b"])])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_model_dtype_sets_parameters_and_outputs(dtype):
    x, y = small_classification()
    model = small_classifier(dtype=dtype)
    assert model.dtype == np.dtype(dtype)
    model.compile("adam", "cross_entropy")
    model.fit(x.astype(np.float64), y, verbose=0)
    assert all(w.dtype == np.dtype(dtype) for w in model.get_weights())
    assert model.predict(x.astype(np.float64)).dtype == np.dtype(dtype)


def test_model_without_input_dim_is_built_by_its_first_batch():
    x, y = small_classification()
    model = Sequential([Dense(8, activation="relu"), Dense(3)], seed=0)
    assert not model.built and model.parameters() == []
    model.compile("adam", CrossEntropy())
    model.fit(x, y, verbose=0)
    assert model.input_shape == (4,) and model.output_shape == (3,)
    assert model.optimizer is not None and len(model.parameters()) == 4


# ---------------------------------------------------------------------------- compile


def test_compile_accepts_names():
    model = small_classifier()
    model.compile(optimizer="momentum", loss="mse", metrics=["mae"])
    assert isinstance(model.optimizer, SGD) and model.optimizer.momentum == 0.9
    assert isinstance(model.loss, MeanSquaredError)
    assert model.metrics == ["mae"]


def test_compile_accepts_an_optimizer_built_on_parameters_before_compile():
    x, y = small_classification()
    model = small_classifier()
    optimizer = Adam(model.parameters(), lr=0.01)
    loss = CrossEntropy(label_smoothing=0.1)
    model.compile(optimizer=optimizer, loss=loss)
    assert model.optimizer is optimizer and model.loss is loss
    before = model.get_weights()
    model.fit(x, y, verbose=0)
    assert optimizer.state[0]["step"] > 0
    assert not np.array_equal(model.get_weights()[0], before[0])


def test_compile_rejects_an_optimizer_of_other_parameters_or_before_build():
    model = small_classifier()
    other = small_classifier()
    with pytest.raises(ValueError, match="other parameters"):
        model.compile(Adam(other.parameters()), "mse")
    unbuilt = Sequential([Dense(3)])
    with pytest.raises(ValueError, match="input_dim"):
        unbuilt.compile(Adam(other.parameters()), "mse")


@pytest.mark.parametrize("built", [True, False])
@pytest.mark.parametrize(("arguments", "message"), [
    ({"optimizer": "adamm"}, r"Unknown optimizer 'adamm'.*'adam'"),
    ({"loss": "crossentropy"}, r"unknown loss 'crossentropy'.*cross_entropy"),
    ({"metrics": ["accuracyy"]}, r"unknown metric 'accuracyy'.*accuracy"),
])
def test_compile_rejects_unknown_names_listing_the_known_ones(built, arguments, message):
    model = small_classifier() if built else Sequential([Dense(3)])
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match=message):
        model.compile(**{"optimizer": "sgd", "loss": "mse", **arguments})
    # a failed compile changes nothing
    assert isinstance(model.loss, MeanSquaredError) and model.metrics == []


# ---------------------------------------------------------------------------- bad input


@pytest.fixture
def compiled():
    model = small_classifier()
    model.compile("sgd", "cross_entropy")
    return model


def test_fit_before_compile_says_to_compile():
    x, y = small_classification()
    with pytest.raises(RuntimeError, match=r"call compile\(optimizer, loss\) before fit"):
        small_classifier().fit(x, y)
    with pytest.raises(RuntimeError, match="compile"):
        small_classifier().evaluate(x, y)


def test_input_of_the_wrong_width_names_both_shapes(compiled):
    x, y = small_classification(features=5)
    with pytest.raises(ValueError, match=r"fit: each example of x has shape \(5,\) but the "
                                         r"model expects \(4,\)"):
        compiled.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match=r"predict: .*\(5,\).*\(4,\)"):
        compiled.predict(x)
    with pytest.raises(ValueError, match=r"evaluate: .*\(5,\).*\(4,\)"):
        compiled.evaluate(x, y)


def test_one_dimensional_input_suggests_adding_the_batch_axis(compiled):
    with pytest.raises(ValueError, match=r"shape \(4,\); a single example: write x\[None\]"):
        compiled.predict(np.zeros(4))


def test_non_numeric_input_is_a_type_error(compiled):
    with pytest.raises(TypeError, match="x must be a numeric array"):
        compiled.predict(np.array([["a", "b", "c", "d"]]))


def test_x_and_y_of_different_lengths_are_rejected(compiled):
    x, y = small_classification(n=10)
    with pytest.raises(ValueError, match="fit: x has 10 rows but y has 9"):
        compiled.fit(x, y[:9], verbose=0)
    with pytest.raises(ValueError, match="evaluate: x has 10 rows but y has 9"):
        compiled.evaluate(x, y[:9])
    with pytest.raises(ValueError, match="fit: validation_data: x has 10 rows but y has 9"):
        compiled.fit(x, y, validation_data=(x, y[:9]), verbose=0)


def test_empty_input_is_rejected(compiled):
    x, y = small_classification()
    with pytest.raises(ValueError, match="fit: x is empty"):
        compiled.fit(x[:0], y[:0], verbose=0)
    with pytest.raises(ValueError, match="evaluate: x is empty"):
        compiled.evaluate(x[:0], y[:0])


@pytest.mark.parametrize("split", [-0.1, 1.0, 1.5])
def test_validation_split_outside_zero_one_is_rejected(compiled, split):
    x, y = small_classification()
    with pytest.raises(ValueError, match=r"validation_split must be in \[0, 1\)"):
        compiled.fit(x, y, validation_split=split, verbose=0)


def test_validation_split_that_leaves_either_side_empty_is_rejected(compiled):
    x, y = small_classification(n=2)
    with pytest.raises(ValueError, match="leaves 0 training and 2 validation rows out of 2"):
        compiled.fit(x, y, validation_split=0.9, verbose=0)
    with pytest.raises(ValueError, match="leaves 2 training and 0 validation rows out of 2"):
        compiled.fit(x, y, validation_split=1e-17, verbose=0)


@pytest.mark.parametrize(("rows", "split", "validation_rows"),
                         [(30, 0.1, 3), (10, 0.2, 2), (10, 0.25, 3), (7, 0.5, 4)])
def test_validation_split_rounds_the_training_rows_down_like_keras(rows, split,
                                                                   validation_rows):
    x, y = small_classification(n=rows)
    model = small_classifier()
    model.compile("sgd", "cross_entropy")
    rows_trained = []
    count = LambdaCallback(on_batch_end=lambda batch, logs: rows_trained.append(logs["size"]))
    model.fit(x, y, validation_split=split, callbacks=[count], verbose=0)
    assert sum(rows_trained) == rows - validation_rows


def test_validation_split_and_validation_data_together_are_rejected(compiled):
    x, y = small_classification()
    with pytest.raises(ValueError, match="not both"):
        compiled.fit(x, y, validation_split=0.2, validation_data=(x, y), verbose=0)


def test_validation_data_must_be_a_pair_or_a_triple(compiled):
    x, y = small_classification()
    for bad in ((x,), (x, y, np.ones(len(y)), y), x):
        with pytest.raises(ValueError, match=r"validation_data must be \(x_val, y_val\) or "
                                             r"\(x_val, y_val, sample_weight_val\)"):
            compiled.fit(x, y, validation_data=bad, verbose=0)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_batch_size_must_be_a_positive_int(compiled, batch_size):
    x, y = small_classification()
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        compiled.fit(x, y, batch_size=batch_size, verbose=0)


def test_initial_epoch_beyond_epochs_is_rejected(compiled):
    x, y = small_classification()
    with pytest.raises(ValueError, match="initial_epoch=4, epochs=3"):
        compiled.fit(x, y, epochs=3, initial_epoch=4, verbose=0)


def test_constructor_rejects_bad_layers_dtype_seed_and_input_dim():
    with pytest.raises(TypeError, match=r"layers\[1\] must be a minidl Layer, got str"):
        Sequential([Dense(2), "relu"])
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
        Sequential([Dense(2)], dtype="float16")
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        Sequential([Dense(2)], seed=-1)
    with pytest.raises(ValueError, match="input_dim must be a positive int"):
        Sequential([Dense(2)], input_dim=0)
    with pytest.raises(ValueError, match=r"layers\[0\] \(Dense\).*Flatten"):
        Sequential([Dense(2)], input_dim=(2, 3))


def test_sigmoid_output_with_binary_cross_entropy_trains_on_logits_and_reports_probabilities():
    x, y = make_moons(200, noise=0.2, seed=0)
    fused = Sequential([Dense(8, activation="tanh"), Dense(1, activation="sigmoid")],
                       input_dim=2, seed=0)
    logits = Sequential([Dense(8, activation="tanh"), Dense(1)], input_dim=2, seed=0)
    for model in (fused, logits):
        model.compile("adam", "binary_cross_entropy", metrics=["accuracy"])
        model.fit(x, y, epochs=5, verbose=0)  # y of shape (N,) for a one-unit output
    assert fused.fused_output and not logits.fused_output
    np.testing.assert_array_equal(fused.get_weights()[0], logits.get_weights()[0])
    probabilities = fused.predict(x)
    assert probabilities.min() >= 0 and probabilities.max() <= 1
    # accuracy thresholds probabilities at 0.5, also when the model outputs logits
    expected = np.mean((probabilities[:, 0] > 0.5) == y)
    assert fused.evaluate(x, y)["accuracy"] == pytest.approx(expected)
    assert logits.evaluate(x, y)["accuracy"] == pytest.approx(expected)


# ---------------------------------------------------------------------------- Keras' first example


def test_keras_first_example_runs_as_a_keras_user_writes_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # from here to the end of the example, only the imports differ from Keras
    model = Sequential([Dense(units=1, input_shape=[1])])
    model.compile(optimizer='sgd', loss='mean_squared_error')
    xs = np.array([-1.0, 0.0, 1.0, 2.0, 3.0, 4.0], dtype=float)
    ys = np.array([-3.0, -1.0, 1.0, 3.0, 5.0, 7.0], dtype=float)
    model.fit(xs, ys, epochs=500)
    print(model.predict([10.0]))
    model.save('my_model.h5')
    new_model = load_model('my_model.h5')

    capsys.readouterr()  # the progress lines of 500 epochs
    # closed form: the least-squares line through the points is y = 2x - 1, so 19 at x = 10
    prediction = model.predict([10.0])
    assert prediction.shape == (1, 1) and abs(prediction[0, 0] - 19.0) < 0.1
    np.testing.assert_array_equal(new_model.predict([10.0]), prediction)
    assert (tmp_path / "my_model.h5").is_file()


@pytest.mark.parametrize("name, expected", [
    ("mean_squared_error", MeanSquaredError()), ("mse", MeanSquaredError()),
    ("MSE", MeanSquaredError()), ("mean_absolute_error", MeanAbsoluteError()),
    ("mae", MeanAbsoluteError()), ("MAE", MeanAbsoluteError()),
    ("binary_crossentropy", BinaryCrossentropy()),
    ("categorical_crossentropy", CategoricalCrossentropy()),
    ("sparse_categorical_crossentropy", SparseCategoricalCrossentropy()),
    ("cross_entropy", CrossEntropy(from_logits=True)),
    ("binary_cross_entropy", BinaryCrossEntropy(from_logits=True))])
def test_keras_and_minidl_loss_names_give_the_right_loss(name, expected):
    model = small_classifier()
    model.compile("sgd", name)
    assert type(model.loss) is type(expected)
    assert model.loss.get_config() == expected.get_config()


def test_sparse_categorical_crossentropy_trains_a_softmax_model_as_cross_entropy_does():
    x, y = small_classification()

    def train(loss):
        model = small_classifier(seed=3)
        model.compile("sgd", loss)
        model.fit(x, y, epochs=3, batch_size=5, verbose=0)
        return model

    keras_named, minidl_named = train("sparse_categorical_crossentropy"), train("cross_entropy")
    # Keras' name means probabilities in: the softmax is fused all the same, bit for bit
    assert keras_named.fused_output and minidl_named.fused_output
    assert same_weights(keras_named.get_weights(), minidl_named.get_weights())
    assert keras_named.evaluate(x, y) == minidl_named.evaluate(x, y)


# ---------------------------------------------------------------------------- 1-D x


def test_one_dimensional_x_of_a_one_feature_model_means_one_value_per_row():
    xs = np.linspace(-1.0, 1.0, 9)
    ys = 3.0 * xs - 2.0
    models = []
    for x in (xs, xs[:, None]):
        model = Sequential([Dense(4, activation="tanh"), Dense(1)], input_dim=1, seed=0)
        model.compile("adam", "mse")
        model.fit(x, ys, epochs=3, batch_size=4, verbose=0)
        models.append(model)
    flat, column = models
    assert same_weights(flat.get_weights(), column.get_weights())
    assert flat.evaluate(xs, ys) == column.evaluate(xs[:, None], ys)
    assert flat.predict(xs).shape == (9, 1)
    np.testing.assert_array_equal(flat.predict(xs), flat.predict(xs[:, None]))


@pytest.mark.parametrize("call", ["fit", "evaluate", "predict"])
def test_one_dimensional_x_of_a_several_feature_model_suggests_the_batch_axis(call):
    model = Sequential([Dense(1)], input_dim=3)
    model.compile("sgd", "mse")
    arguments = {"fit": (np.zeros(3), np.zeros(1)), "evaluate": (np.zeros(3), np.zeros(1)),
                 "predict": (np.zeros(3),)}[call]
    with pytest.raises(ValueError, match=rf"{call}: x must have shape \(batch, features...\), "
                                         r"got shape \(3,\); a single example: write x\[None\]$"):
        getattr(model, call)(*arguments)


def test_one_dimensional_x_that_fits_no_reading_names_the_expected_example_shape():
    model = Sequential([Dense(1)], input_dim=3)
    with pytest.raises(ValueError, match=r"got shape \(5,\); the model expects examples of "
                                         r"shape \(3,\)$"):
        model.predict(np.zeros(5))


def test_one_dimensional_x_of_a_model_of_unknown_width_suggests_both_readings():
    model = Sequential([Dense(1)])
    with pytest.raises(ValueError, match=r"got shape \(5,\); for rows of one feature each write "
                                         r"x\[:, None\], for a single example x\[None\]"):
        model.predict(np.zeros(5))
    assert not model.built


# ---------------------------------------------------------------------------- declared input shape


@pytest.mark.parametrize("declaration", [{"input_shape": [1]}, {"input_dim": 1},
                                         {"input_shape": 1}],
                         ids=["input_shape=[1]", "input_dim=1", "input_shape=1"])
def test_a_first_layer_that_declares_its_input_builds_the_model_at_construction(declaration):
    model = Sequential([Dense(1, **declaration), Dense(2)], seed=0)
    assert model.built and model.input_shape == (1,) and model.output_shape == (2,)
    assert [p.shape for p in model.parameters()] == [(1, 1), (1,), (1, 2), (2,)]
    model.compile(SGD(model.parameters(), lr=0.1), "mse")  # an optimizer before any data


def test_flatten_with_input_shape_builds_the_model_for_that_shape():
    model = Sequential([Flatten(input_shape=(2, 3)), Dense(2)])
    assert model.built and model.input_shape == (2, 3) and model.output_shape == (2,)
    assert [w.shape for w in model.get_weights()] == [(6, 2), (2,)]
    assert model.predict(np.ones((4, 2, 3))).shape == (4, 2)


def test_dense_input_shape_with_two_entries_suggests_flatten():
    with pytest.raises(ValueError, match=r"input_shape must have one entry.*got \[2, 3\]; put "
                                         r"a Flatten\(input_shape=...\) layer first"):
        Dense(1, input_shape=[2, 3])


def test_input_dim_that_contradicts_the_declared_input_shape_is_rejected():
    with pytest.raises(ValueError, match=r"input_dim=3 but the first layer expects inputs of "
                                         r"shape \[2\]; give one of them"):
        Sequential([Dense(1, input_shape=[2])], input_dim=3)
    with pytest.raises(ValueError, match=r"input_dim=3 and input_shape=\[2\] disagree"):
        Dense(1, input_dim=3, input_shape=[2])
    agreeing = Sequential([Dense(1, input_shape=[2])], input_dim=2)
    assert agreeing.input_shape == (2,)


# ---------------------------------------------------------------------------- layer state


def normalized_regression(seed=0):
    """A Normalization layer adapted to raw features of very different scales, then Dense."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(40, 3)) * [1.0, 100.0, 0.01] + [5.0, -300.0, 0.0]
    y = x @ [1.0, 0.01, 100.0]
    normalization = Normalization()
    normalization.adapt(x)
    model = Sequential([normalization, Dense(4, activation="tanh"), Dense(1)], input_dim=3,
                       seed=seed)
    model.compile("adam", "mse")
    return model, x, y


def test_training_leaves_the_normalization_statistics_alone():
    model, x, y = normalized_regression()
    before = {name: array.copy() for name, array in model.layers[0].state().items()}
    model.fit(x, y, epochs=3, verbose=0)
    for name, array in model.layers[0].state().items():
        np.testing.assert_array_equal(array, before[name])
    np.testing.assert_allclose(before["mean"], x.mean(axis=0), rtol=1e-5)


def test_model_file_holds_the_normalization_statistics_and_load_model_restores_them(tmp_path):
    model, x, y = normalized_regression()
    model.fit(x, y, epochs=2, verbose=0)
    model.save(tmp_path / "model.npz")
    with np.load(tmp_path / "model.npz") as file:
        np.testing.assert_array_equal(file["layers.0.mean"], model.layers[0].state()["mean"])
        np.testing.assert_array_equal(file["layers.0.variance"],
                                      model.layers[0].state()["variance"])
        np.testing.assert_allclose(file["layers.0.variance"], x.var(axis=0), rtol=1e-5)
    loaded = load_model(tmp_path / "model.npz")
    # raw data in: the scaling travelled with the model
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    np.testing.assert_array_equal(loaded.layers[0].state()["mean"],
                                  model.layers[0].state()["mean"])


class ShiftedScale(Layer):
    """y = (x - shift) * scale: a trained ``scale`` and an untrained ``shift``, the one kind
    of layer (BatchNorm's) that has both parameters and state."""

    def build(self, input_shape, *, dtype="float32", rng=None):
        self.scale = Parameter(np.full(input_shape, 2.0, dtype=dtype), name="scale")
        self.shift = np.full(input_shape, 7.0, dtype=dtype)
        self.built = True

    def parameters(self):
        return [self.scale]

    def state(self):
        return {"shift": self.shift}

    def forward(self, x, training=False):
        self._centred = x - self.shift
        return self._centred * self.scale.data

    def backward(self, grad_y):
        self.scale.grad[...] = np.sum(grad_y * self._centred, axis=0)
        return grad_y * self.scale.data


def test_get_weights_lists_parameters_then_state_layer_by_layer():
    model = Sequential([Dense(3), Normalization(), ShiftedScale(), Dense(1)], input_dim=2,
                       seed=0)
    model.layers[1].adapt(np.array([[1.0, 2.0, 3.0], [3.0, 6.0, 3.0]]))
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(2, 3), (3,), (3,), (3,), (3,), (3,), (3, 1), (1,)]
    kernel, bias = model.layers[0].parameters()
    np.testing.assert_array_equal(weights[0], kernel.data)
    np.testing.assert_array_equal(weights[1], bias.data)
    np.testing.assert_array_equal(weights[2], [2.0, 4.0, 3.0])  # Normalization's mean
    np.testing.assert_array_equal(weights[3], [1.0, 4.0, 0.0])  # and variance
    np.testing.assert_array_equal(weights[4], [2.0, 2.0, 2.0])  # the parameter, scale,
    np.testing.assert_array_equal(weights[5], [7.0, 7.0, 7.0])  # before the state, shift


def test_set_weights_round_trips_the_normalization_state_in_place():
    model, x, _ = normalized_regression(seed=0)
    other = Sequential([Normalization(), Dense(4, activation="tanh"), Dense(1)], input_dim=3,
                       seed=1)
    mean_array = other.layers[0].state()["mean"]
    other.set_weights(model.get_weights())
    assert other.layers[0].state()["mean"] is mean_array
    assert same_weights(other.get_weights(), model.get_weights())
    np.testing.assert_array_equal(other.predict(x), model.predict(x))


def test_summary_counts_the_normalization_statistics_as_non_trainable(capsys):
    model = Sequential([Normalization(), Dense(2)], input_dim=3)
    text = model.summary()
    lines = text.splitlines()
    assert next(line for line in lines if "Normalization" in line).endswith(" 6")
    # 3 means and 3 variances beside a kernel (3, 2) and a bias (2,)
    assert "Total params: 14" in text
    assert "Trainable params: 8" in lines and "Non-trainable params: 6" in lines
    assert "Non-trainable" not in Sequential([Dense(2)], input_dim=3).summary()


# ---------------------------------------------------------------------------- paths


@pytest.mark.parametrize("trailing_separator", [False, True], ids=["folder", "folder/"])
def test_a_folder_path_saves_and_loads_folder_model_npz(tmp_path, trailing_separator):
    model = Sequential([Dense(2)], input_dim=3, seed=0)
    folder = tmp_path / "export" / "linear" / "1"
    model.save(f"{folder}/" if trailing_separator else folder)
    assert sorted(path.name for path in folder.iterdir()) == ["model.npz"]
    x = np.random.default_rng(0).normal(size=(4, 3))
    for path in (folder, f"{folder}/", folder / "model.npz"):
        np.testing.assert_array_equal(load_model(path).predict(x), model.predict(x))


def test_a_file_name_with_a_suffix_is_the_file_written(tmp_path):
    model = Sequential([Dense(2)], input_dim=3, seed=0)
    model.save(tmp_path / "m.h5")
    assert (tmp_path / "m.h5").is_file() and not (tmp_path / "m.h5" / "model.npz").exists()
    assert same_weights(load_model(tmp_path / "m.h5").get_weights(), model.get_weights())


def test_an_existing_file_without_a_suffix_is_overwritten_as_a_file(tmp_path):
    model = Sequential([Dense(2)], input_dim=3, seed=0)
    model.save(tmp_path / "checkpoint" / "model.npz")
    (tmp_path / "checkpoint" / "model.npz").rename(tmp_path / "latest")
    model.save(tmp_path / "latest")  # an existing file is a file, suffix or not
    assert (tmp_path / "latest").is_file()
    assert same_weights(load_model(tmp_path / "latest").get_weights(), model.get_weights())


def test_a_layer_of_one_model_is_refused_by_another():
    shared = Dense(4)
    first = Sequential([shared, Dense(1)], input_dim=3)
    with pytest.raises(ValueError, match=r"layers\[1\] \(Dense\) already belongs to another "
                                         r"model; give each model layers of its own"):
        Sequential([Dense(3), shared], input_dim=2)
    assert first.layers[0] is shared  # the first model is untouched
    del first
    import gc

    gc.collect()
    Sequential([shared], input_dim=3)  # once that model is gone, the layer is free


def test_set_weights_refuses_impossible_state_and_keeps_the_old_weights():
    model = Sequential([Normalization(), Dense(1)], input_dim=2)
    model.layers[0].adapt(np.array([[0.0, 1.0], [2.0, 5.0]]))
    before = model.get_weights()
    weights = model.get_weights()
    weights[1][:] = -1.0  # the variance
    with pytest.raises(ValueError, match=r"layers\[0\] \(Normalization\): the mean must be "
                                         r"finite and the variance finite and >= 0"):
        model.set_weights(weights)
    for kept, old in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(kept, old)


@pytest.mark.parametrize("first", [
    lambda: MaxPooling2D(input_shape=(4, 4, 2)), lambda: Dropout(0.5, input_shape=(4, 4, 2)),
    lambda: ReLU(input_shape=(4, 4, 2)), lambda: GlobalAveragePooling2D(input_shape=(4, 4, 2))])
def test_any_first_layer_may_declare_keras_input_shape(first):
    model = Sequential([first(), Flatten(), Dense(1)])
    assert model.built and model.input_shape == (4, 4, 2)


def test_a_deep_copy_trains_as_the_original_and_apart_from_it():
    # scikit-learn's clone deep-copies a model given to an estimator
    import copy

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 4)), np.arange(60) % 3
    model = Sequential([Dense(8, activation="relu"), Dense(3)], input_dim=4, seed=0)
    model.compile("adam", "cross_entropy")
    model.fit(x, y, epochs=2, verbose=0)
    copied = copy.deepcopy(model)
    before = model.get_weights()
    copied.fit(x, y, epochs=3, verbose=0)
    # the original did not move; the copy did, and as the original would have
    for kept, now in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(kept, now)
    model.fit(x, y, epochs=3, verbose=0)
    for trained, copy_trained in zip(model.get_weights(), copied.get_weights(), strict=True):
        np.testing.assert_array_equal(trained, copy_trained)
    assert not np.array_equal(before[0], copied.get_weights()[0])
    np.testing.assert_array_equal(copied.optimizer.state[0]["exp_avg"],
                                  model.optimizer.state[0]["exp_avg"])
