"""Where a single-row predict's time goes in minidl.serving, measured in one process.

Three views, all without sockets (the HTTP engine's own cost is what the no-op rows of
``bench_serving.py`` leave over):

* ``pieces``: each step of a predict request timed alone, in a loop: JSON decoding, the
  validation and float32 batch, ``model.predict``, the answer's encoding, the metrics;
* ``app``: minidl's whole ASGI app called as uvicorn calls it (a scope, ``receive`` and
  ``send`` coroutines) on a uvloop loop, ``--concurrency`` requests in flight at once: as
  shipped (a cheap predict runs on the event loop, see ``ServingApp.predict``), and the
  no-op app (a stub model);
  and, for comparison, the FastAPI peer (``_fastapi_peer.py``, both endpoints);
* ``--profile``: the same app loop under cProfile, the top functions by own time.

    python benchmarks/profile_serving.py                  # pieces and app, ~30 s
    python benchmarks/profile_serving.py --profile app    # and a profile of the app as shipped

Numbers are CPU microseconds per request of this process (the predict threads included),
medians of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _serving_peers

from minidl.layers import Dense
from minidl.model import Sequential
from minidl.serving import ServingApp, create_app, payload, tfjson
from minidl.serving.app import run_model

PATH = "/v1/models/m:predict"


def write_model(folder: Path) -> bytes:
    """The benchmark's model and body (see bench_serving.write_model)."""
    model = Sequential([Dense(64, activation="relu"), Dense(10, activation="softmax")],
                       input_dim=64, seed=0)
    (folder / "1").mkdir(parents=True)
    model.save(str(folder / "1" / "model.npz"))
    row = np.random.default_rng(0).random((1, 64), dtype=np.float32)
    return json.dumps({"instances": row.tolist()}).encode()


def cpu_us_per_call(function: Callable[[], Any], calls: int, repeats: int) -> float:
    """Median over ``repeats`` of the process CPU time per call, µs."""
    runs = []
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(calls):
            function()
        runs.append((time.process_time() - start) / calls * 1e6)
    return statistics.median(runs)


def pieces(base: Path, body: bytes, calls: int, repeats: int) -> list[tuple[str, float]]:
    app = create_app(model_name="m", model_base_path=str(base))
    app.start()
    try:
        _, model = app.manager.resolve("m")
        parsed = payload.parse_predict_request(body, model.input_shape, model.dtype)
        x = parsed.x
        y = run_model(model, x)
        answer = payload.predict_response(y, False)
        document = payload.parse_json(body)
        out = [
            ("json: tfjson.loads (orjson, as it reads this body as rapidjson does)",
             cpu_us_per_call(lambda: tfjson.loads(body), calls, repeats)),
            ("json: the rapidjson-like reader it falls back to (stdlib json + checks)",
             cpu_us_per_call(lambda: tfjson._rapidjson_loads(body), calls, repeats)),
            ("json: plain json.loads(bytes), for comparison",
             cpu_us_per_call(lambda: json.loads(body), calls, repeats)),
        ]
        try:
            import pydantic_core

            out.append(("json: pydantic_core.from_json (jiter, what FastAPI has at hand)",
                        cpu_us_per_call(lambda: pydantic_core.from_json(body), calls,
                                        repeats)))
        except ImportError:
            pass
        out += [
            ("predict_request: validation + float32 batch (after the JSON)",
             cpu_us_per_call(lambda: payload.predict_request(document, model.input_shape,
                                                             model.dtype), calls, repeats)),
            ("parse_predict_request: both",
             cpu_us_per_call(lambda: payload.parse_predict_request(body, model.input_shape,
                                                                   model.dtype),
                             calls, repeats)),
            ("model.predict of one row (run_model)",
             cpu_us_per_call(lambda: run_model(model, x), calls, repeats)),
            ("predict_response + encode (TF Serving's decimals, tfjson.tensor_json)",
             cpu_us_per_call(lambda: payload.encode(payload.predict_response(y, False)),
                             calls, repeats)),
            ("encode alone", cpu_us_per_call(lambda: payload.encode(answer), calls, repeats)),
            ("for comparison: json.dumps({'predictions': y.tolist()})",
             cpu_us_per_call(lambda: json.dumps({"predictions": y.tolist()}).encode(), calls,
                             repeats)),
            ("metrics: requests counter + latency histogram + batch histogram",
             cpu_us_per_call(lambda: (app.metrics.requests.inc("m", "1", "200"),
                                      app.metrics.latency.observe(0.002, "m"),
                                      app.metrics.batch_size.observe(1, "m")), calls, repeats)),
            ("manager.resolve", cpu_us_per_call(lambda: app.manager.resolve("m"), calls,
                                                repeats)),
        ]
        return out
    finally:
        app.close()


def make_app(kind: str, base: Path) -> Any:
    if kind in ("fastapi", "fastapi-def"):
        import _fastapi_peer

        from minidl.model import load_model

        _fastapi_peer.ml_models["m"] = load_model(str(base / "1" / "model.npz"))
        return _fastapi_peer.app if kind == "fastapi" else _fastapi_peer.app_def
    if kind == "shipped":
        return create_app(model_name="m", model_base_path=str(base))
    return _serving_peers.create_stub_app(str(base))


def _scope() -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1", "server": ("127.0.0.1", 8501),
            "client": ("127.0.0.1", 40000), "scheme": "http", "method": "POST",
            "root_path": "", "path": PATH, "raw_path": PATH.encode(), "query_string": b"",
            "headers": [(b"host", b"127.0.0.1:8501"), (b"content-type", b"application/json"),
                        (b"accept", b"*/*"), (b"content-length", b"1333")]}


async def _drive(app: Any, body: bytes, requests: int, concurrency: int) -> None:
    scope = _scope()
    scope["headers"][-1] = (b"content-length", str(len(body)).encode())
    message = {"type": "http.request", "body": body, "more_body": False}

    async def receive() -> dict[str, Any]:
        return message

    statuses = []

    async def send(event: dict[str, Any]) -> None:
        if event["type"] == "http.response.start":
            statuses.append(event["status"])

    async def client(count: int) -> None:
        for _ in range(count):
            await app(dict(scope), receive, send)

    share = requests // concurrency
    await asyncio.gather(*(client(share) for _ in range(concurrency)))
    if set(statuses) != {200}:
        raise RuntimeError(f"unexpected statuses {set(statuses)}")


def app_cpu(kind: str, base: Path, body: bytes, requests: int, concurrency: int,
            repeats: int, profile: bool = False) -> tuple[float, str]:
    import uvloop

    app = make_app(kind, base)
    if isinstance(app, ServingApp):
        app.start()
    report = ""
    try:
        runs = []
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_drive(app, body, 200, concurrency))  # warm-up
            for _ in range(repeats):
                start = time.process_time()
                runner.run(_drive(app, body, requests, concurrency))
                runs.append((time.process_time() - start) / requests * 1e6)
            if profile:
                profiler = cProfile.Profile()
                profiler.enable()
                runner.run(_drive(app, body, requests, concurrency))
                profiler.disable()
                stream = io.StringIO()
                pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(25)
                report = stream.getvalue()
        return statistics.median(runs), report
    finally:
        if isinstance(app, ServingApp):
            app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", choices=("shipped", "stub", "fastapi", "fastapi-def"),
                        help="also print a cProfile of this app's request loop")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        base = Path(temp) / "base"
        body = write_model(base)
        print(f"body: {len(body)} bytes; CPU µs per call, median of {arguments.repeats}")
        for name, us in pieces(base, body, arguments.calls, arguments.repeats):
            print(f"  {us:7.1f}  {name}")
        print(f"whole ASGI app, {arguments.concurrency} requests in flight, no sockets "
              "(CPU µs per request, all threads):")
        for kind, label in (("shipped", "minidl as shipped"),
                            ("stub", "the no-op app (stub model)"),
                            ("fastapi", "FastAPI, async def (_fastapi_peer.app)"),
                            ("fastapi-def", "FastAPI, def (_fastapi_peer.app_def)")):
            us, report = app_cpu(kind, base, body, arguments.requests, arguments.concurrency,
                                 arguments.repeats, profile=arguments.profile == kind)
            print(f"  {us:7.1f}  {label}")
            if report:
                print(report)


if __name__ == "__main__":
    main()
