"""The servers ``bench_serving.py`` compares minidl.serving with.

Two no-ops, both run on the same HTTP stack as the real server (minidl's built-in server, or
gunicorn with the same settings):

* ``create_stub_app``: minidl's own WSGI app, unchanged, serving a stub model whose
  ``predict`` returns a fixed row without computing anything. Routing, limits, reading and
  parsing the JSON request, validating it, encoding the answer and the metrics are all
  there; only the model call is gone. "predict / no-op" is the share of the throughput that
  the model itself leaves.
* ``noop_http_app``: the HTTP stack alone. It checks the method and path, reads the body in
  full (as a real handler must, to keep the connection usable) and answers fixed bytes of the
  size of a real answer, without parsing anything: the ceiling of the server itself.
* ``create_flask_app``: the same API written the way most users would, with Flask:
  ``request.get_json()``, ``np.array``, ``model.predict``, ``jsonify``. No validation beyond
  what those do themselves.

``python _serving_peers.py noop-http PORT`` and ``python _serving_peers.py stub BASE PORT`` run
the no-ops on minidl's built-in server (port 0: a free one, printed in the ready line); under
gunicorn they are ``_serving_peers:create_noop_http_app()``,
``_serving_peers:create_stub_app("/base")`` and ``_serving_peers:create_flask_app(
"/base/1/model.npz")``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

MODEL_NAME = "m"
PREDICT_PATH = f"/v1/models/{MODEL_NAME}:predict"
INPUT_DIM, OUTPUT_DIM = 64, 10
# a typical answer of the 64-64-10 softmax model for one row: float32 probabilities written
# as the shortest repr of their float64 value, ~19 characters each
STUB_ROW = [0.09779906272888184, 0.10345561802387238, 0.09436570852994919,
            0.10227753221988678, 0.09914308041334152, 0.10051459819078445,
            0.10183297097682953, 0.09621872007846832, 0.10316734761047363,
            0.10122535973787308]
HTTP_NOOP_ANSWER = ('{"predictions": [[' + ", ".join(map(repr, STUB_ROW)) + "]]}").encode()
NOT_FOUND = b'{"error": "Malformed request"}'


def noop_http_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """Answer ``POST /v1/models/m:predict`` with fixed bytes, without parsing anything."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        environ["wsgi.input"].read(length)
    if environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"] == PREDICT_PATH:
        status, body = "200 OK", HTTP_NOOP_ANSWER
    else:
        status, body = "404 Not Found", NOT_FOUND
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


def create_noop_http_app() -> Callable[..., list[bytes]]:
    """For gunicorn: ``'_serving_peers:create_noop_http_app()'``."""
    return noop_http_app


class StubModel:
    """Looks like the 64-64-10 model to the server; ``predict`` computes nothing."""

    def __init__(self) -> None:
        import numpy as np

        self.input_shape, self.output_shape = (INPUT_DIM,), (OUTPUT_DIM,)
        self.dtype = np.dtype(np.float32)
        self._row = np.asarray([STUB_ROW], dtype=np.float32)

    def predict(self, x: Any) -> Any:
        import numpy as np

        return np.repeat(self._row, len(x), axis=0)


def create_stub_app(base_path: str, enable_batching: bool = False) -> Any:
    """minidl's WSGI app exactly as ``create_app`` builds it, serving ``StubModel`` from
    ``base_path`` (the version folders are scanned as usual; the file is not read)."""
    from minidl.serving import ModelConfig, ModelManager, ServingApp
    from minidl.serving.app import run_model
    from minidl.serving.batching import Batcher

    manager = ModelManager([ModelConfig(MODEL_NAME, base_path)], loader=lambda path: StubModel())
    batcher = Batcher(run_model) if enable_batching else None
    return ServingApp(manager, batcher=batcher)


def create_flask_app(model_path: str) -> Any:
    """The same predict API as a plain Flask app: what a user would write without minidl's
    server."""
    import numpy as np
    from flask import Flask, jsonify, request

    from minidl.model import load_model

    app = Flask(__name__)
    model = load_model(model_path)

    @app.post(PREDICT_PATH)
    def predict() -> Any:
        instances = np.array(request.get_json()["instances"], dtype=np.float32)
        return jsonify({"predictions": model.predict(instances).tolist()})

    return app


def main(argv: list[str]) -> int:
    """``noop-http PORT`` or ``stub BASE_PATH PORT``: serve a no-op on minidl's built-in
    server until SIGTERM, announced by the same ready line as ``python -m minidl serve``."""
    from minidl.serving.server import serve

    if len(argv) == 2 and argv[0] == "noop-http":
        return serve(noop_http_app, "127.0.0.1", int(argv[1]))
    if len(argv) == 3 and argv[0] == "stub":
        return serve(create_stub_app(argv[1]), "127.0.0.1", int(argv[2]))
    print("usage: python _serving_peers.py noop-http PORT | stub BASE_PATH PORT",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
