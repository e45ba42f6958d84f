"""The programs that tests/test_distributed.py runs under ``mpiexec -n 2``, and the same
trainings in one process for the tests to compare with.

    python tests/distributed_support.py train FOLDER       # every training below
    python tests/distributed_support.py raise FOLDER       # rank 1 raises at epoch 3
    python tests/distributed_support.py kill FOLDER        # rank 1 is SIGKILLed at epoch 3
    python tests/distributed_support.py mismatch FOLDER    # rank 1 has other data

Each process writes what it ended with under FOLDER/rank{r}/, so the tests can compare the
processes with each other and with one process (``distribute=None``).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import minidl
from minidl.layers import (
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    MaxPooling2D,
)

# 214 rows, validation_split=0.2: 171 training rows, batches of 17 (9 + 8 rows in two
# processes) and a last one of 1 row (1 + 0: a process without rows), 43 validation rows
ROWS, BATCH_SIZE, EPOCHS = 214, 17, 4
IMAGES = 52  # batches of 17, 17, 17 and 1
FAILING_EPOCH = 2  # numbered from 0: the third


def tabular(dtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((ROWS, 5)).astype(dtype)
    y = (x[:, 0] + x[:, 1] ** 2 > 0.5).astype(np.int64) + (x[:, 2] > 1)
    return x, y, rng.uniform(0.5, 2.0, ROWS)


def mlp(dtype: str, lr: float = 0.01) -> minidl.Sequential:
    model = minidl.Sequential(
        [Dense(16, activation="relu", kernel_regularizer={"class_name": "L2",
                                                          "config": {"l2": 1e-3}}),
         Dropout(0.25), BatchNormalization(momentum=0.9), Dense(3, activation="softmax")],
        input_dim=5, seed=1, dtype=dtype)
    model.compile(minidl.Adam(model.parameters(), lr=lr), "sparse_categorical_crossentropy",
                  metrics=["accuracy", "auc"])
    return model


def cnn() -> minidl.Sequential:
    model = minidl.Sequential(
        [Conv2D(4, 3, activation="relu"), BatchNormalization(momentum=0.8), MaxPooling2D(),
         Flatten(), Dropout(0.2), Dense(3, activation="softmax")],
        input_dim=(6, 6, 1), seed=2, dtype="float64")
    model.compile("momentum", "cross_entropy", metrics=["accuracy"])
    return model


def train_mlp(dtype: str, distribute: Any = None) -> tuple[minidl.Sequential, dict]:
    x, y, weights = tabular(dtype)
    model = mlp(dtype)
    history = model.fit(x, y, epochs=EPOCHS, batch_size=BATCH_SIZE, validation_split=0.2,
                        sample_weight=weights, verbose=0, distribute=distribute)
    return model, history.history


def train_cnn(distribute: Any = None) -> tuple[minidl.Sequential, dict]:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((IMAGES, 6, 6, 1))
    y = rng.integers(0, 3, IMAGES)
    model = cnn()
    history = model.fit(x, y, epochs=EPOCHS, batch_size=BATCH_SIZE, verbose=0,
                        distribute=distribute)
    return model, history.history


def train_until_early_stop(folder: Path, distribute: Any = None) -> tuple[int, int]:
    """(the epoch EarlyStopping stopped at, the epochs run), with a CSV log and a checkpoint
    per epoch written to ``folder``."""
    x, y, _ = tabular("float64")
    model = mlp("float64", lr=0.05)
    stopping = minidl.EarlyStopping(monitor="val_loss", min_delta=0.02, patience=1)
    callbacks = [stopping, minidl.CSVLogger(folder / "log.csv"),
                 minidl.ModelCheckpoint(str(folder / "ckpt" / "e{epoch}.npz"))]
    history = model.fit(x, y, epochs=30, batch_size=BATCH_SIZE, validation_split=0.2,
                        callbacks=callbacks, verbose=0, distribute=distribute)
    return stopping.stopped_epoch, len(history.history["loss"])


class Interrupted(Exception):
    """What interrupts a training that leaves a backup to resume from."""


def train_resumed(backup_dir: Path, distribute: Any = None,
                  fail_at: int | None = None) -> minidl.Sequential:
    """The MLP trained for EPOCHS with a BackupAndRestore in ``backup_dir``; with
    ``fail_at``, interrupted (``Interrupted``) when that epoch begins: the backup stays."""
    x, y, _ = tabular("float64")
    model = mlp("float64")
    callbacks: list[minidl.Callback] = [minidl.BackupAndRestore(backup_dir)]
    if fail_at is not None:
        def fail(epoch: int, logs: Any) -> None:
            if epoch == fail_at:
                raise Interrupted(f"epoch {epoch + 1}")
        callbacks.append(minidl.LambdaCallback(on_epoch_begin=fail))
    model.fit(x, y, epochs=EPOCHS, batch_size=BATCH_SIZE, callbacks=callbacks, verbose=0,
              distribute=distribute)
    return model


def save(model: minidl.Sequential, history: dict | None, path: Path) -> None:
    np.savez(path.with_suffix(".npz"), *model.get_weights())
    if history is not None:
        path.with_suffix(".json").write_text(json.dumps(
            {key: [float(v) for v in values] for key, values in history.items()}))


def run_all(parallel: Any, folder: Path) -> None:
    for dtype in ("float64", "float32"):
        save(*train_mlp(dtype, parallel), folder / f"mlp_{dtype}")
    save(*train_cnn(parallel), folder / "cnn")
    (folder / "files").mkdir()
    stopped, epochs = train_until_early_stop(folder / "files", parallel)
    (folder / "early_stopping.json").write_text(json.dumps([stopped, epochs]))
    # BackupAndRestore runs on rank 0 only: the backup every process resumes from is rank 0's
    save(train_resumed(folder.parent / "backup", parallel), None, folder / "resumed")


def fail(parallel: Any, folder: Path, how: str) -> None:
    """Train with a checkpoint per epoch; rank 1 fails when epoch FAILING_EPOCH begins."""
    x, y, _ = tabular("float64")
    model = mlp("float64")

    def failure(epoch: int, logs: Any) -> None:
        if parallel.rank == 1 and epoch == FAILING_EPOCH:
            print(f"failing at {time.time()}", file=sys.stderr, flush=True)
            if how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(f"injected failure at epoch {epoch + 1}")

    checkpoint = minidl.ModelCheckpoint(str(folder.parent / "ckpt" / "e{epoch}.npz"))
    model.fit(x, y, epochs=EPOCHS, batch_size=BATCH_SIZE, verbose=1,
              callbacks=[checkpoint, minidl.LambdaCallback(on_epoch_begin=failure)],
              distribute=parallel)
    if parallel.is_chief:
        model.save(folder.parent / "model.npz")


def main(scenario: str, folder: str) -> None:
    from minidl.distributed import DataParallel

    parallel = DataParallel()
    here = Path(folder) / f"rank{parallel.rank}"
    here.mkdir(parents=True)
    if scenario == "train":
        run_all(parallel, here)
    elif scenario == "mismatch":
        x, y, _ = tabular("float64")
        mlp("float64").fit(x[parallel.rank:], y[parallel.rank:], verbose=0,
                           distribute=parallel)
    else:
        fail(parallel, here, scenario)


if __name__ == "__main__":
    main(*sys.argv[1:])
