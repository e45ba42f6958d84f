"""Keras 3's callbacks in minidl: ReduceLROnPlateau, LearningRateScheduler, CSVLogger,
TerminateOnNaN, BackupAndRestore, ModelCheckpoint and what every ``verbose=1`` prints.

Each test ported from Keras cites its source, a file of keras/src/callbacks/ and the test
(``reduce_lr_on_plateau_test.py::test_cooldown``); Keras' models are replaced by minidl
models of the same shapes, its data by seeded data of the same sizes.
"""

import csv
import os

import numpy as np
import pytest

from minidl import Dense, Dropout, LambdaCallback, Sequential, load_model
from minidl.callbacks import (
    BackupAndRestore,
    Callback,
    CSVLogger,
    EarlyStopping,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
    TerminateOnNaN,
)
from minidl.optim import SGD, Adam, PolynomialDecay


def keras_test_data(train=10, test=10, features=3, classes=2, seed=1337):
    """keras.src.testing.test_utils.get_test_data's shapes, with one-hot targets."""
    rng = np.random.default_rng(seed)
    x = rng.random((train + test, features))
    labels = rng.integers(0, classes, train + test)
    y = np.eye(classes)[labels]
    return (x[:train], y[:train]), (x[train:], y[train:])


def small_model(optimizer=None, lr=0.1):
    """Keras' ``Sequential([Dense(5), Dense(2)])`` compiled with mse."""
    model = Sequential([Dense(5), Dense(2)], input_dim=3, seed=0)
    model.compile(optimizer or Adam(model.parameters(), lr=lr), "mse")
    return model


# ---------------------------------------------------------------- ReduceLROnPlateau

def fit_with(callback, epochs, model=None):
    (x, y), validation = keras_test_data()
    model = model or small_model()
    history = model.fit(x, y, validation_data=validation, callbacks=[callback], epochs=epochs,
                        verbose=0)
    return model, history


def test_reduce_lr_on_plateau_reduces_the_rate():
    # reduce_lr_on_plateau_test.py::test_reduces_lr_with_model_fit
    reduce_lr = ReduceLROnPlateau(patience=1, factor=0.1, monitor="val_loss", min_delta=100)
    model, history = fit_with(reduce_lr, epochs=2)
    assert model.optimizer.lr == pytest.approx(0.01)
    # the rate of each epoch, before that epoch's reduction, as Keras 3 logs it
    assert history.history["learning_rate"] == [0.1, 0.1]


def test_reduce_lr_on_plateau_refuses_a_scheduled_optimizer():
    # reduce_lr_on_plateau_test.py::test_throws_when_optimizer_has_schedule
    reduce_lr = ReduceLROnPlateau(patience=1, factor=0.1, monitor="val_loss", min_delta=100)
    model = Sequential([Dense(5), Dense(2)], input_dim=3, seed=0)
    model.compile(Adam(model.parameters(), lr=PolynomialDecay(0.1, decay_steps=10)), "mse")
    with pytest.raises(TypeError, match="This optimizer was created with a "
                                        "`LearningRateSchedule`"):
        fit_with(reduce_lr, epochs=2, model=model)


def test_reduce_lr_on_plateau_verbose_prints_keras_message(capsys):
    # reduce_lr_on_plateau_test.py::test_verbose_logging
    reduce_lr = ReduceLROnPlateau(patience=1, factor=0.1, monitor="val_loss", min_delta=100,
                                  verbose=1)
    fit_with(reduce_lr, epochs=2)
    assert capsys.readouterr().out == (
        f"\nEpoch 2: ReduceLROnPlateau reducing learning rate to {0.1 * 0.1}.\n")


def test_reduce_lr_on_plateau_honors_min_lr():
    # reduce_lr_on_plateau_test.py::test_honors_min_lr
    reduce_lr = ReduceLROnPlateau(patience=1, factor=0.1, monitor="val_loss", min_delta=10,
                                  min_lr=0.005)
    model, _ = fit_with(reduce_lr, epochs=4)
    assert model.optimizer.lr == 0.005


def test_reduce_lr_on_plateau_cooldown():
    # reduce_lr_on_plateau_test.py::test_cooldown: reduced at epochs 2 and 4 only
    reduce_lr = ReduceLROnPlateau(patience=1, factor=0.1, monitor="val_loss", min_delta=100,
                                  cooldown=2)
    model, history = fit_with(reduce_lr, epochs=4)
    assert model.optimizer.lr == pytest.approx(0.001)
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.1, 0.01, 0.01])


def test_reduce_lr_on_plateau_state_resets_across_fit_calls():
    # reduce_lr_on_plateau_test.py::test_state_reset_across_fit_calls
    reduce_lr = ReduceLROnPlateau(patience=1, factor=0.1, monitor="loss", min_delta=0,
                                  cooldown=2)
    reduce_lr.set_model(small_model())
    reduce_lr.on_train_begin()
    reduce_lr.best, reduce_lr.wait, reduce_lr.cooldown_counter = 0.5, 3, 2
    reduce_lr.on_train_begin()
    assert (reduce_lr.best, reduce_lr.wait, reduce_lr.cooldown_counter) == (None, 0, 0)


def test_reduce_lr_on_plateau_arguments():
    with pytest.raises(ValueError, match=r"ReduceLROnPlateau does not support a factor >= 1\.0\. "
                                         r"Received factor=1\.5"):
        ReduceLROnPlateau(factor=1.5)
    with pytest.raises(ValueError, match="ReduceLROnPlateau: cooldown must be >= 0, got -1"):
        ReduceLROnPlateau(cooldown=-1)
    assert ReduceLROnPlateau(monitor="val_accuracy").mode == "max"


def test_reduce_lr_on_plateau_warns_when_the_monitor_is_missing():
    with pytest.warns(RuntimeWarning, match=r"ReduceLROnPlateau: 'val_loss' is not in the logs; "
                                            r"available: \['learning_rate', 'loss'\]"):
        small_model().fit(*keras_test_data()[0], callbacks=[ReduceLROnPlateau()], verbose=0)


# ---------------------------------------------------------------- LearningRateScheduler

def fit_scheduled(scheduler, epochs, optimizer="sgd"):
    (x, y), _ = keras_test_data()
    model = Sequential([Dense(5), Dense(2)], input_dim=3, seed=0)
    model.compile(optimizer if isinstance(optimizer, str) else optimizer(model.parameters()),
                  "mse")
    history = model.fit(x, y, callbacks=[scheduler], epochs=epochs, verbose=0)
    return model, history


def test_learning_rate_scheduler_takes_a_function_of_the_epoch_only():
    # learning_rate_scheduler_test.py::test_updates_learning_rate
    model, _ = fit_scheduled(LearningRateScheduler(lambda step: 1.0 / (2.0 + step)), epochs=1)
    assert model.optimizer.lr == 0.5


def test_learning_rate_scheduler_verbose_prints_keras_message(capsys):
    # learning_rate_scheduler_test.py::test_verbose_logging
    fit_scheduled(LearningRateScheduler(lambda step: 1.0 / (1.0 + step), verbose=1), epochs=2)
    assert capsys.readouterr().out == (
        "\nEpoch 1: LearningRateScheduler setting learning rate to 1.0.\n"
        "\nEpoch 2: LearningRateScheduler setting learning rate to 0.5.\n")


def test_learning_rate_scheduler_takes_a_function_of_the_epoch_and_the_rate():
    # learning_rate_scheduler_test.py::test_schedule_dependent_on_previous_learning_rate
    scheduler = LearningRateScheduler(lambda step, lr: lr / 2)
    model, _ = fit_scheduled(scheduler, epochs=2, optimizer=lambda p: Adam(p, lr=0.03))
    assert model.optimizer.lr == 0.03 / 4.0


def test_learning_rate_scheduler_refuses_a_scheduled_optimizer():
    # learning_rate_scheduler_test.py::test_throws_when_optimizer_has_schedule
    scheduler = LearningRateScheduler(lambda step, lr: lr / 2)
    with pytest.raises(TypeError, match="This optimizer was created with a "
                                        "`LearningRateSchedule`"):
        fit_scheduled(scheduler, epochs=2,
                      optimizer=lambda p: Adam(p, lr=PolynomialDecay(0.1, decay_steps=10)))


def test_learning_rate_is_in_the_history_as_a_float():
    # learning_rate_scheduler_test.py::test_learning_rate_in_history
    _, history = fit_scheduled(LearningRateScheduler(lambda step, lr: 0.5), epochs=1)
    assert history.history["learning_rate"] == [0.5]
    assert type(history.history["learning_rate"][0]) is float


def test_learning_rate_scheduler_wants_a_float_as_keras_does():
    with pytest.raises(ValueError, match=r"The output of the `schedule` function should be a "
                                         r"float\. Got: 1"):
        fit_scheduled(LearningRateScheduler(lambda epoch: 1), epochs=1)


# ---------------------------------------------------------------- EarlyStopping's messages

class FakeModel:
    def __init__(self):
        self.weights, self.stop_training = [np.zeros(1)], False

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [np.array(w) for w in weights]


def run_epochs(callback, values):
    model = FakeModel()
    callback.set_model(model)
    callback.on_train_begin({})
    for epoch, value in enumerate(values):
        model.weights = [np.array([float(epoch)])]
        callback.on_epoch_end(epoch, {"val_loss": value})
        if model.stop_training:
            break
    callback.on_train_end({})
    return model


def test_early_stopping_verbose_prints_keras_messages(capsys):
    model = run_epochs(EarlyStopping(patience=1, verbose=1, restore_best_weights=True),
                       [3.0, 1.0, 2.0, 2.5])
    assert capsys.readouterr().out == ("Epoch 3: early stopping\n"
                                       "Restoring model weights from the end of the best "
                                       "epoch: 2.\n")
    assert model.weights[0][0] == 1.0
    run_epochs(EarlyStopping(patience=1), [3.0, 1.0, 2.0, 2.5])
    assert capsys.readouterr().out == ""


def test_early_stopping_and_terminate_on_nan_print_what_keras_prints(capsys):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    printed = []
    for module in (None, keras.callbacks):
        early = (EarlyStopping if module is None else module.EarlyStopping)(
            patience=1, verbose=1, mode="min", restore_best_weights=True)
        run_epochs(early, [3.0, 1.0, 2.0, 2.5])
        nan = (TerminateOnNaN if module is None else module.TerminateOnNaN)()
        nan.set_model(FakeModel())
        nan.on_batch_end(3, {"loss": float("nan")})
        printed.append(capsys.readouterr().out)
    assert printed[0] == printed[1]


# ---------------------------------------------------------------- CSVLogger

def regression_data(rows=20, seed=1337):
    rng = np.random.default_rng(seed)
    return rng.random((rows, 3)), rng.random((rows, 1))


def regression_model():
    model = Sequential([Dense(2, activation="relu"), Dense(1)], input_dim=3, seed=0)
    model.compile("sgd", "mse", metrics=["mse"])
    return model


def test_csv_logger_separator_append_and_reuse(tmp_path):
    # csv_logger_test.py::test_CSVLogger (cases 1, 2 and 3)
    path = tmp_path / "log.tsv"
    x, y = regression_data()
    validation = regression_data(10, seed=2)
    fit = {"batch_size": 5, "validation_data": validation, "verbose": 0}
    regression_model().fit(x, y, callbacks=[CSVLogger(path, separator="\t")], epochs=1, **fit)
    with open(path, newline="") as file:
        assert csv.Sniffer().sniff(file.read()).delimiter == "\t"
    logger = CSVLogger(path, separator="\t", append=True)
    model = regression_model()
    model.fit(x, y, callbacks=[logger], epochs=1, **fit)
    model.fit(x, y, callbacks=[logger], epochs=2, **fit)
    with open(path, newline="") as file:
        lines = file.read().split("\r\n")[:-1]
    assert len(lines) == 5 and all(line.count("\t") == 4 for line in lines)
    assert " ".join(lines).count("epoch") == 1
    assert lines[0] == "epoch\tloss\tmse\tval_loss\tval_mse"


def test_csv_logger_writes_keras_columns_and_python_floats(tmp_path):
    path = tmp_path / "log.csv"
    x, y = regression_data()
    history = regression_model().fit(x, y, callbacks=[CSVLogger(path)], epochs=2, verbose=0)
    # no validation: Keras still writes val_ columns, as NA
    rows = [f"{epoch},{loss},{mse},NA,NA" for epoch, (loss, mse) in
            enumerate(zip(history.history["loss"], history.history["mse"], strict=True))]
    assert path.read_bytes().decode() == "\r\n".join(["epoch,loss,mse,val_loss,val_mse",
                                                      *rows, ""])
    assert [p.name for p in tmp_path.iterdir()] == ["log.csv"]  # no temporary file left


@pytest.mark.parametrize("append", [False, True])
def test_csv_logger_writes_the_bytes_keras_writes(tmp_path, append):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    epochs = [{"loss": 0.6931471805599453, "accuracy": 0.5, "learning_rate": 0.001},
              {"loss": 0.25, "accuracy": 0.875, "learning_rate": 1e-05}]
    written = []
    for logger in (CSVLogger(tmp_path / "ours.csv", separator=";", append=append),
                   keras.callbacks.CSVLogger(str(tmp_path / "keras.csv"), separator=";",
                                             append=append)):
        for _ in range(2):  # with append, the second run adds rows under one header
            logger.on_train_begin({})
            for epoch, logs in enumerate(epochs):
                logger.on_epoch_end(epoch, dict(logs))
            logger.on_train_end({})
        with open(logger.filename, "rb") as file:
            written.append(file.read())
    assert written[0] == written[1]


def test_csv_logger_keeps_the_previous_file_until_an_epoch_has_ended(tmp_path):
    path = tmp_path / "log.csv"
    path.write_bytes(b"epoch,loss\r\n0,1.0\r\n")
    x, y = regression_data()

    def crash(batch, logs):
        raise RuntimeError("crash in the first epoch")

    with pytest.raises(RuntimeError, match="crash"):
        regression_model().fit(x, y, callbacks=[CSVLogger(path),
                                                LambdaCallback(on_batch_end=crash)], verbose=0)
    assert path.read_bytes() == b"epoch,loss\r\n0,1.0\r\n"


# ---------------------------------------------------------------- TerminateOnNaN

def exploding_fit(callbacks, epochs=20):
    """terminate_on_nan_test.py's model: five Dense(2, relu) with kernels of 1e5, then
    Dense(2): the loss overflows in the first batch. (Keras' test also validates; an
    overflowing validation would only repeat the training's overflow.)"""
    (x, y), _ = keras_test_data()
    model = Sequential([*(Dense(2, activation="relu") for _ in range(5)), Dense(2)],
                       input_dim=3, seed=0)
    model.set_weights([np.full_like(w, 1e5) if w.ndim == 2 else w for w in model.get_weights()])
    model.compile("sgd", "mean_squared_error")
    history = model.fit(x, y, batch_size=4, callbacks=callbacks, epochs=epochs, verbose=0)
    return model, history


def test_terminate_on_nan_stops_at_the_first_non_finite_batch(capsys):
    # terminate_on_nan_test.py::test_TerminateOnNaN (Keras also runs that epoch's
    # on_epoch_end, whose logs then hold the non-finite loss: that is the training loop's call)
    batches = []
    counter = LambdaCallback(on_batch_begin=lambda batch, logs: batches.append(batch))
    _, history = exploding_fit(callbacks=[TerminateOnNaN(), counter])
    assert batches == [0]
    assert all(not np.isfinite(loss) for loss in history.history.get("loss", []))
    assert len(history.history.get("loss", [])) <= 1
    assert capsys.readouterr().out == "Batch 0: Invalid loss, terminating training\n"


def infinite_targets_fit(callbacks, y=((np.inf,), (np.inf,)), epochs=2, batch_size=1):
    model = Sequential([Dense(1, input_shape=(1,))], seed=0)
    model.compile("sgd", "mse")
    before = model.get_weights()
    history = model.fit(np.array([[1.0], [2.0]]), np.array(y), epochs=epochs,
                        batch_size=batch_size, callbacks=callbacks, verbose=0)
    return model, before, history


def test_terminate_on_nan_stops_gracefully_with_the_last_finite_weights():
    # terminate_on_nan_test.py::test_terminate_on_nan_graceful_stop
    model, before, history = infinite_targets_fit([TerminateOnNaN(raise_error=False)])
    assert len(history.history.get("loss", [])) < 4
    for weight, initial in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(weight, initial)


def test_terminate_on_nan_can_raise():
    # terminate_on_nan_test.py::test_terminate_on_nan_raise_error_raises_error
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 0"):
        infinite_targets_fit([TerminateOnNaN(raise_error=True)], epochs=1)


def test_terminate_on_nan_raises_at_a_later_batch():
    # terminate_on_nan_test.py::test_raise_error_terminate_stops_on_later_batch
    with pytest.raises(RuntimeError, match="at batch 1"):
        infinite_targets_fit([TerminateOnNaN(raise_error=True)], y=((1.0,), (np.inf,)),
                             epochs=1)


@pytest.mark.parametrize("raise_error", [False, True])
def test_terminate_on_nan_leaves_normal_training_alone(raise_error):
    # terminate_on_nan_test.py::test_normal_training_does_not_raise
    _, _, history = infinite_targets_fit([TerminateOnNaN(raise_error=raise_error)],
                                         y=((1.0,), (2.0,)), batch_size=32)
    assert len(history.history["loss"]) == 2


def test_terminate_on_nan_raising_keeps_the_backup(tmp_path):
    # terminate_on_nan_test.py::test_raise_error_terminate_preserves_backup (without
    # Keras' monkeypatch: minidl's BackupAndRestore keeps its files when fit fails)
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    (backup_dir / "checkpoint.txt").write_text("dummy checkpoint")
    with pytest.raises(RuntimeError):
        infinite_targets_fit([BackupAndRestore(backup_dir), TerminateOnNaN(raise_error=True)],
                             epochs=1)
    assert (backup_dir / "checkpoint.txt").read_text() == "dummy checkpoint"


# ---------------------------------------------------------------- BackupAndRestore

class Interrupting(Callback):
    """backup_and_restore_test.py's InterruptingCallback, and a count of the batches run
    (Keras' CanaryLayer)."""

    batches_run = 0

    def __init__(self, steps_int=None, epoch_int=None):
        super().__init__()
        self.batch_count, self.epoch_count = 0, 0
        self.steps_int, self.epoch_int = steps_int, epoch_int

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_count += 1
        if self.epoch_count == self.epoch_int:
            raise RuntimeError("EpochInterruption")

    def on_batch_end(self, batch, logs=None):
        self.batch_count += 1
        Interrupting.batches_run += 1
        if self.batch_count == self.steps_int:
            raise RuntimeError("StepsInterruption")


def backup_model():
    model = Sequential([Dense(1)], input_dim=3, seed=0)
    model.compile("sgd", "mse", metrics=["mse"])
    return model


def test_backup_and_restore_refuses_bad_arguments():
    # backup_and_restore_test.py::test_save_freq_unknown_error, ::test_backup_dir_empty_error,
    # ::test_backup_dir_none_error
    for save_freq in ("batch", 0.15, 0, True):
        with pytest.raises(ValueError, match="Invalid value for argument `save_freq`"):
            BackupAndRestore("backup_dir", save_freq=save_freq)
    for backup_dir in ("", None):
        with pytest.raises(ValueError, match="Empty `backup_dir` argument passed"):
            BackupAndRestore(backup_dir, save_freq="epoch")


@pytest.mark.parametrize(("save_freq", "interrupt", "done", "batches"), [
    ("epoch", {"epoch_int": 2}, 2, 2 * 3 + 3 * 3),   # ::test_best_case_epoch
    (1, {"steps_int": 2}, None, 2 + 5 * 3),          # ::test_best_case_step
])
def test_backup_and_restore_resumes_where_the_backup_was(tmp_path, save_freq, interrupt, done,
                                                         batches):
    # backup_and_restore_test.py::test_best_case_epoch and ::test_best_case_step
    backup_dir = tmp_path / "subdir"
    x, y = np.random.default_rng(0).random((10, 3)), np.random.default_rng(1).random((10, 1))
    model = backup_model()
    backup = BackupAndRestore(backup_dir, save_freq=save_freq)
    Interrupting.batches_run = 0
    with pytest.raises(RuntimeError, match="Interruption"):
        model.fit(x, y, batch_size=4, callbacks=[backup, Interrupting(**interrupt)], epochs=6,
                  verbose=0)
    assert backup_dir.exists() and backup._epochs_done == done
    history = model.fit(x, y, batch_size=4, callbacks=[backup, Interrupting()], epochs=5,
                        verbose=0)
    assert backup._epochs_done == 5 and history.epoch[-1] == 4
    assert Interrupting.batches_run == batches
    assert not backup_dir.exists()  # ::test_model_deleted_case_epoch


def test_resuming_after_a_crash_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((40, 4)), rng.standard_normal((40, 2))

    def make():
        model = Sequential([Dense(8, activation="relu"), Dropout(0.3), Dense(2)], input_dim=4,
                           seed=7)
        model.compile(Adam(model.parameters(), lr=0.01), "mse")
        return model

    fit = {"epochs": 6, "batch_size": 8, "validation_split": 0.25, "verbose": 0}
    clean = make()
    clean.fit(x, y, **fit)

    def crash_in_epoch_3(epoch, logs):
        if epoch == 3:
            raise KeyboardInterrupt

    crashed = make()
    backup = BackupAndRestore(tmp_path / "backup", delete_checkpoint=False)
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(x, y, callbacks=[backup, LambdaCallback(on_epoch_begin=crash_in_epoch_3)],
                    **fit)
    resumed = make()  # a new process: the same model, compile and fit arguments
    history = resumed.fit(x, y, callbacks=[backup], **fit)
    assert history.epoch == [3, 4, 5]
    for weight, expected in zip(resumed.get_weights(), clean.get_weights(), strict=True):
        np.testing.assert_array_equal(weight, expected)
    assert (tmp_path / "backup" / "latest.npz").exists()  # delete_checkpoint=False


def test_a_finished_training_deletes_only_its_own_backup(tmp_path):
    backup_dir = tmp_path / "backup"
    backup_dir.mkdir()
    (backup_dir / "notes.txt").write_text("mine")
    x, y = regression_data()
    stopper = EarlyStopping(monitor="loss", patience=0, mode="max")
    regression_model().fit(x, y, epochs=5, callbacks=[BackupAndRestore(backup_dir), stopper],
                           verbose=0)
    assert sorted(p.name for p in backup_dir.iterdir()) == ["notes.txt"]


# ---------------------------------------------------------------- ModelCheckpoint

@pytest.mark.parametrize("save_weights_only", [False, True])
def test_model_checkpoint_with_an_integer_save_freq_counts_batches(tmp_path, save_weights_only):
    # model_checkpoint_test.py::test_model_checkpoint_options, cases 8a and 8b: 30 rows in
    # batches of 6 are 5 batches an epoch, so every 15 batches is every third epoch
    x, y = regression_data(30)
    path = str(tmp_path / "checkpoint.epoch{epoch:02d}.npz")
    checkpoint = ModelCheckpoint(path, monitor="val_loss", save_freq=15,
                                 save_weights_only=save_weights_only)
    model = regression_model()
    model.fit(x, y, batch_size=6, epochs=10, callbacks=[checkpoint], verbose=0)
    assert sorted(os.listdir(tmp_path)) == [f"checkpoint.epoch{e:02d}.npz" for e in (3, 6, 9)]
    if save_weights_only:
        regression_model().load_weights(path.format(epoch=9))
    else:
        assert load_model(path.format(epoch=9)).epoch == 8  # saved in the ninth epoch


def test_model_checkpoint_names_files_by_epoch_and_batch(tmp_path):
    # model_checkpoint_test.py::test_model_checkpoint_options, case 10a
    x, y = regression_data(30)
    path = str(tmp_path / "checkpoint.epoch{epoch:02d}batch{batch:02d}.npz")
    regression_model().fit(x, y, batch_size=15, epochs=5, verbose=0,
                           callbacks=[ModelCheckpoint(path, save_freq=1)])
    assert sorted(os.listdir(tmp_path)) == [path.format(epoch=e, batch=b).rsplit("/", 1)[1]
                                            for e in range(1, 6) for b in (1, 2)]


def test_model_checkpoint_refuses_an_unknown_save_freq():
    # model_checkpoint_test.py::test_model_checkpoint_options, case 9
    with pytest.raises(ValueError, match="Unrecognized save_freq"):
        ModelCheckpoint("model.npz", save_freq="invalid_save_freq")
    ModelCheckpoint("model.npz", save_freq=3)
    with pytest.raises(ValueError, match="mode must be 'auto', 'min' or 'max', got 'best'"):
        ModelCheckpoint("model.npz", mode="best")


@pytest.mark.parametrize(("monitor", "threshold", "saved"), [
    ("val_accuracy", -0.01, True),  # case 11
    ("val_loss", None, True),       # case 12
    ("val_loss", 0.0, False),       # case 13: no loss beats 0
])
def test_model_checkpoint_initial_value_threshold(tmp_path, monitor, threshold, saved):
    # model_checkpoint_test.py::test_model_checkpoint_options, cases 11 to 13
    (x, y), validation = keras_test_data()
    model = Sequential([Dense(2, activation="softmax")], input_dim=3, seed=0)
    model.compile("sgd", "categorical_crossentropy", metrics=["accuracy"])
    checkpoint = ModelCheckpoint(tmp_path / "checkpoint.npz", monitor=monitor,
                                 save_best_only=True, initial_value_threshold=threshold)
    model.fit(x, y, validation_data=validation, callbacks=[checkpoint], verbose=0)
    assert (tmp_path / "checkpoint.npz").exists() == saved


def test_model_checkpoint_verbose_prints_keras_messages(tmp_path, capsys):
    x, y = regression_data()
    path = tmp_path / "best.npz"
    values = iter([0.5, 0.7, 0.25])
    fake_loss = LambdaCallback(on_epoch_end=lambda epoch, logs: logs.update(
        custom=next(values)))
    checkpoint = ModelCheckpoint(path, monitor="custom", mode="min", save_best_only=True,
                                 verbose=1)
    regression_model().fit(x, y, epochs=3, callbacks=[fake_loss, checkpoint], verbose=0)
    assert capsys.readouterr().out == (
        f"\nEpoch 1: custom improved from None to 0.50000, saving model to {path}\n"
        f"\nEpoch 1: finished saving model to {path}\n"
        f"\nEpoch 2: custom did not improve from 0.50000\n"
        f"\nEpoch 3: custom improved from 0.50000 to 0.25000, saving model to {path}\n"
        f"\nEpoch 3: finished saving model to {path}\n")
    every = ModelCheckpoint(tmp_path / "e{epoch}.npz", verbose=1)
    regression_model().fit(x, y, epochs=1, callbacks=[every], verbose=0)
    saved = tmp_path / "e1.npz"
    assert capsys.readouterr().out == (f"\nEpoch 1: saving model to {saved}\n"
                                       f"\nEpoch 1: finished saving model to {saved}\n")


def test_model_checkpoint_names_the_missing_placeholder(tmp_path):
    x, y = regression_data()
    checkpoint = ModelCheckpoint(str(tmp_path / "{epoch}-{val_mse:.2f}.npz"))
    with pytest.raises(KeyError, match=r"Failed to format this callback filepath: .*Reason: "
                                       r".*val_mse"):
        regression_model().fit(x, y, callbacks=[checkpoint], verbose=0)


def test_model_checkpoint_weights_only_files_load_into_a_model_of_the_same_shape(tmp_path):
    x, y = regression_data()
    model = regression_model()
    model.compile(SGD(model.parameters(), lr=0.05), "mse")
    model.fit(x, y, epochs=2, verbose=0,
              callbacks=[ModelCheckpoint(tmp_path / "w.npz", save_weights_only=True)])
    other = regression_model()
    other.load_weights(tmp_path / "w.npz")
    for weight, expected in zip(other.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(weight, expected)


def test_terminate_on_nan_with_csv_logger_logs_the_non_finite_epoch(tmp_path):
    # keras/src/callbacks/csv_logger_test.py::test_stop_training_csv: kernels of 1e5 through
    # five ReLU layers overflow at once; training stops after that epoch, whose non-finite
    # loss is in the history and the CSV file
    (x_train, y_train), (x_test, y_test) = keras_test_data()
    model = Sequential([Dense(2, activation="relu") for _ in range(5)] + [Dense(2)],
                       input_dim=3, seed=0)
    model.set_weights([np.full_like(w, 1e5) if w.ndim == 2 else w for w in model.get_weights()])
    model.compile(optimizer="sgd", loss="mean_squared_error")
    log = tmp_path / "csv_logger.csv"
    history = model.fit(x_train, y_train, batch_size=4, epochs=20, verbose=0,
                        validation_data=(x_test, y_test),
                        callbacks=[TerminateOnNaN(), CSVLogger(log)])
    loss = history.history["loss"]
    assert len(loss) == 1 and (np.isnan(loss[0]) or np.isinf(loss[0]))
    with open(log, newline="") as file:
        rows = [row for row in csv.reader(file) if row]
    assert "nan" in rows[-1] or "inf" in rows[-1]
