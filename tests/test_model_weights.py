"""Weights in fit and evaluate (Keras' sample_weight, class_weight, weighted validation data)
and the training loop's seams for callbacks (stop_training after a batch, _initial_epoch,
a non-finite loss seen by the callbacks before fit gives up).

Oracles: a closed form of one full-batch gradient step, scikit-learn's weighted accuracy,
repeated rows, and Keras itself when it is installed.
"""

import math
import os

import numpy as np
import pytest
from sklearn.metrics import accuracy_score

from minidl import SGD, Dense, LambdaCallback, Sequential


def data(n=12, features=3, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    return x, rng.integers(0, classes, n), rng.uniform(0.1, 2.0, n)


def linear_regression(seed=0):
    model = Sequential([Dense(1)], input_dim=3, seed=seed, dtype="float64")
    model.compile(optimizer=SGD(model.parameters(), lr=0.1), loss="mean_squared_error")
    return model


def classifier(seed=0):
    model = Sequential([Dense(3, activation="softmax")], input_dim=3, seed=seed, dtype="float64")
    model.compile(optimizer=SGD(model.parameters(), lr=0.1),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_one_weighted_full_batch_step_is_the_closed_form():
    # Keras' sum_over_batch_size: L = sum_i w_i (x_i W + b - y_i)^2 / N, one SGD step on it
    x, _, w = data()
    y = np.random.default_rng(1).normal(size=(12, 1))
    model = linear_regression()
    kernel, bias = (array.copy() for array in model.get_weights())
    model.fit(x, y, batch_size=12, shuffle=False, verbose=0, sample_weight=w)
    residual = x @ kernel + bias - y
    gradient = 2 * w[:, None] * residual / len(x)
    expected_kernel = kernel - 0.1 * x.T @ gradient
    expected_bias = bias - 0.1 * gradient.sum(axis=0)
    new_kernel, new_bias = model.get_weights()
    np.testing.assert_allclose(new_kernel, expected_kernel, rtol=1e-12)
    np.testing.assert_allclose(new_bias, expected_bias, rtol=1e-12)


def test_weights_of_one_train_exactly_as_no_weights():
    # shuffled: the weighted batches hold the rows the unweighted ones do
    x, y, _ = data()
    plain, weighted = classifier(), classifier()
    plain.fit(x, y, epochs=3, batch_size=5, verbose=0)
    weighted.fit(x, y, epochs=3, batch_size=5, verbose=0, sample_weight=np.ones(len(x)))
    for first, second in zip(plain.get_weights(), weighted.get_weights(), strict=True):
        np.testing.assert_allclose(first, second, rtol=1e-13)


def test_class_weight_is_sample_weight_from_the_labels():
    x, y, _ = data()
    class_weight = {0: 0.5, 1: 2.0}  # class 2 missing: weight 1, as Keras
    by_class, by_row = classifier(), classifier()
    by_class.fit(x, y, epochs=2, batch_size=4, verbose=0, class_weight=class_weight)
    rows = np.array([class_weight.get(label, 1.0) for label in y])
    by_row.fit(x, y, epochs=2, batch_size=4, verbose=0, sample_weight=rows)
    for first, second in zip(by_class.get_weights(), by_row.get_weights(), strict=True):
        np.testing.assert_allclose(first, second, rtol=1e-13)


def test_class_weight_reads_one_hot_rows_by_their_argmax():
    x, y, _ = data()
    sparse, one_hot = classifier(), classifier()
    one_hot.compile(optimizer=SGD(one_hot.parameters(), lr=0.1),
                    loss="categorical_crossentropy")
    sparse.fit(x, y, epochs=1, batch_size=4, verbose=0, class_weight={1: 3.0})
    one_hot.fit(x, np.eye(3)[y], epochs=1, batch_size=4, verbose=0, class_weight={1: 3.0})
    np.testing.assert_allclose(sparse.get_weights()[0], one_hot.get_weights()[0], rtol=1e-12)


def test_evaluate_weighs_the_loss_and_the_metrics():
    x, y, w = data(n=40)
    model = classifier()
    plain = model.evaluate(x, y)
    weighted = model.evaluate(x, y, sample_weight=w, batch_size=7)
    probabilities = model.predict(x)
    losses = -np.log(probabilities[np.arange(len(y)), y])
    assert math.isclose(weighted["loss"], float(np.sum(w * losses) / len(y)), rel_tol=1e-12)
    assert math.isclose(plain["loss"], float(losses.mean()), rel_tol=1e-12)
    assert math.isclose(weighted["accuracy"],
                        accuracy_score(y, probabilities.argmax(axis=1), sample_weight=w),
                        rel_tol=1e-12)


def test_validation_data_may_carry_weights_and_a_split_keeps_them():
    x, y, w = data(n=20)
    model = classifier()
    history = model.fit(x[:15], y[:15], epochs=1, verbose=0,
                        validation_data=(x[15:], y[15:], w[15:]))
    assert history.history["val_loss"][0] == model.evaluate(x[15:], y[15:],
                                                            sample_weight=w[15:])["loss"]
    split = classifier()
    history = split.fit(x, y, epochs=1, verbose=0, sample_weight=w, validation_split=0.25)
    assert history.history["val_loss"][0] == split.evaluate(x[15:], y[15:],
                                                            sample_weight=w[15:])["loss"]


@pytest.mark.parametrize("weights, problem", [
    (np.ones(5), r"one number per row, shape \(12,\)"),
    (np.ones((12, 2)), r"one number per row"),
    (np.array(["a"] * 12), r"one number per row"),
    (np.full(12, np.nan), "finite and non-negative"),
    (-np.ones(12), "finite and non-negative"),
])
def test_bad_sample_weights_are_named(weights, problem):
    x, y, _ = data()
    model = classifier()
    with pytest.raises(ValueError, match=problem):
        model.fit(x, y, verbose=0, sample_weight=weights)
    with pytest.raises(ValueError, match=problem):
        model.evaluate(x, y, sample_weight=weights)


def test_class_weight_and_sample_weight_together_are_refused():
    x, y, w = data()
    with pytest.raises(ValueError, match="sample_weight or class_weight, not both"):
        classifier().fit(x, y, verbose=0, sample_weight=w, class_weight={0: 2.0})


def test_a_metric_without_sample_weight_is_named_when_the_data_has_weights():
    x, y, w = data()
    model = classifier()

    def agreement(y_true, y_pred):
        return float(np.mean(y_pred.argmax(axis=1) == y_true))

    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=[agreement])
    model.fit(x, y, verbose=0)  # no weights: fine
    with pytest.raises(TypeError, match="metric 'agreement' takes no sample_weight"):
        model.fit(x, y, verbose=0, sample_weight=w)


# ---------------------------------------------------------------------------- the loop's seams


def test_stop_training_ends_the_epoch_after_that_batch():
    x, y, _ = data(n=20)
    model = classifier()
    seen = []

    def stop_at_second(batch, logs):
        seen.append(batch)
        if batch == 1:
            model.stop_training = True

    history = model.fit(x, y, epochs=5, batch_size=4, verbose=0,
                        callbacks=[LambdaCallback(on_batch_end=stop_at_second)])
    assert seen == [0, 1]
    assert len(history.history["loss"]) == 1  # the epoch still ends, with its logs
    assert model.epoch == 1


def test_a_callback_may_choose_the_first_epoch():
    x, y, _ = data()
    model = classifier()
    epochs = []

    def resume(logs):
        model._initial_epoch = 3

    model.fit(x, y, epochs=5, verbose=0, callbacks=[LambdaCallback(
        on_train_begin=resume, on_epoch_begin=lambda epoch, logs: epochs.append(epoch))])
    assert epochs == [3, 4]


def test_every_batch_begins_before_it_ends():
    x, y, _ = data(n=10)
    events = []
    classifier().fit(x, y, epochs=1, batch_size=4, verbose=0, callbacks=[LambdaCallback(
        on_batch_begin=lambda batch, logs: events.append(("begin", batch)),
        on_batch_end=lambda batch, logs: events.append(("end", batch)))])
    assert events == [("begin", 0), ("end", 0), ("begin", 1), ("end", 1), ("begin", 2),
                      ("end", 2)]


def test_a_non_finite_loss_is_seen_by_the_callbacks_and_may_stop_training_quietly():
    x, y, _ = data()
    x[5] = np.inf  # the batch holding row 5 has a non-finite loss
    losses = []

    def stop_on_nan(batch, logs):
        losses.append(logs["loss"])
        if not math.isfinite(logs["loss"]):
            model.stop_training = True

    model = classifier()
    before = [array.copy() for array in model.get_weights()]
    history = model.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0,
                        callbacks=[LambdaCallback(on_batch_end=stop_on_nan)])
    assert math.isfinite(losses[0]) and not math.isfinite(losses[1]) and len(losses) == 2
    # as in Keras, the epoch ends there, with the non-finite loss in its logs
    assert len(history.history["loss"]) == 1 and not math.isfinite(history.history["loss"][0])
    after = model.get_weights()
    assert not np.array_equal(after[0], before[0])  # the first batch stepped
    assert all(np.all(np.isfinite(array)) for array in after)  # the second did not
    with pytest.raises(FloatingPointError, match="epoch 1/2, batch 2"):
        classifier().fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0)


# ---------------------------------------------------------------------------- Keras itself


@pytest.mark.filterwarnings("ignore::DeprecationWarning:keras")  # Keras' own, under NumPy 2
def test_sample_weights_train_as_in_keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    x, y, w = data(n=16)
    model = classifier()
    peer = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, activation="softmax")])
    peer.set_weights(model.get_weights())
    peer.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1),
                 loss="sparse_categorical_crossentropy")
    peer.fit(x, y, epochs=3, batch_size=5, shuffle=False, verbose=0, sample_weight=w)
    model.fit(x, y, epochs=3, batch_size=5, shuffle=False, verbose=0, sample_weight=w)
    for ours, theirs in zip(model.get_weights(), peer.get_weights(), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    ours = model.evaluate(x, y, sample_weight=w)["loss"]
    theirs = peer.evaluate(x, y, sample_weight=w, verbose=0)
    assert math.isclose(ours, theirs, rel_tol=1e-5)


# ---------------------------------------------------------------------------- targets as Keras


def test_sparse_labels_of_shape_n_by_1_train_as_labels_of_shape_n():
    x, y, w = data()
    flat, column = classifier(), classifier()
    flat.fit(x, y, epochs=2, batch_size=5, verbose=0, sample_weight=w)
    column.fit(x, y[:, None], epochs=2, batch_size=5, verbose=0, sample_weight=w)
    for first, second in zip(flat.get_weights(), column.get_weights(), strict=True):
        np.testing.assert_array_equal(first, second)
    assert flat.evaluate(x, y) == column.evaluate(x, y[:, None])


def test_a_per_pixel_softmax_head_trains_on_label_images():
    # a segmentation head: Conv2D logits, a softmax over the channels of every pixel,
    # labels of shape (N, H, W); the softmax is fused with the loss as for a Dense head
    from minidl import Conv2D, Softmax

    rng = np.random.default_rng(0)
    images = rng.normal(size=(16, 6, 6, 1))
    labels = (images[..., 0] > 0).astype(np.int64)  # a pixel's class: the sign of its value
    model = Sequential([Conv2D(2, 1), Softmax()], input_dim=(6, 6, 1), seed=0, dtype="float64")
    model.compile(optimizer=SGD(model.parameters(), lr=0.5),
                  loss="sparse_categorical_crossentropy")
    assert model.fused_output
    before = model.evaluate(images, labels)["loss"]
    model.fit(images, labels, epochs=20, batch_size=8, verbose=0)
    after = model.evaluate(images, labels)["loss"]
    assert after < before / 2
    probabilities = model.predict(images)
    assert probabilities.shape == (16, 6, 6, 2)
    assert np.mean(probabilities.argmax(axis=-1) == labels) > 0.95
    with_channel = model.evaluate(images, labels[..., None])["loss"]
    assert math.isclose(with_channel, after, rel_tol=1e-12)
