"""The built-in server's event loop over real HTTP: slow requests and slow clients do not stall
the others, pipelining, back-pressure, chunked bodies, lingering close, ``Expect:
100-continue``, shutdown, batching from one loop, and no thread left behind by the standby
takeover.

Clients are raw sockets (the tests need to control when each byte is sent and read); every
read has a deadline, every loop a bound. The servers run on 127.0.0.1 with free ports.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from typing import Any, NamedTuple

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_serving_support import (
    INPUT_DIM,
    gated_app,
    metric_value,
    running_server,
    save_version,
    serving,
    wait_until,
)

from minidl.model import load_model
from minidl.serving import create_app, http11
from minidl.serving import server as server_module
from minidl.serving.app import run_model
from minidl.serving.batching import Batcher

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


def connect(base_url: str, receive_buffer: int | None = None) -> socket.socket:
    """A client socket (Nagle off, so each ``sendall`` leaves at once) with a read timeout."""
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if receive_buffer is not None:  # before connect: it sets the advertised window
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.settimeout(READ_TIMEOUT)
        sock.connect((host, int(port)))
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
        if time.monotonic() > deadline:
            raise AssertionError("no complete answer before the deadline")
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
        """Everything up to the end of the connection."""
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
    np.testing.assert_array_equal(predictions(answer), np.asarray(rows, np.float32) * 2)


def assert_status_answer(answer: Answer) -> None:
    assert answer.status == 200, answer.body[:300]
    assert answer.json()["model_version_status"][0]["state"] == "AVAILABLE"
    assert "connection" not in answer.headers  # kept alive


def nothing_to_read(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    return not readable


# ---------------------------------------------------------------- 1. slow requests

def test_a_slow_predict_does_not_stall_other_connections(tmp_path):
    gate = threading.Event()
    app, model = gated_app(tmp_path, gate)
    with running_server(app) as base, connect(base) as slow, connect(base) as second_slow:
        try:
            slow.sendall(predict_request(ROWS))
            assert model.entered.wait(5)
            with connect(base) as other:
                started = time.monotonic()
                assert_status_answer(exchange(other, STATUS))
                metrics = exchange(other, METRICS)
                assert metrics.status == 200
                assert b"minidl_requests_total" in metrics.body
                assert time.monotonic() - started < 1.0
            assert nothing_to_read(slow)  # still in the model

            # a second slow predict: two threads in the app, and a third connection served
            second_slow.sendall(predict_request(OTHER_ROWS))
            wait_until(lambda: len(model.calls) == 2, timeout=5, interval=0.005)
            with connect(base) as third:
                started = time.monotonic()
                assert_status_answer(exchange(third, STATUS))
                assert_status_answer(exchange(third, STATUS))
                assert time.monotonic() - started < 1.0
            assert nothing_to_read(slow) and nothing_to_read(second_slow)
        finally:
            gate.set()
        assert_doubled(Reader(slow).answer(), ROWS)
        assert_doubled(Reader(second_slow).answer(), OTHER_ROWS)
        assert sorted(model.calls) == [len(OTHER_ROWS), len(ROWS)]
        # both connections are still usable
        assert_status_answer(exchange(slow, STATUS))
        assert_status_answer(exchange(second_slow, STATUS))


# ---------------------------------------------------------------- 2. pipelining

def test_pipelined_requests_are_answered_in_order_on_the_same_connection(tmp_path):
    app, model = gated_app(tmp_path, None)
    more_rows = [[-1.5, 0.25, 3.0, 4.5], [0.0, 1.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0]]
    with running_server(app) as base, connect(base) as sock:
        sock.sendall(STATUS + predict_request(ROWS) + METRICS + predict_request(more_rows)
                     + b"HEAD /v1/models/m HTTP/1.1\r\nHost: x\r\n\r\n"
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


def big_rows(count: int) -> list[list[float]]:
    """``count`` rows of distinct float32 values: a JSON body (and answer) of ~85 bytes a row."""
    values = np.random.default_rng(count).standard_normal((count, INPUT_DIM)).astype(np.float32)
    return values.tolist()


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


# ---------------------------------------------------------------- 3. slow client

def test_a_slow_client_is_served_and_does_not_hold_up_others(tmp_path):
    app, _ = gated_app(tmp_path, None)
    body = predict_body(ROWS)
    head = predict_head(len(body))
    pieces = [body[:7], body[7:20], body[20:]]
    quick_finished = []
    with running_server(app, keep_alive_timeout=2.0) as base, connect(base) as slow, \
            connect(base) as quick:
        started = time.monotonic()
        for index, byte in enumerate(head):  # the head byte by byte, ~0.25 s
            slow.sendall(bytes([byte]))
            time.sleep(0.002)
            if index == len(head) // 2:  # half a request line and headers received
                assert_status_answer(exchange(quick, STATUS))
                quick_finished.append(time.monotonic())
        for index, piece in enumerate(pieces[:-1]):  # then the body in pieces
            slow.sendall(piece)
            if index == 0:  # a head received, its body incomplete
                assert_doubled(exchange(quick, predict_request(OTHER_ROWS)), OTHER_ROWS)
                quick_finished.append(time.monotonic())
            assert nothing_to_read(slow)  # no answer before the whole body is in
            time.sleep(0.02)
        slow.sendall(pieces[-1])  # the body is complete: the answer may come at once
        answer = Reader(slow).answer()
        finished = time.monotonic()
        assert_doubled(answer, ROWS)
        assert "connection" not in answer.headers
        assert 0.2 < finished - started < 2.0  # slow, but within keep_alive_timeout
        assert len(quick_finished) == 2 and max(quick_finished) < finished
        assert_status_answer(exchange(slow, STATUS))


# ---------------------------------------------------------------- 4. a client that does not read

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


# ---------------------------------------------------------------- 5. chunked bodies

def encode_chunked(parts: list[bytes], *, extension: bytes = b"", upper: bool = False,
                   newline: bytes = b"\r\n", trailers: list[bytes] | None = None) -> bytes:
    encoded = bytearray()
    for part in parts:
        size = f"{len(part):X}" if upper else f"{len(part):x}"
        encoded += size.encode() + extension + newline + part + newline
    encoded += b"0" + extension + newline
    for trailer in trailers or []:
        encoded += trailer + newline
    return bytes(encoded + newline)


def feed_in_pieces(decoder: http11.ChunkedDecoder, data: bytes, cuts) -> bytearray:
    """Feed ``data`` cut at ``cuts`` as a server does: what was not used stays at the front of
    the buffer and the next piece is appended. Returns what was left unused."""
    buffer = bytearray()
    start = 0
    for end in [*sorted(cuts), len(data)]:
        buffer += data[start:end]
        start = end
        used = decoder.feed(buffer)
        assert 0 <= used <= len(buffer)
        del buffer[:used]
    return buffer


NEXT_REQUEST = b"GET /v1/models/m HTTP/1.1\r\n\r\n"
chunked_bodies = st.fixed_dictionaries({
    "parts": st.lists(st.binary(min_size=1, max_size=24), max_size=5),
    "extension": st.sampled_from([b"", b";name=value", b" ; a=b;c"]),
    "upper": st.booleans(),
    "newline": st.sampled_from([b"\r\n", b"\n"]),
    "trailers": st.lists(st.sampled_from([b"X-Checksum: 1", b"Expires: never"]), max_size=2),
})


@given(chunked_bodies, st.data())
def test_chunked_decoder_gives_the_same_body_however_the_bytes_arrive(spec, data):
    encoded = encode_chunked(**spec) + NEXT_REQUEST  # a pipelined request follows the body
    expected = b"".join(spec["parts"])
    whole = http11.ChunkedDecoder(1 << 20)
    used = whole.feed(encoded)
    assert whole.finished and not whole.too_large
    assert whole.body() == expected and whole.size == len(expected)
    assert encoded[used:] == NEXT_REQUEST  # not a byte of the next request taken
    cut_lists = [range(1, len(encoded)),  # byte by byte
                 data.draw(st.lists(st.integers(0, len(encoded)), max_size=8), label="cuts")]
    for cuts in cut_lists:
        decoder = http11.ChunkedDecoder(1 << 20)
        left = feed_in_pieces(decoder, encoded, cuts)
        assert decoder.finished and not decoder.too_large
        assert decoder.body() == expected
        assert left == NEXT_REQUEST


def test_chunked_decoder_waits_for_the_rest():
    decoder = http11.ChunkedDecoder(100)
    assert decoder.feed(b"5\r\nhel") == 6
    assert not decoder.finished and decoder.body() == b"hel"
    assert decoder.feed(b"lo\r") == 2  # the CR alone: its LF may still come
    assert decoder.feed(b"\r\n0\r\n") == 5
    assert not decoder.finished  # the blank line after the trailers is missing
    assert decoder.feed(b"\r\n") == 2 and decoder.finished and decoder.body() == b"hello"
    assert decoder.feed(b"more") == 0  # nothing is read after the end


@pytest.mark.parametrize("encoded", [
    b"zz\r\n",
    b"0x2\r\n{}\r\n0\r\n\r\n",
    b"-5\r\nhello\r\n",
    b"+5\r\nhello\r\n",
    b"1_0\r\n",
    b"\r\n",
    b";ext\r\n",
    b"1" * 17 + b"\r\n",  # more than 16 hex digits
    b"2\r\n{}XX\r\n0\r\n\r\n",  # data not followed by CRLF
    b"2\r\n{}\rX0\r\n\r\n",
    b"5" * 1100,  # a size line that never ends
    b"1\r\na\r\n0\r\n" + b"X-Trailer: " + b"t" * 1100,
])
def test_malformed_chunked_bodies_are_a_400(encoded):
    for cuts in ([], range(1, len(encoded))):  # whole and byte by byte
        decoder = http11.ChunkedDecoder(1 << 20)
        with pytest.raises(http11.BadRequest) as raised:
            feed_in_pieces(decoder, encoded, cuts)
        assert raised.value.code == 400 and raised.value.message


def test_chunked_decoder_is_too_large_once_past_the_limit():
    at_limit = http11.ChunkedDecoder(10)
    at_limit.feed(encode_chunked([b"12345", b"67890"]))
    assert at_limit.finished and not at_limit.too_large  # exactly the limit is allowed

    over = http11.ChunkedDecoder(10)
    encoded = encode_chunked([b"12345", b"678901", b"more"])
    left = feed_in_pieces(over, encoded, range(1, len(encoded)))
    assert over.too_large and not over.finished
    assert over.size == 11  # stopped at the first byte over the limit
    assert over.feed(left + b"anything") == 0  # and decodes nothing more

    big_chunk = http11.ChunkedDecoder(10)
    big_chunk.feed(b"ffffffff\r\n" + b"x" * 50)
    assert big_chunk.too_large and big_chunk.size > 10


def test_chunked_predict_whose_chunks_arrive_separately(tmp_path):
    app, _ = gated_app(tmp_path, None)
    body = predict_body(ROWS)
    parts = [body[:1], body[1:15], body[15:16], body[16:]]
    with running_server(app) as base, connect(base) as sock:
        sock.sendall(b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in parts:
            time.sleep(0.01)
            sock.sendall(f"{len(part):x}\r\n".encode())  # the size line and its data apart
            time.sleep(0.01)
            sock.sendall(part + b"\r\n")
            assert nothing_to_read(sock)
        time.sleep(0.01)
        sock.sendall(b"0\r\n")
        time.sleep(0.01)
        sock.sendall(b"\r\n")
        reader = Reader(sock)
        answer = reader.answer()
        assert_doubled(answer, ROWS)
        assert "connection" not in answer.headers
        assert_status_answer(exchange(sock, STATUS))  # the body was taken exactly


# ---------------------------------------------------------------- 6. lingering close

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
    assert b"\r\nConnection: close" in head
    length = int(head.split(b"Content-Length: ", 1)[1].split(b"\r\n", 1)[0])
    assert len(body) == length  # the whole answer, and nothing after it
    assert "larger than the limit of 1000 bytes" in json.loads(body)["error"]


# ---------------------------------------------------------------- 7. Expect: 100-continue

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


# ---------------------------------------------------------------- 8. shutdown

def test_shutdown_refuses_new_connections_closes_idle_ones_and_drains(tmp_path):
    gate = threading.Event()
    app, model = gated_app(tmp_path, gate)
    with serving(app) as (server, loop), connect(server.url) as idle, \
            connect(server.url) as busy:
        assert_status_answer(exchange(idle, STATUS))  # kept alive, then idle
        busy.sendall(predict_request(ROWS))
        try:
            assert model.entered.wait(5)
            started = time.monotonic()
            server.shutdown()
            assert time.monotonic() - started < 1.0
            # a new connection is refused, or closed without an answer
            try:
                late = socket.create_connection(server.server_address, timeout=2)
            except ConnectionRefusedError:
                pass
            else:
                with late, contextlib.suppress(ConnectionResetError, BrokenPipeError):
                    late.sendall(STATUS)
                    assert late.recv(100) == b""
            # the idle connection is closed, without an answer
            assert Reader(idle).until_closed(timeout=2.0) == b""
            assert nothing_to_read(busy)  # the request in progress goes on
        finally:
            gate.set()
        answer = Reader(busy).answer()
        assert_doubled(answer, ROWS)
        assert answer.headers["connection"] == "close"  # the last answer on it
        assert server.drain(2.0) is True
        loop.join(2.0)
        assert not loop.is_alive()  # serve_forever returned
        assert time.monotonic() - started < 2.5


# ---------------------------------------------------------------- 9. batching from the loop

def test_batching_through_the_event_loop(tmp_path):
    save_version(tmp_path, 1, seed=7)
    oracle = load_model(str(tmp_path / "1" / "model.npz"))
    app = create_app("m", str(tmp_path), enable_batching=True, file_system_poll_wait_seconds=0)
    clients, requests_each = 8, 12
    rng = np.random.default_rng(3)
    with running_server(app) as base:
        sockets = [connect(base) for _ in range(clients)]
        try:
            batch_sum = batch_count = 0.0
            for _ in range(5):  # rounds, until some batch held several rows
                answers = run_clients(sockets, requests_each, rng)
                for row, answer in answers:
                    np.testing.assert_allclose(
                        predictions(answer)[0], oracle.predict(np.asarray([row], np.float32))[0],
                        rtol=1e-5, atol=1e-6)
                metrics = exchange(sockets[0], METRICS).body.decode()
                batch_sum = metric_value(metrics, 'minidl_batch_size_sum{model="m"}')
                batch_count = metric_value(metrics, 'minidl_batch_size_count{model="m"}')
                if batch_sum > batch_count:
                    break
            assert batch_sum > batch_count > 0, metrics
            requests_total = metric_value(
                metrics, 'minidl_requests_total{model="m",version="1",code="200"}')
            assert batch_sum == requests_total  # one row per predict, every row in one batch
        finally:
            for sock in sockets:
                sock.close()


def run_clients(sockets, requests_each, rng) -> list[tuple[list[float], Answer]]:
    """Each socket sends ``requests_each`` single-row predicts one after the other, all
    sockets at the same time (threads); returns (row, answer) pairs."""
    rows = rng.standard_normal((len(sockets), requests_each, INPUT_DIM)).astype(np.float32)
    results: list[list[tuple[list[float], Answer]]] = [[] for _ in sockets]
    errors: list[BaseException] = []
    start = threading.Barrier(len(sockets))

    def client(index):
        try:
            start.wait(5)
            reader = Reader(sockets[index])
            for row in rows[index].tolist():
                sockets[index].sendall(predict_request([row]))
                results[index].append((row, reader.answer()))
        except BaseException as error:  # re-raised in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(sockets))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not any(thread.is_alive() for thread in threads), "a client never finished"
    if errors:
        raise errors[0]
    return [pair for result in results for pair in result]


# ---------------------------------------------------------------- 10. no thread left behind

def test_standby_takeovers_leave_no_thread_behind(tmp_path):
    before = threading.active_count()
    gate = threading.Event()
    app, model = gated_app(tmp_path, gate)
    with serving(app) as (server, _):
        for _ in range(3):  # three times: 3 slow predicts at once, then released
            gate.clear()
            socks = [connect(server.url) for _ in range(3)]
            try:
                for sock in socks:  # one at a time: each is in the model before the next
                    calls = len(model.calls)
                    sock.sendall(predict_request(ROWS))
                    wait_until(lambda calls=calls: len(model.calls) > calls, timeout=5,
                               interval=0.002)
                with connect(server.url) as other:
                    assert_status_answer(exchange(other, STATUS))
                # one thread per slow request, plus the loop's owner and a standby
                assert threading.active_count() >= before + 4
                gate.set()
                for sock in socks:
                    assert_doubled(Reader(sock).answer(), ROWS)
            finally:
                gate.set()
                for sock in socks:
                    sock.close()
            # the threads that were stuck in the app have ended: serve_forever's thread, the
            # loop's owner (if another) and one standby are left
            wait_until(lambda: threading.active_count() <= before + 3, timeout=2,
                       interval=0.01)
    wait_until(lambda: threading.active_count() <= before, timeout=2, interval=0.01)
    assert len(model.calls) == 9


# ---------------------------------------------------------------- found in review

def test_a_request_received_with_a_slow_one_is_not_stalled(tmp_path, monkeypatch):
    # a slower takeover makes the window in which nobody runs the loop wide enough for two
    # requests to be received in one turn every time; the bug does not depend on it (with
    # the default 5 ms, three slow predicts sent at once stalled each other before the fix)
    monkeypatch.setattr(server_module, "TAKEOVER_AFTER", 0.2)
    gate = threading.Event()
    app, model = gated_app(tmp_path, gate)
    with running_server(app) as base, connect(base) as first, connect(base) as second, \
            connect(base) as quick:
        try:
            first.sendall(predict_request(ROWS))
            assert model.entered.wait(5)
            # the owner is in the model and no other thread has the loop yet: these two
            # arrive before the standby's first turn, which takes them together
            second.sendall(predict_request(OTHER_ROWS))
            quick.sendall(STATUS)
            answered = select.select([quick], [], [], 1.5)[0]
            stalled_calls = len(model.calls)
        finally:
            gate.set()
        assert_doubled(Reader(first).answer(), ROWS)
        assert_doubled(Reader(second).answer(), OTHER_ROWS)
        assert_status_answer(Reader(quick).answer())
    assert stalled_calls == 2  # the second predict reached the model: it was received
    assert answered, "GET /v1/models/m waited for a slow predict of another connection"


def test_pipelined_requests_before_a_half_close_are_all_answered(tmp_path):
    app, _ = gated_app(tmp_path, None)
    with running_server(app) as base, connect(base) as sock:
        sock.sendall(STATUS + predict_request(ROWS) + STATUS)
        sock.shutdown(socket.SHUT_WR)  # nothing more to send; the answers are still wanted
        received = Reader(sock).until_closed(timeout=2.0)
    assert received.count(b"HTTP/1.1 200 OK\r\n") == 3, received[:400]


def test_a_long_chunk_size_line_is_judged_the_same_however_it_arrives():
    encoded = b"5;" + b"x" * 2000 + b"\r\nhello\r\n0\r\n\r\n"
    outcomes = []
    for cuts in ([], range(1, len(encoded))):
        decoder = http11.ChunkedDecoder(1 << 20)
        try:
            feed_in_pieces(decoder, encoded, cuts)
            outcomes.append(decoder.body())
        except http11.BadRequest as error:
            outcomes.append(error.code)
    assert outcomes[0] == outcomes[1], outcomes


def test_a_pipelining_client_cannot_pile_up_input(tmp_path):
    app, _ = gated_app(tmp_path, None)
    count = 3000  # ~120 KB of requests in one go: twice what one read takes
    with serving(app) as (server, _), connect(server.url) as sock:
        largest = [0]
        answers: list[Answer] = []

        def read_all() -> None:
            reader = Reader(sock)
            for _ in range(count):
                answers.append(reader.answer(timeout=20))
                inboxes = [len(conn.inbox) for conn in list(server._connections.values())]
                largest[0] = max([largest[0], *inboxes])

        reading = threading.Thread(target=read_all)
        reading.start()
        sock.sendall(STATUS * count)
        reading.join(30)
    assert len(answers) == count and all(a.status == 200 for a in answers)
    # never more than what one read brings in behind a request still unanswered
    assert largest[0] <= server_module.READ_SIZE + len(STATUS)


def test_an_app_whose_headers_cannot_be_sent_gets_a_500_and_the_server_goes_on(tmp_path):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/bad":
            start_response("200 OK", [("X-Note", "caf\u00e9 \u2615")])  # not latin-1
        else:
            start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    with serving(app) as (server, _), connect(server.url) as sock:
        reader = Reader(sock)
        sock.sendall(b"GET /bad HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reader.answer().status == 500
        with connect(server.url) as other:
            answer = exchange(other, b"GET /fine HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (answer.status, answer.body) == (200, b"ok")


def test_shutdown_lets_an_upload_in_progress_finish(tmp_path):
    app, _ = gated_app(tmp_path, None)
    with serving(app) as (server, _), connect(server.url) as sock:
        body = predict_body(ROWS)
        sock.sendall(predict_head(len(body), b"Expect: 100-continue\r\n"))
        reader = Reader(sock)
        assert reader.read_exactly(len(CONTINUE)) == CONTINUE
        server.shutdown()
        time.sleep(0.1)  # a few turns of the loop, which closes idle connections
        sock.sendall(body)
        answer = reader.answer()
        assert_doubled(answer, ROWS)
        assert answer.headers["connection"] == "close"
        assert server.drain(2.0) is True


def test_with_batching_a_status_request_is_not_held_up_by_a_slow_batch(tmp_path):
    gate = threading.Event()
    app, model = gated_app(tmp_path, gate, batcher=Batcher(run_model))
    with running_server(app) as base, connect(base) as slow, connect(base) as quick:
        try:
            slow.sendall(predict_request(ROWS))
            assert model.entered.wait(5)
            started = time.monotonic()
            assert_status_answer(exchange(quick, STATUS))
            assert time.monotonic() - started < 1.0
        finally:
            gate.set()
        assert_doubled(Reader(slow).answer(), ROWS)
