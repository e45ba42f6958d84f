"""Helpers shared by the serving tests: test models on disk, an in-process server, waits.

Every wait here is bounded in time; every server started here is stopped by its context.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from minidl.layers import Dense
from minidl.model import Sequential
from minidl.serving import ModelConfig, ModelManager, ServingApp
from minidl.serving.engine import serving_in_thread

INPUT_DIM = 4
OUTPUT_DIM = 3


def save_version(base_path: str | os.PathLike, version: int | str, *, seed: int = 0,
                 dtype: str = "float32", input_dim: int = INPUT_DIM) -> Sequential:
    """Write ``base_path/<version>/model.npz`` (a small Dense network) and return the model."""
    model = Sequential([Dense(16, activation="relu"), Dense(OUTPUT_DIM)], input_dim=input_dim,
                       seed=seed, dtype=dtype)
    folder = os.path.join(os.fspath(base_path), str(version))
    os.makedirs(folder, exist_ok=True)
    model.save(os.path.join(folder, "model.npz"))
    return model


def write_corrupt_version(base_path: str | os.PathLike, version: int) -> str:
    folder = os.path.join(os.fspath(base_path), str(version))
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "model.npz")
    with open(path, "wb") as file:
        file.write(b"PK\x03\x04 this is not a model")
    return path


def write_stand_ins(base_path: str | os.PathLike, relative_paths: list[str]) -> None:
    """Create ``base_path`` and, under it, each of ``relative_paths`` as a small file that is
    not a model, or a folder if it ends with "/": the layouts people try instead of
    ``BASE/<integer version>/model.npz``."""
    os.makedirs(base_path, exist_ok=True)
    for relative_path in relative_paths:
        path = os.path.join(os.fspath(base_path), relative_path)
        if relative_path.endswith("/"):
            os.makedirs(path, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as file:
            file.write(b"stand-in")


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0,
               interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(app: Any, **server_options: Any) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 (a free port) in a thread; yields the base URL. Stops the
    server, and with it the app, at exit."""
    with serving_in_thread(app, **server_options) as server:
        yield server.url


class FakeModel:
    """A model stand-in with the serving interface: y = 2x, optionally held at a gate."""

    def __init__(self, input_shape: tuple[int, ...] = (INPUT_DIM,),
                 gate: threading.Event | None = None,
                 fail_with: BaseException | None = None) -> None:
        self.input_shape = input_shape
        self.output_shape = input_shape
        self.dtype = np.dtype(np.float32)
        self.gate = gate
        self.fail_with = fail_with
        self.entered = threading.Event()
        self.calls: list[int] = []

    def predict(self, x: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        self.calls.append(len(x))
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail_with is not None:
            raise self.fail_with
        return x * 2


def gated_app(base_path: Any, gate: threading.Event | None,
              **options: Any) -> tuple[ServingApp, FakeModel]:
    """An app serving a FakeModel (y = 2x) named "m" that waits for ``gate`` in predict;
    ``options`` go to ServingApp. Returns the app and the model."""
    model = FakeModel(gate=gate)
    os.makedirs(os.path.join(os.fspath(base_path), "1"))
    with open(os.path.join(os.fspath(base_path), "1", "model.npz"), "wb") as file:
        file.write(b"stand-in")  # never read: the loader hands out the FakeModel
    manager = ModelManager([ModelConfig("m", os.fspath(base_path))],
                           file_system_poll_wait_seconds=0, loader=lambda path: model)
    return ServingApp(manager, **options), model


def error_of(response: Any, code: int) -> str:
    """The message of an error answer, checked: status ``code``, JSON, ``{"error": ...}``."""
    assert response.status_code == code, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"]
    return body["error"]


def metric_value(text: str, sample: str) -> float:
    """The value of the sample line ``sample`` (name with labels) in a metrics page, or 0."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
