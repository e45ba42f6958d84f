"""Saving and loading models: round trips, optimizer state, exact resume, checkpoints, bad files.

File-format corruption (truncation, flipped bytes, pickles, crashes mid-write) is tested
with the format itself in test_io.py; this file tests what ``model.py`` puts in it.
"""

import json
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import minidl.layers
from minidl import (
    L1,
    L2,
    SGD,
    Adagrad,
    Adam,
    AdamW,
    CrossEntropy,
    Dense,
    Dropout,
    Flatten,
    LambdaCallback,
    Layer,
    LeakyReLU,
    Linear,
    ModelCheckpoint,
    ModelFormatError,
    Normalization,
    Parameter,
    ReLU,
    RMSprop,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
    io,
    load_model,
)
from minidl.layers import LAYERS, layer_to_config, register_layer
from minidl.regularizers import L1L2

OPTIMIZERS = {
    "sgd_momentum": lambda params: SGD(params, lr=0.05, momentum=0.9, nesterov=True),
    "adagrad": lambda params: Adagrad(params, lr=0.05, lr_decay=0.01),
    "adam_amsgrad": lambda params: Adam(params, lr=0.01, amsgrad=True),
    "adamw": lambda params: AdamW(params, lr=0.01, weight_decay=0.05),
    "rmsprop_centered_momentum": lambda params: RMSprop(params, lr=0.01, momentum=0.9,
                                                        centered=True),
}


def same_weights(first, second):
    return len(first) == len(second) and all(
        np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def image_data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 2, 3)).astype(np.float32), rng.integers(0, 3, n)


def every_layer_model(make_optimizer=OPTIMIZERS["adam_amsgrad"], dtype="float32"):
    """A model with every layer type, regularizers and initializers, compiled."""
    model = Sequential([
        Flatten(),
        Dense(8, activation="tanh", kernel_initializer="he_normal", bias_initializer="ones",
              kernel_regularizer=L2(0.01), bias_regularizer=L1(0.001)),
        LeakyReLU(0.2),
        Dropout(0.25, seed=5),
        Dense(6, kernel_regularizer=L1L2(l1=0.001, l2=0.002), kernel_initializer="he_uniform"),
        ReLU(),
        Dense(5, activation="leaky_relu", kernel_initializer="glorot_normal"),
        Dropout(0.1),
        Tanh(),
        Dense(4, activation="sigmoid", use_bias=False),
        Sigmoid(),
        Dense(3, activation="linear"),
        Linear(),
        Softmax(),
    ], input_dim=(2, 3), seed=3, dtype=dtype)
    model.compile(make_optimizer(model.parameters()), CrossEntropy(label_smoothing=0.05),
                  metrics=["accuracy", "f1"])
    return model


def trained_every_layer_model(**kwargs):
    model = every_layer_model(**kwargs)
    x, y = image_data()
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    return model


def assert_optimizer_states_equal(first, second):
    assert type(first) is type(second)
    saved, loaded = first.state_dict(), second.state_dict()
    assert saved["config"] == loaded["config"]
    assert len(saved["state"]) == len(loaded["state"])
    for saved_state, loaded_state in zip(saved["state"], loaded["state"], strict=True):
        assert saved_state.keys() == loaded_state.keys() and saved_state
        for key, value in saved_state.items():
            if isinstance(value, np.ndarray):
                assert loaded_state[key].dtype == value.dtype
                np.testing.assert_array_equal(loaded_state[key], value)
            else:
                assert loaded_state[key] == value


# ---------------------------------------------------------------------------- round trips


def test_round_trip_gives_bit_identical_predictions_and_the_same_architecture(tmp_path):
    model = trained_every_layer_model()
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = load_model(path)
    x, y = image_data(n=10, seed=1)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert [layer_to_config(layer) for layer in loaded.layers] == [
        layer_to_config(layer) for layer in model.layers]
    assert (loaded.input_shape, loaded.output_shape, loaded.dtype) == ((2, 3), (3,), np.float32)
    assert same_weights(loaded.get_weights(), model.get_weights())
    assert loaded.metrics == ["accuracy", "f1"]
    assert loaded.loss.get_config() == {"from_logits": True, "label_smoothing": 0.05}
    # the penalties came back with the layers: the loss, penalties included, is the same
    assert loaded.evaluate(x, y) == model.evaluate(x, y)
    assert loaded.layers[1].kernel.regularizer.get_config() == {"l2": 0.01}
    assert loaded.epoch == 2


def test_float64_model_round_trips_in_float64(tmp_path):
    model = trained_every_layer_model(dtype="float64")
    model.save(tmp_path / "model.npz")
    loaded = load_model(tmp_path / "model.npz")
    assert loaded.dtype == np.float64
    assert all(w.dtype == np.float64 for w in loaded.get_weights())
    x, _ = image_data(n=5)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizers_state_survives_save_and_load(tmp_path, name):
    model = trained_every_layer_model(make_optimizer=OPTIMIZERS[name])
    model.save(tmp_path / "model.npz")
    loaded = load_model(tmp_path / "model.npz")
    assert_optimizer_states_equal(model.optimizer, loaded.optimizer)
    assert loaded.optimizer.params == loaded.parameters()


def test_a_model_saved_without_the_optimizer_loads_compiled_with_a_fresh_one(tmp_path):
    model = trained_every_layer_model()
    model.save(tmp_path / "model.npz", include_optimizer=False)
    with np.load(tmp_path / "model.npz", allow_pickle=False) as archive:
        assert not any(key.startswith("optimizer.") for key in archive.files)
    loaded = load_model(tmp_path / "model.npz")
    assert isinstance(loaded.optimizer, Adam) and loaded.optimizer.amsgrad
    assert all(state == {} for state in loaded.optimizer.state)
    assert loaded.epoch == 0
    x, _ = image_data(n=5)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_an_uncompiled_model_round_trips(tmp_path):
    model = Sequential([Dense(4, activation="relu"), Dense(2)], input_dim=3, seed=0)
    model.save(tmp_path / "model.npz")
    loaded = load_model(tmp_path / "model.npz")
    assert loaded.loss is None and loaded.optimizer is None
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_numpy_opens_the_file_without_pickle_under_readable_keys(tmp_path):
    model = trained_every_layer_model()
    model.save(tmp_path / "model.npz")
    with np.load(tmp_path / "model.npz", allow_pickle=False) as archive:
        keys = set(archive.files)
        assert {"__minidl__", "layers.1.kernel", "layers.1.bias", "layers.9.kernel",
                "optimizer.state.0.exp_avg", "optimizer.state.0.max_exp_avg_sq"} <= keys
        assert "layers.9.bias" not in keys  # Dense(use_bias=False)
        np.testing.assert_array_equal(archive["layers.1.kernel"], model.layers[1].kernel.data)
        np.testing.assert_array_equal(archive["optimizer.state.0.exp_avg"],
                                      model.optimizer.state[0]["exp_avg"])
        document = json.loads(archive["__minidl__"].tobytes().decode("utf-8"))
    assert document["format"] == "minidl.npz"
    assert document["model"]["class_name"] == "Sequential"
    assert document["model"]["config"]["input_dim"] == [2, 3]
    assert document["model"]["config"]["layers"][3] == {
        "class_name": "Dropout", "config": {"rate": 0.25, "seed": 5}}
    assert document["compile"]["optimizer"]["class_name"] == "Adam"
    assert document["training"]["epoch"] == 2
    assert set(document["arrays"]) == keys - {"__minidl__"}
    assert all(len(entry["sha256"]) == 64 for entry in document["arrays"].values())


def test_file_of_a_small_model_holds_exactly_its_weights_and_adam_state(tmp_path):
    model = Sequential([Dense(2, activation="relu"), Dense(1)], input_dim=3, seed=0)
    model.compile("adam", "mse")
    model.fit(np.ones((4, 3)), np.ones((4, 1)), verbose=0)
    model.save(tmp_path / "model.npz")
    with np.load(tmp_path / "model.npz", allow_pickle=False) as archive:
        assert sorted(archive.files) == sorted(
            ["__minidl__", "layers.0.kernel", "layers.0.bias", "layers.1.kernel", "layers.1.bias"]
            + [f"optimizer.state.{index}.{key}" for index in range(4)
               for key in ("exp_avg", "exp_avg_sq")])
        assert archive["__minidl__"].dtype == np.uint8
        np.testing.assert_array_equal(archive["layers.0.kernel"], model.get_weights()[0])


def test_save_weights_and_load_weights_move_only_the_weights(tmp_path):
    model = trained_every_layer_model()
    model.save_weights(tmp_path / "weights.npz")
    with np.load(tmp_path / "weights.npz", allow_pickle=False) as archive:
        assert not any(key.startswith("optimizer.") for key in archive.files)
    fresh = every_layer_model()
    fresh_state = fresh.optimizer.state_dict()
    fresh.load_weights(tmp_path / "weights.npz")
    assert same_weights(fresh.get_weights(), model.get_weights())
    x, _ = image_data(n=5)
    np.testing.assert_array_equal(fresh.predict(x), model.predict(x))
    assert fresh.optimizer.state_dict()["state"] == fresh_state["state"]
    uncompiled = load_model(tmp_path / "weights.npz")
    assert uncompiled.loss is None
    np.testing.assert_array_equal(uncompiled.predict(x), model.predict(x))


def test_load_weights_reads_a_full_save_too(tmp_path):
    model = trained_every_layer_model()
    model.save(tmp_path / "model.npz")
    fresh = every_layer_model()
    fresh.load_weights(tmp_path / "model.npz")
    assert same_weights(fresh.get_weights(), model.get_weights())


def test_load_weights_into_another_architecture_names_the_array(tmp_path):
    Sequential([Dense(4), Dense(2)], input_dim=3).save_weights(tmp_path / "weights.npz")
    other = Sequential([Dense(5), Dense(2)], input_dim=3)
    with pytest.raises(ModelFormatError, match=r"'layers.0.kernel' has shape \(3, 4\).*"
                                               r"expects shape \(3, 5\)"):
        other.load_weights(tmp_path / "weights.npz")
    with pytest.raises(ValueError, match="build the model first"):
        Sequential([Dense(4), Dense(2)]).load_weights(tmp_path / "weights.npz")


def test_save_needs_a_built_model_and_named_metrics(tmp_path):
    with pytest.raises(ValueError, match="not built yet"):
        Sequential([Dense(2)]).save(tmp_path / "model.npz")
    model = Sequential([Dense(2)], input_dim=2)

    def my_metric(y_true, y_pred):
        return 0.0

    model.compile("sgd", "mse", metrics=[my_metric])
    with pytest.raises(ValueError, match=r"metrics \['my_metric'\] are functions"):
        model.save(tmp_path / "model.npz")
    assert not (tmp_path / "model.npz").exists()


def test_load_model_of_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nothing.npz")


# ---------------------------------------------------------------------------- exact resume


def resumable_model(make_optimizer):
    model = Sequential([Dense(8, activation="relu"), Dropout(0.3), Dense(3, activation="softmax")],
                       input_dim=4, seed=11)
    model.compile(make_optimizer(model.parameters()), "cross_entropy", metrics=["accuracy"])
    return model


def resume_data():
    rng = np.random.default_rng(4)
    return rng.normal(size=(30, 4)).astype(np.float32), rng.integers(0, 3, 30)


FIT = {"batch_size": 8, "shuffle": True, "validation_split": 0.2, "verbose": 0}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_resume_from_a_checkpoint_gives_the_weights_of_the_uninterrupted_run(tmp_path, name):
    x, y = resume_data()
    (tmp_path / "ckpt").mkdir()
    uninterrupted = resumable_model(OPTIMIZERS[name])
    checkpoint = ModelCheckpoint(tmp_path / "ckpt" / "epoch{epoch}.npz")
    uninterrupted.fit(x, y, epochs=6, callbacks=[checkpoint], **FIT)
    assert sorted(os.listdir(tmp_path / "ckpt")) == [f"epoch{k}.npz" for k in range(1, 7)]

    resumed = load_model(tmp_path / "ckpt" / "epoch3.npz")
    assert resumed.epoch == 3
    history = resumed.fit(x, y, epochs=6, initial_epoch=3, **FIT)
    assert history.epoch == [3, 4, 5]
    assert same_weights(resumed.get_weights(), uninterrupted.get_weights())
    assert_optimizer_states_equal(resumed.optimizer, uninterrupted.optimizer)

    stopped = resumable_model(OPTIMIZERS[name])

    def stop_after_epoch_2(epoch, logs):
        stopped.stop_training = epoch == 2

    stopped.fit(x, y, epochs=6, callbacks=[LambdaCallback(on_epoch_end=stop_after_epoch_2)],
                **FIT)
    assert stopped.epoch == 3
    stopped.fit(x, y, epochs=6, initial_epoch=stopped.epoch, **FIT)
    assert same_weights(stopped.get_weights(), uninterrupted.get_weights())


# ---------------------------------------------------------------------------- ModelCheckpoint


def test_save_best_only_writes_only_epochs_that_improve_the_monitored_value(tmp_path):
    x, y = resume_data()
    model = resumable_model(OPTIMIZERS["sgd_momentum"])
    checkpoint = ModelCheckpoint(tmp_path / "best-{epoch:02d}-{val_loss:.4f}.npz",
                                 monitor="val_loss", save_best_only=True)
    history = model.fit(x, y, epochs=8, callbacks=[checkpoint], **FIT)
    val_losses = history.history["val_loss"]
    improving = [epoch for epoch, value in enumerate(val_losses)
                 if value < min(val_losses[:epoch], default=np.inf)]
    assert 0 < len(improving) < len(val_losses)  # the data makes the test meaningful
    expected = sorted(f"best-{epoch + 1:02d}-{val_losses[epoch]:.4f}.npz"
                      for epoch in improving)
    assert sorted(os.listdir(tmp_path)) == expected


def test_save_best_only_keeps_the_best_weights_in_one_file(tmp_path):
    x, y = resume_data()
    model = resumable_model(OPTIMIZERS["sgd_momentum"])
    weights = []
    record = LambdaCallback(on_epoch_end=lambda epoch, logs: weights.append(model.get_weights()))
    checkpoint = ModelCheckpoint(tmp_path / "best.npz", monitor="val_accuracy",
                                 save_best_only=True)
    history = model.fit(x, y, epochs=8, callbacks=[record, checkpoint], **FIT)
    best = int(np.argmax(history.history["val_accuracy"]))  # first of the maxima
    assert same_weights(load_model(tmp_path / "best.npz").get_weights(), weights[best])


def test_save_best_only_remembers_the_best_across_fit_calls(tmp_path):
    x, y = resume_data()
    model = resumable_model(OPTIMIZERS["sgd_momentum"])
    weights = []
    record = LambdaCallback(on_epoch_end=lambda epoch, logs: weights.append(model.get_weights()))
    checkpoint = ModelCheckpoint(tmp_path / "best.npz", monitor="loss", save_best_only=True)
    first = model.fit(x, y, epochs=4, callbacks=[record, checkpoint], **FIT)
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])  # a much worse start
    second = model.fit(x, y, epochs=5, initial_epoch=4, callbacks=[record, checkpoint], **FIT)
    losses = first.history["loss"] + second.history["loss"]
    assert losses[4] > min(losses[:4])
    best = int(np.argmin(losses))
    assert same_weights(load_model(tmp_path / "best.npz").get_weights(), weights[best])


def test_save_best_only_warns_when_the_monitored_value_is_missing(tmp_path):
    x, y = resume_data()
    model = resumable_model(OPTIMIZERS["sgd_momentum"])
    checkpoint = ModelCheckpoint(tmp_path / "best.npz", monitor="val_loss", save_best_only=True)
    with pytest.warns(RuntimeWarning, match=r"'val_loss' is not in the logs; available: "
                                            r"\['accuracy', 'loss'\]"):
        model.fit(x, y, callbacks=[checkpoint], verbose=0)
    assert not (tmp_path / "best.npz").exists()


# ---------------------------------------------------------------------------- bad files


@pytest.fixture
def saved(tmp_path):
    """(meta, arrays) of a saved, trained model, ready to be altered and saved again."""
    model = Sequential([Dense(4, activation="relu"), Dropout(0.5), Dense(2)], input_dim=3,
                       seed=0)
    model.compile("adam", "mse")
    model.fit(np.ones((4, 3)), np.ones((4, 2)), verbose=0)
    model.save(tmp_path / "model.npz")
    meta, arrays = io.load_npz(tmp_path / "model.npz")
    for field in ("format", "format_version", "minidl_version", "arrays"):
        del meta[field]
    return meta, arrays


def load_altered(tmp_path, meta, arrays):
    io.save_npz(tmp_path / "altered.npz", meta, arrays)
    return load_model(tmp_path / "altered.npz")


def test_the_unaltered_fixture_loads(tmp_path, saved):
    meta, arrays = saved
    assert load_altered(tmp_path, meta, arrays).epoch == 1


def test_unknown_layer_type_is_a_format_error(tmp_path):
    meta = {"model": {"class_name": "Sequential", "config": {
        "layers": [{"class_name": "Conv3D", "config": {"filters": 8}}],
        "input_dim": [28, 28], "seed": None, "dtype": "float32"}}}
    with pytest.raises(ModelFormatError, match=r"altered.npz: invalid model description: "
                                               r"layers\[0\].*unknown layer.*'Conv3D'"):
        load_altered(tmp_path, meta, {})


def test_unknown_model_class_is_a_format_error(tmp_path, saved):
    meta, arrays = saved
    meta["model"]["class_name"] = "Functional"
    with pytest.raises(ModelFormatError, match="must be 'Sequential', got 'Functional'"):
        load_altered(tmp_path, meta, arrays)


def test_array_shape_that_differs_from_the_config_is_a_format_error(tmp_path, saved):
    meta, arrays = saved
    arrays["layers.2.kernel"] = np.zeros((5, 2), np.float32)
    with pytest.raises(ModelFormatError, match=r"'layers.2.kernel' has shape \(5, 2\).*"
                                               r"architecture implies \(4, 2\)"):
        load_altered(tmp_path, meta, arrays)
    meta["model"]["config"]["layers"][0]["config"]["units"] = 5
    meta["model"]["config"]["layers"][2]["config"]["input_dim"] = 5
    with pytest.raises(ModelFormatError, match=r"'layers.0.kernel' has shape \(3, 4\).*"
                                               r"architecture implies \(3, 5\)"):
        load_altered(tmp_path, meta, arrays)


def test_array_dtype_that_differs_from_the_config_is_a_format_error(tmp_path, saved):
    meta, arrays = saved
    meta["model"]["config"]["dtype"] = "float64"
    with pytest.raises(ModelFormatError, match=r"dtype float32 but the architecture implies "
                                               r"\(3, 4\) and float64"):
        load_altered(tmp_path, meta, arrays)


def test_missing_array_is_a_format_error(tmp_path, saved):
    meta, arrays = saved
    del arrays["layers.0.bias"]
    with pytest.raises(ModelFormatError, match=r"missing array 'layers\.0\.bias'"):
        load_altered(tmp_path, meta, arrays)


def test_array_that_belongs_to_no_layer_is_a_format_error(tmp_path, saved):
    meta, arrays = saved
    arrays["layers.1.kernel"] = np.zeros((4, 4), np.float32)  # layer 1 is a Dropout
    with pytest.raises(ModelFormatError, match=r"\['layers.1.kernel'\] belong to no layer"):
        load_altered(tmp_path, meta, arrays)


@pytest.mark.parametrize(("alter", "message"), [
    (lambda meta: meta.pop("model"), "missing key 'model'"),
    (lambda meta: meta.__setitem__("model", "Sequential"), "invalid model description"),
    (lambda meta: meta["model"]["config"].pop("layers"), "missing key 'layers'"),
    (lambda meta: meta["model"]["config"].__setitem__("input_dim", None), "no input_dim"),
    (lambda meta: meta["model"]["config"].__setitem__("extra", 1), r"unknown .* \['extra'\]"),
    (lambda meta: meta["compile"]["optimizer"].__setitem__("class_name", "Lion"), "'Lion'"),
    (lambda meta: meta["compile"].__setitem__("metrics", ["aucc"]), "unknown metric 'aucc'"),
])
def test_malformed_model_description_is_a_format_error(tmp_path, saved, alter, message):
    meta, arrays = saved
    alter(meta)
    with pytest.raises(ModelFormatError, match=message):
        load_altered(tmp_path, meta, arrays)


@pytest.mark.parametrize(("alter", "message"), [
    (lambda meta, arrays: arrays.__setitem__("optimizer.state.0.exp_avg",
                                             np.zeros(3, np.float32)),
     r"state\[0\]\['exp_avg'\] has shape \(3,\)"),
    (lambda meta, arrays: arrays.pop("optimizer.state.1.exp_avg_sq"),
     r"state\[1\] is missing key 'exp_avg_sq'"),
    (lambda meta, arrays: meta["optimizer"].__setitem__("class_name", "SGD"),
     "state is for SGD but the compiled optimizer is Adam"),
    (lambda meta, arrays: meta["optimizer"]["numbers"].pop(), "3 optimizer states for 4"),
    (lambda meta, arrays: meta["training"].__setitem__("epoch", -1), "epoch must be an int"),
    (lambda meta, arrays: meta["training"].__setitem__("rng_states", []),
     "invalid optimizer state"),
    (lambda meta, arrays: meta["training"]["rng_states"].__setitem__("layers.7", {}),
     "rng state 'layers.7' does not match"),
])
def test_malformed_optimizer_state_is_a_format_error(tmp_path, saved, alter, message):
    meta, arrays = saved
    alter(meta, arrays)
    with pytest.raises(ModelFormatError, match=message):
        load_altered(tmp_path, meta, arrays)


def test_a_failed_save_leaves_the_previous_file_loadable(tmp_path, monkeypatch):
    model = trained_every_layer_model()
    path = tmp_path / "model.npz"
    model.save(path)
    x, _ = image_data(n=5, seed=2)
    before = model.predict(x)
    model.fit(*image_data(), verbose=0)
    assert not np.array_equal(model.predict(x), before)

    write_member = io.saving._write_member
    written = []

    def fail_after_two_members(archive, key, array):
        if len(written) == 2:
            raise OSError("No space left on device (injected)")
        written.append(key)
        write_member(archive, key, array)

    monkeypatch.setattr(io.saving, "_write_member", fail_after_two_members)
    with pytest.raises(OSError, match="injected"):
        model.save(path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary file left behind
    np.testing.assert_array_equal(load_model(path).predict(x), before)



# ---------------------------------------------------------------- the architecture bomb

def test_a_small_file_whose_config_implies_a_huge_model_is_refused_without_allocating(
        tmp_path, saved):
    meta, arrays = saved
    config = meta["model"]["config"]
    config["input_dim"] = [6000]
    config["layers"][0]["config"].update(units=6000, input_dim=6000)  # a 6000 x 6000 kernel
    config["layers"][2]["config"]["input_dim"] = 6000
    io.save_npz(tmp_path / "bomb.npz", meta, arrays)
    size = (tmp_path / "bomb.npz").stat().st_size
    tracemalloc.start()
    try:
        with pytest.raises(ModelFormatError, match=r"bomb\.npz: invalid model description: "
                                                   r"array 'layers\.0\.kernel' has shape "
                                                   r"\(3, 4\) and dtype float32 but the "
                                                   r"architecture implies \(6000, 6000\)"):
            load_model(tmp_path / "bomb.npz")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the arrays themselves, the JSON and the zip bookkeeping: nowhere near 6000² floats
    assert peak < 20 * size + (1 << 20), f"peak {peak} bytes for a file of {size}"


def test_a_config_that_implies_an_array_the_file_lacks_is_refused_before_building(
        tmp_path, saved):
    meta, arrays = saved
    meta["model"]["config"]["layers"].append(
        {"class_name": "Dense", "config": {"units": 100000}})
    with pytest.raises(ModelFormatError, match=r"missing array 'layers\.3\.kernel' \(of shape "
                                               r"\(2, 100000\), as the architecture implies\)"):
        load_altered(tmp_path, meta, arrays)


def test_an_array_of_another_dtype_is_refused_before_the_model_is_built(tmp_path):
    # the shape is right but the dtype is not: a float64 model holds 8 bytes where the file
    # holds 1, so the check must come before building, like the shape's
    model = Sequential([Dense(600)], input_dim=600, dtype="float64")
    arrays = dict(model._weight_arrays())
    arrays["layers.0.kernel"] = np.zeros((600, 600), dtype=bool)
    meta = {"model": {"class_name": "Sequential", "config": model.get_config()}}
    io.save_npz(tmp_path / "bomb.npz", meta, arrays)
    size = (tmp_path / "bomb.npz").stat().st_size
    tracemalloc.start()
    try:
        with pytest.raises(ModelFormatError, match=r"'layers\.0\.kernel' has shape \(600, 600\) "
                                                   r"and dtype bool but the architecture "
                                                   r"implies \(600, 600\) and float64"):
            load_model(tmp_path / "bomb.npz")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * size + (1 << 20), f"peak {peak} bytes for a file of {size}"


def test_a_huge_number_in_a_layer_config_is_a_format_error_with_a_short_message(
        tmp_path, saved):
    meta, arrays = saved
    meta["model"]["config"]["layers"].insert(0, {"class_name": "Normalization", "config": {
        "mean": [10 ** 400, 0, 0], "variance": [1, 1, 1]}})  # no float holds it
    with pytest.raises(ModelFormatError, match="invalid model description") as raised:
        load_altered(tmp_path, meta, arrays)
    assert len(str(raised.value)) < 500


def test_a_negative_variance_in_the_file_is_refused(tmp_path):
    model = Sequential([Normalization(), Dense(1)], input_dim=3)
    model.layers[0].adapt(np.arange(12.0).reshape(4, 3))
    meta = {"model": {"class_name": "Sequential", "config": model.get_config()}}
    arrays = dict(model._weight_arrays())
    arrays["layers.0.variance"] = np.array([-1.0, 1.0, 1.0], dtype=np.float32)
    io.save_npz(tmp_path / "m.npz", meta, arrays)
    with pytest.raises(ModelFormatError, match=r"m\.npz: layers\[0\] \(Normalization\): the "
                                               r"mean must be finite and the variance finite "
                                               r"and >= 0"):
        load_model(tmp_path / "m.npz")


def test_a_path_without_suffix_that_is_a_fifo_is_named_as_such(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ModelFormatError, match="pipe: not a regular file but a FIFO"):
        load_model(tmp_path / "pipe")


# ---------------------------------------------------------------- users' own layers

class Scale(Layer):
    """y = x * w, one weight per feature: a user's layer with a parameter, declaring no
    weight_shapes (its arrays are then checked once it is built)."""

    def __init__(self, initial: float = 1.0) -> None:
        super().__init__()
        self.initial = initial
        self.w = None

    def build(self, input_shape, *, dtype="float32", rng=None):
        self.w = Parameter(np.full(input_shape, self.initial, dtype=dtype), name="w")
        self.built = True

    def parameters(self):
        return [] if self.w is None else [self.w]

    def forward(self, x, training=False):
        self._x = x
        return x * self.w.data

    def backward(self, grad_y):
        self.w.grad[...] = (grad_y * self._x).sum(axis=0)
        return grad_y * self.w.data


def test_a_users_layer_must_be_registered_to_be_saved(tmp_path):
    model = Sequential([Scale(), Dense(1)], input_dim=3)
    with pytest.raises(ValueError, match=r"Scale is not in minidl\.layers\.LAYERS \(see "
                                         r"minidl\.layers\.register_layer\)"):
        model.save(tmp_path / "m.npz")


def test_a_registered_users_layer_trains_saves_and_loads_like_a_builtin_one(
        tmp_path, monkeypatch):
    monkeypatch.setitem(LAYERS, "Scale", Scale)  # what register_layer does, undone after
    x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    model = Sequential([Scale(initial=0.5), Dense(1)], input_dim=3, seed=0)
    model.compile("adam", "mse")
    model.fit(x, x.sum(axis=1), epochs=3, verbose=0)
    assert not np.all(model.layers[0].w.data == 0.5)  # trained
    model.save(tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    loaded.fit(x, x.sum(axis=1), epochs=1, verbose=0)  # and trains on


def test_register_layer_adds_a_layer_class_and_refuses_a_taken_name(monkeypatch):
    monkeypatch.setattr(minidl.layers, "LAYERS", dict(LAYERS))
    assert register_layer(Scale) is Scale and minidl.layers.LAYERS["Scale"] is Scale
    assert register_layer(Scale) is Scale  # again: nothing changes

    class Dense(Layer):
        pass

    with pytest.raises(ValueError, match=r"the name 'Dense' is taken"):
        register_layer(Dense)
    with pytest.raises(TypeError, match=r"expected a subclass of minidl\.layers\.Layer"):
        register_layer(int)


# ---------------------------------------------------------------- files of earlier versions

DATA = Path(__file__).parent / "data"


def test_a_file_written_by_minidl_0_1_0_loads_predicts_and_resumes_as_it_did():
    # written by minidl 0.1.0 (format_version 1): Dense-Dropout-Dense with Adam's state,
    # after 2 of 3 epochs; the expected file holds what 0.1.0 predicted then and after epoch 3
    assert io.read_metadata(DATA / "minidl-0.1.0.npz")["format_version"] == 1
    model = load_model(DATA / "minidl-0.1.0.npz")
    with np.load(DATA / "minidl-0.1.0-expected.npz") as expected:
        x, y = expected["x"], expected["y"]
        np.testing.assert_allclose(model.predict(x), expected["predictions"], rtol=1e-6)
        assert model.epoch == 2
        model.fit(x, y, epochs=3, batch_size=8, verbose=0, initial_epoch=model.epoch)
        np.testing.assert_allclose(model.predict(x), expected["resumed"], rtol=1e-5,
                                   atol=1e-7)


def test_files_are_written_with_the_current_format_version(tmp_path):
    Sequential([Dense(1)], input_dim=1).save(tmp_path / "m.npz")
    assert io.read_metadata(tmp_path / "m.npz")["format_version"] == io.FORMAT_VERSION == 2
