"""Process plumbing for the benchmarks: one measurement per subprocess, medians, tables.

Two BLAS thread pools in one process (NumPy's OpenBLAS and PyTorch's) fight over the cores
and make both slow, so every measurement runs in a fresh interpreter that imports one
framework only. The parent never times anything itself: it starts the workers, reads the
one JSON line each prints last, and takes medians over rounds.

Standard library only: the parent must not load a BLAS of its own.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Set for older OpenBLAS builds that misdetect some processors; current NumPy wheels detect
# the core themselves and run slower kernels when these force a choice.
OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

WORKER_TIMEOUT_SECONDS = 900


def worker_environment() -> tuple[dict[str, str], list[str]]:
    """The environment for the workers, without the OpenBLAS overrides; and what was removed.

    Only the benchmark's subprocesses see the change: tests and CI keep their environment.
    """
    env = dict(os.environ)
    removed = [name for name in OPENBLAS_OVERRIDES if name in env]
    for name in removed:
        del env[name]
    return env, removed


def run_worker(script: Path, arguments: Sequence[str], env: dict[str, str],
               launcher: Sequence[str] = ()) -> dict[str, Any]:
    """Run ``python script *arguments``, after ``launcher`` if given (``mpiexec -n 2``);
    return the JSON object on its last stdout line.

    Adds ``foreign_cpus``: how many CPUs other processes kept busy, on average, while the
    worker ran (None where /proc/stat is missing). Anything above ~0.1 means the worker
    shared its cores, and BLAS or OpenMP threads that wait for each other suffer most.
    """
    command = [*launcher, sys.executable, str(script), *arguments]
    busy_before, children_before = _busy_cpu_seconds(), _children_cpu_seconds()
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, env=env,
                               timeout=WORKER_TIMEOUT_SECONDS, check=False)
    wall = time.perf_counter() - start
    busy_after, children_after = _busy_cpu_seconds(), _children_cpu_seconds()
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"worker {' '.join(arguments)} failed (exit {completed.returncode}):"
                           f"\n{completed.stderr[-2000:]}")
    result = json.loads(lines[-1])
    foreign = None
    if busy_before is not None and busy_after is not None:
        own = children_after - children_before
        foreign = max(0.0, (busy_after - busy_before - own) / wall)
    result["foreign_cpus"] = foreign
    return result


def _busy_cpu_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (steal time included)."""
    stat = Path("/proc/stat")
    if not stat.exists():
        return None
    fields = [int(value) for value in stat.read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def busy_cpus(interval: float) -> float | None:
    """How many CPUs were busy, on average, during the next ``interval`` seconds."""
    before = _busy_cpu_seconds()
    time.sleep(interval)
    after = _busy_cpu_seconds()
    return None if before is None or after is None else (after - before) / interval


def wait_until_idle(threshold: float, timeout: float, interval: float = 0.5) -> float:
    """Sleep until fewer than ``threshold`` CPUs are busy, at most ``timeout`` seconds.

    Returns the seconds waited. Other people's test runs on a shared machine come and go;
    a measurement started while they run is worth little.
    """
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        busy = busy_cpus(interval)
        if busy is None or busy < threshold:
            break
    return time.perf_counter() - start


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    """This process's peak resident set size, MiB.

    On Linux, the high-water mark of the process's own memory map (``VmHWM``):
    ``getrusage(RUSAGE_SELF).ru_maxrss`` carries the parent's RSS over fork + exec, so a
    worker started by a 400 MB parent reports at least 400 MB whatever it does itself.
    Elsewhere ``ru_maxrss`` (KiB on Linux, bytes on macOS).
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def emit(result: dict[str, Any]) -> None:
    """Print a worker's result as the JSON line ``run_worker`` reads, with its peak RSS."""
    print(json.dumps({**result, "peak_rss_mb": peak_rss_mb()}), flush=True)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def cpu_model() -> str:
    """The processor's name, family and model from /proc/cpuinfo (``platform`` elsewhere).

    Virtual machines often show a bare vendor name ("AMD EPYC"); the family and model
    numbers still tell the generation.
    """
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return platform.processor() or platform.machine()
    fields: dict[str, str] = {}
    for line in cpuinfo.read_text().split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return (f"{fields.get('model name', platform.machine())} (cpu family "
            f"{fields.get('cpu family', '?')}, model {fields.get('model', '?')})")


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> str:
    """A plain-text table with aligned columns, or a GitHub Markdown table."""
    if markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                         for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
                         ).rstrip()
    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def conditions(foreign: list[float], waited: float, removed: list[str]) -> list[str]:
    """The report's lines on what else ran: other processes' CPU use during the
    measurements (``foreign``, one value per measurement), the seconds waited for a quiet
    machine, and the variables unset in the workers' environment."""
    lines = []
    if foreign:
        lines.append(f"other processes' CPU use during the measurements: median "
                     f"{median(foreign):.2f}, max {max(foreign):.2f} CPUs; waited "
                     f"{waited:.0f} s for the machine to be idle")
    if removed:
        lines.append(f"unset in the workers' environment: {', '.join(removed)}")
    return lines
