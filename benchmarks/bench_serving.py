"""Requests per second and latency of minidl.serving against no-ops and a Flask peer.

Single-row ``POST /v1/models/m:predict`` requests for a 64-64-10 model (Dense 64 relu, Dense
10 softmax, float32), from 1, 8 and 32 concurrent keep-alive clients, against:

* ``minidl``: ``python -m minidl serve`` (the built-in event-loop HTTP/1.1 server), without and
  with ``--enable_batching`` (default batch options), and started under ``taskset -c`` on one
  core (a deployment choice measured here: see benchmarks/SERVING.md);
* ``no-op app``: the same server running minidl's own WSGI app with a stub model whose
  ``predict`` computes nothing: everything but the model call (see ``_serving_peers.py``);
* ``no-op HTTP``: the same server answering fixed bytes without parsing the request: the
  ceiling of the HTTP stack itself;
* the same apps under ``gunicorn -w 2 -k gthread --threads 4`` (two processes), and the peer
  most users would otherwise write: a plain Flask app of the same API under the same gunicorn
  settings.

Every server runs in its own process on 127.0.0.1 (a free port), started and stopped here.
The load comes from another process: ``wrk`` (one thread) when it is installed, else the
small selectors-based client in ``_http_load.py``. Every measurement is bounded in time and
in requests, after a warm-up whose requests are not counted; ``--rounds`` rounds start every
server afresh and the table shows medians. Results, method and machine: benchmarks/SERVING.md.

    python benchmarks/bench_serving.py                 # full run, about 10 minutes
    python benchmarks/bench_serving.py --quick         # smoke run, about a minute
    python benchmarks/bench_serving.py --markdown --client python
"""

from __future__ import annotations

import argparse
import datetime
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
TARGET_CLIENTS = 8
# the targets, at TARGET_CLIENTS clients, for minidl's built-in server
TARGET_NOOP_RATIO, TARGET_FLASK_RATIO, TARGET_P99_MS = 0.75, 1.4, 10.0
GUNICORN_WORKERS, GUNICORN_THREADS = 2, 4
WARMUP_SECONDS = 1.0
MAX_REQUESTS_PER_SECOND = 100_000  # the request bound of a measurement, per second of it
READY_TIMEOUT = 60.0
PREDICT_PATH = "/v1/models/m:predict"
FOREIGN_CPUS_WARNING = 0.2


@dataclass(frozen=True)
class Config:
    """One server to measure: ``key`` for ``--only``, its row label, how to start it."""

    key: str
    label: str
    stack: str        # "built-in" or "gunicorn"
    app: str          # "minidl", "stub", "noop-http" or "flask"
    batching: bool = False
    one_core: bool = False  # started under taskset -c (see PINNED_NOTE)


CONFIGS = (
    Config("noop-http", "no-op HTTP", "built-in", "noop-http"),
    Config("noop-app", "no-op app", "built-in", "stub"),
    Config("minidl", "minidl", "built-in", "minidl"),
    Config("minidl-batching", "minidl --enable_batching", "built-in", "minidl", batching=True),
    Config("noop-app-one-core", "no-op app on one core", "built-in", "stub", one_core=True),
    Config("minidl-one-core", "minidl on one core", "built-in", "minidl", one_core=True),
    Config("gunicorn-noop-http", "no-op HTTP", "gunicorn", "noop-http"),
    Config("gunicorn-noop-app", "no-op app", "gunicorn", "stub"),
    Config("gunicorn-minidl", "minidl", "gunicorn", "minidl"),
    Config("flask", "Flask", "gunicorn", "flask"),
)


# ---------------------------------------------------------------------- servers


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_command(config: Config, base_path: Path) -> tuple[list[str], int | None]:
    """The command line starting ``config``, and its port when it does not announce it."""
    python = sys.executable
    if config.stack == "built-in":
        if config.app == "minidl":
            command = [python, "-m", "minidl.serving", "--model_name", "m", "--model_base_path",
                       str(base_path), "--rest_api_port", "0"]
            command += ["--enable_batching"] if config.batching else []
        elif config.app == "stub":
            command = [python, str(HERE / "_serving_peers.py"), "stub", str(base_path), "0"]
        else:
            command = [python, str(HERE / "_serving_peers.py"), "noop-http", "0"]
        if config.one_core:
            command = ["taskset", "-c", str(min(os.sched_getaffinity(0))), *command]
        return command, None
    factory = {
        "minidl": f"minidl.serving:create_app(model_name='m', model_base_path={str(base_path)!r}"
                  f", enable_batching={config.batching})",
        "stub": f"_serving_peers:create_stub_app({str(base_path)!r})",
        "noop-http": "_serving_peers:create_noop_http_app()",
        "flask": f"_serving_peers:create_flask_app({str(base_path / '1' / 'model.npz')!r})",
    }[config.app]
    port = _free_port()
    # gthread: sync workers close the connection after every answer; threads keep it alive
    return [python, "-m", "gunicorn", "-w", str(GUNICORN_WORKERS), "-k", "gthread",
            "--threads", str(GUNICORN_THREADS), "-b", f"127.0.0.1:{port}",
            "--pythonpath", str(HERE), "--log-level", "warning", factory], port


class Server:
    """A server process: started, waited for, its CPU time read, stopped (always)."""

    def __init__(self, config: Config, base_path: Path, log_path: Path, body: bytes,
                 env: dict[str, str]) -> None:
        command, port = _server_command(config, base_path)
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._log,
                                        text=True, env=env, cwd=REPO)
        try:
            if port is None:
                line = self._ready_line()
                if " on http://" not in line:
                    raise RuntimeError(f"unexpected first line {line!r}")
                self.url = line.split(" on ", 1)[1].strip()
            else:
                self.url = f"http://127.0.0.1:{port}"
            self._wait_for_answer(body)
        except BaseException:
            self.stop()
            raise

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
        """Until one predict is answered 200 (gunicorn only announces itself in its log)."""
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
        """CPU time of the server and its worker processes so far (Linux /proc)."""
        total = 0.0
        pids = [self.process.pid]
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        if children.exists():
            pids += [int(pid) for pid in children.read_text().split()]
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # a worker that just exited
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process.stdout.close()
        self._log.close()



# ---------------------------------------------------------------------- load


def _busy_cpu_seconds() -> float:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


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
                 env: dict[str, str]) -> None:
        self.kind = kind
        self.body_path = body_path
        self.workdir = workdir
        self.processes = processes
        self.env = env

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
        run(url, connections, WARMUP_SECONDS, max_requests)  # not counted
        return self._timed(lambda: run(url, connections, seconds, max_requests), server,
                           client_cpu_from_children=self.kind == "wrk")

    def _timed(self, run: Any, server: Server, client_cpu_from_children: bool) -> dict[str, Any]:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy, server_cpu = _busy_cpu_seconds(), server.cpu_seconds()
        result = run()
        busy, server_cpu = _busy_cpu_seconds() - busy, server.cpu_seconds() - server_cpu
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if client_cpu_from_children:
            result["client_cpu_seconds"] = (after.ru_utime + after.ru_stime
                                            - children.ru_utime - children.ru_stime)
        seconds = result["seconds"]
        result["server_cpus"] = server_cpu / seconds
        result["client_cpus"] = result["client_cpu_seconds"] / seconds
        # what the rest of the machine (other users) kept busy: noise for this measurement
        result["foreign_cpus"] = max(0.0, busy / seconds - result["server_cpus"]
                                     - result["client_cpus"])
        return result

    def _wrk(self, url: str, connections: int, seconds: float,
             max_requests: int) -> dict[str, Any]:
        script = self.workdir / "post.lua"
        script.write_text(_WRK_SCRIPT.format(body_path=str(self.body_path),
                                             max_requests=max_requests))
        command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
                   "-s", str(script), url + PREDICT_PATH]
        completed = subprocess.run(command, capture_output=True, text=True, check=False,
                                   timeout=seconds + 60)
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
        completed = subprocess.run(command, capture_output=True, text=True, check=False,
                                   timeout=seconds + 90, env=self.env)
        lines = completed.stdout.strip().splitlines()
        if completed.returncode != 0 or not lines:
            raise RuntimeError(f"the load client failed: {completed.stderr[-1000:]}")
        return json.loads(lines[-1])


# ---------------------------------------------------------------------- the run


def write_model(folder: Path) -> None:
    """``folder/1/model.npz`` and ``folder/body.json`` (one row); run in a subprocess so that
    this process never loads NumPy's BLAS."""
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


def describe_machine(client: Client) -> list[str]:
    cores = os.cpu_count()
    return [
        f"date: {datetime.date.today().isoformat()}",
        f"machine: {_harness.cpu_model()}, {cores} cores (client and server share them), "
        f"{platform.system()} {platform.release()}",
        f"python {platform.python_version()}, numpy {_version('numpy')}, "
        f"gunicorn {_version('gunicorn')}, flask {_version('flask')}",
        f"load generator: {client.describe()}",
        f"gunicorn: -w {GUNICORN_WORKERS} -k gthread --threads {GUNICORN_THREADS}",
    ]


def _ratio(value: float, reference: float | None) -> str:
    return "-" if not reference else f"{value / reference:.2f}"


def build_rows(results: dict[tuple[str, int], list[dict[str, Any]]],
               configs: list[Config]) -> tuple[list[list[str]], list[str]]:
    """Table rows of medians over rounds, and the target verdicts."""
    median: dict[tuple[str, int], dict[str, float]] = {}
    for key, runs in results.items():
        median[key] = {name: statistics.median(run[name] for run in runs)
                       for name in ("rps", "p50_ms", "p99_ms", "server_cpus", "client_cpus")}
        median[key]["errors"] = sum(run["errors"] for run in runs)
        median[key]["server_us"] = statistics.median(
            run["server_cpus"] / run["rps"] * 1e6 for run in runs)
    rows, verdicts = [], []
    for config in configs:
        prefix = "gunicorn-" if config.stack == "gunicorn" else ""
        # each row against the no-op app on the same stack, started the same way
        noop_app_key = prefix + "noop-app" + ("-one-core" if config.one_core else "")
        for clients in CLIENTS:
            m = median.get((config.key, clients))
            if m is None:
                continue
            noop_app = median.get((noop_app_key, clients), {}).get("rps")
            noop_http = median.get((prefix + "noop-http", clients), {}).get("rps")
            flask = median.get(("flask", clients), {}).get("rps")
            target = ""
            if config.app == "minidl" and clients == TARGET_CLIENTS:
                target, verdict = _verdict(m, noop_app, flask)
                verdicts.append(f"{config.label} ({config.stack}): {verdict}")
            if m["errors"]:
                target = (target + " " if target else "") + f"{m['errors']:.0f} errors"
            rows.append([f"{config.label} ({config.stack})", str(clients), f"{m['rps']:,.0f}",
                         f"{m['p50_ms']:.2f}", f"{m['p99_ms']:.2f}", _ratio(m["rps"], noop_app),
                         _ratio(m["rps"], noop_http), _ratio(m["rps"], flask),
                         f"{m['server_us']:.0f}", f"{m['server_cpus']:.2f}",
                         f"{m['client_cpus']:.2f}", target])
    return rows, verdicts


def _verdict(m: dict[str, float], noop_app: float | None,
             flask: float | None) -> tuple[str, str]:
    """``pass``/``FAIL`` (or ``n/a`` when a reference was not measured) and why."""
    checks = {f"p99 {m['p99_ms']:.1f} ms < {TARGET_P99_MS:g}": m["p99_ms"] < TARGET_P99_MS}
    # three decimals: 0.746 must not read as a failed 0.75
    if noop_app:
        ratio = m["rps"] / noop_app
        checks[f"{ratio:.3f} x no-op app >= {TARGET_NOOP_RATIO}"] = ratio >= TARGET_NOOP_RATIO
    if flask:
        ratio = m["rps"] / flask
        checks[f"{ratio:.3f} x Flask >= {TARGET_FLASK_RATIO}"] = ratio >= TARGET_FLASK_RATIO
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        return "FAIL", "FAIL, missed: " + "; ".join(failed)
    if noop_app is None or flask is None:
        return "n/a", "n/a: no-op app and Flask are needed for a verdict"
    return "pass", "pass: " + "; ".join(checks)


HEADER = ["configuration", "clients", "req/s", "p50 ms", "p99 ms", "÷ no-op app",
          "÷ no-op HTTP", "÷ Flask", "server CPU µs/req", "server CPUs", "client CPUs",
          "target"]


def describe_load(results: dict[tuple[str, int], list[dict[str, Any]]]) -> list[str]:
    """The load generator's own ceiling, and how busy the rest of the machine was."""
    lines = []
    runs = [run for runs in results.values() for run in runs]
    busiest = max(runs, key=lambda run: run["rps"])
    if busiest["client_cpus"] > 0:
        lines.append(
            f"load generator: {busiest['client_cpu_seconds'] / busiest['requests'] * 1e6:.0f} "
            f"µs of CPU per request at the highest rate measured ({busiest['rps']:,.0f} req/s, "
            f"{busiest['client_cpus']:.2f} CPUs): a ceiling of "
            f"~{busiest['rps'] / busiest['client_cpus']:,.0f} req/s per core")
    foreign = max(run["foreign_cpus"] for run in runs)
    if foreign > FOREIGN_CPUS_WARNING:
        lines.append(f"warning: other processes kept up to {foreign:.2f} CPUs busy during "
                     "some measurements: the numbers are noisy")
    return lines


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=None,
                        help="length of each measurement (default 5, --quick 1)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds, each starting every server afresh (default 3, --quick 1)")
    parser.add_argument("--quick", action="store_true", help="a smoke run of about a minute")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--only", nargs="+", choices=[c.key for c in CONFIGS],
                        help="measure these configurations only")
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto",
                        help="load generator (auto: wrk when installed, else python)")
    parser.add_argument("--client-processes", type=int, default=1,
                        help="processes of the python load generator (default 1)")
    parser.add_argument("--write-model", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    arguments = parse_arguments(argv)
    if arguments.write_model is not None:
        write_model(arguments.write_model)
        return
    seconds = arguments.seconds or (1.0 if arguments.quick else 5.0)
    rounds = arguments.rounds or (1 if arguments.quick else 3)
    configs = [c for c in CONFIGS if arguments.only is None or c.key in arguments.only]
    if not shutil.which("taskset") or not hasattr(os, "sched_getaffinity"):
        configs = [c for c in configs if not c.one_core]  # util-linux's taskset: Linux only
    kind = arguments.client
    if kind == "auto":
        kind = "wrk" if shutil.which("wrk") else "python"
    elif kind == "wrk" and not shutil.which("wrk"):
        raise SystemExit("bench_serving: wrk is not installed (apt-get install wrk), "
                         "or use --client python")
    env, _ = _harness.worker_environment()
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(HERE), env.get("PYTHONPATH", "")])
    results: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="bench_serving_") as temp:
        workdir = Path(temp)
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--write-model",
                        str(workdir)], check=True, env=env, timeout=120)
        body_path = workdir / "body.json"
        body = body_path.read_bytes()
        client = Client(kind, body_path, workdir, arguments.client_processes, env)
        print("\n".join(describe_machine(client)), flush=True)
        for round_index in range(rounds):
            for config in configs:
                log_path = workdir / f"{config.key}.log"
                server = Server(config, workdir / "base", log_path, body, env)
                try:
                    for clients in CLIENTS:
                        result = client.measure(server.url, clients, seconds, server)
                        results[(config.key, clients)].append(result)
                        print(f"round {round_index + 1}/{rounds} {config.label} "
                              f"({config.stack}) x{clients}: {result['rps']:,.0f} req/s, "
                              f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, "
                              f"server {result['server_cpus']:.2f} CPUs, client "
                              f"{result['client_cpus']:.2f}, others "
                              f"{result['foreign_cpus']:.2f}", file=sys.stderr, flush=True)
                finally:
                    server.stop()
    rows, verdicts = build_rows(results, configs)
    print()
    print(_harness.format_table(HEADER, rows, arguments.markdown))
    print()
    print(f"medians of {rounds} round(s) of {seconds:g} s per measurement. Targets at "
          f"{TARGET_CLIENTS} clients: req/s >= {TARGET_NOOP_RATIO} x the no-op app on the same "
          f"stack, >= {TARGET_FLASK_RATIO} x Flask (gunicorn), p99 < {TARGET_P99_MS:g} ms:")
    for verdict in verdicts:
        print(f"  {verdict}")
    for line in describe_load(results):
        print(line)


if __name__ == "__main__":
    main()
