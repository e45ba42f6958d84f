"""Callbacks that write the model to files during ``fit``: :class:`ModelCheckpoint` (files
to keep) and :class:`BackupAndRestore` (one file to resume from after a crash).

Both write minidl's exact-resume files (``model.save``: weights, optimizer state, epoch and
random generators), which are written atomically: a crash mid-save leaves the previous
file whole.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from minidl.callbacks.base import Callback, Logs
from minidl.callbacks.monitoring import checked_mode, monitor_mode, monitored


def _save_due(callback: ModelCheckpoint | BackupAndRestore) -> bool:
    """Whether a callback that saves every ``save_freq`` batches saves after this one; the
    batches are counted across epochs, as Keras counts them."""
    if callback.save_freq == "epoch":
        return False
    callback._batches_since_save += 1
    if callback._batches_since_save < callback.save_freq:
        return False
    callback._batches_since_save = 0
    return True


def _is_batch_count(save_freq: object) -> bool:
    return (not isinstance(save_freq, bool) and isinstance(save_freq, int)
            and save_freq >= 1)


class ModelCheckpoint(Callback):
    """Save the model at the end of every epoch, or every ``save_freq`` batches, or only
    when the monitored value improves (Keras 3 semantics and messages).

    ``filepath`` may contain ``{epoch}`` (numbered from 1, like Keras' file names), with
    integer ``save_freq`` ``{batch}`` (from 1), and any key of the logs, e.g.
    ``"ckpt/epoch{epoch:03d}-{val_loss:.3f}.npz"``. The file is ``model.save(filepath)``: it
    holds the epoch counter, the optimizer state and the shuffling RNG state, so
    ``load_model(path)`` followed by ``fit(..., initial_epoch=k)`` continues exactly where
    this run was; with ``save_weights_only=True`` it is ``model.save_weights(filepath)``.

    With ``save_best_only=True`` a file is written only when the monitored value beats the
    best so far (``mode`` as for ``EarlyStopping``); the first value always does, unless
    ``initial_value_threshold`` is given as the value to beat. The best is kept across
    ``fit`` calls, so a second ``fit`` does not overwrite the best file with a worse epoch.
    """

    chief_only = True  # in data-parallel training, only rank 0 writes

    def __init__(self, filepath: str | os.PathLike, monitor: str = "val_loss",
                 verbose: int = 0, save_best_only: bool = False,
                 save_weights_only: bool = False, mode: str = "auto",
                 save_freq: str | int = "epoch",
                 initial_value_threshold: float | None = None) -> None:
        super().__init__()
        if save_freq != "epoch" and not _is_batch_count(save_freq):
            raise ValueError(f"Unrecognized save_freq: {save_freq!r}. Expected save_freq are "
                             f"'epoch' or integer values >= 1")
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        # the direction matters only for save_best_only, where "auto" must resolve
        self.mode = monitor_mode(monitor, mode) if save_best_only else checked_mode(mode)
        self.save_freq = save_freq
        self.best = initial_value_threshold
        self._batches_since_save = 0
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self._epoch = epoch

    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        if _save_due(self):
            self._save(self._epoch, batch, logs or {})

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if self.save_freq == "epoch":
            self._save(epoch, None, logs or {})

    def _improves(self, current: float) -> bool:
        if self.best is None:
            return True
        return current < self.best if self.mode == "min" else current > self.best

    def _save(self, epoch: int, batch: int | None, logs: Logs) -> None:
        path = self._file_path(epoch, batch, logs)
        if self.save_best_only:
            current = monitored(self, self.monitor, logs)
            if current is None:
                return
            best = "None" if self.best is None else f"{self.best:.5f}"
            if not self._improves(current):
                self._say(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {best}")
                return
            self._say(f"\nEpoch {epoch + 1}: {self.monitor} improved from {best} to "
                      f"{current:.5f}, saving model to {path}")
            self.best = current
        else:
            self._say(f"\nEpoch {epoch + 1}: saving model to {path}")
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)
        self._say(f"\nEpoch {epoch + 1}: finished saving model to {path}")

    def _file_path(self, epoch: int, batch: int | None, logs: Logs) -> str:
        fields: dict[str, Any] = {"epoch": epoch + 1, **logs}
        if batch is not None and "batch" not in logs:
            fields["batch"] = batch + 1
        try:
            return self.filepath.format(**fields)
        except KeyError as error:
            raise KeyError(f'Failed to format this callback filepath: "{self.filepath}". '
                           f"Reason: {error}") from error

    def _say(self, message: str) -> None:
        if self.verbose > 0:
            print(message, flush=True)


class BackupAndRestore(Callback):
    """Resume an interrupted ``fit`` where it was (Keras 3's callback, on minidl's files).

    At the end of every epoch (or every ``save_freq`` batches) the model is saved to
    ``backup_dir/latest.npz``, over the previous backup. When ``fit`` starts and a backup is
    there, the model takes back its weights, optimizer state, random generators and epoch,
    and ``fit`` continues from that epoch (``model._initial_epoch``, Keras' mechanism). With
    epoch backups the resumed run ends with the same weights, bit for bit, as a run that
    was never interrupted; with ``save_freq`` batches the interrupted epoch restarts from
    its beginning with the weights of the last backup (as in Keras).

    When training ends (all its epochs, or stopped by a callback) the backup is deleted if
    ``delete_checkpoint``; when ``fit`` ends with an error it is kept for the next run. Give
    each training its own ``backup_dir``, and the same model, compile and fit arguments
    when resuming.
    """

    # in data-parallel training only rank 0 reads and writes the backup; fit then gives
    # every process what it restored (minidl.distributed)
    chief_only = True

    def __init__(self, backup_dir: str | os.PathLike, save_freq: str | int = "epoch", *,
                 delete_checkpoint: bool = True) -> None:
        super().__init__()
        if not backup_dir:
            raise ValueError("Empty `backup_dir` argument passed")
        if save_freq != "epoch" and not _is_batch_count(save_freq):
            raise ValueError(f"Invalid value for argument `save_freq`. Received: "
                             f"save_freq={save_freq!r}. Expected either 'epoch' or an integer "
                             f"value >= 1.")
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq
        self.delete_checkpoint = delete_checkpoint
        self.path = os.path.join(self.backup_dir, "latest.npz")
        self._batches_since_save = 0
        self._epochs_done: int | None = None

    def on_train_begin(self, logs: Logs | None = None) -> None:
        if not self.model.built:
            raise ValueError("BackupAndRestore: the model must be built before fit; give "
                             "Sequential an input_dim")
        self._batches_since_save = 0
        self._epochs_done = None
        if os.path.exists(self.path):
            self._epochs_done = _restore(self.model, self.path)
            self.model._initial_epoch = self._epochs_done

    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        if _save_due(self):
            self.model.save(self.path, include_optimizer=True)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        self._epochs_done = epoch + 1
        if self.save_freq == "epoch":
            self.model.save(self.path, include_optimizer=True)

    def on_train_end(self, logs: Logs | None = None) -> None:
        # fit calls on_train_end after an error too (to close the progress bar): only a
        # training that ran all its epochs or was stopped on purpose has no use for the backup
        epochs = self.params.get("epochs")
        finished = self.model.stop_training or (
            self._epochs_done is not None and epochs is not None and self._epochs_done >= epochs)
        if finished and self.delete_checkpoint:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
            with contextlib.suppress(OSError):  # a folder that holds other files stays
                os.rmdir(self.backup_dir)


def _restore(model: Any, path: str) -> int:
    """Put the training state saved in ``path`` into ``model``; return its epoch."""
    # the model package reads its files; callbacks sit below it, so it is imported only
    # when there is a backup to read
    from minidl.model.saving import load_model

    saved = load_model(path)
    model.set_weights(saved.get_weights())
    model.optimizer.load_state_dict(saved.optimizer.state_dict())
    generators = model._generators()
    for name, generator in saved._generators().items():
        generators[name].bit_generator.state = generator.bit_generator.state
    model.epoch = saved.epoch
    return saved.epoch
