"""uvicorn's httptools protocol, guarded against hostile clients.

What uvicorn and llhttp leave open, :class:`GuardedProtocol` closes:

* **Framing llhttp lets through.** Transfer-Encoding in an HTTP/1.0 request (400: RFC 9112
  section 6.1), a Transfer-Encoding that does not end in chunked (400, before the app sees
  the request), a coding besides chunked (``gzip, chunked``: 501), a second Host (400). After
  the answer to an Upgrade request (h2c, websocket), whose rest llhttp leaves unparsed, the
  connection is closed. Every refusal is a JSON answer with llhttp's reason.
* **A deadline for the head.** uvicorn's keep-alive timer stops at a request's first byte,
  so a client that sends one header byte every few seconds keeps its connection forever (and
  a few hundred such clients hold as many sockets). Here a head must be complete
  ``head_timeout`` seconds after the connection opened or the previous answer was sent;
  otherwise the connection is closed, without an answer. A pipelined request waiting its
  turn has its head in: no deadline runs for it.
* **A bound on the bytes of a head.** llhttp skips blank lines before a request line, however
  many; uvicorn bounds neither them nor the head, nor the trailers of a chunked body. Here
  more than ``max_head_bytes`` of them (counted as they are parsed, a slice at a time) get
  ``431`` and the connection is closed. Trailers are dropped.
* **Bounded input.** uvicorn pauses reading when a pipelined request has to wait, but parses
  the whole read first (up to 256 KiB: thousands of small requests, each with the state of a
  request) and resumes reading at every answer, so a client that pipelines and reads slowly
  piles up requests without bound. Here the parser takes a read in slices of ``FEED_BYTES``
  and stops at a pause, holding the rest of the read back, and reading resumes only once no
  request waits; the next answer is not made while the client has not read the last one. So
  a connection holds at most one read, the requests of one slice, one unsent answer, and a
  body up to uvicorn's high-water mark (64 KiB) before the app takes it.
* **Closes that keep the last answer.** Closing a socket with unread input resets the
  connection, and the client can lose the answer it was just sent (a ``413`` sent before the
  body, a refusal). Here the connection is half-closed and what the client still sends is
  read and dropped for up to ``LINGER_SECONDS``. A client that half-closes after sending its
  requests gets all their answers (uvicorn closed at once). A refusal comes after the answers
  owed for the requests before it. On a stop, an idle TLS connection is cut at once: closing
  TLS waits for the client's close_notify, which an idle client does not send.
* **A connection cap.** One connection over ``max_connections`` gets ``503`` at once.

The attacks these are for, and what was measured: tests/test_serving_attacks.py.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from minidl.extras import missing

try:
    import httptools
    from uvicorn.protocols.http import httptools_impl
except ModuleNotFoundError as error:
    raise missing(error, "serving") from error

from minidl.serving.adapters import CycleTransport, InputFlow
from minidl.serving.framing import closing_answer, framing_refusal

logger = logging.getLogger("minidl.serving")

HEAD_TIMEOUT = 10.0  # seconds for a request's head, from connect or the previous answer
MAX_HEAD_BYTES = 64 * 1024  # blank lines, request line and headers of one request; its trailers
LINGER_SECONDS = 2.0  # after a last answer, how long what the client still sends is dropped
MAX_CONNECTIONS = 1000  # open connections and requests in progress; one more gets 503
FEED_BYTES = 4096  # the parser takes a read in slices of this size, none while reading pauses


class _Refused(Exception):
    """Raised inside a parser callback to stop the parser; the answer is on the protocol."""


class GuardedProtocol(httptools_impl.HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size bound for each request head,
    bounded input, and closes that do not lose the last answer."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = InputFlow(transport, self)
        self._cycle_transport = CycleTransport(self, transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._held = b""  # received, not yet given to the parser (reading is paused)
        self._feed_scheduled = False
        self._ignoring = False  # input is dropped: after a refusal, an upgrade, the last answer
        self._lingering = False
        self._peer_done = False  # the client closed its side
        self._owed: list[Any] = []  # request cycles parsed, oldest first (some answered)
        self._refusal: bytes | None = None  # the answer of a callback that stopped the parser
        self._refusal_due: bytes | None = None  # sent once the answers owed before it are
        self._next_when_drained = False  # the next pipelined request waits for the client
        # bytes of the head (or trailers) being parsed: whole slices that left it incomplete,
        # plus the fields reported in the slice where it began
        self._section_open = True  # the parser is in a head or a chunked body's trailers
        self._section_bytes = 0
        self._fields_in_slice = 0
        self._transitions = 0
        self._in_body = False  # the head of the message being parsed is complete
        if len(self.connections) > self.config.max_connections:
            self._refuse(closing_answer(
                b"503 Service Unavailable",
                f"The server has its limit of {self.config.max_connections} connections "
                "open (--max_connections); retry later"))
            return
        self._await_head()

    # ------------------------------------------------------------------ input

    def data_received(self, data: bytes) -> None:
        if self._ignoring:
            return
        if self._held:  # keep the order: behind what is held back
            self._held += data
            self.flow.apply()
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        """Give ``data`` to the parser a slice at a time while reading is wanted; hold back
        the rest. So one read of small pipelined requests is not parsed into thousands of
        waiting requests: each slice pauses at the first that has to wait."""
        offset = 0
        while offset < len(data) and not self._ignoring and not self.transport.is_closing():
            if self.flow.read_paused:
                self._held = bytes(data[offset:])
                break
            piece = data[offset:offset + FEED_BYTES]
            offset += len(piece)
            self._parse(piece)
        self.flow.apply()

    def _input_wanted(self) -> None:
        if self._held and not self._feed_scheduled:
            self._feed_scheduled = True
            self.loop.call_soon(self._feed_held)
        else:
            self.flow.apply()

    def _feed_held(self) -> None:
        self._feed_scheduled = False
        if self._ignoring or self.transport.is_closing():
            return
        data, self._held = self._held, b""
        self._feed(data)
        self._close_if_done()

    def _parse(self, piece: bytes) -> None:
        """Parse ``piece``; refuse a head (or trailers) over the bound."""
        was_open, transitions = self._section_open, self._transitions
        self._fields_in_slice = 0
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(piece)
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade()
            return
        except httptools.HttpParserError as error:
            if isinstance(error, httptools.HttpParserCallbackError) and error.__context__:
                error = error.__context__  # what uvicorn's callback raised, e.g. a bad URL
            logger.debug("minidl.serving: malformed request from %s: %s", self.client, error)
            self.send_400_response(str(error) or type(error).__name__)
            return
        if self._ignoring or self.transport.is_closing() or not self._section_open:
            return
        if was_open and transitions == self._transitions:
            self._section_bytes += len(piece)  # all of it went into the incomplete head
        else:
            self._section_bytes += self._fields_in_slice
        if self._section_bytes > self.config.max_head_bytes:
            self._refuse(self._head_too_large())

    def _unsupported_upgrade(self) -> None:
        # llhttp stops at a request that asks for another protocol (h2c, websocket): what
        # follows is not HTTP/1.1 to us, so it is dropped and the answer closes the connection
        self._ignoring = True
        if self.cycle is not None:
            self.cycle.keep_alive = False

    def eof_received(self) -> bool | None:
        """The client has sent all it will: answer what it asked for, then close."""
        self._peer_done = True
        latest = self.cycle
        if latest is not None and not latest.response_complete and latest.more_body:
            return None  # a body that will never be complete: close
        return True if self._owes_answers() else None

    # ------------------------------------------------------------------ parser callbacks

    def _transition(self, section_open: bool) -> None:
        self._section_open = section_open
        self._section_bytes = 0
        self._fields_in_slice = 0
        self._transitions += 1

    def _count_field(self, size: int) -> None:
        """Count a field of the head or trailers; past the bound, stop the parser."""
        self._fields_in_slice += size
        if self._section_bytes + self._fields_in_slice > self.config.max_head_bytes:
            self._refusal = self._head_too_large()
            raise _Refused

    def _head_too_large(self) -> bytes:
        return closing_answer(
            b"431 Request Header Fields Too Large",
            f"The request head is larger than {self.config.max_head_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_body = False
        self._transfer_codings: list[bytes] = []
        self._host_seen = False

    def on_url(self, url: bytes) -> None:
        self._count_field(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_field(len(name) + len(value) + 4)  # with ": " and CRLF
        if self._in_body:
            return  # a trailer: counted, then dropped (RFC 9110 section 6.5.1)
        lowered = name.lower()
        if lowered == b"transfer-encoding":
            self._transfer_codings += [coding.strip().lower() for coding in value.split(b",")]
        elif lowered == b"host":
            if self._host_seen:  # which one names the site? (RFC 9112 section 3.2)
                self._refusal = closing_answer(b"400 Bad Request",
                                               "Malformed request: more than one Host")
                raise _Refused
            self._host_seen = True
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_done()
        refusal = framing_refusal(self._transfer_codings, self.parser.get_http_version())
        if refusal is not None:
            self._refusal = refusal
            raise _Refused
        self._transition(False)
        self._in_body = True
        super().on_headers_complete()
        self.cycle.transport = self._cycle_transport
        self._owed = [cycle for cycle in self._owed if not cycle.response_complete]
        self._owed.append(self.cycle)

    def on_chunk_header(self) -> None:
        self._transition(True)  # the last chunk's trailers may follow

    def on_body(self, body: bytes) -> None:
        self._transition(False)
        super().on_body(body)

    def on_chunk_complete(self) -> None:
        self._transition(False)

    def on_message_complete(self) -> None:
        self._transition(True)  # the next head begins, blank lines before it included
        self._in_body = False
        super().on_message_complete()

    # ------------------------------------------------------------------ answers, closing

    def send_400_response(self, msg: str) -> None:
        """What llhttp refused, as a JSON answer like every other (uvicorn's is plain text),
        or the answer of a check here that stopped the parser (431, 400, 501)."""
        answer = self._refusal or closing_answer(b"400 Bad Request",
                                                 f"Malformed request: {msg}")
        self._refusal = None
        self._refuse(answer)

    def _refuse(self, answer: bytes) -> None:
        """Parse nothing more on this connection (its input can no longer be trusted), send
        ``answer`` once the answers owed for the requests before are sent, and close."""
        self._ignoring = True
        self._held = b""
        self._head_done()
        latest = self.cycle
        if latest is not None and not latest.response_complete and latest.more_body:
            # what was refused is this request's body: it will never be whole
            self._disconnect(latest)
            for entry in [entry for entry in self.pipeline if entry[0] is latest]:
                self.pipeline.remove(entry)
        self._refusal_due = answer
        self._refuse_when_due()

    def _refuse_when_due(self) -> None:
        if self._refusal_due is not None and not self._owes_answers(refusal=False):
            answer, self._refusal_due = self._refusal_due, None
            self._cycle_transport.flush()
            if not any(cycle.response_started and not cycle.response_complete
                       for cycle in self._owed):  # else an answer was cut: nothing follows
                self.transport.write(answer)
            self._linger()

    @staticmethod
    def _disconnect(cycle: Any) -> None:
        """Tell a request's app that its client is gone; what it sends is dropped."""
        if not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()

    def _drop_owed(self) -> None:
        for cycle in self._owed:
            self._disconnect(cycle)
        self._owed = []
        self.pipeline.clear()

    def _owes_answers(self, refusal: bool = True) -> bool:
        return bool(self._held or self.pipeline
                    or (refusal and self._refusal_due is not None)
                    or any(not cycle.response_complete and not cycle.disconnected
                           for cycle in self._owed))

    def _close_if_done(self) -> None:
        if self._peer_done and not self._owes_answers() and not self.transport.is_closing():
            self.transport.close()

    def _linger(self) -> None:
        """Close once what was written is sent, without resetting the connection: what the
        client still sends is read and dropped for up to ``LINGER_SECONDS``. Closing with
        unread input would reset it, and the client could lose its last answer."""
        if self._lingering:
            return
        self._cycle_transport.flush()  # the answers already made go first
        self._lingering = self._ignoring = True
        self._head_done()
        self._unset_keepalive_if_required()
        self._drop_owed()
        self._held = b""
        if self._peer_done or not self.transport.can_write_eof():  # TLS has no half close
            self.transport.close()
            return
        self.transport.write_eof()
        self.flow.read_paused = False
        self.flow.apply()
        self._linger_timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _await_head(self) -> None:
        self._head_timer = self.loop.call_later(self.config.head_timeout, self._head_too_slow)

    def _head_done(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def on_response_complete(self) -> None:
        self._cycle_transport.flush()
        if self._lingering or self.transport.is_closing():
            return
        if self.pipeline and self.flow.write_paused:
            # the client is not reading: the next answer is not made until it does, so a
            # client costs at most one unsent answer
            self._next_when_drained = True
            return
        waiting_for_head = not self.pipeline  # else the next request's head is in
        super().on_response_complete()
        if self._refusal_due is not None:
            self._refuse_when_due()
            return
        self.flow.resume_reading()  # if the pipeline is empty now
        if waiting_for_head and self._head_timer is None and not self._ignoring:
            self._await_head()
        self._close_if_done()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._next_when_drained:
            self._next_when_drained = False
            self.on_response_complete()

    def shutdown(self) -> None:
        """On a stop: uvicorn closes an idle connection and lets a request in progress have
        its answer. An idle TLS connection is cut at once: closing TLS waits for the client's
        close_notify, which an idle client does not send, and the stop would wait for it."""
        idle = self._lingering or self.cycle is None or self.cycle.response_complete
        if idle and self.scheme == "https":
            self.transport.abort()
        elif self._lingering:
            self.transport.close()
        else:
            super().shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_done()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        self._held = b""
        self._drop_owed()  # uvicorn tells only the last request parsed
        super().connection_lost(exc)
