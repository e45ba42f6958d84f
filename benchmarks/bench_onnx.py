"""Predict time of a model in minidl against the same model exported to ONNX and run by ONNX
Runtime (CPU), float32.

Two models, each at batch 1 (one request) and batch 1024 (bulk scoring):

* ``digits MLP``: the demo's model, ``Normalization - Dense(64, relu) - Dense(64, relu) -
  Dense(10, softmax)`` on 64 features;
* ``CNN``: bench_train.py's, ``Conv2D(16, 3, same, relu) - MaxPooling2D(2) - Conv2D(32, 3,
  same, relu) - MaxPooling2D(2) - Flatten - Dense(10, softmax)`` on 28x28x1 images.

The weights are seeded, not trained: the time of a forward pass does not depend on them. A
first worker exports both models with ``minidl.onnx.export`` (opset 17) into a temporary
folder; then each measurement is a subprocess importing one engine only (see ``_harness``),
alternated minidl, onnxruntime, minidl, ... for ``--rounds`` rounds. A worker calls the
engine a few times untimed, then times ``--calls`` calls (fewer for the big batch) and
reports the median; the table shows the medians over rounds. minidl times
``model.predict(x)``; ONNX Runtime ``session.run(None, {"input": x})``, with
``intra_op_num_threads`` = ``--threads`` and one inter-op thread, all graph optimizations
on. minidl's BLAS gets the same number of threads (``OPENBLAS_NUM_THREADS``).

    python benchmarks/bench_onnx.py              # about a minute on 2 idle cores
    python benchmarks/bench_onnx.py --rounds 3 --markdown
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _harness

SCRIPT = Path(__file__).resolve()
MODELS = ("digits MLP", "CNN")
BATCHES = (1, 1024)
ENGINES = ("minidl", "onnxruntime")
QUIET_CPUS, WAIT_SECONDS = 0.3, 10.0


def build_model(name: str):
    import numpy as np

    from minidl import Conv2D, Dense, Flatten, MaxPooling2D, Normalization, Sequential

    if name == "digits MLP":
        model = Sequential([Normalization(), Dense(64, activation="relu"),
                            Dense(64, activation="relu"), Dense(10, activation="softmax")],
                           input_dim=64, seed=0)
        pixels = np.random.default_rng(0).integers(0, 17, size=(1797, 64))
        model.layers[0].adapt(pixels.astype(np.float32))  # the digits' range, 0 to 16
        return model
    return Sequential([Conv2D(16, 3, padding="same", activation="relu"), MaxPooling2D(2),
                       Conv2D(32, 3, padding="same", activation="relu"), MaxPooling2D(2),
                       Flatten(), Dense(10, activation="softmax")], input_dim=(28, 28, 1),
                      seed=0)


def onnx_file(folder: str, name: str) -> Path:
    return Path(folder) / f"{name.replace(' ', '_')}.onnx"


def export_worker(folder: str) -> None:
    import minidl.onnx

    for name in MODELS:
        minidl.onnx.export(build_model(name), onnx_file(folder, name))
    _harness.emit({"exported": list(MODELS)})


def inputs(name: str, batch: int):
    import numpy as np

    shape = (64,) if name == "digits MLP" else (28, 28, 1)
    return np.random.default_rng(1).standard_normal((batch, *shape), dtype=np.float32)


def predict_minidl(name: str, batch: int, folder: str, threads: int):
    model, x = build_model(name), inputs(name, batch)
    return lambda: model.predict(x)


def predict_onnxruntime(name: str, batch: int, folder: str, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(onnx_file(folder, name), options,
                                   providers=["CPUExecutionProvider"])
    feed = {"input": inputs(name, batch)}
    return lambda: session.run(None, feed)


def worker(engine: str, name: str, batch: int, folder: str, threads: int, calls: int) -> None:
    setup = predict_minidl if engine == "minidl" else predict_onnxruntime
    predict = setup(name, batch, folder, threads)
    for _ in range(5):  # warm-up: allocations, thread pools, ONNX Runtime's first run
        predict()
    times = []
    for _ in range(calls if batch == 1 else max(5, calls // 20)):
        start = time.perf_counter()
        predict()
        times.append(time.perf_counter() - start)
    _harness.emit({"engine": engine, "model": name, "batch": batch,
                   "ms": 1e3 * _harness.median(times)})


def versions() -> str:
    code = ("import numpy, onnx, onnxruntime, minidl, platform; print(f'Python "
            "{platform.python_version()}, NumPy {numpy.__version__}, minidl "
            "{minidl.__version__}, onnx {onnx.__version__}, onnxruntime "
            "{onnxruntime.__version__}')")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=400,
                        help="timed calls per worker at batch 1 (a twentieth, at least 5, "
                             "at batch 1024)")
    parser.add_argument("--threads", type=int, default=2,
                        help="ONNX Runtime's intra-op threads and minidl's BLAS threads")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--worker", nargs=3, metavar=("ENGINE", "MODEL", "BATCH"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--export", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export:
        export_worker(args.folder)
        return
    if args.worker:
        engine, name, batch = args.worker
        worker(engine, name, int(batch), args.folder, args.threads, args.calls)
        return
    env, _ = _harness.worker_environment()
    env["OPENBLAS_NUM_THREADS"] = str(args.threads)
    results: dict[tuple[str, int, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        _harness.run_worker(SCRIPT, ["--export", "--folder", folder], env)
        for round_index in range(args.rounds):
            for name in MODELS:
                for batch in BATCHES:
                    for engine in ENGINES:
                        _harness.wait_until_idle(QUIET_CPUS, WAIT_SECONDS)
                        result = _harness.run_worker(
                            SCRIPT, ["--worker", engine, name, str(batch), "--folder", folder,
                                     "--threads", str(args.threads), "--calls",
                                     str(args.calls)], env)
                        results.setdefault((name, batch, engine), []).append(result["ms"])
                        print(f"round {round_index + 1}: {name}, batch {batch}, {engine}: "
                              f"{result['ms']:.3f} ms (foreign CPUs "
                              f"{result['foreign_cpus']})", file=sys.stderr)
    rows = []
    for name in MODELS:
        for batch in BATCHES:
            minidl_ms = _harness.median(results[name, batch, "minidl"])
            ort_ms = _harness.median(results[name, batch, "onnxruntime"])
            rows.append([f"{name}, batch {batch}", f"{minidl_ms:.3f}", f"{ort_ms:.3f}",
                         f"{minidl_ms / ort_ms:.2f}x"])
    print(f"predict, float32, median ms per call over {args.rounds} rounds; ONNX Runtime "
          f"intra_op_num_threads={args.threads}, minidl OPENBLAS_NUM_THREADS={args.threads}; "
          f"{_harness.cpu_model()}; {versions()}")
    print(_harness.format_table(["model, batch", "minidl ms", "onnxruntime ms",
                                 "minidl / onnxruntime"], rows, args.markdown))
    print(json.dumps({f"{name}, batch {batch} / {engine}": values
                      for (name, batch, engine), values in results.items()}), file=sys.stderr)


if __name__ == "__main__":
    main()
