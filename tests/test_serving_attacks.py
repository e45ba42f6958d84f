"""Attacks over real sockets on 127.0.0.1 (issue 12, item 3): slow headers, head floods,
request smuggling, and memory per request. Each attack is bounded in time and bytes, and
after each the server still answers a normal predict correctly.

Outcomes are asserted, not timings, except where a deadline is the point (a small
``head_timeout``) and for the latency of a normal client during the slow-headers attack.
What the server read before it cut a flood off is measured on the server's side: the test
counts what ``GuardedProtocol.data_received`` was given before the connection stopped
parsing. Memory is measured as the resident set size of a server process
(``python -m minidl serve``).
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time

import numpy as np
import pytest
import requests
from test_serving_connections import (
    OTHER_ROWS,
    ROWS,
    STATUS,
    Answer,
    Reader,
    assert_doubled,
    assert_status_answer,
    big_rows,
    connect,
    exchange,
    nothing_to_read,
    predict_head,
    predict_request,
)
from test_serving_server import ready_url, start_process, stop
from test_serving_support import gated_app, running_server, save_version, wait_until

from minidl.model import load_model
from minidl.serving.protocol import MAX_HEAD_BYTES, GuardedProtocol

ONE_READ = 256 * 1024  # the most one read of the event loop takes from a socket
SMUGGLED = STATUS + predict_request(OTHER_ROWS)  # must never be answered, never reach the model


# ---------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def reads():
    """Bytes each server connection was given before it stopped parsing (a refusal, a last
    answer), by the client's port."""
    counts: dict[int, int] = {}
    original = GuardedProtocol.data_received

    def counting(self, data):
        if not self._ignoring:
            counts[self.client[1]] = counts.get(self.client[1], 0) + len(data)
        original(self, data)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(GuardedProtocol, "data_received", counting)
        yield counts


@pytest.fixture(scope="module")
def target(tmp_path_factory, reads):
    """A server (y = 2x) with the default limits: (base URL, its model)."""
    app, model = gated_app(tmp_path_factory.mktemp("attacks") / "m", None)
    with running_server(app) as base:
        yield base, model


def answers_in(data: bytes) -> list[Answer]:
    """The whole answers in ``data``, in order (what is left over is not an answer)."""
    answers = []
    rest = data
    while (end := rest.find(b"\r\n\r\n")) >= 0:
        head = rest[:end].decode("latin-1").split("\r\n")
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", 0))
        body = rest[end + 4:end + 4 + length]
        answers.append(Answer(int(head[0].split(" ", 2)[1]), headers, body))
        rest = rest[end + 4 + length:]
    return answers


def assert_still_serving(base: str, model) -> None:
    """A normal predict on a new connection gets the right answer, and reaches the model."""
    calls = len(model.calls)
    with connect(base) as sock:
        assert_doubled(exchange(sock, predict_request(ROWS)), ROWS)
        assert_status_answer(exchange(sock, STATUS))
    assert len(model.calls) == calls + 1


def flood(sock: socket.socket, prefix: bytes, filler: bytes, limit: int = 8 << 20,
          piece: int = 16384) -> tuple[int, bytes]:
    """Send ``prefix``, then ``filler`` over and over, until the server sends an answer that
    closes the connection (or closes it), or ``limit`` bytes are sent. Returns the bytes sent
    and everything received up to the end of the connection."""
    sock.sendall(prefix)
    sent = len(prefix)
    chunk = filler * max(1, piece // len(filler))
    received = bytearray()
    try:
        while sent < limit and b"\r\nconnection: close\r\n" not in received.lower():
            if not nothing_to_read(sock):
                data = sock.recv(1 << 16)
                if not data:
                    break
                received += data
                continue
            sock.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    return sent, bytes(received) + Reader(sock).until_closed()


# ---------------------------------------------------------------- slow headers

SLOW_SOCKETS = 250
HEAD_TIMEOUT = 5.0
TRICKLE_EVERY = 0.5
NORMAL_REQUESTS = 160


def test_slow_headers_from_hundreds_of_connections_never_lock_a_normal_client_out(tmp_path):
    app, model = gated_app(tmp_path, None)
    slow_head = b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
    with running_server(app, head_timeout=HEAD_TIMEOUT) as base:
        sockets, connected, closed_after, answered = [], {}, {}, []
        try:
            for _ in range(SLOW_SOCKETS):
                sock = connect(base)
                sock.setblocking(False)
                sock.send(slow_head[:1])
                connected[sock] = time.monotonic()
                sockets.append(sock)
            done = threading.Event()
            trickler = threading.Thread(target=trickle, args=(
                sockets, slow_head, connected, closed_after, answered, done))
            trickler.start()
            try:
                # a normal client meanwhile: fresh connections and a kept-alive one, until
                # NORMAL_REQUESTS or until the first slow socket is near its deadline, so
                # that every slow socket is open and trickling all the while (a slow machine
                # gets fewer requests, never a different outcome)
                latencies = []
                stop_at = min(connected.values()) + 0.8 * HEAD_TIMEOUT
                with connect(base) as kept:
                    for index in range(NORMAL_REQUESTS):
                        if time.monotonic() > stop_at:
                            break
                        started = time.monotonic()
                        if index % 2:
                            assert_doubled(exchange(kept, predict_request(ROWS)), ROWS)
                        else:
                            with connect(base) as fresh:
                                assert_status_answer(exchange(fresh, STATUS))
                        latencies.append(time.monotonic() - started)
                open_meanwhile = SLOW_SOCKETS - len(closed_after)
                # every slow connection is cut by the head deadline, none is answered
                wait_until(lambda: len(closed_after) == SLOW_SOCKETS, timeout=4 * HEAD_TIMEOUT)
            finally:
                done.set()
                trickler.join(10)
        finally:
            for sock in sockets:
                sock.close()
        p99 = sorted(latencies)[int(0.99 * len(latencies)) - 1]
        print(f"\nslow headers: {SLOW_SOCKETS} sockets, p99 of a normal client "
              f"{p99 * 1000:.1f} ms (max {max(latencies) * 1000:.1f} ms); cut after "
              f"{min(closed_after.values()):.2f}-{max(closed_after.values()):.2f} s")
        assert open_meanwhile == SLOW_SOCKETS  # all of them were trickling during the test
        assert len(latencies) >= 20
        assert p99 < 0.1
        assert not answered
        assert min(closed_after.values()) >= 0.9 * HEAD_TIMEOUT
        assert max(closed_after.values()) <= 3 * HEAD_TIMEOUT
        assert_still_serving(base, model)


def trickle(sockets, head, connected, closed_after, answered, done):
    """Send the next byte of ``head`` on every open socket each TRICKLE_EVERY seconds; note
    when each is closed (seconds after it connected) and whether anything was answered."""
    position = {sock: 1 for sock in sockets}
    next_tick = time.monotonic() + TRICKLE_EVERY
    while not done.is_set() and len(closed_after) < len(sockets):
        open_sockets = [sock for sock in sockets if sock not in closed_after]
        readable, _, _ = select.select(open_sockets, [], [],
                                       max(0.0, min(0.05, next_tick - time.monotonic())))
        for sock in readable:
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            if data:
                answered.append(data)
            closed_after[sock] = time.monotonic() - connected[sock]
        if time.monotonic() >= next_tick:
            next_tick += TRICKLE_EVERY
            for sock in open_sockets:
                if sock in closed_after:
                    continue
                try:
                    sock.send(head[position[sock]:position[sock] + 1])
                    position[sock] += 1
                except OSError:  # closed (reset) by the server: noted at its EOF
                    pass


def test_a_head_not_complete_within_the_deadline_is_closed_without_an_answer(tmp_path):
    app, model = gated_app(tmp_path, None)
    with running_server(app, head_timeout=1.0) as base:
        cases = [b"", b"GET /v1/models/m HTTP/1.1\r\nHost: x", b"\r\n\r\n"]
        sockets = [connect(base) for _ in cases]
        try:
            started = time.monotonic()
            for sock, data in zip(sockets, cases, strict=True):
                sock.sendall(data)
            for sock in sockets:
                assert Reader(sock).until_closed(timeout=3.0) == b""
            assert 0.9 <= time.monotonic() - started <= 3.0
            # kept alive after an answer: the next head has the same deadline
            with connect(base) as sock:
                assert_status_answer(exchange(sock, STATUS))
                started = time.monotonic()
                sock.sendall(b"GET /v1/models/m HTTP/1.1\r\n")
                assert Reader(sock).until_closed(timeout=3.0) == b""
                assert 0.9 <= time.monotonic() - started <= 3.0
        finally:
            for sock in sockets:
                sock.close()
        assert_still_serving(base, model)


def test_a_slow_request_waiting_its_turn_is_not_cut_by_the_head_deadline(tmp_path):
    # a pipelined request whose head is in: the deadline is for heads, not for the model
    gate = threading.Event()
    app, model = gated_app(tmp_path, gate)
    with running_server(app, head_timeout=1.0) as base, connect(base) as sock:
        try:
            sock.sendall(STATUS + predict_request(ROWS) + STATUS)
            reader = Reader(sock)
            assert_status_answer(reader.answer())
            assert model.entered.wait(5)
            time.sleep(1.5)  # longer than the head deadline, in the model
            assert nothing_to_read(sock)
        finally:
            gate.set()
        assert_doubled(reader.answer(), ROWS)
        assert_status_answer(reader.answer())


# ---------------------------------------------------------------- head floods

FLOODS = {
    "blank lines": (b"", b"\r\n"),
    "header lines": (b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\n", b"X-Flood: yes\r\n"),
    "one endless header value": (b"GET /v1/models/m HTTP/1.1\r\nX-Long: ", b"a"),
    "an endless URL": (b"GET /v1/models/m?", b"a"),
    "trailer lines": (b"POST /v1/models/m:predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                      b"\r\n5\r\n[1, 2\r\n0\r\n", b"X-Trailer: yes\r\n"),
    "one endless trailer": (b"POST /v1/models/m:predict HTTP/1.1\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n0\r\nX-Long: ", b"a"),
    "headers behind a request in progress": (STATUS + b"GET /v1/models/m HTTP/1.1\r\n",
                                             b"X-Flood: yes\r\n"),
}


@pytest.mark.parametrize("form", FLOODS, ids=list(FLOODS))
def test_a_head_flood_is_cut_off_after_max_head_bytes(target, reads, form):
    base, model = target
    prefix, filler = FLOODS[form]
    with connect(base) as sock:
        sent, received = flood(sock, prefix, filler)
        port = sock.getsockname()[1]
    answers = answers_in(received)
    if form.startswith("headers behind"):  # the answer owed before the flood comes first
        assert_status_answer(answers.pop(0))
    assert [answer.status for answer in answers] == [431], received[:300]
    assert answers[0].headers["connection"] == "close"
    assert f"larger than {MAX_HEAD_BYTES} bytes" in answers[0].json()["error"]
    accepted = reads[port]
    print(f"\n{form}: {sent} bytes sent, {accepted} read by the server before the 431")
    assert accepted <= MAX_HEAD_BYTES + ONE_READ + len(prefix)
    assert_still_serving(base, model)


def test_headers_flooded_behind_a_slow_request_are_cut_off_too(tmp_path, reads):
    # while a request is in the model, the next head cannot pile up either; the request
    # before the flood is still answered, then the 431 ends the connection
    gate = threading.Event()
    app, model = gated_app(tmp_path, gate)
    with running_server(app) as base:
        try:
            with connect(base) as sock:
                sock.sendall(predict_request(ROWS))
                assert model.entered.wait(5)
                sock.sendall(b"GET /v1/models/m HTTP/1.1\r\n")
                chunk = b"X-Flood: yes\r\n" * 1000
                sent = 0
                while sent < 2 << 20:  # far more than the bound, while the predict waits
                    sock.sendall(chunk)
                    sent += len(chunk)
                port = sock.getsockname()[1]
                assert nothing_to_read(sock)  # the 431 waits for the answer before it
                gate.set()
                answers = answers_in(Reader(sock).until_closed())
        finally:
            gate.set()
        assert_doubled(answers[0], ROWS)
        assert [answer.status for answer in answers[1:]] == [431]
        print(f"\nbehind a slow request: {sent} bytes sent, {reads[port]} read before the 431")
        assert reads[port] <= MAX_HEAD_BYTES + ONE_READ + len(predict_request(ROWS)) + 100
        assert_still_serving(base, model)


# ---------------------------------------------------------------- request smuggling

BODY = json.dumps({"instances": ROWS}).encode()
POST = b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


def post(headers: bytes, body: bytes = BODY) -> bytes:
    return POST + headers + b"\r\n" + body


def chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


LENGTH = b"%d" % len(BODY)
SMUGGLING = {
    # two framings at once
    "CL and TE": post(b"Content-Length: " + LENGTH + b"\r\nTransfer-Encoding: chunked\r\n",
                      chunked(BODY)),
    "TE and CL": post(b"Transfer-Encoding: chunked\r\nContent-Length: " + LENGTH + b"\r\n",
                      chunked(BODY)),
    "CL and TE in HTTP/1.0": post(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                                  chunked(BODY)).replace(b"HTTP/1.1", b"HTTP/1.0"),
    "TE in HTTP/1.0": post(b"Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n",
                           chunked(BODY)).replace(b"HTTP/1.1", b"HTTP/1.0"),
    "TE and CL in the trailers": post(b"Transfer-Encoding: chunked\r\n",
                                      b"0\r\nContent-Length: 5\r\n\r\n"),
    # Content-Length
    "duplicate CL, different values": post(b"Content-Length: " + LENGTH
                                           + b"\r\nContent-Length: 3\r\n"),
    "duplicate CL, same values": post(b"Content-Length: " + LENGTH
                                      + b"\r\nContent-Length: " + LENGTH + b"\r\n"),
    "CL list of the same value": post(b"Content-Length: " + LENGTH + b", " + LENGTH + b"\r\n"),
    "CL 1,2": post(b"Content-Length: 1,2\r\n"),
    "CL +7": post(b"Content-Length: +7\r\n"),
    "CL -7": post(b"Content-Length: -7\r\n"),
    "CL in hex": post(b"Content-Length: 0x%x\r\n" % len(BODY)),
    "CL with a space inside": post(b"Content-Length: 1 2\r\n"),
    "CL empty": post(b"Content-Length: \r\n"),
    "CL overflow": post(b"Content-Length: 99999999999999999999999\r\n"),
    # Transfer-Encoding that does not end in chunked
    "TE chunked, gzip": post(b"Transfer-Encoding: chunked, gzip\r\n", chunked(BODY)),
    "TE gzip": post(b"Transfer-Encoding: gzip\r\n", chunked(BODY)),
    "TE chunked then gzip, two lines": post(b"Transfer-Encoding: chunked\r\n"
                                            b"Transfer-Encoding: gzip\r\n", chunked(BODY)),
    "TE chunked, chunked": post(b"Transfer-Encoding: chunked, chunked\r\n", chunked(BODY)),
    "TE xchunked": post(b"Transfer-Encoding: xchunked\r\n", chunked(BODY)),
    "TE chunked-false": post(b"Transfer-Encoding: chunked-false\r\n", chunked(BODY)),
    "TE quoted": post(b'Transfer-Encoding: "chunked"\r\n', chunked(BODY)),
    "TE identity": post(b"Transfer-Encoding: identity\r\n", chunked(BODY)),
    "TE with a trailing comma": post(b"Transfer-Encoding: chunked,\r\n", chunked(BODY)),
    "TE with a vertical tab": post(b"Transfer-Encoding:\x0bchunked\r\n", chunked(BODY)),
    "TE with a NBSP": post(b"Transfer-Encoding: \xa0chunked\r\n", chunked(BODY)),
    # header syntax
    "obs-fold": post(b"Content-Length: " + LENGTH + b"\r\nX-Note: first\r\n second\r\n"),
    "obs-fold of TE": post(b"Transfer-Encoding:\r\n chunked\r\n", chunked(BODY)),
    "bare CR in a header value": post(b"Content-Length: " + LENGTH + b"\r\nX-A: a\rb\r\n"),
    "bare LF line ends": b"GET /v1/models/m HTTP/1.1\nHost: x\n\n",
    "NUL in a header value": post(b"X-A: a\x00b\r\nContent-Length: " + LENGTH + b"\r\n"),
    "whitespace before the colon, TE": post(b"Transfer-Encoding : chunked\r\n", chunked(BODY)),
    "whitespace before the colon, CL": post(b"Content-Length : " + LENGTH + b"\r\n"),
    "whitespace before the first header": post(b" Content-Length: " + LENGTH + b"\r\n"),
    "a header line without a colon": post(b"Content-Length " + LENGTH + b"\r\n"),
    "NBSP in a header name": post(b"Content-Length\xa0: " + LENGTH + b"\r\n"),
    "duplicate Host": b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    # request line
    "NBSP after the method": b"GET\xa0/v1/models/m HTTP/1.1\r\nHost: x\r\n\r\n",
    "NBSP in the path": b"GET /v1/models/m\xa0HTTP/1.1\r\nHost: x\r\n\r\n",
    "tab after the method": b"GET\t/v1/models/m HTTP/1.1\r\nHost: x\r\n\r\n",
    "HTTP/1.10": b"GET /v1/models/m HTTP/1.10\r\nHost: x\r\n\r\n",
    "CONNECT": b"CONNECT x:80 HTTP/1.1\r\nHost: x\r\n\r\n",
    # chunked bodies
    "chunk size overflow": post(b"Transfer-Encoding: chunked\r\n",
                                b"1" + b"0" * 16 + b"5\r\n" + BODY + b"\r\n0\r\n\r\n"),
    "negative chunk size": post(b"Transfer-Encoding: chunked\r\n", b"-1\r\nx\r\n0\r\n\r\n"),
    "chunk size in 0x": post(b"Transfer-Encoding: chunked\r\n", b"0x5\r\nhello\r\n0\r\n\r\n"),
    "chunk size with a bare LF": post(b"Transfer-Encoding: chunked\r\n", b"5\nhello\r\n0\r\n\r\n"),
    "chunk longer than its size": post(b"Transfer-Encoding: chunked\r\n",
                                       b"2\r\nhello\r\n0\r\n\r\n"),
    "bare LF in a chunk extension": post(b"Transfer-Encoding: chunked\r\n",
                                         b"5;a\nhello\r\n0\r\n\r\n"),
    "LF in a quoted chunk extension": post(b"Transfer-Encoding: chunked\r\n",
                                           b'5;a="\n"\r\nhello\r\n0\r\n\r\n'),
}


def attack(base: str, data: bytes) -> tuple[list[Answer], bytes]:
    """Send ``data`` and the smuggled requests in one go; read until the server closes
    (which must come within 5 s: the head deadline is 10 s, so it is the refusal's)."""
    with connect(base) as sock:
        sock.sendall(data + SMUGGLED)
        received = Reader(sock).until_closed(timeout=5.0)
    return answers_in(received), received


@pytest.mark.parametrize("form", SMUGGLING, ids=list(SMUGGLING))
def test_request_smuggling_gets_400_and_the_connection_is_closed(target, form):
    base, model = target
    calls = len(model.calls)
    answers, received = attack(base, SMUGGLING[form])
    assert [answer.status for answer in answers] == [400], received[:300]  # nothing behind
    assert answers[0].headers["connection"] == "close"
    assert "Malformed request" in answers[0].json()["error"]
    assert len(model.calls) == calls  # neither the attack nor what it hid reached the model
    assert_still_serving(base, model)


def test_a_transfer_coding_other_than_chunked_gets_501_and_the_connection_is_closed(target):
    base, model = target
    calls = len(model.calls)
    answers, received = attack(base, post(b"Transfer-Encoding: gzip, chunked\r\n",
                                          chunked(BODY)))
    assert [answer.status for answer in answers] == [501], received[:300]
    assert answers[0].headers["connection"] == "close"
    assert "gzip is not supported" in answers[0].json()["error"]
    assert len(model.calls) == calls
    assert_still_serving(base, model)


@pytest.mark.parametrize("upgrade", [b"h2c", b"websocket"])
def test_what_follows_an_upgrade_request_is_never_answered(target, upgrade):
    # h2c smuggling: a proxy that lets the upgrade through would tunnel what follows
    base, model = target
    calls = len(model.calls)
    head = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: " + upgrade + b"\r\n"
    answers, received = attack(base, b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\n" + head
                               + b"\r\n")
    assert [answer.status for answer in answers] == [200], received[:300]  # not 101
    assert answers[0].headers["connection"] == "close"
    # the same with a body: llhttp takes what follows the head as the other protocol
    answers, received = attack(base, post(head + b"Content-Length: " + LENGTH + b"\r\n"))
    assert len(answers) == 1 and answers[0].status == 400, received[:300]
    assert answers[0].headers["connection"] == "close"
    assert len(model.calls) == calls
    assert_still_serving(base, model)


def test_a_chunk_size_larger_than_any_body_ends_in_413(tmp_path):
    # 2^64 - 1 fits llhttp's counter: the body is then longer than the limit, and what is
    # sent after it, a request included, is body
    app, model = gated_app(tmp_path, None, max_body_bytes=1000)
    with running_server(app) as base:
        answers, received = attack(base, post(b"Transfer-Encoding: chunked\r\n",
                                              b"ffffffffffffffff\r\n" + SMUGGLED * 30))
        assert [answer.status for answer in answers] == [413], received[:300]
        assert answers[0].headers["connection"] == "close"
        assert model.calls == []
        assert_still_serving(base, model)


# ---------------------------------------------------------------- bodies over the limit

def test_a_declared_body_over_the_limit_is_refused_before_it_is_read(tmp_path, reads):
    app, model = gated_app(tmp_path, None, max_body_bytes=1000)
    with running_server(app) as base, connect(base) as sock:
        head = predict_head(100 << 20)  # 100 MB announced, and sent until the answer
        sent, received = flood(sock, head, b"[1.0, 2.0, 3.0, 4.0], ", limit=100 << 20)
        port = sock.getsockname()[1]
        assert [answer.status for answer in answers_in(received)] == [413], received[:300]
        print(f"\n413 for 100 MB announced: {sent} bytes sent, {reads[port]} read")
        assert reads[port] <= len(head) + ONE_READ
        assert model.calls == []
        assert_still_serving(base, model)


def test_a_chunked_body_over_the_limit_is_refused_once_the_limit_is_passed(tmp_path, reads):
    app, model = gated_app(tmp_path, None, max_body_bytes=1000)
    with running_server(app) as base, connect(base) as sock:
        head = post(b"Transfer-Encoding: chunked\r\n", b"")
        piece = b"[1.0, 2.0, 3.0, 4.0], " * 20
        sent, received = flood(sock, head, b"%x\r\n%s\r\n" % (len(piece), piece),
                               limit=100 << 20)
        port = sock.getsockname()[1]
        assert [answer.status for answer in answers_in(received)] == [413], received[:300]
        print(f"\nchunked 413: {sent} bytes sent, {reads[port]} read")
        assert reads[port] <= len(head) + 1000 + ONE_READ
        assert model.calls == []
        assert_still_serving(base, model)


# ---------------------------------------------------------------- memory

MEMORY_BOUND = 20 << 20  # bytes the server's resident set may grow by under each attack


@pytest.fixture
def server_process(tmp_path):
    """``python -m minidl serve`` on a free port: (URL, pid, the model as the oracle)."""
    save_version(tmp_path / "m", 1, seed=5)
    oracle = load_model(str(tmp_path / "m" / "1" / "model.npz"))
    process = start_process(["-m", "minidl", "serve", "--model_name", "m", "--model_base_path",
                             str(tmp_path / "m"), "--rest_api_port", "0"], tmp_path / "log")
    try:
        yield ready_url(process), process.pid, oracle
    finally:
        stop(process)


def resident_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def assert_process_serves(url: str, oracle, rows) -> None:
    answer = requests.post(url + "/v1/models/m:predict", json={"instances": rows}, timeout=10)
    assert answer.status_code == 200, answer.text[:300]
    np.testing.assert_allclose(np.asarray(answer.json()["predictions"], np.float32),
                               oracle.predict(np.asarray(rows, np.float32)), rtol=1e-6)


def warm_up(url: str, oracle, concurrent: int = 1) -> None:
    """Requests of every size used below, ``concurrent`` at once, so that the baseline holds
    what a normal load of them needs (the allocator keeps memory it once used)."""
    for rows in (ROWS, big_rows(12000), ROWS):
        threads = [threading.Thread(target=assert_process_serves, args=(url, oracle, rows))
                   for _ in range(concurrent)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)


def flood_without_reading(url: str, data: bytes, connections: int, total: int,
                          seconds: float = 8.0) -> tuple[list[socket.socket], int]:
    """Open ``connections`` sockets that never read (a small receive window) and send
    ``data`` over and over on each, until ``total`` bytes are sent, every socket has been
    blocked for 1 s, or ``seconds`` pass. Returns the sockets (still open) and bytes sent."""
    sockets = [connect(url, receive_buffer=4096) for _ in range(connections)]
    pending = {}
    for sock in sockets:
        sock.setblocking(False)
        pending[sock] = memoryview(data)
    sent, deadline, last_progress = 0, time.monotonic() + seconds, time.monotonic()
    while sent < total and time.monotonic() < deadline and time.monotonic() - last_progress < 1:
        progressed = False
        for sock in sockets:
            try:
                count = sock.send(pending[sock])
            except BlockingIOError:
                continue
            sent += count
            pending[sock] = pending[sock][count:] or memoryview(data)  # whole requests only
            progressed = True
        if progressed:
            last_progress = time.monotonic()
        else:
            time.sleep(0.01)
    for sock in sockets:  # nothing was refused: the server is only slow to read
        assert nothing_to_read(sock) or sock.recv(12, socket.MSG_PEEK) == b"HTTP/1.1 200"
    return sockets, sent


def test_pipelined_requests_never_read_cannot_grow_the_server_without_bound(server_process):
    url, pid, oracle = server_process
    warm_up(url, oracle)
    before = resident_bytes(pid)
    sockets, sent = flood_without_reading(url, STATUS * 2000, connections=10, total=50 << 20)
    try:
        time.sleep(0.5)  # what was sent is in the server or in the sockets' buffers
        for _ in range(10):  # others are still answered meanwhile
            assert_process_serves(url, oracle, ROWS)
        growth = resident_bytes(pid) - before
    finally:
        for sock in sockets:
            sock.close()
    print(f"\npipelining, never read: {sent / 1e6:.1f} MB sent on 10 connections, "
          f"server RSS +{growth / 1e6:.1f} MB")
    assert sent > 10 << 20  # the attack did send a lot
    assert growth < MEMORY_BOUND
    assert_process_serves(url, oracle, ROWS)


def test_large_answers_never_read_cannot_grow_the_server_without_bound(server_process):
    # the client sends predicts of ~1 MB and never reads an answer (~0.7 MB each): the
    # server holds one unsent answer, one request waiting its turn and at most one read
    url, pid, oracle = server_process
    warm_up(url, oracle)
    before = resident_bytes(pid)
    request = predict_request(big_rows(12000))
    sockets, sent = flood_without_reading(url, request * 4, connections=1,
                                          total=len(request) * 16)
    try:
        time.sleep(1.0)  # the first answers are written (as far as they go)
        for _ in range(10):  # others are still answered meanwhile
            assert_process_serves(url, oracle, ROWS)
        growth = resident_bytes(pid) - before
    finally:
        for sock in sockets:
            sock.close()
    print(f"\nlarge answers, never read: {sent / 1e6:.1f} MB of predicts sent, "
          f"server RSS +{growth / 1e6:.1f} MB")
    assert sent >= len(request) * 4  # several requests more than were answered
    assert growth < MEMORY_BOUND
    assert_process_serves(url, oracle, ROWS)
