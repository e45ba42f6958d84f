"""Requests per second and latency of minidl.serving against a no-op app, FastAPI and Flask.

Single-row ``POST /v1/models/m:predict`` requests for a 64-64-10 model (Dense 64 relu, Dense
10 softmax, float32), from 1, 8 and 32 concurrent keep-alive clients, against:

* ``minidl``: ``python -m minidl serve`` (minidl's ASGI app under uvicorn + httptools + uvloop
  with minidl's ``GuardedProtocol``, one process), without and with ``--enable_batching``;
* ``no-op app``: the same engine, started the same way (``minidl.serving.engine.serve``),
  running minidl's own app with a stub model whose ``predict`` computes nothing: everything
  but the model call (see ``_serving_peers.py``);
* ``FastAPI``: the same model served the way FastAPI's documentation shows (a pydantic body,
  an ``async def`` endpoint, the model loaded in a lifespan handler; see ``_fastapi_peer.py``),
  run by ``uvicorn _fastapi_peer:app --http httptools --loop uvloop``, one process; and the
  same endpoint as a plain ``def`` (Starlette's thread pool);
* ``Flask`` under ``gunicorn -w 2 -k gthread --threads 4``;
* the engine comparison: the no-op app under uvicorn's own command line (httptools, uvloop,
  no GuardedProtocol) and under ``granian --interface asgi`` (uvloop), and minidl's app under
  granian.

Every server runs in its own process on 127.0.0.1 (a free port), started and stopped here.
A round starts every server afresh, then measures them one after the other at 1 client, then
at 8, then at 32, so that the two sides of a ratio are measured seconds apart; the servers'
order is reversed every other round, and each ratio in the table is the median of the
per-round ratios. Before each measurement the
benchmark waits (bounded) for the machine's other processes to go quiet, and measures again
(at most twice) when they did not stay quiet. The load comes from another process: ``wrk``
(one thread) when it is installed, else the small selectors-based client in
``_http_load.py``. Every measurement is bounded in time and in requests, after a warm-up whose
requests are not counted. Results, method and machine: benchmarks/SERVING.md.

    python benchmarks/bench_serving.py                 # full run, about 10 minutes
    python benchmarks/bench_serving.py --quick         # smoke run, about 1.5 minutes
    python benchmarks/bench_serving.py --markdown --only minidl noop-app fastapi
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import _harness
import _http_load

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CLIENTS = (1, 8, 32)
TARGET_CLIENTS, BATCHING_CLIENTS = 8, 32
# the targets, at TARGET_CLIENTS clients, for `minidl serve`
TARGET_FASTAPI_RATIO, TARGET_NOOP_RATIO, TARGET_P99_MS = 1.5, 0.75, 10.0
# batching at BATCHING_CLIENTS must be no slower than without it, within this noise margin
BATCHING_TOLERANCE = 0.05
GUNICORN_WORKERS, GUNICORN_THREADS = 2, 4
WARMUP_SECONDS = 1.0
MAX_REQUESTS_PER_SECOND = 100_000  # the request bound of a measurement, per second of it
READY_TIMEOUT = 60.0
PREDICT_PATH = "/v1/models/m:predict"
IDLE_CPUS = 0.3          # wait until the machine's other work keeps fewer CPUs busy than this
IDLE_TIMEOUT = 60.0      # ... but at most this long (seconds) before each measurement
NOISY_CPUS = 0.3         # measure again when other processes used more than this meanwhile
STOLEN_CPUS = 0.1        # or when the host took more than this from the VM's CPUs
MAX_RETRIES = 2
FOREIGN_CPUS_WARNING = 0.2
STALLED_P50_MS = 20.0


@dataclass(frozen=True)
class Config:
    """One server to measure: ``key`` for ``--only``, its row label, how to start it."""

    key: str
    label: str
    engine: str  # "minidl" (minidl.serving.engine), "uvicorn" (its CLI), "granian", "gunicorn"
    app: str     # "minidl", "stub", "fastapi", "fastapi-def", "flask"; the variant "noop-http"
                 # (see _serving_peers.py)
    batching: bool = False
    noop: str | None = None  # the key the "÷ no-op app" column divides by (default: the
                             # no-op app on the same engine)
    variant: bool = False    # evidence for a change, measured only with --only/--variants


# in measuring order (reversed every other round): the pairs of the targets stay neighbours
CONFIGS = (
    Config("noop-app", "no-op app", "minidl", "stub"),
    Config("minidl", "minidl", "minidl", "minidl"),
    Config("minidl-batching", "minidl --enable_batching", "minidl", "minidl", batching=True),
    Config("fastapi", "FastAPI (async def)", "uvicorn", "fastapi"),
    Config("fastapi-def", "FastAPI (def)", "uvicorn", "fastapi-def"),
    Config("flask", "Flask", "gunicorn", "flask"),
    Config("uvicorn-noop-app", "no-op app", "uvicorn", "stub"),
    Config("granian-noop-app", "no-op app", "granian", "stub"),
    Config("granian-minidl", "minidl", "granian", "minidl"),
    Config("noop-http", "no-op HTTP", "minidl", "noop-http", variant=True),
)
ENGINE_LABELS = {"minidl": "minidl serve", "uvicorn": "uvicorn CLI", "granian": "granian",
                 "gunicorn": "gunicorn"}
NOOP_APP_OF_ENGINE = {"minidl": "noop-app", "uvicorn": "uvicorn-noop-app",
                      "granian": "granian-noop-app"}


# ---------------------------------------------------------------------- servers


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_command(config: Config, base_path: Path) -> tuple[list[str], int | None]:
    """The command line starting ``config``, and its port when it does not announce it."""
    python = sys.executable
    if config.engine == "minidl":  # both print "minidl serving on URL" when ready
        if config.app == "minidl":
            command = [python, "-m", "minidl", "serve", "--model_name", "m",
                       "--model_base_path", str(base_path), "--rest_api_port", "0"]
            return command + (["--enable_batching"] if config.batching else []), None
        if config.app == "noop-http":
            return [python, str(HERE / "_serving_peers.py"), "noop-http", "0"], None
        return [python, str(HERE / "_serving_peers.py"), config.app, str(base_path), "0"], None
    port = _free_port()
    if config.engine == "uvicorn":
        target = {"fastapi": ["_fastapi_peer:app"], "fastapi-def": ["_fastapi_peer:app_def"],
                  "stub": ["--factory", "_serving_peers:stub_app_from_environment"]}[config.app]
        # uvicorn's defaults, with httptools and uvloop named (auto picks them when
        # installed) and without the access log (minidl writes none either)
        return [python, "-m", "uvicorn", *target, "--host", "127.0.0.1", "--port", str(port),
                "--http", "httptools", "--loop", "uvloop", "--no-access-log",
                "--log-level", "warning"], port
    if config.engine == "granian":
        target = {"stub": "_serving_peers:stub_app_from_environment",
                  "minidl": "_serving_peers:minidl_app_from_environment"}[config.app]
        # granian's defaults (1 worker, 1 runtime thread), uvloop as for uvicorn, no
        # websockets (minidl's engine has none either)
        return [python, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1",
                "--port", str(port), "--loop", "uvloop", "--no-ws", "--log-level", "warning",
                "--factory", target], port
    # gthread: sync workers close the connection after every answer; threads keep it alive
    factory = f"_serving_peers:create_flask_app({str(base_path / '1' / 'model.npz')!r})"
    return [python, "-m", "gunicorn", "-w", str(GUNICORN_WORKERS), "-k", "gthread",
            "--threads", str(GUNICORN_THREADS), "-b", f"127.0.0.1:{port}",
            "--pythonpath", str(HERE), "--log-level", "warning", factory], port


def _cpus() -> tuple[int, int] | None:
    """The CPU for the servers and the one for the load generator: the last and the first
    this process may use, when there are two and ``taskset`` is there to pin them."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2 or not shutil.which("taskset"):
        return None
    return allowed[-1], allowed[0]


def pinned(command: list[str], role: int) -> list[str]:
    """``command`` run on its own CPU (role 0: a server, 1: the load generator), so that the
    scheduler never puts client and server on one core, nor moves them between runs."""
    cpus = _cpus()
    return command if cpus is None else ["taskset", "-c", str(cpus[role]), *command]


def _process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (Linux /proc): granian and gunicorn serve from
    worker processes."""
    parents: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # a process that just exited
            parents[ppid].append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += parents.get(pid, [])
    return tree


class Server:
    """A server process: started, waited for, its CPU time read, stopped (always)."""

    def __init__(self, config: Config, base_path: Path, log_path: Path, body: bytes,
                 env: dict[str, str]) -> None:
        command, port = _server_command(config, base_path)
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            pinned(command, 0), stdout=subprocess.PIPE if port is None else self._log,
            stderr=self._log, text=True, env=env, cwd=REPO, start_new_session=True)
        try:
            if port is None:
                line = self._ready_line()
                if " on http://" not in line:
                    raise RuntimeError(f"unexpected first line {line!r}")
                self.url = line.split(" on ", 1)[1].split()[0].strip()
            else:
                self.url = f"http://127.0.0.1:{port}"
            self._wait_for_answer(body)
        except BaseException:
            self.stop()
            raise
        self.pids = _process_tree(self.process.pid)

    def _ready_line(self) -> str:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(self.process.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(READY_TIMEOUT)
        if not lines or not lines[0]:
            raise RuntimeError(f"the server did not start; see {self.log_path}:\n"
                               f"{self.log_path.read_text()[-2000:]}")
        return lines[0]

    def _wait_for_answer(self, body: bytes) -> None:
        """Until one predict is answered 200 (only minidl announces itself)."""
        address, request = _http_load.build_request(self.url + PREDICT_PATH, body)
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}; see "
                                   f"{self.log_path}:\n{self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection(address, timeout=10) as sock:
                    sock.sendall(request)
                    answer = sock.recv(65536)
                if answer.startswith(b"HTTP/1.1 200"):
                    return
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise RuntimeError(f"no answer from {self.url} within {READY_TIMEOUT} s")
            time.sleep(0.1)

    def cpu_seconds(self) -> float:
        """CPU time so far of the server's processes (those running once it answered)."""
        total = 0.0
        for pid in self.pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # a worker that exited
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # its own session: its workers
                self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


# ---------------------------------------------------------------------- load


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds of the whole machine so far (/proc/stat): busy in this VM, and stolen by
    the host (time a virtual CPU wanted to run but the host ran something else)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq) / tick, steal / tick


_WRK_SCRIPT = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = io.open({body_path!r}, "rb")
wrk.body = file:read("*a")
file:close()

local answered = 0
function response(status, headers, body)
  answered = answered + 1
  if answered >= {max_requests} then wrk.thread:stop() end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{{"requests": %d, "us": %d, "p50": %d, "p90": %d, "p99": %d, "errors": %d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), e.connect + e.read + e.write + e.status + e.timeout))
end
"""


class Client:
    """The load generator: ``wrk`` or ``_http_load.py``; one call is one measurement."""

    def __init__(self, kind: str, body_path: Path, workdir: Path, processes: int,
                 env: dict[str, str], warmup: float) -> None:
        self.kind = kind
        self.body_path = body_path
        self.workdir = workdir
        self.processes = processes
        self.env = env
        self.warmup = warmup

    def describe(self) -> str:
        if self.kind == "wrk":
            version = subprocess.run(["wrk", "--version"], capture_output=True, text=True,
                                     check=False).stdout.split(" [")[0].strip()
            return f"{version}, 1 thread, one keep-alive connection per client"
        return (f"_http_load.py ({self.processes} process(es), selectors, raw sockets), "
                "one keep-alive connection per client")

    def measure(self, url: str, connections: int, seconds: float,
                server: Server) -> dict[str, Any]:
        max_requests = int(MAX_REQUESTS_PER_SECOND * seconds)
        run = self._wrk if self.kind == "wrk" else self._python
        run(url, connections, self.warmup, max_requests)  # not counted
        return self._timed(lambda: run(url, connections, seconds, max_requests), server,
                           client_cpu_from_children=self.kind == "wrk")

    def _timed(self, run: Any, server: Server, client_cpu_from_children: bool) -> dict[str, Any]:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        (busy, stolen), server_cpu = _cpu_seconds(), server.cpu_seconds()
        result = run()
        (busy_after, stolen_after), server_cpu_after = _cpu_seconds(), server.cpu_seconds()
        busy, stolen = busy_after - busy, stolen_after - stolen
        server_cpu = server_cpu_after - server_cpu
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if client_cpu_from_children:
            result["client_cpu_seconds"] = (after.ru_utime + after.ru_stime
                                            - children.ru_utime - children.ru_stime)
        seconds = result["seconds"]
        result["server_cpus"] = server_cpu / seconds
        result["client_cpus"] = result["client_cpu_seconds"] / seconds
        # what the rest of the machine kept busy, and what the host took: noise for this
        # measurement
        result["foreign_cpus"] = max(0.0, busy / seconds - result["server_cpus"]
                                     - result["client_cpus"])
        result["stolen_cpus"] = stolen / seconds
        return result

    def _wrk(self, url: str, connections: int, seconds: float,
             max_requests: int) -> dict[str, Any]:
        script = self.workdir / "post.lua"
        script.write_text(_WRK_SCRIPT.format(body_path=str(self.body_path),
                                             max_requests=max_requests))
        # wrk takes whole seconds only
        command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
                   "--timeout", "10s",
                   "-s", str(script), url + PREDICT_PATH]
        completed = subprocess.run(pinned(command, 1), capture_output=True, text=True,
                                   check=False, timeout=seconds + 60)
        lines = completed.stdout.strip().splitlines()
        if completed.returncode != 0 or not lines or not lines[-1].startswith("{"):
            raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr[-500:]}"
                               f"{completed.stdout[-500:]}")
        out = json.loads(lines[-1])
        return {"requests": out["requests"], "seconds": out["us"] / 1e6,
                "rps": out["requests"] / (out["us"] / 1e6), "p50_ms": out["p50"] / 1000,
                "p90_ms": out["p90"] / 1000, "p99_ms": out["p99"] / 1000,
                "errors": out["errors"]}

    def _python(self, url: str, connections: int, seconds: float,
                max_requests: int) -> dict[str, Any]:
        command = [sys.executable, str(HERE / "_http_load.py"), "--url", url + PREDICT_PATH,
                   "--body-file", str(self.body_path), "--connections", str(connections),
                   "--processes", str(self.processes), "--warmup", "0",
                   "--seconds", str(seconds), "--max-requests", str(max_requests)]
        completed = subprocess.run(pinned(command, 1), capture_output=True, text=True,
                                   check=False, timeout=seconds + 90, env=self.env)
        lines = completed.stdout.strip().splitlines()
        if completed.returncode != 0 or not lines:
            raise RuntimeError(f"the load client failed: {completed.stderr[-1000:]}")
        return json.loads(lines[-1])


def speed_probe_ms() -> float:
    """A fixed piece of pure-Python work, timed (best of three, ms): how fast the machine runs
    Python right now. A virtual machine's host can slow it down without any process here
    showing it (no steal time reported), so the probe is taken before every measurement."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        total = 0
        for i in range(100_000):
            total += i * i % 7
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def measure_quietly(client: Client, server: Server, clients: int, seconds: float,
                    idle_timeout: float, retries: int = MAX_RETRIES) -> dict[str, Any]:
    """One measurement, started once the machine is quiet (waiting at most ``idle_timeout``)
    and taken again, at most ``retries`` times, while other processes kept more than
    ``NOISY_CPUS`` busy or the host stole more than ``STOLEN_CPUS`` during it; the quietest
    is kept."""
    best, attempts = None, 0
    while attempts <= retries:
        attempts += 1
        waited = _harness.wait_until_idle(IDLE_CPUS, idle_timeout) if idle_timeout > 0 else 0.0
        probe = speed_probe_ms()
        result = client.measure(server.url, clients, seconds, server)
        result["waited_seconds"], result["probe_ms"] = waited, probe
        noise = result["foreign_cpus"] + result["stolen_cpus"]
        if best is None or noise < best["foreign_cpus"] + best["stolen_cpus"]:
            best = result
        if result["foreign_cpus"] <= NOISY_CPUS and result["stolen_cpus"] <= STOLEN_CPUS:
            break
    best["attempts"] = attempts
    return best


# ---------------------------------------------------------------------- the run


def write_model(folder: Path) -> None:
    """``folder/base/1/model.npz`` and ``folder/body.json`` (one row); run in a subprocess
    so that this process never loads NumPy's BLAS."""
    import numpy as np

    from minidl.layers import Dense
    from minidl.model import Sequential

    model = Sequential([Dense(64, activation="relu"), Dense(10, activation="softmax")],
                       input_dim=64, seed=0)
    (folder / "base" / "1").mkdir(parents=True)
    model.save(str(folder / "base" / "1" / "model.npz"))
    row = np.random.default_rng(0).random((1, 64), dtype=np.float32)
    # what a TF Serving client sends: x.tolist() of float32, full float64 reprs
    (folder / "body.json").write_text(json.dumps({"instances": row.tolist()}))


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _source_state() -> str:
    """The commit measured, and whether minidl/serving had uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO,
                              check=False).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("diff", "HEAD", "--", "minidl")
    if not dirty:
        return f"source: {head}"
    digest = hashlib.sha256(dirty.encode()).hexdigest()[:8]
    return f"source: {head} + uncommitted changes in minidl/ (diff {digest})"


def describe_machine(client: Client) -> list[str]:
    cores, cpus = os.cpu_count(), _cpus()
    placement = ("client and server share them" if cpus is None else
                 f"every server pinned to CPU {cpus[0]}, the load generator to CPU {cpus[1]}")
    versions = ", ".join(f"{name} {_version(name)}" for name in (
        "numpy", "uvicorn", "httptools", "uvloop", "granian", "fastapi", "starlette",
        "pydantic", "flask", "gunicorn"))
    return [
        f"date: {datetime.date.today().isoformat()}",
        f"machine: {_harness.cpu_model()}, {cores} cores ({placement}), "
        f"{platform.system()} {platform.release()}",
        f"python {platform.python_version()}; {versions}",
        f"load generator: {client.describe()}",
        f"gunicorn: -w {GUNICORN_WORKERS} -k gthread --threads {GUNICORN_THREADS}",
        _source_state(),
    ]


Results = dict[tuple[str, int], dict[int, dict[str, Any]]]  # (key, clients) -> round -> run


def per_round_ratio(results: Results, key: str, reference: str, clients: int,
                    field: str = "rps", reference_clients: int | None = None
                    ) -> tuple[float, float, float] | None:
    """Median, min and max over the rounds of ``key``'s ``field`` divided by
    ``reference``'s, both measured in the same round; None if no round has both."""
    mine = results.get((key, clients), {})
    theirs = results.get((reference, reference_clients or clients), {})
    ratios = [mine[r][field] / theirs[r][field] for r in mine
              if r in theirs and theirs[r][field]]
    if not ratios:
        return None
    return statistics.median(ratios), min(ratios), max(ratios)


def medians(runs: dict[int, dict[str, Any]]) -> dict[str, float]:
    values = list(runs.values())
    out = {name: statistics.median(run[name] for run in values)
           for name in ("rps", "p50_ms", "p90_ms", "p99_ms", "server_cpus", "client_cpus")}
    out["errors"] = sum(run["errors"] for run in values)
    out["server_us"] = statistics.median(run["server_cpus"] / run["rps"] * 1e6
                                         for run in values if run["rps"])
    return out


def _cell(ratio: tuple[float, float, float] | None) -> str:
    return "-" if ratio is None else f"{ratio[0]:.2f}"


HEADER = ["configuration", "engine", "clients", "req/s", "p50 ms", "p90 ms", "p99 ms",
          "÷ no-op app", "÷ FastAPI", "÷ Flask", "server CPU µs/req", "server CPUs",
          "client CPUs", "target"]


def build_rows(results: Results, configs: list[Config]) -> list[list[str]]:
    """Table rows: medians over rounds, and medians of the per-round ratios."""
    rows = []
    for config in configs:
        noop = config.noop or NOOP_APP_OF_ENGINE.get(config.engine)
        for clients in CLIENTS:
            runs = results.get((config.key, clients))
            if not runs:
                continue
            m = medians(runs)
            note = ""
            if config.key == "minidl" and clients == TARGET_CLIENTS:
                note = "targets"
            if config.key == "minidl-batching" and clients == BATCHING_CLIENTS:
                note = "target"
            if m["errors"]:
                note = (note + ", " if note else "") + f"{m['errors']:.0f} errors"
            rows.append([
                config.label, ENGINE_LABELS[config.engine], str(clients), f"{m['rps']:,.0f}",
                f"{m['p50_ms']:.2f}", f"{m['p90_ms']:.2f}", f"{m['p99_ms']:.2f}",
                _cell(per_round_ratio(results, config.key, noop, clients) if noop else None),
                _cell(per_round_ratio(results, config.key, "fastapi", clients)),
                _cell(per_round_ratio(results, config.key, "flask", clients)),
                f"{m['server_us']:.0f}", f"{m['server_cpus']:.2f}", f"{m['client_cpus']:.2f}",
                note])
    return rows


def _range(ratio: tuple[float, float, float]) -> str:
    return f"(rounds {ratio[1]:.2f}-{ratio[2]:.2f})" if ratio[1] != ratio[2] else ""


def verdicts(results: Results) -> list[tuple[str, str, str]]:
    """The issue's targets: (target, measured, pass/FAIL/n/a)."""
    out = []

    def ratio_target(name: str, key: str, reference: str, clients: int, low: float,
                     reference_clients: int | None = None) -> None:
        ratio = per_round_ratio(results, key, reference, clients,
                                reference_clients=reference_clients)
        if ratio is None:
            out.append((name, "not measured", "n/a"))
            return
        # three decimals: 0.746 must not read as a passed 0.75
        out.append((name, f"{ratio[0]:.3f} {_range(ratio)}".strip(),
                    "pass" if ratio[0] >= low else "FAIL"))

    ratio_target(f"minidl ≥ {TARGET_FASTAPI_RATIO} × FastAPI req/s at {TARGET_CLIENTS} clients",
                 "minidl", "fastapi", TARGET_CLIENTS, TARGET_FASTAPI_RATIO)
    ratio_target(f"minidl ≥ {TARGET_NOOP_RATIO} × the no-op app's req/s at {TARGET_CLIENTS} "
                 "clients", "minidl", "noop-app", TARGET_CLIENTS, TARGET_NOOP_RATIO)
    runs = results.get(("minidl", TARGET_CLIENTS))
    name = f"minidl p99 < {TARGET_P99_MS:g} ms at {TARGET_CLIENTS} clients"
    if runs:
        p99s = [run["p99_ms"] for run in runs.values()]
        spread = f" (rounds {min(p99s):.2f}-{max(p99s):.2f})" if len(p99s) > 1 else ""
        p99 = statistics.median(p99s)
        out.append((name, f"{p99:.2f} ms{spread}", "pass" if p99 < TARGET_P99_MS else "FAIL"))
    else:
        out.append((name, "not measured", "n/a"))
    ratio_target(f"--enable_batching ≥ unbatched req/s at {BATCHING_CLIENTS} clients "
                 f"(within {BATCHING_TOLERANCE:.0%})", "minidl-batching", "minidl",
                 BATCHING_CLIENTS, 1 - BATCHING_TOLERANCE)
    return out


def engine_rows(results: Results) -> list[list[str]]:
    """uvicorn (minidl's engine, and uvicorn's CLI) against granian: the same apps."""
    rows = []
    pairs = (("no-op app", "noop-app", ("uvicorn-noop-app", "granian-noop-app")),
             ("minidl", "minidl", ("granian-minidl",)))
    for label, reference, others in pairs:
        for key in (reference, *others):
            config = next(c for c in CONFIGS if c.key == key)
            for clients in CLIENTS:
                runs = results.get((key, clients))
                if not runs:
                    continue
                m = medians(runs)
                ratio = per_round_ratio(results, key, reference, clients)
                rows.append([label, ENGINE_LABELS[config.engine], str(clients),
                             f"{m['rps']:,.0f}", f"{m['p99_ms']:.2f}", _cell(ratio),
                             f"{m['server_us']:.0f}"])
    return rows


ENGINE_HEADER = ["app", "engine", "clients", "req/s", "p99 ms", "÷ same app on minidl serve",
                 "server CPU µs/req"]


def describe_load(results: Results) -> list[str]:
    """The load generator's own ceiling, and how busy the rest of the machine was."""
    lines = []
    runs = [run for by_round in results.values() for run in by_round.values()]
    busiest = max(runs, key=lambda run: run["rps"])
    if busiest["client_cpus"] > 0:
        lines.append(
            f"load generator: {busiest['client_cpu_seconds'] / busiest['requests'] * 1e6:.0f} "
            f"µs of CPU per request at the highest rate measured ({busiest['rps']:,.0f} req/s, "
            f"{busiest['client_cpus']:.2f} CPUs): a ceiling of "
            f"~{busiest['rps'] / busiest['client_cpus']:,.0f} req/s per core")
    probes = sorted(run["probe_ms"] for run in runs)
    lines.append(f"speed probe (a fixed pure-Python loop, before each measurement): median "
                 f"{statistics.median(probes):.1f} ms, {probes[0]:.1f}-{probes[-1]:.1f} ms: "
                 f"the machine ran Python up to {probes[-1] / probes[0]:.2f} times slower at "
                 "some moments than at others")
    foreign = sorted(run["foreign_cpus"] for run in runs)
    retried = sum(run["attempts"] > 1 for run in runs)
    lines.append(f"other processes (and the kernel's interrupt work) kept "
                 f"{statistics.median(foreign):.2f} CPUs busy in the median measurement, "
                 f"{foreign[-1]:.2f} at most; {retried} of {len(runs)} measurements were taken "
                 f"again because of them")
    stolen = sorted(run["stolen_cpus"] for run in runs)
    lines.append(f"the host stole {statistics.median(stolen):.2f} CPUs from this VM in the "
                 f"median measurement, {stolen[-1]:.2f} at most (/proc/stat's steal time)")
    stalled = sorted({key for (key, clients), by_round in results.items() for run in
                      by_round.values() if clients == 1 and run["p50_ms"] > STALLED_P50_MS})
    if stalled:
        lines.append(f"warning: a median latency above {STALLED_P50_MS:g} ms at 1 client (a "
                     f"stalled connection, such as a delayed ACK) in: {', '.join(stalled)}")
    if foreign[-1] > FOREIGN_CPUS_WARNING or stolen[-1] > STOLEN_CPUS:
        lines.append(f"warning: some measurements shared the machine (up to {foreign[-1]:.2f} "
                     f"CPUs busy elsewhere, {stolen[-1]:.2f} stolen by the host): the numbers "
                     "are noisy")
    return lines


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=None,
                        help="length of each measurement (default 4, --quick 1)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds, each starting every server afresh (default 3, --quick 1)")
    parser.add_argument("--quick", action="store_true", help="a smoke run of about a minute")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    parser.add_argument("--only", nargs="+", choices=[c.key for c in CONFIGS],
                        help="measure these configurations only")
    parser.add_argument("--variants", action="store_true",
                        help="also measure the no-op HTTP app (the engine alone)")
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto",
                        help="load generator (auto: wrk when installed, else python)")
    parser.add_argument("--client-processes", type=int, default=1,
                        help="processes of the python load generator (default 1)")
    parser.add_argument("--idle-timeout", type=float, default=None,
                        help="longest wait for a quiet machine before each measurement, s "
                             f"(default {IDLE_TIMEOUT:g}, --quick 2; 0: do not wait)")
    parser.add_argument("--json", type=Path, help="also write every measurement to this file")
    parser.add_argument("--write-model", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    arguments = parse_arguments(argv)
    if arguments.write_model is not None:
        write_model(arguments.write_model)
        return
    began = time.monotonic()
    seconds = arguments.seconds or (1.0 if arguments.quick else 4.0)
    rounds = arguments.rounds or (1 if arguments.quick else 3)
    idle_timeout = (arguments.idle_timeout if arguments.idle_timeout is not None
                    else 2.0 if arguments.quick else IDLE_TIMEOUT)
    configs = [c for c in CONFIGS if c.key in arguments.only] if arguments.only else [
        c for c in CONFIGS if arguments.variants or not c.variant]
    kind = arguments.client
    if kind == "auto":
        kind = "wrk" if shutil.which("wrk") else "python"
    elif kind == "wrk" and not shutil.which("wrk"):
        raise SystemExit("bench_serving: wrk is not installed (apt-get install wrk), "
                         "or use --client python")
    # wrk measures whole seconds only
    warmup = 0.5 if arguments.quick and kind == "python" else WARMUP_SECONDS
    env, _ = _harness.worker_environment()
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(HERE), env.get("PYTHONPATH", "")])
    results: Results = defaultdict(dict)
    with tempfile.TemporaryDirectory(prefix="bench_serving_") as temp:
        workdir = Path(temp)
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--write-model",
                        str(workdir)], check=True, env=env, timeout=120)
        env["BENCH_SERVING_BASE"] = str(workdir / "base")
        env["BENCH_SERVING_MODEL"] = str(workdir / "base" / "1" / "model.npz")
        body_path = workdir / "body.json"
        body = body_path.read_bytes()
        client = Client(kind, body_path, workdir, arguments.client_processes, env, warmup)
        machine = describe_machine(client)
        print("\n".join(machine), flush=True)
        for round_index in range(rounds):
            order = configs if round_index % 2 == 0 else configs[::-1]
            servers: dict[str, Server] = {}
            try:
                for config in order:  # every round starts every server afresh
                    servers[config.key] = Server(config, workdir / "base",
                                                 workdir / f"{config.key}.log", body, env)
                for clients in CLIENTS:
                    for config in order:
                        result = measure_quietly(client, servers[config.key], clients,
                                                 seconds, idle_timeout,
                                                 0 if arguments.quick else MAX_RETRIES)
                        results[(config.key, clients)][round_index] = result
                        print(f"round {round_index + 1}/{rounds} {config.label} "
                              f"({ENGINE_LABELS[config.engine]}) x{clients}: "
                              f"{result['rps']:,.0f} req/s, p50 {result['p50_ms']:.2f} ms, "
                              f"p99 {result['p99_ms']:.2f} ms, server "
                              f"{result['server_cpus']:.2f} CPUs, client "
                              f"{result['client_cpus']:.2f}, others "
                              f"{result['foreign_cpus']:.2f}, stolen "
                              f"{result['stolen_cpus']:.2f} (try {result['attempts']}, "
                              f"waited {result['waited_seconds']:.1f} s, speed probe "
                              f"{result['probe_ms']:.1f} ms)", file=sys.stderr, flush=True)
            finally:
                for server in servers.values():
                    server.stop()
    if arguments.json is not None:
        arguments.json.write_text(json.dumps(
            {"machine": machine, "seconds": seconds, "rounds": rounds,
             "results": [{"config": key, "clients": clients, "round": r, **run}
                         for (key, clients), by_round in results.items()
                         for r, run in by_round.items()]}, indent=1))
    print()
    print(_harness.format_table(HEADER, build_rows(results, configs), arguments.markdown))
    print()
    print(f"{rounds} round(s) of {seconds:g} s per measurement (after a {warmup:g} s warm-up); "
          "req/s and latencies are medians over the rounds, the ÷ columns medians of the "
          "per-round ratios (÷ no-op app: the no-op app on the same engine).")
    print()
    target_rows = [list(v) for v in verdicts(results)]
    print(_harness.format_table(["target", "measured", "verdict"], target_rows,
                                arguments.markdown))
    rows = engine_rows(results)
    if any(row[1] == "granian" for row in rows):
        print()
        print("engines: the same apps on uvicorn (minidl serve; uvicorn's CLI) and granian")
        print(_harness.format_table(ENGINE_HEADER, rows, arguments.markdown))
    print()
    for line in describe_load(results):
        print(line)
    if _source_state() != machine[-1]:
        print(f"warning: minidl's source changed during the run ({machine[-1]}; now "
              f"{_source_state().removeprefix('source: ')}): servers started after the change "
              "ran the new code")
    print(f"total time: {(time.monotonic() - began) / 60:.1f} minutes")


if __name__ == "__main__":
    main()
