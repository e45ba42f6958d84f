"""Data-parallel training on this machine: epoch time against processes and BLAS threads.

Three ways to use 2 cores (or 1, as the baseline) for the same training, each measured in a
process of its own (``mpiexec`` starts the two of the second):

* ``1 process, 1 thread``: ``fit`` with ``OPENBLAS_NUM_THREADS=1``, the baseline;
* ``1 process, 2 threads``: ``fit`` with 2 BLAS threads, NumPy's way of using 2 cores;
* ``2 processes, 1 thread``: ``mpiexec -n 2``, ``fit(..., distribute=DataParallel())``.

Three trainings, the models and data of bench_train.py, float32, SGD, the same global batch
in every configuration (so the same steps and the same weights):

* ``big``: the 784-256-128-10 MLP on 60,000 rows, batch 128;
* ``small``: a 64-64-10 MLP on 1,437 rows, batch 32 (the per-step overhead);
* ``cnn``: Conv2D 16 - MaxPooling2D - Conv2D 32 - MaxPooling2D - Dense 10 on 10,000
  28x28x1 images, batch 128.

Each worker trains one untimed epoch on a few rows first, then times its epochs; for the
two processes, rank 0 also reports the share of the timed epochs spent in collective calls
(``DataParallel.communication_seconds``: Allreduce, Allgatherv, broadcasts, waiting for the
other process included). Rounds alternate the configurations; the table shows medians.

    python benchmarks/bench_distributed.py                  # 3 rounds, about 3 minutes
    python benchmarks/bench_distributed.py --quick          # smoke run, well under a minute
    python benchmarks/bench_distributed.py --only big --rounds 5 --markdown
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _harness

SCRIPT = Path(__file__).resolve()
TASKS = ("big", "small", "cnn")
# (processes, BLAS threads per process)
CONFIGS = {"1x1": (1, 1), "1x2": (1, 2), "2x1": (2, 1)}
LABELS = {"1x1": "1 process, 1 thread", "1x2": "1 process, 2 threads",
          "2x1": "2 processes, 1 thread"}
DATA_SEED, MODEL_SEED = 0, 2
QUIET_CPUS, WAIT_BUDGET_SECONDS = 0.25, 120.0


@dataclass(frozen=True)
class Work:
    """One task's training: layers, rows, batch, epochs timed, rows of the warm-up epoch."""

    layers: tuple[int, ...]
    rows: int
    batch_size: int
    epochs: int
    warmup_rows: int
    network: str = "mlp"


FULL = {"big": Work((784, 256, 128, 10), 60_000, 128, 2, 1_280),
        "small": Work((64, 64, 10), 1_437, 32, 20, 1_437),
        "cnn": Work((1, 16, 32, 10), 10_000, 128, 1, 1_280, "cnn")}
QUICK = {"big": Work((784, 256, 128, 10), 6_000, 128, 1, 1_280),
         "small": Work((64, 64, 10), 1_437, 32, 2, 1_437),
         "cnn": Work((1, 16, 32, 10), 1_280, 128, 1, 256, "cnn")}


# ----------------------------------------------------------------------------- the worker


def model_and_data(work: Work) -> tuple[Any, Any, Any]:
    import numpy as np

    import minidl

    rng = np.random.default_rng(DATA_SEED)
    if work.network == "cnn":
        _, *filters, classes = work.layers
        layers = [layer for units in filters
                  for layer in (minidl.Conv2D(units, 3, padding="same", activation="relu"),
                                minidl.MaxPooling2D(2))]
        layers += [minidl.Flatten(), minidl.Dense(classes, activation="softmax")]
        input_dim: Any = (28, 28, 1)
    else:
        layers = [minidl.Dense(units, activation="relu") for units in work.layers[1:-1]]
        layers.append(minidl.Dense(work.layers[-1], activation="softmax"))
        input_dim = work.layers[0]
    shape = input_dim if isinstance(input_dim, tuple) else (input_dim,)
    x = rng.standard_normal((work.rows, *shape), dtype=np.float32)
    y = rng.integers(0, work.layers[-1], size=work.rows)
    model = minidl.Sequential(layers, input_dim=input_dim, seed=MODEL_SEED)
    model.compile(optimizer=minidl.SGD(model.parameters(), lr=0.01), loss="cross_entropy")
    return model, x, y


def blas_threads() -> int | None:
    try:
        from threadpoolctl import threadpool_info
    except ModuleNotFoundError:
        return None
    return next((pool["num_threads"] for pool in threadpool_info()
                 if pool["user_api"] == "blas"), None)


def run_task(task: str, work: Work) -> dict[str, Any] | None:
    """One measurement in this process (each process of an mpiexec); rank 0's result."""
    import numpy as np

    from minidl.distributed import DataParallel, launched_processes

    parallel = DataParallel() if launched_processes() > 1 else None
    model, x, y = model_and_data(work)
    model.fit(x[:work.warmup_rows], y[:work.warmup_rows], epochs=1,
              batch_size=work.batch_size, verbose=0, distribute=parallel)
    communication = 0.0 if parallel is None else parallel.communication_seconds
    start = time.perf_counter()
    model.fit(x, y, epochs=work.epochs, batch_size=work.batch_size, verbose=0,
              distribute=parallel)
    seconds = time.perf_counter() - start
    if parallel is not None and not parallel.is_chief:
        return None
    result = {"seconds": seconds / work.epochs, "numpy": np.__version__,
              "blas_threads": blas_threads(), "processes": 1 if parallel is None else
              parallel.size, "steps": -(-work.rows // work.batch_size)}
    if parallel is not None:
        result["communication"] = (parallel.communication_seconds - communication) / seconds
    return result


# ----------------------------------------------------------------------------- the parent


class Runner:
    def __init__(self, quick: bool, env: dict[str, str]) -> None:
        self.quick, self.env = quick, env
        self.waited = 0.0
        self.results: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)

    def run(self, task: str, config: str) -> dict[str, Any]:
        processes, threads = CONFIGS[config]
        env = {**self.env, "OPENBLAS_NUM_THREADS": str(threads),
               "OMP_NUM_THREADS": str(threads)}
        launcher = ([str(Path(sys.executable).with_name("mpiexec")), "-n", str(processes)]
                    if processes > 1 else [])
        if self.waited < WAIT_BUDGET_SECONDS:
            self.waited += _harness.wait_until_idle(QUIET_CPUS, WAIT_BUDGET_SECONDS - self.waited)
        arguments = ["--worker", task] + (["--quick"] if self.quick else [])
        result = _harness.run_worker(SCRIPT, arguments, env, launcher)
        self.results[task, config].append(result)
        return result

    def median(self, task: str, config: str, key: str) -> float | None:
        runs = self.results.get((task, config))
        return _harness.median([run[key] for run in runs]) if runs else None


def build_table(runner: Runner, tasks: list[str], sizes: dict[str, Work]
                ) -> tuple[list[str], list[list[str]]]:
    header = ["task", *(f"{LABELS[c]}: s/epoch" for c in CONFIGS), "2 processes / 2 threads",
              "2 processes: communication"]
    names = {"big": "big MLP, batch 128", "small": "small MLP, batch 32",
             "cnn": "CNN, batch 128"}
    rows = []
    for task in tasks:
        seconds = {config: runner.median(task, config, "seconds") for config in CONFIGS}
        ratio = seconds["2x1"] / seconds["1x2"]
        share = runner.median(task, "2x1", "communication")
        rows.append([f"{names[task]} ({sizes[task].rows:,} rows)",
                     *(f"{seconds[config]:.3f}" for config in CONFIGS),
                     f"{ratio:.2f}x", f"{share:.0%}"])
    return header, rows


def describe(runner: Runner, tasks: list[str], sizes: dict[str, Work],
             removed: list[str]) -> list[str]:
    first = next(iter(runner.results.values()))[0]
    lines = [f"date: {datetime.date.today().isoformat()}",
             f"machine: {os.cpu_count()} CPUs, {_harness.cpu_model()}",
             f"python {sys.version.split()[0]}, numpy {first['numpy']}"]
    threads = {config: runner.results[tasks[0], config][0]["blas_threads"] for config in CONFIGS}
    lines.append("BLAS threads per process (threadpoolctl): "
                 + ", ".join(f"{LABELS[c]}: {t}" for c, t in threads.items()))
    for task in tasks:
        work = sizes[task]
        per_step = {config: runner.median(task, config, "seconds") / (
            -(-work.rows // work.batch_size)) * 1e6 for config in CONFIGS}
        lines.append(f"{task}: us per step: " + ", ".join(
            f"{LABELS[c]} {us:.0f}" for c, us in per_step.items()))
    for (task, config), runs in sorted(runner.results.items()):
        lines.append(f"rounds {task}/{config} (s/epoch): "
                     + ", ".join(f"{run['seconds']:.4g}" for run in runs))
    foreign = [run["foreign_cpus"] for runs in runner.results.values() for run in runs
               if run["foreign_cpus"] is not None]
    return lines + _harness.conditions(foreign, runner.waited, removed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds of alternated measurements (default 3, 1 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer rows and epochs: a smoke run, not a measurement")
    parser.add_argument("--only", choices=TASKS, help="run one task only")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # the parent starts itself so
    arguments = parser.parse_args(argv)
    sizes = QUICK if arguments.quick else FULL
    if arguments.worker:
        result = run_task(arguments.worker, sizes[arguments.worker])
        if result is not None:
            _harness.emit(result)
        return
    rounds = arguments.rounds or (1 if arguments.quick else 3)
    tasks = [arguments.only] if arguments.only else list(TASKS)
    env, removed = _harness.worker_environment()
    runner = Runner(arguments.quick, env)
    for index in range(rounds):
        for task in tasks:
            for config in CONFIGS:
                result = runner.run(task, config)
                extra = ("" if "communication" not in result
                         else f", {result['communication']:.0%} communicating")
                print(f"round {index + 1}/{rounds}: {task:<6}{LABELS[config]:<24}"
                      f"{result['seconds']:8.3f} s/epoch{extra}", file=sys.stderr, flush=True)
    header, rows = build_table(runner, tasks, sizes)
    print("\n".join(describe(runner, tasks, sizes, removed)))
    print()
    print(_harness.format_table(header, rows, arguments.markdown))


if __name__ == "__main__":
    main()
