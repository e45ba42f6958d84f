"""What uvicorn sees of a connection guarded by :class:`minidl.serving.protocol.GuardedProtocol`:
its flow control, which holds input back from the parser as well as from the socket, and the
transport its request cycles write to, whose close is the protocol's lingering close."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from minidl.extras import missing

try:
    from uvicorn.protocols.http import flow_control
except ModuleNotFoundError as error:
    raise missing(error, "serving") from error

if TYPE_CHECKING:
    from minidl.serving.protocol import GuardedProtocol


class InputFlow(flow_control.FlowControl):
    """uvicorn's flow control (reading pauses while a pipelined request waits for its turn or
    a body piles up), applied to the parser as well as to the socket: while reading is
    paused, the rest of a read is held back from the parser."""

    def __init__(self, transport: asyncio.Transport, protocol: GuardedProtocol) -> None:
        super().__init__(transport)
        self._protocol = protocol
        self._socket_reading = True

    def pause_reading(self) -> None:
        self.read_paused = True
        self.apply()

    def resume_reading(self) -> None:
        # uvicorn resumes at every answer, but while requests are still waiting their turn
        # more input would only queue more of them
        if self.read_paused and not self._protocol.pipeline:
            self.read_paused = False
            self._protocol._input_wanted()

    def apply(self) -> None:
        """Read the socket while input is wanted and none is held back."""
        reading = not self.read_paused and not self._protocol._held
        if reading != self._socket_reading and not self._protocol._peer_done:
            self._socket_reading = reading
            if reading:
                self._transport.resume_reading()
            else:
                self._transport.pause_reading()


class CycleTransport:
    """The transport as uvicorn's request cycles see it: what they write in one turn of the
    event loop goes out in one write (an answer's head and body in one TCP segment, not two),
    and closing is a lingering close."""

    def __init__(self, protocol: GuardedProtocol, transport: asyncio.Transport) -> None:
        self._protocol = protocol
        self._transport = transport
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if self._protocol._lingering:
            return
        if not self._pending:
            self._protocol.loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        """Write what is held; the protocol calls it as soon as an answer is complete."""
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._protocol._lingering:
                self._transport.write(data)

    def is_closing(self) -> bool:
        return self._protocol._lingering or self._transport.is_closing()

    def close(self) -> None:
        self._protocol._linger()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
