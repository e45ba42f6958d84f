"""How the HTTP engines compared in bench_serving.py treat malformed and slow requests.

Starts minidl's no-op app (see ``_serving_peers.py``) on minidl's engine (uvicorn + httptools
+ ``GuardedProtocol``), on uvicorn's own command line (httptools) and on granian, sends each
a set of request-smuggling forms on fresh connections, and says what came back: the status
line, or that the connection was closed without an answer. Then a slow client sends its head
one byte per second, and the probe says whether (and when) the engine closed it, within
``--drip-seconds``. Only 127.0.0.1; every wait is bounded.

    python benchmarks/probe_engines.py                  # about 45 s
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _harness
import bench_serving

HERE = Path(__file__).resolve().parent
PATH = "/v1/models/m:predict"
BODY = b'{"instances": [[' + b", ".join([b"0.5"] * 64) + b"]]}"
HOST = b"Host: 127.0.0.1\r\n"

# name -> raw bytes of one request (a smuggling form); every well-formed part is valid
FORMS = {
    "valid request (control)":
        b"POST " + PATH.encode() + b" HTTP/1.1\r\n" + HOST
        + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY,
    "Content-Length and Transfer-Encoding (CL.TE)":
        b"POST " + PATH.encode() + b" HTTP/1.1\r\n" + HOST
        + b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % (len(BODY) + 7)
        + b"%x\r\n" % len(BODY) + BODY + b"\r\n0\r\n\r\n",
    "two different Content-Lengths":
        b"POST " + PATH.encode() + b" HTTP/1.1\r\n" + HOST
        + b"Content-Length: %d\r\nContent-Length: 3\r\n\r\n" % len(BODY) + BODY,
    "signed Content-Length (+N)":
        b"POST " + PATH.encode() + b" HTTP/1.1\r\n" + HOST
        + b"Content-Length: +%d\r\n\r\n" % len(BODY) + BODY,
    "Transfer-Encoding: chunked, identity":
        b"POST " + PATH.encode() + b" HTTP/1.1\r\n" + HOST
        + b"Transfer-Encoding: chunked, identity\r\n\r\n"
        + b"%x\r\n" % len(BODY) + BODY + b"\r\n0\r\n\r\n",
    "obs-fold header line":
        b"POST " + PATH.encode() + b" HTTP/1.1\r\n" + HOST
        + b"X-Folded: a\r\n b\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY,
    "bare CR in a header":
        b"POST " + PATH.encode() + b" HTTP/1.1\r\n" + HOST
        + b"X-Bad: a\rb\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY,
    "non-token byte in the method (POST\\xa0)":
        b"POST\xa0" + PATH.encode() + b" HTTP/1.1\r\n" + HOST
        + b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY,
    "oversize chunk size (22 hex digits: 2^84 + length)":
        b"POST " + PATH.encode() + b" HTTP/1.1\r\n" + HOST
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + b"1000000000000000000%x\r\n" % len(BODY) + BODY + b"\r\n0\r\n\r\n",
}

ENGINES = {
    "minidl serve (uvicorn + httptools + GuardedProtocol)":
        bench_serving.Config("probe-minidl", "no-op app", "minidl", "stub"),
    "uvicorn CLI (httptools)": bench_serving.Config("probe-uvicorn", "no-op app", "uvicorn",
                                                    "stub"),
    "granian (ASGI)": bench_serving.Config("probe-granian", "no-op app", "granian", "stub"),
}


def send_raw(address: tuple[str, int], data: bytes, timeout: float = 3.0) -> str:
    """The status line answered to ``data`` on a fresh connection, or what happened."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(data)
        answer = b""
        try:
            while b"\r\n" not in answer:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            return f"no answer within {timeout:g} s"
        except ConnectionResetError:
            return "connection reset, no answer"
    if not answer:
        return "closed, no answer"
    return answer.split(b"\r\n", 1)[0].decode("latin-1")


def drip(address: tuple[str, int], seconds: float) -> str:
    """Send a request head one byte per second; when was the connection closed?"""
    head = (b"POST " + PATH.encode() + b" HTTP/1.1\r\n" + HOST
            + b"X-Slow: " + b"a" * 4096 + b"\r\n")
    start = time.monotonic()
    with socket.create_connection(address, timeout=5) as sock:
        for byte in head:
            if time.monotonic() - start > seconds:
                return f"still open after {seconds:g} s (no head deadline seen)"
            try:
                sock.sendall(bytes([byte]))
                sock.settimeout(1.0)
                data = sock.recv(4096)
                status = data.split(b"\r\n", 1)[0].decode("latin-1") if data else "closed"
                return f"{status} after {time.monotonic() - start:.0f} s"
            except TimeoutError:
                continue  # nothing yet: send the next byte
            except (BrokenPipeError, ConnectionResetError):
                return f"closed after {time.monotonic() - start:.0f} s"
    return "head sent in full"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drip-seconds", type=float, default=40.0,
                        help="longest slow-client probe (default 40: granian's default head "
                             "timeout is 30 s)")
    parser.add_argument("--markdown", action="store_true")
    arguments = parser.parse_args()
    env, _ = _harness.worker_environment()
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), str(HERE), env.get("PYTHONPATH",
                                                                              "")])
    with tempfile.TemporaryDirectory(prefix="probe_engines_") as temp:
        workdir = Path(temp)
        subprocess.run([sys.executable, str(HERE / "bench_serving.py"), "--write-model",
                        str(workdir)], check=True, env=env, timeout=120)
        env["BENCH_SERVING_BASE"] = str(workdir / "base")
        body = (workdir / "body.json").read_bytes()
        servers = {}
        try:
            for name, config in ENGINES.items():
                servers[name] = bench_serving.Server(config, workdir / "base",
                                                     workdir / f"{config.key}.log", body, env)
            answers: dict[str, dict[str, str]] = {}
            drips: dict[str, str] = {}
            for name, server in servers.items():
                host, port = server.url.removeprefix("http://").split(":")
                address = (host, int(port))
                answers[name] = {form: send_raw(address, data) for form, data in FORMS.items()}
            threads = []
            for name, server in servers.items():
                host, port = server.url.removeprefix("http://").split(":")
                thread = threading.Thread(target=lambda n=name, a=(host, int(port)):
                                          drips.__setitem__(n, drip(a, arguments.drip_seconds)))
                thread.start()
                threads.append(thread)
            for thread in threads:
                thread.join(arguments.drip_seconds + 30)
        finally:
            for server in servers.values():
                server.stop()
    names = list(servers)
    rows = [[form, *(answers[n][form] for n in names)] for form in FORMS]
    rows.append(["slow head, one byte per second", *(drips.get(n, "?") for n in names)])
    print(_harness.format_table(["request", *names], rows, arguments.markdown))
    print(json.dumps({"answers": answers, "slow_head": drips}), file=sys.stderr)


if __name__ == "__main__":
    main()
