"""The servers ``bench_serving.py`` compares minidl.serving with (minidl's own is
``python -m minidl serve``).

* ``create_stub_app``: **the no-op app**. minidl's own ASGI app, unchanged, serving a stub
  model whose ``predict`` returns a fixed row without computing anything. Routing, limits,
  reading and parsing the JSON request, validating it, running the predict (on the event
  loop, as a measured-cheap predict runs), encoding the answer and the metrics are all
  there; only the model call is gone.
  ``python _serving_peers.py stub BASE PORT`` runs it on minidl's engine exactly as
  ``minidl serve`` does (``minidl.serving.engine.serve``: uvicorn, httptools, uvloop,
  ``GuardedProtocol``, the same limits), announced by the same ready line.
* ``stub_app_from_environment`` / ``minidl_app_from_environment``: the same no-op app, and
  minidl's real app (``create_app``), as factories for another engine's command line
  (``uvicorn --factory``, ``granian --factory``); the base path comes from
  ``BENCH_SERVING_BASE``.
* ``noop_http_app``: the engine alone: an ASGI app that reads the body and answers fixed bytes
  of the size of a real answer, parsing nothing (``python _serving_peers.py noop-http PORT``,
  on minidl's engine): the floor of uvicorn + httptools + ``GuardedProtocol`` here.
* ``create_flask_app``: the same API written the way most users would, with Flask:
  ``request.get_json()``, ``np.array``, ``model.predict``, ``jsonify``; run under gunicorn
  (``_serving_peers:create_flask_app("/base/1/model.npz")``).

The FastAPI peer is in ``_fastapi_peer.py``: ``uvicorn`` imports it by name.
"""

from __future__ import annotations

import os
import sys
from typing import Any

MODEL_NAME = "m"
PREDICT_PATH = f"/v1/models/{MODEL_NAME}:predict"
INPUT_DIM, OUTPUT_DIM = 64, 10
BASE_PATH_VARIABLE = "BENCH_SERVING_BASE"
# a typical answer of the 64-64-10 softmax model for one row: float32 probabilities written
# as the shortest repr of their float64 value, ~19 characters each
STUB_ROW = [0.09779906272888184, 0.10345561802387238, 0.09436570852994919,
            0.10227753221988678, 0.09914308041334152, 0.10051459819078445,
            0.10183297097682953, 0.09621872007846832, 0.10316734761047363,
            0.10122535973787308]


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
    """minidl's ASGI app as ``create_app`` builds it (the same defaults), serving
    ``StubModel`` from ``base_path`` (the version folders are scanned as usual; the file is
    not read)."""
    from minidl.serving import ModelConfig, ModelManager, ServingApp
    from minidl.serving.app import run_model
    from minidl.serving.batching import Batcher

    manager = ModelManager([ModelConfig(MODEL_NAME, base_path)], loader=lambda path: StubModel())
    batcher = Batcher(run_model) if enable_batching else None
    return ServingApp(manager, batcher=batcher)


HTTP_NOOP_ANSWER = ('{"predictions": [[' + ", ".join(map(repr, STUB_ROW)) + "]]}").encode()
_NOOP_HEADERS = [(b"content-type", b"application/json"),
                 (b"content-length", str(len(HTTP_NOOP_ANSWER)).encode())]


async def noop_http_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Read the body, answer fixed bytes: the engine's own cost per request."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _NOOP_HEADERS})
    await send({"type": "http.response.body", "body": HTTP_NOOP_ANSWER})


def stub_app_from_environment() -> Any:
    """For ``uvicorn --factory`` / ``granian --factory``: the no-op app on
    ``$BENCH_SERVING_BASE``."""
    return create_stub_app(os.environ[BASE_PATH_VARIABLE])


def minidl_app_from_environment() -> Any:
    """For ``granian --factory``: ``create_app`` as ``minidl serve`` calls it, on
    ``$BENCH_SERVING_BASE``."""
    from minidl.serving import create_app

    return create_app(model_name=MODEL_NAME, model_base_path=os.environ[BASE_PATH_VARIABLE])


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
    """``stub BASE_PATH PORT`` or ``noop-http PORT``: serve that app on
    minidl's engine, with the settings of ``minidl serve``, until SIGTERM; announced by the
    same ready line."""
    from minidl.serving.engine import ServingServer, say_ready, serve

    if len(argv) == 3 and argv[0] == "stub":
        return serve(create_stub_app(argv[1]), "127.0.0.1", int(argv[2]))
    if len(argv) == 2 and argv[0] == "noop-http":
        server = ServingServer(noop_http_app, "127.0.0.1", int(argv[1]))
        say_ready(server.url)  # no models to load: ready once bound
        server.serve_forever()
        return 0
    print("usage: python _serving_peers.py stub BASE_PATH PORT | noop-http PORT",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
