"""Training and inference speed and peak memory of minidl against PyTorch and scikit-learn.

Four tasks, the same work in every framework (float32, same layer sizes, batch size,
loss, optimizer and a fresh shuffle of the rows every epoch):

* ``big``: seconds per epoch of a 784-256-128-10 ReLU MLP on 60,000 synthetic rows,
  batch 128, SGD (lr 0.01, no momentum), softmax cross-entropy; plus the share of the
  machine's float32 matmul GFLOP/s that this achieves.
* ``small``: 100 epochs of a 64-64-10 MLP on scikit-learn's digits (1,437 training rows),
  batch 32, Adam (lr 0.001): the per-step overhead.
* ``predict``: class probabilities for 10,000 x 784 rows with the big MLP, batch 1024.
* ``cnn``: seconds per epoch of a small CNN (Conv2D 16 - MaxPooling2D - Conv2D 32 -
  MaxPooling2D - Dense 10) on 10,000 synthetic 28x28x1 images, batch 128, SGD (lr 0.01);
  minidl and PyTorch only (scikit-learn has no convolutions); plus the share of minidl's
  epoch spent in matmuls.

Every measurement is a subprocess of its own running one framework only, alternated
(minidl, torch, sklearn, minidl, ...) for ``--rounds`` rounds; the table shows medians.
Peak memory is each run's peak RSS, shown raw and as the increase over a subprocess that
only imports the framework. See benchmarks/README.md for the method and the latest results.

    python benchmarks/bench_train.py                 # full run, about 5-10 minutes on 2 cores
    python benchmarks/bench_train.py --quick         # smoke run, under a minute
    python benchmarks/bench_train.py --only small --rounds 3 --markdown
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib.util
import itertools
import os
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _harness

SCRIPT = Path(__file__).resolve()
TASKS = ("big", "small", "predict", "cnn")
FRAMEWORKS = ("minidl", "torch", "sklearn")
NO_SKLEARN = ("cnn",)  # MLPClassifier is all scikit-learn has
# the targets: minidl / torch at most this, for the time and for the peak RSS
TARGETS = {"big": 0.9, "small": 0.35, "predict": 1.0, "cnn": 3.0}
MEMORY_TARGETS = {"big": 0.5, "small": 0.5, "predict": 0.5, "cnn": 1.0}

DATA_SEED, PREDICT_SEED, MODEL_SEED, SHUFFLE_SEED = 0, 1, 2, 3
BIG_LAYERS = (784, 256, 128, 10)
SMALL_LAYERS = (64, 64, 10)
IMAGE_SHAPE = (28, 28, 1)  # height, width, channels: minidl's layout (PyTorch's is NCHW)
CNN_LAYERS = (1, 16, 32, 10)  # input channels, the two Conv2Ds' filters, classes
SGEMM_SIZE = 1024
# On a shared machine, wait for other processes to calm down before each measurement, and
# measure again (keeping the least disturbed attempt) when they kept more than QUIET_CPUS
# busy meanwhile; once WAIT_BUDGET_SECONDS of waiting are spent, neither waits nor retries.
QUIET_CPUS, RETRIES, WAIT_BUDGET_SECONDS = 0.25, 2, 180.0


@dataclass(frozen=True)
class Sizes:
    """How much work each task does; ``--quick`` shrinks it for a smoke run."""

    big_rows: int = 60_000
    big_epochs: int = 2
    big_warmup_rows: int = 1_280
    small_epochs: int = 100
    predict_rows: int = 10_000
    predict_repeats: int = 5
    cnn_rows: int = 10_000
    cnn_warmup_rows: int = 1_280
    gemm_repeats: int = 5


FULL = Sizes()
QUICK = Sizes(big_rows=6_000, big_epochs=1, small_epochs=5, predict_rows=2_000,
              predict_repeats=2, cnn_rows=1_280, cnn_warmup_rows=256, gemm_repeats=1)


@dataclass(frozen=True)
class TrainSpec:
    layers: tuple[int, ...]
    optimizer: str  # "sgd" (no momentum) or "adam" (default betas and eps)
    lr: float
    batch_size: int
    epochs: int
    warmup_rows: int  # one untimed epoch on this many rows first: BLAS threads, allocator
    network: str = "mlp"  # "mlp": Dense layers of these sizes; "cnn": the CNN, on images


def epoch_flops(layers: tuple[int, ...], rows: int) -> tuple[float, float]:
    """Matmul flops of one training epoch: (without, with) the first layer's input gradient.

    Forward ``2 N Σ in·out``; backward twice that (weight gradients and input gradients),
    minus ``2 N in_1·out_1`` for the input gradient of the first layer, which nobody needs:
    PyTorch and scikit-learn skip it. Bias, activation and loss arithmetic is O(N·units)
    and left out.
    """
    macs = sum(fan_in * fan_out for fan_in, fan_out in itertools.pairwise(layers))
    forward = 2.0 * rows * macs
    with_input_gradient = 3 * forward
    return with_input_gradient - 2.0 * rows * layers[0] * layers[1], with_input_gradient


# ----------------------------------------------------------------------------- data


def synthetic_rows(rows: int, seed: int) -> tuple[Any, Any]:
    """Random normal float32 features and uniform labels in 0..9, the same in every process."""
    import numpy as np

    rng = np.random.default_rng(seed)
    # drawn as float32 directly: no float64 temporary inflating the peak RSS
    x = rng.standard_normal((rows, BIG_LAYERS[0]), dtype=np.float32)
    y = rng.integers(0, BIG_LAYERS[-1], size=rows)
    return x, y


def synthetic_images(rows: int, seed: int) -> tuple[Any, Any]:
    """Random normal float32 images (rows, 28, 28, 1) and uniform labels in 0..9."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, *IMAGE_SHAPE), dtype=np.float32)
    y = rng.integers(0, CNN_LAYERS[-1], size=rows)
    return x, y


def write_digits(path: Path) -> int:
    """Save the scaled 80 % training split of scikit-learn's digits; return its row count."""
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = load_digits(return_X_y=True)
    x_train, _, y_train, _ = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    x_train = StandardScaler().fit_transform(x_train).astype(np.float32)
    np.savez(path, x=x_train, y=y_train.astype(np.int64))
    return len(x_train)


# ----------------------------------------------------------------------------- minidl


def minidl_model(spec: TrainSpec) -> Any:
    import numpy as np

    import minidl

    if spec.network == "cnn":
        _, *filters, classes = spec.layers
        layers = [layer for units in filters
                  for layer in (minidl.Conv2D(units, 3, padding="same", activation="relu"),
                                minidl.MaxPooling2D(2))]
        layers += [minidl.Flatten(), minidl.Dense(classes, activation="softmax")]
        input_dim: Any = IMAGE_SHAPE
    else:
        layers = [minidl.Dense(units, activation="relu") for units in spec.layers[1:-1]]
        layers.append(minidl.Dense(spec.layers[-1], activation="softmax"))
        input_dim = spec.layers[0]
    model = minidl.Sequential(layers, input_dim=input_dim, seed=MODEL_SEED)
    optimizer = {"sgd": minidl.SGD, "adam": minidl.Adam}[spec.optimizer]
    model.compile(optimizer=optimizer(model.parameters(), lr=spec.lr), loss="cross_entropy")
    # the row order torch_train draws too: the same batches in both frameworks
    model.shuffle_rng = np.random.default_rng(SHUFFLE_SEED)
    return model


def minidl_train(x: Any, y: Any, spec: TrainSpec) -> dict[str, Any]:
    model = minidl_model(spec)
    model.fit(x[:spec.warmup_rows], y[:spec.warmup_rows], epochs=1,
              batch_size=spec.batch_size, verbose=0)
    start = time.perf_counter()
    model.fit(x, y, epochs=spec.epochs, batch_size=spec.batch_size, verbose=0)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "dtype": str(model.parameters()[0].data.dtype)}


def minidl_gemm_seconds(spec: TrainSpec, rows: int, repeats: int) -> dict[str, Any]:
    """Seconds per epoch of ``rows`` that minidl's matmuls take: each matmul of one training
    step, with the shapes the layers use, timed alone (median of ``repeats``), times the
    steps per epoch. Run in a worker of its own, so that its arrays stay out of the
    training run's peak RSS."""
    import numpy as np

    import minidl

    model = minidl_model(spec)
    batch, shape = spec.batch_size, model.input_shape
    products = []  # (rows, inner, columns, transposed left operand) of each matmul
    for index, layer in enumerate(model.layers):
        out_shape = layer.compute_output_shape(shape)
        if isinstance(layer, minidl.Conv2D):
            kh, kw, channels, filters = layer.kernel.shape
            pixels = batch * out_shape[0] * out_shape[1]
            products += [(pixels, kh * kw * channels, filters, False),  # z = cols @ W
                         (kh * kw * channels, pixels, filters, True),  # colsᵀ @ G
                         (1, pixels, filters, False)]  # the bias gradient, 1ᵀ @ G
            if index > 0:  # the input gradient: windows of the spread G @ flipped W
                products.append((batch * shape[0] * shape[1], kh * kw * filters, channels,
                                 False))
        elif isinstance(layer, minidl.Dense):
            fan_in, units = layer.kernel.shape
            products += [(batch, fan_in, units, False), (fan_in, batch, units, True),
                         (1, batch, units, False)]
            if index > 0:
                products.append((batch, units, fan_in, False))
        shape = out_shape
    rng = np.random.default_rng(0)
    step_seconds = 0.0
    for left_rows, inner, columns, transposed in products:
        # a transposed left operand is a view, as colsᵀ and xᵀ are in the layers
        left = (rng.standard_normal((inner, left_rows), dtype=np.float32).T if transposed
                else rng.standard_normal((left_rows, inner), dtype=np.float32))
        right = rng.standard_normal((inner, columns), dtype=np.float32)
        out = np.empty((left_rows, columns), dtype=np.float32)
        np.matmul(left, right, out=out)
        step_seconds += _median_time(functools.partial(np.matmul, left, right, out=out),
                                     repeats)
    return {"seconds": step_seconds * rows / batch, "products": len(products)}


def minidl_predict(x: Any, batch_size: int, repeats: int) -> dict[str, Any]:
    model = minidl_model(TrainSpec(BIG_LAYERS, "sgd", 0.01, batch_size, 0, 0))
    probs = model.predict(x, batch_size=batch_size)
    return {"seconds": _median_time(lambda: model.predict(x, batch_size=batch_size), repeats),
            "dtype": str(probs.dtype)}


# ----------------------------------------------------------------------------- PyTorch


def torch_network(layers: tuple[int, ...]) -> Any:
    import torch

    torch.manual_seed(MODEL_SEED)
    modules: list[Any] = []
    for fan_in, fan_out in itertools.pairwise(layers):
        modules += [torch.nn.Linear(fan_in, fan_out), torch.nn.ReLU()]
    return torch.nn.Sequential(*modules[:-1])  # logits out; the loss applies the softmax


def torch_cnn(layers: tuple[int, ...]) -> Any:
    """minidl's CNN in PyTorch: padding=1 is "same" for a 3x3 kernel with stride 1."""
    import torch

    torch.manual_seed(MODEL_SEED)
    channels, *filters, classes = layers
    modules: list[Any] = []
    for units in filters:
        modules += [torch.nn.Conv2d(channels, units, 3, padding=1), torch.nn.ReLU(),
                    torch.nn.MaxPool2d(2)]
        channels = units
    pixels = (IMAGE_SHAPE[0] // 2 ** len(filters)) * (IMAGE_SHAPE[1] // 2 ** len(filters))
    return torch.nn.Sequential(*modules, torch.nn.Flatten(),
                               torch.nn.Linear(channels * pixels, classes))


def torch_epochs(network: Any, optimizer: Any, x: Any, y: Any, epochs: int, batch_size: int,
                 rng: Any) -> None:
    """A plain training loop: a NumPy permutation per epoch, gathered one batch at a time
    (what minidl's ``data.batches`` does; a DataLoader would only add overhead)."""
    import torch

    loss_fn = torch.nn.CrossEntropyLoss()
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(x)))
        loss_sum = 0.0
        for start in range(0, len(x), batch_size):
            rows = order[start:start + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(network(x[rows]), y[rows])
            loss.backward()
            optimizer.step()
            # minidl's fit reports the epoch's mean loss too
            loss_sum += loss.item() * len(rows)


def torch_train(x: Any, y: Any, spec: TrainSpec) -> dict[str, Any]:
    import numpy as np
    import torch

    network = torch_cnn(spec.layers) if spec.network == "cnn" else torch_network(spec.layers)
    optimizer_class = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[spec.optimizer]
    optimizer = optimizer_class(network.parameters(), lr=spec.lr)
    x_tensor, y_tensor = torch.from_numpy(x), torch.from_numpy(y)  # shares the arrays' memory
    rng = np.random.default_rng(SHUFFLE_SEED)
    torch_epochs(network, optimizer, x_tensor[:spec.warmup_rows], y_tensor[:spec.warmup_rows],
                 1, spec.batch_size, rng)
    start = time.perf_counter()
    torch_epochs(network, optimizer, x_tensor, y_tensor, spec.epochs, spec.batch_size, rng)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "dtype": str(next(network.parameters()).dtype).split(".")[-1]}


def torch_predict(x: Any, batch_size: int, repeats: int) -> dict[str, Any]:
    import torch

    network = torch_network(BIG_LAYERS).eval()
    x_tensor = torch.from_numpy(x)

    def predict() -> Any:
        with torch.inference_mode():
            return torch.cat([torch.softmax(network(chunk), dim=1)
                              for chunk in x_tensor.split(batch_size)]).numpy()

    probs = predict()
    return {"seconds": _median_time(predict, repeats), "dtype": str(probs.dtype)}


# ----------------------------------------------------------------------------- scikit-learn


def sklearn_classifier(spec: TrainSpec, max_iter: int) -> Any:
    from sklearn.neural_network import MLPClassifier

    solver_options = ({"momentum": 0.0, "nesterovs_momentum": False}
                      if spec.optimizer == "sgd" else {})
    # tol=0 and a huge n_iter_no_change: exactly max_iter epochs, never an early stop
    return MLPClassifier(hidden_layer_sizes=spec.layers[1:-1], activation="relu",
                         solver=spec.optimizer, alpha=0.0, batch_size=spec.batch_size,
                         learning_rate="constant", learning_rate_init=spec.lr,
                         max_iter=max_iter, shuffle=True, random_state=SHUFFLE_SEED, tol=0.0,
                         n_iter_no_change=10**9, **solver_options)


def sklearn_train(x: Any, y: Any, spec: TrainSpec) -> dict[str, Any]:
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        # reaching max_iter is the point here, not a problem
        warnings.simplefilter("ignore", ConvergenceWarning)
        sklearn_classifier(spec, 1).fit(x[:spec.warmup_rows], y[:spec.warmup_rows])
        classifier = sklearn_classifier(spec, spec.epochs)
        start = time.perf_counter()
        classifier.fit(x, y)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "dtype": str(classifier.coefs_[0].dtype)}


def sklearn_predict(x: Any, batch_size: int, repeats: int) -> dict[str, Any]:
    import numpy as np
    from sklearn.exceptions import ConvergenceWarning

    spec = TrainSpec(BIG_LAYERS, "sgd", 0.01, batch_size, 1, 0)
    classifier = sklearn_classifier(spec, 1)
    labels = np.arange(len(x)) % BIG_LAYERS[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # one epoch on one batch: a fitted model of the right shape, trained weights do not
        # change the cost of a forward pass
        classifier.fit(x[:batch_size], labels[:batch_size])
    # MLPClassifier has no batch_size for prediction: all rows go through in one pass
    probs = classifier.predict_proba(x)
    return {"seconds": _median_time(lambda: classifier.predict_proba(x), repeats),
            "dtype": str(probs.dtype)}


# ----------------------------------------------------------------------------- workers


TRAINERS = {"minidl": minidl_train, "torch": torch_train, "sklearn": sklearn_train}
PREDICTORS = {"minidl": minidl_predict, "torch": torch_predict, "sklearn": sklearn_predict}


def _median_time(function: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return _harness.median(times)


def import_framework(framework: str, threads: int) -> str:
    """Import ``framework`` (only it), pin PyTorch's threads, return its version."""
    if framework == "minidl":
        import minidl

        return minidl.__version__
    if framework == "torch":
        import torch

        # as many threads as NumPy's BLAS uses, so both have the same cores to work with
        torch.set_num_threads(threads)
        return torch.__version__
    import sklearn
    from sklearn.neural_network import MLPClassifier  # noqa: F401  (what the runs import)

    return sklearn.__version__


def run_task(framework: str, task: str, sizes: Sizes, threads: int,
             data: Path | None) -> dict[str, Any]:
    """One measurement, in this (worker) process."""
    import numpy as np

    if task == "sgemm":
        return measure_sgemm()
    if task == "digits":
        return {"rows": write_digits(data)}
    version = import_framework(framework, threads)
    result: dict[str, Any] = {"version": version, "numpy": np.__version__}
    if task == "big":
        x, y = synthetic_rows(sizes.big_rows, DATA_SEED)
        spec = TrainSpec(BIG_LAYERS, "sgd", 0.01, 128, sizes.big_epochs, sizes.big_warmup_rows)
        result.update(TRAINERS[framework](x, y, spec))
        result["seconds"] /= spec.epochs
    elif task == "small":
        with np.load(data) as arrays:
            x, y = arrays["x"], arrays["y"]
        spec = TrainSpec(SMALL_LAYERS, "adam", 0.001, 32, sizes.small_epochs, len(x))
        result.update(TRAINERS[framework](x, y, spec))
        result["steps"] = spec.epochs * -(-len(x) // spec.batch_size)
    elif task == "predict":
        x, _ = synthetic_rows(sizes.predict_rows, PREDICT_SEED)
        result.update(PREDICTORS[framework](x, 1024, sizes.predict_repeats))
    elif task in ("cnn", "cnn_gemm"):
        spec = TrainSpec(CNN_LAYERS, "sgd", 0.01, 128, 1, sizes.cnn_warmup_rows, "cnn")
        if task == "cnn_gemm":
            result.update(minidl_gemm_seconds(spec, sizes.cnn_rows, sizes.gemm_repeats))
        else:
            x, y = synthetic_images(sizes.cnn_rows, DATA_SEED)
            if framework == "torch":
                # NCHW, PyTorch's layout; for one channel a view of the same memory
                x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
            result.update(TRAINERS[framework](x, y, spec))
    if framework == "torch":
        import torch

        result["threads"] = torch.get_num_threads()
    return result


def measure_sgemm() -> dict[str, Any]:
    """The machine's float32 matmul speed through NumPy, and which BLAS kernel it runs."""
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((SGEMM_SIZE, SGEMM_SIZE), dtype=np.float32) for _ in range(2))
    out = np.empty_like(a)
    for _ in range(3):
        np.matmul(a, b, out=out)
    seconds = _median_time(lambda: np.matmul(a, b, out=out), 20)
    result: dict[str, Any] = {"gflops": 2 * SGEMM_SIZE**3 / seconds / 1e9,
                              "numpy": np.__version__, "threads": os.cpu_count(), "blas": None}
    if importlib.util.find_spec("threadpoolctl"):
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            if pool["user_api"] == "blas" and "numpy" in pool["filepath"]:
                result["threads"] = pool["num_threads"]
                result["blas"] = {key: pool.get(key) for key in
                                  ("internal_api", "version", "architecture", "num_threads",
                                   "threading_layer")}
    return result


# ----------------------------------------------------------------------------- the parent


class Runner:
    """Runs the workers round after round and keeps what they report."""

    def __init__(self, sizes: Sizes, quick: bool, env: dict[str, str], data: Path | None):
        self.sizes, self.quick, self.env, self.data = sizes, quick, env, data
        self.threads = 0
        self.waited = 0.0
        self.results: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)

    def run(self, framework: str, task: str) -> dict[str, Any]:
        arguments = ["--worker", framework, task, "--threads", str(self.threads)]
        if self.quick:
            arguments.append("--quick")
        if self.data is not None:
            arguments += ["--data", str(self.data)]
        attempts = []
        for _ in range(1 + RETRIES):
            if self.waited < WAIT_BUDGET_SECONDS:
                self.waited += _harness.wait_until_idle(QUIET_CPUS,
                                                        WAIT_BUDGET_SECONDS - self.waited)
            attempts.append(_harness.run_worker(SCRIPT, arguments, self.env))
            quiet = (attempts[-1]["foreign_cpus"] or 0.0) <= QUIET_CPUS
            if quiet or self.waited >= WAIT_BUDGET_SECONDS:
                break
        result = min(attempts, key=lambda attempt: attempt["foreign_cpus"] or 0.0)
        self.results[task, framework].append(result)
        return result

    def round(self, index: int, rounds: int, tasks: list[str], frameworks: list[str]) -> None:
        sgemm = self.run("numpy", "sgemm")
        self.threads = self.threads or sgemm["threads"]
        _progress(f"round {index + 1}/{rounds}: sgemm {sgemm['gflops']:.1f} GFLOP/s")
        for framework in frameworks:
            self.run(framework, "import")
        if "cnn" in tasks:
            gemm = self.run("minidl", "cnn_gemm")
            _progress(f"  cnn matmuls alone: {gemm['seconds']:.3f} s per epoch")
        for task in tasks:
            for framework in frameworks:
                if task in NO_SKLEARN and framework == "sklearn":
                    continue
                result = self.run(framework, task)
                foreign = result["foreign_cpus"]
                _progress(f"  {task:<8}{framework:<8}{result['seconds']:9.3f} s  "
                          f"{result['peak_rss_mb']:7.1f} MB"
                          + ("" if foreign is None else f"  other processes {foreign:.2f} CPUs"))

    def foreign_cpus(self) -> list[float]:
        """Per measurement, the CPUs that other processes kept busy meanwhile."""
        return [run["foreign_cpus"] for runs in self.results.values() for run in runs
                if run["foreign_cpus"] is not None]

    def median(self, task: str, framework: str, key: str) -> float | None:
        runs = self.results.get((task, framework))
        return _harness.median([run[key] for run in runs]) if runs else None


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _ratio_cells(minidl: float | None, torch: float | None, target: float) -> list[str]:
    if minidl is None or torch is None:
        return ["n/a", f"<= {target:g}x", "n/a"]
    ratio = minidl / torch
    return [f"{ratio:.2f}x", f"<= {target:g}x", "pass" if ratio <= target else "FAIL"]


def build_table(runner: Runner, tasks: list[str], frameworks: list[str],
                sizes: Sizes) -> tuple[list[str], list[list[str]]]:
    def cells(task: str, key: str, fmt: str, scale: float = 1.0) -> list[str]:
        values = [runner.median(task, name, key) for name in FRAMEWORKS]
        return ["" if task in NO_SKLEARN and name == "sklearn"
                else fmt.format(value * scale) if value is not None else "n/a"
                for name, value in zip(FRAMEWORKS, values, strict=True)]

    header = ["task", *FRAMEWORKS, "minidl/torch", "target", "result"]
    rows = []
    labels = {"big": f"big batches: s/epoch ({sizes.big_rows:,} rows)",
              "small": f"small batches: s/{sizes.small_epochs} epochs",
              "predict": f"inference: ms/{sizes.predict_rows:,} rows",
              "cnn": f"cnn: s/epoch ({sizes.cnn_rows:,} images)"}
    for task in tasks:
        scale, fmt = (1000.0, "{:.1f}") if task == "predict" else (1.0, "{:.3f}")
        rows.append([labels[task], *cells(task, "seconds", fmt, scale),
                     *_ratio_cells(runner.median(task, "minidl", "seconds"),
                                   runner.median(task, "torch", "seconds"), TARGETS[task])])
        if task == "big":
            rows.append(["big batches: share of sgemm GFLOP/s",
                         *share_cells(runner, sizes), "", "", ""])
        if task == "cnn":
            gemm, epoch = (runner.median(name, "minidl", "seconds") for name in ("cnn_gemm", task))
            share = "n/a" if gemm is None or epoch is None else f"{gemm / epoch:.0%}"
            rows.append(["cnn: share of the epoch in matmuls", share, "", "", "", "", ""])
    for task in tasks:
        memory = []
        for name in FRAMEWORKS:
            peak = runner.median(task, name, "peak_rss_mb")
            baseline = runner.median("import", name, "peak_rss_mb")
            memory.append("" if task in NO_SKLEARN and name == "sklearn"
                          else "n/a" if peak is None else f"{peak:.0f} (+{peak - baseline:.0f})")
        rows.append([f"peak RSS MB, {task}: raw (+over import)", *memory,
                     *_ratio_cells(runner.median(task, "minidl", "peak_rss_mb"),
                                   runner.median(task, "torch", "peak_rss_mb"),
                                   MEMORY_TARGETS[task])])
    return header, rows


def share_cells(runner: Runner, sizes: Sizes) -> list[str]:
    useful, _ = epoch_flops(BIG_LAYERS, sizes.big_rows)
    machine = runner.median("sgemm", "numpy", "gflops")
    shares = []
    for name in FRAMEWORKS:
        seconds = runner.median("big", name, "seconds")
        shares.append("n/a" if seconds is None else f"{useful / seconds / 1e9 / machine:.0%}")
    return shares


def describe_machine(runner: Runner, removed: list[str]) -> list[str]:
    sgemm = runner.results["sgemm", "numpy"][0]
    versions = {name: runs[0]["version"] for (task, name), runs in runner.results.items()
                if task == "import"}
    blas = sgemm["blas"] or {}
    kernel = (f"{blas.get('internal_api')} {blas.get('version')}, kernel "
              f"{blas.get('architecture')}, {blas.get('num_threads')} threads"
              if blas else "unknown (threadpoolctl is not installed)")
    lines = [
        f"date: {datetime.date.today().isoformat()}",
        f"machine: {os.cpu_count()} CPUs, {_harness.cpu_model()}",
        f"python {sys.version.split()[0]}, numpy {sgemm['numpy']}, "
        + ", ".join(f"{name} {version}" for name, version in sorted(versions.items())),
        f"numpy BLAS: {kernel}; torch.set_num_threads({runner.threads})",
        f"sgemm {SGEMM_SIZE}x{SGEMM_SIZE} float32: "
        f"{runner.median('sgemm', 'numpy', 'gflops'):.1f} GFLOP/s (median of rounds)",
    ]
    foreign = runner.foreign_cpus()
    return lines + _harness.conditions(foreign, runner.waited, removed)


def describe_work(runner: Runner, tasks: list[str], sizes: Sizes) -> list[str]:
    lines = []
    if "big" in tasks:
        useful, full = epoch_flops(BIG_LAYERS, sizes.big_rows)
        lines.append(f"big: {useful / 1e9:.1f} GFLOP of matmul per epoch, the share's "
                     f"numerator for every framework (forward + backward without the first "
                     f"layer's input gradient; {full / 1e9:.1f} with it)")
    if "cnn" in tasks:
        lines.append("cnn: matmul share = minidl's matmuls of one step, each timed alone with "
                     "the layers' shapes (median of a worker's repeats), times the steps per "
                     "epoch, over the cnn epoch's median time")
    if "small" in tasks:
        for name in FRAMEWORKS:
            runs = runner.results.get(("small", name))
            if runs:
                per_step = runner.median("small", name, "seconds") / runs[0]["steps"] * 1e6
                lines.append(f"small: {name} {per_step:.0f} us per step")
    for task in tasks:
        pairs = zip(runner.results.get((task, "minidl"), []),
                    runner.results.get((task, "torch"), []), strict=False)
        ratios = [mine["seconds"] / theirs["seconds"] for mine, theirs in pairs]
        if ratios:
            lines.append(f"{task}: minidl/torch round by round: "
                         + ", ".join(f"{ratio:.2f}" for ratio in ratios))
    dtypes = sorted({f"{name} {runs[0]['dtype']}" for (task, name), runs
                     in runner.results.items() if "dtype" in runs[0]})
    lines.append("dtypes: " + ", ".join(dtypes))
    for (task, name), runs in sorted(runner.results.items()):
        key = "gflops" if task == "sgemm" else "seconds" if task != "import" else "peak_rss_mb"
        values = ", ".join(f"{run[key]:.4g}" for run in runs)
        lines.append(f"rounds {task}/{name} ({key}): {values}")
    return lines


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds of alternated measurements (default 5, 1 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer rows and epochs: a smoke run, not a measurement")
    parser.add_argument("--only", choices=TASKS, help="run one task only")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    # the parent starts itself as a worker: --worker FRAMEWORK TASK
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, default=None, help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.rounds is not None and arguments.rounds < 1:
        parser.error("--rounds must be at least 1")
    return arguments


def main(argv: list[str] | None = None) -> None:
    arguments = parse_arguments(argv)
    sizes = QUICK if arguments.quick else FULL
    if arguments.worker:
        framework, task = arguments.worker
        _harness.emit(run_task(framework, task, sizes, arguments.threads, arguments.data))
        return
    rounds = arguments.rounds or (1 if arguments.quick else 5)
    tasks = [arguments.only] if arguments.only else list(TASKS)
    frameworks = ["minidl"] + [name for name in FRAMEWORKS[1:] if importlib.util.find_spec(name)]
    missing = sorted(set(FRAMEWORKS) - set(frameworks))
    if missing:
        _progress(f"not installed, left out: {', '.join(missing)}")
    if "small" in tasks and "sklearn" not in frameworks:
        _progress("the small task needs scikit-learn's bundled digits: left out")
        tasks.remove("small")
    env, removed = _harness.worker_environment()
    if removed:
        _progress(f"unset for the workers: {', '.join(removed)}")
    with tempfile.TemporaryDirectory() as folder:
        data = None
        if "small" in tasks:
            # written by a worker: the parent imports no NumPy, its RSS stays small
            data = Path(folder) / "digits.npz"
            _harness.run_worker(SCRIPT, ["--worker", "sklearn", "digits", "--data", str(data)],
                                env)
        runner = Runner(sizes, arguments.quick, env, data)
        for index in range(rounds):
            runner.round(index, rounds, tasks, frameworks)
    header, rows = build_table(runner, tasks, frameworks, sizes)
    print("\n".join(describe_machine(runner, removed)))
    print()
    print(_harness.format_table(header, rows, arguments.markdown))
    print()
    print("\n".join(describe_work(runner, tasks, sizes)))
    disturbed = [cpus for cpus in runner.foreign_cpus() if cpus > QUIET_CPUS]
    if disturbed:
        print(f"warning: during {len(disturbed)} of {len(runner.foreign_cpus())} measurements "
              f"other processes kept more than {QUIET_CPUS} CPUs busy (up to "
              f"{max(disturbed):.2f}): those times are inflated, PyTorch's OpenMP threads "
              f"most of all; rerun on an idle machine")


if __name__ == "__main__":
    main()
