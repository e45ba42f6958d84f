"""``python -m minidl demo``: the whole life of a model in one command.

Train an MLP on scikit-learn's bundled 8x8 digits (or on a synthetic set from
``minidl.data`` when scikit-learn is missing), with a progress bar and early stopping; print
the test metrics and the confusion matrix; save the training curves as a PNG and the model as
``FOLDER/digits/1/model.npz``; serve it on 127.0.0.1 with the TensorFlow-Serving-compatible
server; send a TensorFlow-Serving-style predict request for a few test images and print the
answers next to the true labels; then keep serving until Ctrl-C or SIGTERM (or stop at once
with ``--once``). Nothing leaves the machine: the only connection is to 127.0.0.1.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from minidl import metrics
from minidl.callbacks import EarlyStopping
from minidl.data import make_spirals, train_test_split
from minidl.layers import Dense, Normalization
from minidl.model import Sequential

MODEL_NAME = "digits"


def _load_data() -> tuple[np.ndarray, np.ndarray, str]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        x, y = make_spirals(n_per_class=300, n_classes=3, noise=0.2, seed=0)
        return x, y, "synthetic spirals (scikit-learn is not installed)"
    digits = load_digits()
    return (digits.data.astype(np.float32), digits.target.astype(np.int64),
            "scikit-learn's bundled 8x8 digits")


def _save_curves(history, restored_epoch: int, path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")  # a file, not a window: works on machines without a screen
    except ImportError:
        return "training curves not drawn: pip install 'minidl[plot]' for matplotlib"
    figure = history.plot(restored_epoch=restored_epoch)
    figure.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return f"training curves saved to {path}"


def _query(url: str, instances: list) -> list:
    """A TensorFlow Serving REST predict call, written with the standard library only."""
    body = json.dumps({"signature_name": "serving_default", "instances": instances}).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["predictions"]


def _check_port_is_free(port: int) -> None:
    """Fail before training, not after, when the port is taken (binding as the server does)."""
    if port == 0:
        return
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
    except OSError as error:
        # one argument: the command line prints it as it is, without an errno prefix
        raise OSError(f"port {port} on 127.0.0.1 is not available ({error.strerror}; "
                      f"--port): stop what uses it or choose another port, --port 0 for any "
                      f"free one") from None
    finally:
        probe.close()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(port: int = 8501, once: bool = False, epochs: int = 60,
             folder: str = "models") -> int:
    """Train, save, serve and query (module docstring); SIGINT and SIGTERM stop it at any
    point, also when it was started in the background with SIGINT ignored."""
    _check_port_is_free(port)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, _interrupt)
    try:
        return _train_save_serve(port, once, epochs, folder)
    except KeyboardInterrupt:
        print("\nstopped", flush=True)
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _train_save_serve(port: int, once: bool, epochs: int, folder: str) -> int:
    from minidl.serving import create_app
    from minidl.serving.engine import serving_in_thread

    x, y, source = _load_data()
    print(f"data: {source}: {x.shape[0]} examples, {x.shape[1]} features, "
          f"{len(np.unique(y))} classes")
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, seed=0,
                                                        stratify=True)
    # the scaling is the model's first layer: the saved model takes raw pixels, as clients
    # send them, and the file alone reproduces what training reports below
    model = Sequential([Normalization(), Dense(64, activation="relu"),
                        Dense(64, activation="relu"),
                        Dense(len(np.unique(y)), activation="softmax")],
                       input_dim=x.shape[1], seed=0)
    model.layers[0].adapt(x_train)
    model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"])
    model.summary()
    early_stopping = EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True)
    history = model.fit(x_train, y_train, epochs=epochs, batch_size=32, validation_split=0.1,
                        callbacks=[early_stopping], verbose=1)
    probabilities = model.predict(x_test)
    predicted = probabilities.argmax(axis=1)
    print(f"\ntrained {len(history.epoch)} epochs, kept the weights of epoch "
          f"{early_stopping.best_epoch + 1} (lowest val_loss); test accuracy "
          f"{metrics.accuracy(y_test, probabilities):.4f}, macro F1 "
          f"{metrics.f1(y_test, predicted):.4f}")
    print("confusion matrix (rows: true class, columns: predicted):")
    print(metrics.confusion_matrix(y_test, predicted))

    base_path = Path(folder) / MODEL_NAME
    model_path = base_path / "1" / "model.npz"
    model.save(model_path)
    print(f"model saved to {model_path}")
    curves = Path(folder) / f"{MODEL_NAME}_training.png"
    print(_save_curves(history, early_stopping.best_epoch, curves))

    app = create_app(model_name=MODEL_NAME, model_base_path=str(base_path.resolve()),
                     file_system_poll_wait_seconds=1.0)
    with serving_in_thread(app, port=port) as server:
        url = f"{server.url}/v1/models/{MODEL_NAME}:predict"
        started = time.perf_counter()
        predictions = _query(url, x_test[:8].tolist())
        elapsed_ms = (time.perf_counter() - started) * 1000
        print(f"\nPOST {url}  ({elapsed_ms:.1f} ms)")
        print("  true  predicted  probability")
        for label, row in zip(y_test[:8], predictions, strict=True):
            guess = int(np.argmax(row))
            print(f"  {label:>4}  {guess:>9}  {row[guess]:.3f}")
        if once:
            return 0
        print(f"\nserving {MODEL_NAME} at {server.url}/v1/models/{MODEL_NAME} "
              f"(Ctrl-C to stop)", flush=True)
        while True:  # until Ctrl-C or SIGTERM (see main): the server stops with the block
            time.sleep(3600)
