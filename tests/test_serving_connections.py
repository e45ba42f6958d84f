"""Connections over real HTTP/1.1 (uvicorn, httptools and ``protocol.GuardedProtocol``): slow
requests and slow clients do not stall the others, pipelining, back-pressure, chunked bodies,
a refused body answered whole, ``Expect: 100-continue``, a half close, shutdown, batching.

Clients are raw sockets (the tests need to control when each byte is sent and read); every
read has a deadline, every loop a bound. The servers run on 127.0.0.1 with free ports. The
helpers here are shared with ``test_serving_attacks.py``.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
from test_serving_support import INPUT_DIM, gated_app, running_server, wait_until

from minidl.serving.app import run_model
from minidl.serving.batching import Batcher
from minidl.serving.engine import ServingServer

ROWS = [[0.1, -0.2, 0.3, 0.4], [1.0, 2.0, -3.0, 0.5]]
OTHER_ROWS = [[7.0, 8.0, 9.0, 10.0]]
STATUS = b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\n\r\n"
METRICS = b"GET /monitoring/prometheus/metrics HTTP/1.1\r\nHost: x\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
READ_TIMEOUT = 5.0


# ---------------------------------------------------------------- helpers

def predict_body(rows) -> bytes:
    return json.dumps({"instances": rows}).encode()


def predict_head(length: int, extra: bytes = b"") -> bytes:
    return (b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: " + str(length).encode()
            + b"\r\n" + extra + b"\r\n")


def predict_request(rows) -> bytes:
    body = predict_body(rows)
    return predict_head(len(body)) + body


def address(base_url: str) -> tuple[str, int]:
    host, port = base_url.removeprefix("http://").split(":")
    return host, int(port)


def connect(base_url: str, receive_buffer: int | None = None) -> socket.socket:
    """A client socket (Nagle off, so each ``sendall`` leaves at once) with a read timeout."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if receive_buffer is not None:  # before connect: it sets the advertised window
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.settimeout(READ_TIMEOUT)
        sock.connect(address(base_url))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        sock.close()
        raise
    return sock


class Answer(NamedTuple):
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Reader:
    """Reads whole HTTP answers (head and ``Content-Length`` body) from one socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([self.sock], [], [], remaining)[0]:
            raise AssertionError(f"no complete answer before the deadline; received so far: "
                                 f"{bytes(self.buffer[:200])!r}")
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise EOFError(f"connection closed; received so far: {bytes(self.buffer[:200])!r}")
        self.buffer += chunk

    def read_exactly(self, size: int, timeout: float = READ_TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self.buffer) < size:
            self._fill(deadline)
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def answer(self, timeout: float = READ_TIMEOUT, head_only: bool = False) -> Answer:
        """The next answer; ``head_only``: the answer to a HEAD (no body follows)."""
        deadline = time.monotonic() + timeout
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._fill(deadline)
        head = self.buffer[:end].decode("latin-1").split("\r\n")
        del self.buffer[:end + 4]
        status = int(head[0].split(" ", 2)[1])
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if head_only else int(headers["content-length"])
        body = self.read_exactly(length, max(0.0, deadline - time.monotonic()))
        return Answer(status, headers, body)

    def until_closed(self, timeout: float = READ_TIMEOUT) -> bytes:
        """Everything up to the end of the connection (which must come before ``timeout``)."""
        deadline = time.monotonic() + timeout
        with contextlib.suppress(EOFError):
            while True:
                self._fill(deadline)
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


def exchange(sock: socket.socket, request: bytes) -> Answer:
    sock.sendall(request)
    return Reader(sock).answer()


def predictions(answer: Answer) -> np.ndarray:
    assert answer.status == 200, answer.body[:300]
    return np.asarray(answer.json()["predictions"], np.float32)


def assert_doubled(answer: Answer, rows) -> None:
    """The answer of the test model (y = 2x) to ``rows``."""
    np.testing.assert_array_equal(predictions(answer), np.asarray(rows, np.float32) * 2)


def assert_status_answer(answer: Answer) -> None:
    assert answer.status == 200, answer.body[:300]
    assert answer.json()["model_version_status"][0]["state"] == "AVAILABLE"
    assert "connection" not in answer.headers  # kept alive


def nothing_to_read(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    return not readable


def big_rows(count: int) -> list[list[float]]:
    """``count`` rows of distinct float32 values: a JSON body (and answer) of ~85 bytes a row."""
    values = np.random.default_rng(count).standard_normal((count, INPUT_DIM)).astype(np.float32)
    return values.tolist()


@contextlib.contextmanager
def server_in_thread(app: Any, **options: Any) -> Iterator[tuple[ServingServer,
                                                                  threading.Thread]]:
    """A ServingServer for ``app`` serving in a thread (for shutdown tests); joined, bounded,
    at exit."""
    server = ServingServer(app, "127.0.0.1", 0, **options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), timeout=30)
        assert server.started
        yield server, thread
    finally:
        server.shutdown()
        thread.join(30)


# ---------------------------------------------------------------- slow requests

def test_a_slow_predict_does_not_stall_other_connections(tmp_path):
    gate = threading.Event()
    app, model = gated_app(tmp_path, gate)
    with running_server(app) as base, connect(base) as slow, connect(base) as second_slow, \
            connect(base) as quick:
        try:
            slow.sendall(predict_request(ROWS))
            assert model.entered.wait(5)
            # while the first is in the model: a second slow predict and a status request,
            # both at once
            second_slow.sendall(predict_request(OTHER_ROWS))
            quick.sendall(STATUS)
            assert_status_answer(Reader(quick).answer(timeout=2))
            wait_until(lambda: len(model.calls) == 2, timeout=5, interval=0.005)
            with connect(base) as other:
                started = time.monotonic()
                assert_status_answer(exchange(other, STATUS))
                metrics = exchange(other, METRICS)
                assert metrics.status == 200 and b"minidl_requests_total" in metrics.body
                assert_status_answer(exchange(other, STATUS))
                assert time.monotonic() - started < 1.0
            assert nothing_to_read(slow) and nothing_to_read(second_slow)  # still in the model
        finally:
            gate.set()
        assert_doubled(Reader(slow).answer(), ROWS)
        assert_doubled(Reader(second_slow).answer(), OTHER_ROWS)
        assert sorted(model.calls) == [len(OTHER_ROWS), len(ROWS)]
        # both connections are still usable
        assert_status_answer(exchange(slow, STATUS))
        assert_status_answer(exchange(second_slow, STATUS))


def test_with_batching_a_status_request_is_not_held_up_by_a_slow_batch(tmp_path):
    gate = threading.Event()
    app, model = gated_app(tmp_path, gate, batcher=Batcher(run_model))
    with running_server(app) as base, connect(base) as slow, connect(base) as quick:
        try:
            slow.sendall(predict_request(ROWS))
            assert model.entered.wait(5)  # the batch is in the model
            started = time.monotonic()
            assert_status_answer(exchange(quick, STATUS))
            assert time.monotonic() - started < 1.0
            assert nothing_to_read(slow)
        finally:
            gate.set()
        assert_doubled(Reader(slow).answer(), ROWS)


# ---------------------------------------------------------------- pipelining

def test_pipelined_requests_are_answered_in_order_on_the_same_connection(tmp_path):
    app, model = gated_app(tmp_path, None)
    more_rows = [[-1.5, 0.25, 3.0, 4.5], [0.0, 1.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0]]
    with running_server(app) as base, connect(base) as sock:
        sock.sendall(STATUS + predict_request(ROWS) + METRICS + predict_request(more_rows)
                     + b"HEAD /monitoring/prometheus/metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                     + predict_request(OTHER_ROWS) + STATUS)
        reader = Reader(sock)
        assert_status_answer(reader.answer())
        assert_doubled(reader.answer(), ROWS)
        metrics = reader.answer()
        assert metrics.status == 200 and metrics.body.startswith(b"# HELP")
        assert_doubled(reader.answer(), more_rows)
        head = reader.answer(head_only=True)  # a Content-Length, but no body follows
        assert head.status == 200 and int(head.headers["content-length"]) > 0
        assert_doubled(reader.answer(), OTHER_ROWS)
        assert_status_answer(reader.answer())
        assert nothing_to_read(sock) and not reader.buffer  # nothing more than 7 answers
        assert_status_answer(exchange(sock, STATUS))  # and the connection is still open
    assert model.calls == [2, 3, 1]


def test_many_pipelined_requests_in_one_send_are_all_answered_in_order(tmp_path):
    # ~400 KB at once: more than one read of the server, parsed a slice at a time
    app, model = gated_app(tmp_path, None)
    requests_sent = [predict_request([[float(i), 0.0, 0.0, 0.0]]) if i % 50 == 0 else STATUS
                     for i in range(10000)]
    answers: list[Answer] = []
    with running_server(app) as base, connect(base) as sock:
        reader = Reader(sock)
        reading = threading.Thread(target=lambda: answers.extend(
            reader.answer(timeout=30) for _ in requests_sent))
        reading.start()
        sock.sendall(b"".join(requests_sent))
        reading.join(60)
    assert len(answers) == len(requests_sent)
    for i, answer in enumerate(answers):
        if i % 50 == 0:
            assert_doubled(answer, [[float(i), 0.0, 0.0, 0.0]])
        else:
            assert_status_answer(answer)
    assert len(model.calls) == 200


def test_a_request_pipelined_while_the_previous_answer_is_being_written(tmp_path):
    app, model = gated_app(tmp_path, None, max_body_bytes=32 << 20)
    rows = big_rows(30000)  # an answer of ~2.5 MB, far more than the socket buffers hold
    with running_server(app) as base, connect(base, receive_buffer=16384) as sock:
        sock.sendall(predict_request(rows))
        # the answer has begun to arrive; this client reads nothing more yet, so the rest
        # of it waits in the server while the next requests come in
        assert select.select([sock], [], [], READ_TIMEOUT)[0]
        sock.sendall(STATUS + predict_request(OTHER_ROWS))
        reader = Reader(sock)
        assert_doubled(reader.answer(timeout=10), rows)
        assert_status_answer(reader.answer())
        assert_doubled(reader.answer(), OTHER_ROWS)
    assert model.calls == [len(rows), len(OTHER_ROWS)]


def test_pipelined_requests_before_a_half_close_are_all_answered(tmp_path):
    # what `printf 'GET ...' | nc host port` does: send, close the sending side, read
    app, model = gated_app(tmp_path, None)
    with running_server(app) as base, connect(base) as sock:
        sock.sendall(STATUS + predict_request(ROWS) + STATUS + predict_request(OTHER_ROWS))
        sock.shutdown(socket.SHUT_WR)  # nothing more to send; the answers are still wanted
        reader = Reader(sock)
        assert_status_answer(reader.answer())
        assert_doubled(reader.answer(), ROWS)
        assert_status_answer(reader.answer())
        assert_doubled(reader.answer(), OTHER_ROWS)
        assert reader.until_closed(timeout=2.0) == b""  # then the server closes
    assert model.calls == [2, 1]


# ---------------------------------------------------------------- slow clients

def test_a_slow_client_is_served_and_does_not_hold_up_others(tmp_path):
    app, _ = gated_app(tmp_path, None)
    body = predict_body(ROWS)
    head = predict_head(len(body))
    pieces = [body[:7], body[7:20], body[20:]]
    quick_finished = []
    # the head trickles in over ~0.5 s: slow, but well within the 2 s deadline for a head
    with running_server(app, head_timeout=2.0) as base, connect(base) as slow, \
            connect(base) as quick:
        started = time.monotonic()
        for index, byte in enumerate(head):
            slow.sendall(bytes([byte]))
            time.sleep(0.004)
            if index == len(head) // 2:  # half a request line and headers received
                assert_status_answer(exchange(quick, STATUS))
                quick_finished.append(time.monotonic())
        for index, piece in enumerate(pieces[:-1]):  # then the body in pieces
            slow.sendall(piece)
            if index == 0:  # a head received, its body incomplete
                assert_doubled(exchange(quick, predict_request(OTHER_ROWS)), OTHER_ROWS)
                quick_finished.append(time.monotonic())
            time.sleep(0.02)
            assert nothing_to_read(slow)  # no answer before the whole body is in
        slow.sendall(pieces[-1])  # the body is complete: the answer may come at once
        answer = Reader(slow).answer()
        finished = time.monotonic()
        assert_doubled(answer, ROWS)
        assert "connection" not in answer.headers
        assert 0.2 < finished - started < 2.0
        assert len(quick_finished) == 2 and max(quick_finished) < finished
        assert_status_answer(exchange(slow, STATUS))


def test_a_client_that_does_not_read_its_answers_does_not_hold_up_others(tmp_path):
    app, model = gated_app(tmp_path, None, max_body_bytes=32 << 20)
    rows = big_rows(30000)
    metrics_requests = 30
    with running_server(app) as base, connect(base, receive_buffer=16384) as lazy:
        lazy.sendall(predict_request(rows) + METRICS * metrics_requests)
        assert select.select([lazy], [], [], READ_TIMEOUT)[0]  # its answer began to arrive
        with connect(base) as other:
            started = time.monotonic()
            for _ in range(3):
                assert_status_answer(exchange(other, STATUS))
                assert_doubled(exchange(other, predict_request(ROWS)), ROWS)
            assert time.monotonic() - started < 1.0
        # the lazy client's answer is far from all here: the server holds the rest
        assert len(lazy.recv(1 << 20, socket.MSG_PEEK)) < 1 << 20
        reader = Reader(lazy)
        assert_doubled(reader.answer(timeout=10), rows)
        for _ in range(metrics_requests):
            metrics = reader.answer()
            assert metrics.status == 200 and metrics.body.startswith(b"# HELP")
        assert not reader.buffer and nothing_to_read(lazy)
        assert_status_answer(exchange(lazy, STATUS))
    assert model.calls[0] == len(rows) and len(model.calls) == 4


# ---------------------------------------------------------------- bodies

def test_a_chunked_predict_whose_chunks_arrive_separately(tmp_path):
    app, _ = gated_app(tmp_path, None)
    body = predict_body(ROWS)
    parts = [body[:1], body[1:15], body[15:16], body[16:]]
    with running_server(app) as base, connect(base) as sock:
        sock.sendall(b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in parts:
            time.sleep(0.01)
            sock.sendall(f"{len(part):x};ext=1\r\n".encode())  # the size line and data apart
            time.sleep(0.01)
            sock.sendall(part + b"\r\n")
            assert nothing_to_read(sock)
        time.sleep(0.01)
        sock.sendall(b"0\r\nX-Checksum: 1\r\n")  # the last chunk, a trailer
        time.sleep(0.01)
        sock.sendall(b"\r\n")
        reader = Reader(sock)
        answer = reader.answer()
        assert_doubled(answer, ROWS)
        assert "connection" not in answer.headers
        assert_status_answer(exchange(sock, STATUS))  # the body was taken exactly


def test_a_body_over_the_limit_gets_the_whole_413_not_a_reset(tmp_path):
    app, _ = gated_app(tmp_path, None, max_body_bytes=1000)
    total = 400_000
    piece = b"[1.0, 2.0, 3.0, 4.0], " * 745  # ~16 KB
    received = bytearray()
    with running_server(app) as base, connect(base) as sock:
        sock.sendall(predict_head(total))
        sent = 0
        while sent < total:  # the client goes on sending the body it announced
            size = min(len(piece), total - sent)
            sock.sendall(piece[:size])
            sent += size
            if select.select([sock], [], [], 0)[0]:
                received += sock.recv(1 << 16)
        received += Reader(sock).until_closed()  # no ConnectionResetError
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), received[:300]
    assert b"\r\nconnection: close" in head.lower()
    length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
    assert len(body) == length  # the whole answer, and nothing after it
    assert "larger than the limit of 1000 bytes" in json.loads(body)["error"]


def test_expect_100_continue_on_a_keep_alive_connection(tmp_path):
    app, _ = gated_app(tmp_path, None)
    with running_server(app) as base, connect(base) as sock:
        reader = Reader(sock)
        for rows in (ROWS, OTHER_ROWS):  # twice on the same connection
            body = predict_body(rows)
            sock.sendall(predict_head(len(body), b"Expect: 100-continue\r\n"))
            assert reader.read_exactly(len(CONTINUE)) == CONTINUE
            time.sleep(0.02)
            assert nothing_to_read(sock) and not reader.buffer  # waiting for the body
            sock.sendall(body)
            answer = reader.answer()
            assert_doubled(answer, rows)
            assert "connection" not in answer.headers
        sock.sendall(STATUS)
        assert_status_answer(reader.answer())


# ---------------------------------------------------------------- shutdown

def test_shutdown_refuses_new_connections_closes_idle_ones_and_drains(tmp_path):
    gate = threading.Event()
    app, model = gated_app(tmp_path, gate)
    with server_in_thread(app, grace_seconds=10) as (server, thread), \
            connect(server.url) as idle, connect(server.url) as busy:
        assert_status_answer(exchange(idle, STATUS))  # kept alive, then idle
        busy.sendall(predict_request(ROWS))
        try:
            assert model.entered.wait(5)
            started = time.monotonic()
            server.shutdown()
            # the idle connection is closed, without an answer
            assert Reader(idle).until_closed(timeout=3.0) == b""
            # a new connection is refused, or closed without an answer
            wait_until(lambda: refused(server.server_address), timeout=3)
            assert nothing_to_read(busy)  # the request in progress goes on
            assert thread.is_alive()  # waiting for it
        finally:
            gate.set()
        answer = Reader(busy).answer()
        assert_doubled(answer, ROWS)
        assert answer.headers["connection"] == "close"  # the last answer on it
        assert Reader(busy).until_closed(timeout=3.0) == b""
        busy.close()  # the client is done: nothing is left to wait for
        thread.join(5)
        assert not thread.is_alive()  # serve_forever returned
        assert time.monotonic() - started < 1.5


def refused(server_address) -> bool:
    """True if a new connection is refused, or closed without an answer."""
    try:
        late = socket.create_connection(server_address, timeout=2)
    except OSError:
        return True
    with late:
        try:
            late.sendall(STATUS)
            return late.recv(100) == b""
        except OSError:
            return True


def test_shutdown_lets_an_upload_in_progress_finish(tmp_path):
    app, _ = gated_app(tmp_path, None)
    with server_in_thread(app, grace_seconds=10) as (server, thread), \
            connect(server.url) as sock:
        body = predict_body(ROWS)
        sock.sendall(predict_head(len(body), b"Expect: 100-continue\r\n"))
        reader = Reader(sock)
        assert reader.read_exactly(len(CONTINUE)) == CONTINUE
        server.shutdown()
        time.sleep(0.3)  # uvicorn has closed the idle connections by now
        assert thread.is_alive()
        sock.sendall(body)
        answer = reader.answer()
        assert_doubled(answer, ROWS)
        assert answer.headers["connection"] == "close"
        sock.close()
        started = time.monotonic()
        thread.join(5)
        assert not thread.is_alive() and time.monotonic() - started < 1.0
