"""One Conv2D layer's forward + backward, minidl against PyTorch (CPU), float32.

``Conv2D(16, 3, padding="same")`` on a batch of 128 images, in three cases:

* ``28x28x1, first layer``: MNIST-sized input; nobody needs the gradient with respect to the
  data (minidl's ``needs_input_grad = False``, PyTorch's input without ``requires_grad``);
* ``28x28x1, input grad``: the same with the input gradient;
* ``14x14x16, input grad``: a hidden layer, with the input gradient.

Each measurement is a subprocess importing one framework only (see ``_harness``), alternated
minidl, torch, minidl, ... for ``--rounds`` rounds; a worker times ``--steps`` steps after a
warm-up and reports its median step; the table shows the medians over rounds. PyTorch runs
NCHW (its native layout) with ``torch.set_num_threads(2)``; minidl runs NHWC.

    python benchmarks/bench_conv.py              # about a minute on 2 idle cores
    python benchmarks/bench_conv.py --rounds 3 --markdown
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import _harness

SCRIPT = Path(__file__).resolve()
FILTERS, KERNEL_SIZE, BATCH_SIZE = 16, 3, 128
# name: (height, width, channels, input gradient)
CASES = {
    "28x28x1, first layer": (28, 28, 1, False),
    "28x28x1, input grad": (28, 28, 1, True),
    "14x14x16, input grad": (14, 14, 16, True),
}
FRAMEWORKS = ("minidl", "torch")
QUIET_CPUS, WAIT_SECONDS = 0.3, 10.0


def step_times_minidl(case: str, steps: int) -> list[float]:
    import numpy as np

    from minidl.layers.convolution import Conv2D

    height, width, channels, input_grad = CASES[case]
    rng = np.random.default_rng(0)
    layer = Conv2D(FILTERS, KERNEL_SIZE, padding="same")
    layer.build((height, width, channels), dtype="float32", rng=rng)
    layer.needs_input_grad = input_grad
    x = rng.standard_normal((BATCH_SIZE, height, width, channels), dtype=np.float32)
    grad_y = rng.standard_normal((BATCH_SIZE, height, width, FILTERS), dtype=np.float32)

    def step() -> None:
        layer.forward(x, training=True)
        layer.backward(grad_y)

    return _time(step, steps)


def step_times_torch(case: str, steps: int) -> list[float]:
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)
    height, width, channels, input_grad = CASES[case]
    conv = torch.nn.Conv2d(channels, FILTERS, KERNEL_SIZE, padding="same")
    x = torch.randn(BATCH_SIZE, channels, height, width, requires_grad=input_grad)
    grad_y = torch.randn(BATCH_SIZE, FILTERS, height, width)
    wrt = [conv.weight, conv.bias, *([x] if input_grad else [])]

    def step() -> None:
        # autograd.grad returns fresh gradients, as minidl assigns rather than accumulates
        torch.autograd.grad(conv(x), wrt, grad_y)

    return _time(step, steps)


def _time(step, steps: int) -> list[float]:
    for _ in range(3):  # warm-up: first-touch allocations, BLAS thread start
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def worker(framework: str, case: str, steps: int) -> None:
    measure = step_times_minidl if framework == "minidl" else step_times_torch
    times = measure(case, steps)
    _harness.emit({"framework": framework, "case": case,
                   "step_ms": 1e3 * _harness.median(times)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--worker", nargs=2, metavar=("FRAMEWORK", "CASE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker, steps=args.steps)
        return
    env, _ = _harness.worker_environment()
    results: dict[tuple[str, str], list[float]] = {}
    for round_index in range(args.rounds):
        for case in CASES:
            for framework in FRAMEWORKS:
                _harness.wait_until_idle(QUIET_CPUS, WAIT_SECONDS)
                result = _harness.run_worker(
                    SCRIPT, ["--worker", framework, case, "--steps", str(args.steps)], env)
                results.setdefault((case, framework), []).append(result["step_ms"])
                print(f"round {round_index + 1}: {case}, {framework}: "
                      f"{result['step_ms']:.2f} ms (foreign CPUs {result['foreign_cpus']})",
                      file=sys.stderr)
    rows = []
    for case in CASES:
        minidl_ms = _harness.median(results[case, "minidl"])
        torch_ms = _harness.median(results[case, "torch"])
        rows.append([case, f"{minidl_ms:.2f}", f"{torch_ms:.2f}", f"{minidl_ms / torch_ms:.2f}x"])
    print(f"Conv2D({FILTERS}, {KERNEL_SIZE}, padding='same'), batch {BATCH_SIZE}, float32, "
          f"forward + backward, median ms per step over {args.rounds} rounds; "
          f"{_harness.cpu_model()}")
    print(_harness.format_table(["case", "minidl ms", "torch ms", "minidl / torch"], rows,
                                args.markdown))
    print(json.dumps({f"{case} / {framework}": values
                      for (case, framework), values in results.items()}), file=sys.stderr)


if __name__ == "__main__":
    main()
