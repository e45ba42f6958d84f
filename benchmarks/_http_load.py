"""A small closed-loop HTTP/1.1 load generator: the fallback when ``wrk`` is not installed.

Each process runs one ``selectors`` loop over its share of the keep-alive connections, with
no threads and no HTTP library: the request is built once as bytes, and an answer is only
split at its blank line and read to its ``Content-Length``. That keeps the client's own cost
per request at a few tens of microseconds, so that on a small machine it leaves the cores to
the server it measures (``bench_serving.py`` reports how much CPU it used).

Every socket sets ``TCP_NODELAY``: a client that leaves Nagle's algorithm on holds back
the body of a request written in two pieces until the server's delayed ACK, ~40 ms later.

Run as a process (``bench_serving.py`` does)::

    python _http_load.py --url http://127.0.0.1:8501/v1/models/m:predict --body-file B \\
        --connections 8 --processes 2 --warmup 1 --seconds 5 --max-requests 200000

prints one JSON line: requests in the measured window, its length, latency percentiles,
errors and the client's CPU seconds. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import time
from typing import Any
from urllib.parse import urlsplit

PERCENTILES = (50, 90, 99)


def build_request(url: str, body: bytes) -> tuple[tuple[str, int], bytes]:
    """``(host, port)`` and the bytes of one keep-alive ``POST url`` with a JSON body."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = (f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: application/json\r\nAccept: */*\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return (host, port), head.encode("latin-1") + body


class _Connection:
    __slots__ = ("buffer", "sent_at", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.sent_at = 0.0


def _answer_length(buffer: bytes) -> tuple[int, bool] | None:
    """Total bytes of the first answer in ``buffer`` and whether it is a 200; None while the
    head is incomplete."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buffer[:end].lower()
    start = head.find(b"\r\ncontent-length:")
    if start < 0:
        raise ConnectionError(f"an answer without Content-Length: {bytes(buffer[:200])!r}")
    stop = head.find(b"\r\n", start + 2)
    length = int(head[start + 17:stop if stop >= 0 else len(head)])
    return end + 4 + length, buffer[9:12] == b"200"


def run_loop(address: tuple[str, int], request: bytes, connections: int, begin_at: float,
             start_at: float, stop_at: float, max_requests: int) -> dict[str, Any]:
    """From ``begin_at`` (a ``time.time()``) keep ``connections`` requests in flight until
    ``stop_at`` or ``max_requests`` answers; latencies are kept for answers completed after
    ``start_at`` (the warm-up before it is not counted)."""
    selector = selectors.DefaultSelector()
    conns = []
    for _ in range(connections):
        sock = socket.create_connection(address, timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        conn = _Connection(sock)
        selector.register(sock, selectors.EVENT_READ, conn)
        conns.append(conn)
    latencies: list[float] = []
    errors = answered = 0
    # monotonic time for latencies; the window is given in wall time to line processes up
    offset = time.time() - time.perf_counter()
    start, stop = start_at - offset, stop_at - offset
    # every process begins at the same moment, so that their loads add up over the window
    time.sleep(max(0.0, begin_at - time.time()))
    for conn in conns:
        conn.sent_at = time.perf_counter()
        conn.sock.sendall(request)
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    now = time.perf_counter()
    while now < stop and answered < max_requests:
        events = selector.select(timeout=min(1.0, stop - now))
        now = time.perf_counter()
        for key, _ in events:
            conn = key.data
            data = conn.sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed a keep-alive connection")
            conn.buffer += data
            parsed = _answer_length(conn.buffer)
            if parsed is None or len(conn.buffer) < parsed[0]:
                continue
            if len(conn.buffer) > parsed[0]:
                raise ConnectionError("the server sent more than one answer")
            conn.buffer = b""
            answered += 1
            if now >= start:
                latencies.append(now - conn.sent_at)
                errors += not parsed[1]
            conn.sent_at = now
            conn.sock.sendall(request)
        if not events and now >= stop:
            break
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    for conn in conns:
        selector.unregister(conn.sock)
        conn.sock.close()
    window = min(now, stop) - start
    return {"latencies_us": [round(t * 1e6) for t in latencies], "errors": errors,
            "window": window,
            "cpu_seconds": (cpu_after.ru_utime + cpu_after.ru_stime
                            - cpu_before.ru_utime - cpu_before.ru_stime)}


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(1, round(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def run(url: str, body: bytes, connections: int, processes: int, warmup: float,
        seconds: float, max_requests: int) -> dict[str, Any]:
    """Spread ``connections`` over ``processes`` loop processes; merge what they measured."""
    processes = max(1, min(processes, connections))
    begin_at = time.time() + 0.3  # leaves time to start the processes and connect
    start_at = begin_at + warmup
    stop_at = start_at + seconds
    shares = [connections // processes + (i < connections % processes) for i in range(processes)]
    children = [subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--url", url, "--body-hex", body.hex(),
         "--connections", str(share), "--begin-at", repr(begin_at), "--start-at", repr(start_at),
         "--stop-at", repr(stop_at),
         "--max-requests", str(max(1, max_requests // processes)), "--child"],
        stdout=subprocess.PIPE, text=True) for share in shares]
    results = []
    for child in children:
        out, _ = child.communicate(timeout=seconds + warmup + 60)
        if child.returncode != 0:
            raise RuntimeError(f"a load process failed (exit {child.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    latencies = sorted(t for r in results for t in r["latencies_us"])
    window = max(r["window"] for r in results)
    return {"client": f"python ({processes} process{'es' if processes > 1 else ''})",
            "requests": len(latencies), "seconds": window,
            "rps": len(latencies) / window if window > 0 else 0.0,
            **{f"p{q}_ms": percentile(latencies, q) / 1000 for q in PERCENTILES},
            "errors": sum(r["errors"] for r in results),
            "client_cpu_seconds": sum(r["cpu_seconds"] for r in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--body-file")
    parser.add_argument("--body-hex", help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--begin-at", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--stop-at", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        address, request = build_request(args.url, bytes.fromhex(args.body_hex))
        result = run_loop(address, request, args.connections, args.begin_at, args.start_at,
                          args.stop_at, args.max_requests)
    else:
        with open(args.body_file, "rb") as file:
            body = file.read()
        result = run(args.url, body, args.connections, args.processes, args.warmup,
                     args.seconds, args.max_requests)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
