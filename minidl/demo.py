"""``python -m minidl demo``: the whole life of a model in one command.

Train an MLP on scikit-learn's bundled 8x8 digits (or on a synthetic set from
``minidl.data`` when scikit-learn is missing), with a progress bar and early stopping; print
the test metrics and the confusion matrix; save the training curves as a PNG and the model as
``FOLDER/digits/1/model.npz``; serve it on 127.0.0.1 with the TensorFlow-Serving-compatible
server; send a TensorFlow-Serving-style predict request for a few test images and print the
answers next to the true labels; then keep serving until Ctrl-C (or stop at once with
``--once``). Nothing leaves the machine: the only connection is to 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from minidl import metrics
from minidl.callbacks import EarlyStopping
from minidl.data import StandardScaler, make_spirals, train_test_split
from minidl.layers import Dense
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


def _save_curves(history, path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")  # a file, not a window: works on machines without a screen
    except ImportError:
        return "training curves not drawn: pip install 'minidl[plot]' for matplotlib"
    figure = history.plot()
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


def run_demo(port: int = 8501, once: bool = False, epochs: int = 60,
             folder: str = "models") -> int:
    from minidl.serving import create_app
    from minidl.serving.server import make_server

    x, y, source = _load_data()
    print(f"data: {source}: {x.shape[0]} examples, {x.shape[1]} features, "
          f"{len(np.unique(y))} classes")
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, seed=0,
                                                        stratify=True)
    scaler = StandardScaler()
    x_train, x_test = scaler.fit_transform(x_train), scaler.transform(x_test)
    # the scaler is folded into the first layer below, so the served model takes raw pixels
    model = Sequential([Dense(64, activation="relu"), Dense(64, activation="relu"),
                        Dense(len(np.unique(y)), activation="softmax")],
                       input_dim=x.shape[1], seed=0)
    model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"])
    model.summary()
    history = model.fit(x_train, y_train, epochs=epochs, batch_size=32, validation_split=0.1,
                        callbacks=[EarlyStopping(monitor="val_loss", patience=5,
                                                 restore_best_weights=True)], verbose=1)
    probabilities = model.predict(x_test)
    predicted = probabilities.argmax(axis=1)
    print(f"\ntrained {len(history.epoch)} epochs; test accuracy "
          f"{metrics.accuracy(y_test, probabilities):.4f}, macro F1 "
          f"{metrics.f1(y_test, predicted):.4f}")
    print("confusion matrix (rows: true class, columns: predicted):")
    print(metrics.confusion_matrix(y_test, predicted))

    _fold_scaler_into_first_layer(model, scaler)
    base_path = Path(folder) / MODEL_NAME
    (base_path / "1").mkdir(parents=True, exist_ok=True)
    print(_save_curves(history, Path(folder) / f"{MODEL_NAME}_training.png"))
    model_path = base_path / "1" / "model.npz"
    model.save(model_path)
    print(f"model saved to {model_path}")

    app = create_app(model_name=MODEL_NAME, model_base_path=str(base_path.resolve()),
                     file_system_poll_wait_seconds=1.0)
    app.start()
    server = make_server(app, "127.0.0.1", port)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    url = f"{server.url}/v1/models/{MODEL_NAME}:predict"
    try:
        raw_test = scaler.inverse_transform(x_test[:8])
        started = time.perf_counter()
        predictions = _query(url, raw_test.tolist())
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
        while thread.is_alive():
            thread.join(0.5)
        return 0
    except KeyboardInterrupt:
        print("\nstopping")
        return 0
    finally:
        server.shutdown()
        server.server_close()
        server.drain(5.0)
        app.close()


def _fold_scaler_into_first_layer(model: Sequential, scaler: StandardScaler) -> None:
    r"""Make the model take unscaled inputs: :math:`((x - \mu)/\sigma) W + b =
    x (W/\sigma) + (b - (\mu/\sigma) W)`, so clients send raw pixel values."""
    first = model.layers[0]
    mean = np.asarray(scaler.mean, dtype=np.float64)
    scale = np.asarray(scaler.scale, dtype=np.float64)
    kernel = first.kernel.data.astype(np.float64)
    bias = first.bias.data.astype(np.float64)
    first.bias.data[...] = bias - (mean / scale) @ kernel
    first.kernel.data[...] = kernel / scale[:, None]
