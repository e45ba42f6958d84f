"""Callbacks: EarlyStopping (Keras 3 semantics), History, ProgressBar, schedules, LambdaCallback."""

import fcntl
import io
import math
import os
import re
import struct
import sys
import termios

import matplotlib.pyplot as plt
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from matplotlib.figure import Figure

from minidl import (
    SGD,
    Callback,
    Dense,
    EarlyStopping,
    History,
    LambdaCallback,
    LearningRateScheduler,
    ProgressBar,
    Sequential,
)
from minidl.callbacks import monitor_mode
from minidl.optim import StepDecay

# ---------------------------------------------------------------------------- scripted driver


class FakeModel:
    """What callbacks see of a model; its single weight is the number of the last epoch."""

    def __init__(self):
        self.weights = [np.array([-1.0])]
        self.stop_training = False

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [np.array(w) for w in weights]


def drive(callback, values, monitor="val_loss"):
    """Run ``callback`` through a training whose epochs report ``values`` (fit's protocol).

    Returns (epochs run, model); ``model.weights[0][0]`` tells which epoch's weights remain.
    """
    model = FakeModel()
    callback.set_model(model)
    callback.on_train_begin({})
    epochs_run = 0
    for epoch, value in enumerate(values):
        callback.on_epoch_begin(epoch, {})
        model.weights = [np.array([float(epoch)])]
        callback.on_epoch_end(epoch, {monitor: value, "loss": 0.0})
        epochs_run += 1
        if model.stop_training:
            break
    callback.on_train_end({})
    return epochs_run, model


def final_weights_epoch(model):
    return int(model.weights[0][0])


# ---------------------------------------------------------------------------- EarlyStopping


def test_patience_counts_epochs_without_improvement():
    stopper = EarlyStopping(patience=2)
    epochs_run, _ = drive(stopper, [5.0, 4.0, 4.5, 4.2, 3.0])
    assert epochs_run == 4
    assert stopper.stopped_epoch == 3 and stopper.best_epoch == 1 and stopper.best == 4.0


def test_patience_zero_stops_at_the_first_epoch_without_improvement():
    stopper = EarlyStopping(patience=0)
    epochs_run, _ = drive(stopper, [5.0, 4.0, 4.0, 3.0])
    assert (epochs_run, stopper.stopped_epoch, stopper.best_epoch) == (3, 2, 1)


def test_no_stop_while_the_quantity_keeps_improving():
    stopper = EarlyStopping(patience=0)
    epochs_run, model = drive(stopper, [5.0, 4.0, 3.0, 2.0])
    assert (epochs_run, stopper.stopped_epoch, stopper.best_epoch) == (4, 0, 3)
    assert not model.stop_training


@pytest.mark.parametrize("min_delta", [0.5, -0.5])
def test_min_delta_is_the_least_change_that_counts_as_improvement(min_delta):
    stopper = EarlyStopping(min_delta=min_delta, patience=1)
    epochs_run, _ = drive(stopper, [5.0, 4.6, 4.4, 4.0])
    assert (epochs_run, stopper.stopped_epoch, stopper.best_epoch) == (2, 1, 0)
    without = EarlyStopping(patience=1)
    assert drive(without, [5.0, 4.6, 4.4, 4.0])[0] == 4


def test_auto_mode_maximises_accuracy_and_minimises_losses_and_errors():
    assert EarlyStopping(monitor="val_accuracy").mode == "max"
    assert EarlyStopping(monitor="f1").mode == "max"
    assert EarlyStopping(monitor="val_r2").mode == "max"
    assert EarlyStopping(monitor="val_loss").mode == "min"
    assert EarlyStopping(monitor="mae").mode == "min"
    assert EarlyStopping(monitor="val_relative_error").mode == "min"
    stopper = EarlyStopping(monitor="val_accuracy", patience=2)
    epochs_run, _ = drive(stopper, [0.5, 0.6, 0.55, 0.58, 0.9], monitor="val_accuracy")
    assert (epochs_run, stopper.stopped_epoch, stopper.best_epoch) == (4, 3, 1)


def test_explicit_mode_overrides_the_name():
    stopper = EarlyStopping(monitor="val_loss", mode="max", patience=0)
    epochs_run, _ = drive(stopper, [1.0, 2.0, 1.5])
    assert (epochs_run, stopper.stopped_epoch, stopper.best_epoch) == (3, 2, 1)
    custom = EarlyStopping(monitor="val_custom", mode="min", patience=0)
    assert drive(custom, [1.0, 2.0], monitor="val_custom")[0] == 2


def test_auto_mode_refuses_a_quantity_of_unknown_direction():
    with pytest.raises(ValueError, match=r"'val_custom'.*mode='min' or mode='max'"):
        EarlyStopping(monitor="val_custom")


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="mode must be 'auto', 'min' or 'max', got 'minimum'"):
        EarlyStopping(mode="minimum")


def test_negative_patience_is_rejected():
    with pytest.raises(ValueError, match="patience must be >= 0, got -1"):
        EarlyStopping(patience=-1)


def test_baseline_only_resets_patience_for_epochs_that_beat_it():
    # improving epochs that stay above the baseline do not reset the waiting counter
    stopper = EarlyStopping(baseline=3.0, patience=2)
    epochs_run, _ = drive(stopper, [5.0, 6.0, 7.0, 8.0])
    assert (epochs_run, stopper.stopped_epoch, stopper.best_epoch) == (2, 1, 0)
    assert drive(EarlyStopping(patience=2), [5.0, 6.0, 7.0, 8.0])[0] == 3
    # epochs that beat the baseline behave as without one
    beaten = EarlyStopping(baseline=3.0, patience=2)
    assert drive(beaten, [2.5, 2.6, 2.7, 2.8])[0] == 3


def test_start_from_epoch_ignores_the_warm_up_epochs():
    stopper = EarlyStopping(patience=0, start_from_epoch=2)
    epochs_run, _ = drive(stopper, [5.0, 6.0, 7.0, 8.0, 9.0])
    assert (epochs_run, stopper.stopped_epoch, stopper.best_epoch) == (4, 3, 2)
    assert stopper.best == 7.0


def test_restore_best_weights_after_an_early_stop():
    stopper = EarlyStopping(patience=2, restore_best_weights=True)
    epochs_run, model = drive(stopper, [5.0, 3.0, 4.0, 4.0, 1.0])
    assert (epochs_run, stopper.stopped_epoch, stopper.best_epoch) == (4, 3, 1)
    assert final_weights_epoch(model) == 1


def test_restore_best_weights_also_when_the_epochs_run_out():
    stopper = EarlyStopping(patience=5, restore_best_weights=True)
    epochs_run, model = drive(stopper, [5.0, 3.0, 4.0])
    assert (epochs_run, stopper.stopped_epoch, stopper.best_epoch) == (3, 0, 1)
    assert final_weights_epoch(model) == 1


def test_without_restore_the_last_weights_stay():
    stopper = EarlyStopping(patience=2)
    epochs_run, model = drive(stopper, [5.0, 3.0, 4.0, 4.0])
    assert epochs_run == 4 and final_weights_epoch(model) == 3


def test_restore_keeps_the_first_counted_epoch_when_nothing_improves():
    # NaN never improves on anything: the weights of the first counted epoch are kept
    stopper = EarlyStopping(patience=2, restore_best_weights=True, start_from_epoch=1)
    epochs_run, model = drive(stopper, [1.0, math.nan, math.nan, math.nan])
    assert (epochs_run, stopper.stopped_epoch) == (3, 2)
    assert final_weights_epoch(model) == 1


def test_missing_monitor_warns_with_the_available_keys_and_changes_nothing():
    stopper = EarlyStopping(monitor="val_loss", patience=0)
    model = FakeModel()
    stopper.set_model(model)
    stopper.on_train_begin({})
    with pytest.warns(RuntimeWarning, match=r"'val_loss' is not in the logs; available: "
                                            r"\['accuracy', 'loss'\]"):
        stopper.on_epoch_end(3, {"loss": 1.0, "accuracy": 0.5})
    assert stopper.wait == 0 and not model.stop_training and stopper.best == math.inf


def test_missing_monitor_in_a_real_fit_warns_every_epoch_and_never_stops():
    x, y = tiny_regression()
    model = Sequential([Dense(1)], input_dim=3, seed=0)
    model.compile("sgd", "mse")
    stopper = EarlyStopping(monitor="val_loss", patience=0)
    with pytest.warns(RuntimeWarning, match=r"available: \['loss'\]") as caught:
        history = model.fit(x, y, epochs=3, callbacks=[stopper], verbose=0)
    assert len(caught) == 3 and len(history.epoch) == 3


def test_reusing_the_same_object_starts_from_scratch():
    stopper = EarlyStopping(patience=1, restore_best_weights=True)
    drive(stopper, [1.0, 2.0, 3.0])
    assert stopper.stopped_epoch == 1
    epochs_run, model = drive(stopper, [9.0, 8.0, 7.0])
    assert (epochs_run, stopper.stopped_epoch, stopper.best_epoch, stopper.best) == (3, 0, 2, 7.0)
    assert final_weights_epoch(model) == 2


def reference_early_stopping(values, min_delta, patience, mode, baseline, start_from_epoch):
    """REFERENCE.md's rules, epoch by epoch: (epochs run, stopped_epoch, best_epoch, epoch
    whose weights are restored or None)."""
    sign = 1.0 if mode == "min" else -1.0
    # in "min" form: a better value is a smaller sign * value
    best, wait, best_epoch, kept = math.inf, 0, 0, None
    for epoch, value in enumerate(values):
        if epoch < start_from_epoch:
            continue
        kept = epoch if kept is None else kept
        wait += 1
        if sign * value < best - abs(min_delta):
            best, best_epoch, kept = sign * value, epoch, epoch
            if baseline is None or sign * value < sign * baseline - abs(min_delta):
                wait = 0
        elif wait >= patience and epoch > 0:
            return epoch + 1, epoch, best_epoch, kept
    return len(values), 0, best_epoch, kept


@given(values=st.lists(st.sampled_from([0.0, 0.5, 1.0, 1.2, 2.0, 3.0]), min_size=1,
                       max_size=12),
       min_delta=st.sampled_from([0.0, 0.1, 0.5, -0.3]),
       patience=st.integers(0, 4),
       mode=st.sampled_from(["min", "max"]),
       baseline=st.sampled_from([None, 0.5, 1.5]),
       start_from_epoch=st.integers(0, 3))
def test_early_stopping_agrees_with_a_reference_of_the_keras_rules(
        values, min_delta, patience, mode, baseline, start_from_epoch):
    stopper = EarlyStopping(min_delta=min_delta, patience=patience, mode=mode,
                            baseline=baseline, restore_best_weights=True,
                            start_from_epoch=start_from_epoch)
    epochs_run, model = drive(stopper, values)
    expected_run, expected_stop, expected_best, kept = reference_early_stopping(
        values, min_delta, patience, mode, baseline, start_from_epoch)
    assert (epochs_run, stopper.stopped_epoch, stopper.best_epoch) == (
        expected_run, expected_stop, expected_best)
    assert final_weights_epoch(model) == (epochs_run - 1 if kept is None else kept)


def tiny_regression():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 3)).astype(np.float32)
    return x, x @ np.array([[1.0], [-2.0], [0.5]], dtype=np.float32)


def test_early_stopping_in_a_real_fit_restores_the_first_epochs_weights():
    x, y = tiny_regression()
    model = Sequential([Dense(1)], input_dim=3, seed=0)
    model.compile(SGD(model.parameters(), lr=0.05), "mse")
    weights_after = []
    record = LambdaCallback(on_epoch_end=lambda epoch, logs: weights_after.append(
        model.get_weights()))
    # a min_delta nothing can beat: only epoch 0 (against +inf) improves
    stopper = EarlyStopping(monitor="loss", min_delta=1e9, patience=2,
                            restore_best_weights=True)
    history = model.fit(x, y, epochs=10, callbacks=[record, stopper], verbose=0)
    assert len(history.epoch) == 3
    assert (stopper.stopped_epoch, stopper.best_epoch) == (2, 0)
    assert model.epoch == 3
    for restored, first in zip(model.get_weights(), weights_after[0], strict=True):
        np.testing.assert_array_equal(restored, first)
    assert not np.array_equal(weights_after[0][0], weights_after[2][0])


def test_early_stopping_in_a_real_fit_restores_when_the_epochs_run_out():
    x, y = tiny_regression()
    model = Sequential([Dense(1)], input_dim=3, seed=0)
    model.compile(SGD(model.parameters(), lr=0.05), "mse")
    val_losses, weights_after = [], []
    record = LambdaCallback(on_epoch_end=lambda epoch, logs: (
        val_losses.append(logs["val_loss"]), weights_after.append(model.get_weights())))
    stopper = EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True)
    history = model.fit(x, y, epochs=4, validation_split=0.25, callbacks=[record, stopper],
                        verbose=0)
    assert len(history.epoch) == 4 and stopper.stopped_epoch == 0
    best = int(np.argmin(val_losses))
    assert stopper.best_epoch == best
    for restored, kept in zip(model.get_weights(), weights_after[best], strict=True):
        np.testing.assert_array_equal(restored, kept)


# ---------------------------------------------------------------------------- History


def classification_fit(**fit_arguments):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 4)).astype(np.float32)
    y = rng.integers(0, 3, 30)
    model = Sequential([Dense(6, activation="relu"), Dense(3, activation="softmax")],
                       input_dim=4, seed=0)
    model.compile("adam", "cross_entropy", metrics=["accuracy"])
    return model, model.fit(x, y, **{"verbose": 0, **fit_arguments})


def test_history_records_every_epoch_under_its_number():
    _, history = classification_fit(epochs=3, validation_split=0.2)
    assert history.epoch == [0, 1, 2]
    assert list(history.history) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert all(len(values) == 3 for values in history.history.values())


def test_history_plot_draws_one_panel_per_quantity_with_validation_curves():
    _, history = classification_fit(epochs=3, validation_split=0.2)
    figure = history.plot()
    try:
        assert isinstance(figure, Figure)
        assert [axis.get_title() for axis in figure.axes] == ["loss", "accuracy"]
        assert [len(axis.get_lines()) for axis in figure.axes] == [2, 2]
        np.testing.assert_array_equal(figure.axes[0].get_lines()[1].get_ydata(),
                                      history.history["val_loss"])
    finally:
        plt.close(figure)
    only_loss = history.plot(keys=["loss"])
    try:
        assert len(only_loss.axes) == 1
    finally:
        plt.close(only_loss)


def test_history_plot_numbers_epochs_from_one_and_marks_the_restored_epoch():
    _, history = classification_fit(epochs=4, validation_split=0.2)
    figure = history.plot(restored_epoch=2)
    try:
        for axis in figure.axes:
            train, validation, mark = axis.get_lines()
            assert validation.get_label() == "validation"
            np.testing.assert_array_equal(train.get_xdata(), [1, 2, 3, 4])
            np.testing.assert_array_equal(mark.get_xdata(), [3, 3])  # the third epoch
            assert mark.get_label() == "restored (epoch 3)"
    finally:
        plt.close(figure)
    with pytest.raises(ValueError, match=r"restored_epoch 7 was not recorded; recorded epochs: "
                                         r"0\.\.3"):
        history.plot(restored_epoch=7)


def test_history_plot_rejects_unknown_keys_and_an_empty_history():
    _, history = classification_fit(epochs=1)
    with pytest.raises(ValueError, match=r"unknown keys \['val_loss'\]; recorded"):
        history.plot(keys=["val_loss"])
    with pytest.raises(ValueError, match="history is empty"):
        History().plot()


# ---------------------------------------------------------------------------- ProgressBar


class Terminal(io.StringIO):
    """sys.stderr as the progress bar sees a terminal: ``isatty()`` is true and the size is
    that of a real pseudo-terminal (a new one reports 0 × 0 until it is given a size, as in
    some containers). What is written stays here, read back without racing a reader."""

    def __init__(self, columns=None):
        super().__init__()
        self.leader, self.follower = os.openpty()
        if columns is not None:
            size = struct.pack("HHHH", 24, columns, 0, 0)  # rows, columns, pixel width, height
            fcntl.ioctl(self.follower, termios.TIOCSWINSZ, size)

    def isatty(self):
        return True

    def fileno(self):
        return self.follower

    def screen_lines(self):
        """The lines as they stay on the screen: each ends as its last carriage return left it."""
        return [line.rsplit("\r", 1)[-1] for line in self.getvalue().split("\n")[:-1]]

    def bar_frames(self):
        """Every picture the bar drew (``Epoch 1/2:  33%|###    | 1/3 [...]``)."""
        return [frame for frame in re.split("[\r\n]", self.getvalue()) if "%|" in frame]


@pytest.fixture
def stderr_terminal(monkeypatch):
    """``stderr_terminal(columns)`` puts a ``Terminal`` in place of sys.stderr."""
    opened = []

    def install(columns=None):
        terminal = Terminal(columns)
        opened.append(terminal)
        monkeypatch.setattr(sys, "stderr", terminal)
        return terminal

    yield install
    for terminal in opened:
        os.close(terminal.leader)
        os.close(terminal.follower)


def epoch_lines_match_history(lines, history):
    """Each line is ``Epoch k/E - <seconds>s - key: value - ...`` with every key of the
    history, in its order, and the value logged at epoch k to the four decimals printed."""
    epochs = len(history.epoch)
    assert len(lines) == epochs, lines
    for index, line in enumerate(lines):
        assert line.startswith(f"Epoch {index + 1}/{epochs} - "), line
        _, seconds, *pairs = line.split(" - ")
        assert seconds.endswith("s") and float(seconds[:-1]) >= 0
        shown = dict(pair.split(": ") for pair in pairs)
        assert list(shown) == list(history.history)
        for key, text in shown.items():
            assert float(text) == pytest.approx(history.history[key][index], rel=1e-3, abs=5e-5)


def classification_fit_logging_lr(**fit_arguments):
    schedule = LearningRateScheduler(lambda epoch, lr: 1e-4 * (epoch + 1))
    return classification_fit(epochs=2, batch_size=8, validation_split=0.2,
                              callbacks=[schedule], **fit_arguments)


def test_end_of_epoch_line_on_an_80_column_terminal_shows_every_logged_value(stderr_terminal):
    terminal = stderr_terminal(columns=80)
    _, history = classification_fit_logging_lr(verbose=1)
    assert list(history.history) == ["loss", "accuracy", "val_loss", "val_accuracy",
                                     "learning_rate"]
    epoch_lines_match_history(terminal.screen_lines(), history)
    frames = terminal.bar_frames()
    assert frames and all(len(frame) < 80 for frame in frames)


def test_a_terminal_reporting_0_columns_gets_an_80_column_bar_and_no_blank_lines(
        stderr_terminal):
    terminal = stderr_terminal()
    assert tuple(os.get_terminal_size(terminal.fileno())) == (0, 0)
    _, history = classification_fit_logging_lr(verbose=1)
    epoch_lines_match_history(terminal.screen_lines(), history)
    frames = terminal.bar_frames()
    assert frames and all(len(frame) < 80 for frame in frames)


def test_redirected_output_is_one_clean_line_per_epoch_on_stderr(capsys):
    _, history = classification_fit_logging_lr(verbose=1)
    captured = capsys.readouterr()
    assert captured.out == "" and "\r" not in captured.err
    epoch_lines_match_history(captured.err.splitlines(), history)


def test_verbose_0_is_silent(capfd):
    classification_fit(epochs=2, verbose=0)
    assert capfd.readouterr() == ("", "")


def test_progress_bar_is_left_where_training_stopped_mid_epoch(stderr_terminal):
    terminal = stderr_terminal(columns=80)
    bar = ProgressBar()

    def fail(batch, logs):
        raise RuntimeError("stopped by the user")

    with pytest.raises(RuntimeError, match="stopped by the user"):
        classification_fit(epochs=2, callbacks=[bar, LambdaCallback(on_batch_end=fail)])
    assert bar.bar is None
    assert terminal.screen_lines()[-1].startswith("Epoch 1/2:")


# ---------------------------------------------------------------------------- schedules


def test_learning_rate_scheduler_with_step_decay_sets_lr_each_epoch_and_records_it():
    x, y = tiny_regression()
    model = Sequential([Dense(1)], input_dim=3, seed=0)
    model.compile(SGD(model.parameters(), lr=1.0), "mse")
    lr_in_batches = []
    probe = LambdaCallback(on_batch_end=lambda batch, logs: lr_in_batches.append(
        model.optimizer.lr))
    schedule = LearningRateScheduler(StepDecay(0.1, step_size=2, gamma=0.5))
    history = model.fit(x, y, epochs=5, batch_size=10, callbacks=[schedule, probe], verbose=0)
    expected = [0.1, 0.1, 0.05, 0.05, 0.025]
    assert history.history["learning_rate"] == pytest.approx(expected)
    assert lr_in_batches == pytest.approx([lr for lr in expected for _ in range(2)])
    assert model.optimizer.lr == pytest.approx(0.025)


def test_learning_rate_scheduler_receives_the_current_rate_and_rejects_bad_ones():
    x, y = tiny_regression()
    model = Sequential([Dense(1)], input_dim=3, seed=0)
    model.compile(SGD(model.parameters(), lr=0.04), "mse")
    halve = LearningRateScheduler(lambda epoch, lr: lr / 2)
    history = model.fit(x, y, epochs=3, callbacks=[halve], verbose=0)
    assert history.history["learning_rate"] == pytest.approx([0.02, 0.01, 0.005])
    negative = LearningRateScheduler(lambda epoch, lr: -1.0)
    with pytest.raises(ValueError, match=r"schedule returned -1\.0 at epoch 0"):
        model.fit(x, y, callbacks=[negative], verbose=0)


# ---------------------------------------------------------------------------- protocol


def test_lambda_callback_hooks_are_called_in_keras_order():
    events = []
    recorder = LambdaCallback(
        on_train_begin=lambda logs: events.append("train_begin"),
        on_epoch_begin=lambda epoch, logs: events.append(f"epoch_begin {epoch}"),
        on_batch_end=lambda batch, logs: events.append(f"batch_end {batch} {logs['size']}"),
        on_epoch_end=lambda epoch, logs: events.append(f"epoch_end {epoch} {sorted(logs)}"),
        on_train_end=lambda logs: events.append("train_end"))
    classification_fit(epochs=2, batch_size=10, validation_split=0.2, callbacks=[recorder])
    keys = "['accuracy', 'loss', 'val_accuracy', 'val_loss']"
    assert events == [
        "train_begin",
        "epoch_begin 0", "batch_end 0 10", "batch_end 1 10", "batch_end 2 4",
        f"epoch_end 0 {keys}",
        "epoch_begin 1", "batch_end 0 10", "batch_end 1 10", "batch_end 2 4",
        f"epoch_end 1 {keys}",
        "train_end",
    ]


def test_callbacks_get_the_model_and_the_training_parameters():
    seen = {}

    class Probe(Callback):
        def on_train_begin(self, logs=None):
            seen["model"], seen["params"] = self.model, dict(self.params)

    model, _ = classification_fit(epochs=3, batch_size=8, callbacks=[Probe()])
    assert seen["model"] is model
    assert seen["params"] == {"epochs": 3, "steps": 4, "verbose": 0}


def test_stop_training_from_a_callback_stops_after_that_epoch():
    def stop_at_epoch_1(epoch, logs):
        if epoch == 1:
            stopper.model.stop_training = True

    stopper = LambdaCallback(on_epoch_end=stop_at_epoch_1)
    ended = []
    model, history = classification_fit(
        epochs=10, callbacks=[stopper, LambdaCallback(on_train_end=lambda logs: ended.append(1))])
    assert history.epoch == [0, 1]
    assert model.epoch == 2 and ended == [1]


def test_base_callback_hooks_do_nothing():
    callback = Callback()
    callback.set_model(FakeModel())
    callback.on_train_begin({})
    callback.on_epoch_begin(0, {})
    callback.on_batch_end(0, {})
    callback.on_epoch_end(0, {})
    callback.on_train_end({})
    assert not callback.model.stop_training


@pytest.mark.parametrize(("name", "mode"), [
    ("accuracy", "max"), ("top_k_accuracy", "max"), ("r2", "max"), ("precision", "max"),
    ("recall", "max"), ("f1", "max"), ("val_accuracy", "max"), ("mse", "min"), ("mae", "min"),
    ("relative_error", "min"), ("loss", "min"), ("val_loss", "min"), ("val_mae", "min")])
def test_auto_mode_knows_the_direction_of_every_builtin_metric(name, mode):
    assert monitor_mode(name, "auto") == mode


def test_every_builtin_metric_has_a_known_direction():
    from minidl.metrics import METRICS

    for name in METRICS:
        assert monitor_mode("val_" + name, "auto") in ("min", "max")
