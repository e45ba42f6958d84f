"""The access log: one JSON line per answered request (``--access_log PATH``, or ``-`` for
standard output)::

    {"time": "2026-12-01T16:40:00.123Z", "request_id": "5f0c...", "client": "10.0.0.7",
     "method": "POST", "path": "/v1/models/digits:predict", "status": 200,
     "duration_ms": 0.412, "model": "digits", "version": "2", "rows": 8, "bytes": 131}

``model`` and ``version`` are empty when the request named no configured model or none
answered; ``rows`` is null when nothing was predicted; ``bytes`` counts the answer's body.
Every line is written with one ``write`` to a file opened for appending, so the lines of
several worker processes sharing one file never interleave.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from minidl.serving.request import Exchange, Request

MAX_PATH_LOGGED = 1000  # characters of a path a line keeps


class AccessLog:
    """Writes the access log to ``target``: a file path (appended to, created if missing) or
    ``"-"`` for standard output."""

    def __init__(self, target: str) -> None:
        if target == "-":
            self._fd, self._owned = 1, False
        else:
            try:
                self._fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError as error:
                raise ValueError(f"access log {target}: cannot open it for appending: "
                                 f"{error.strerror}") from None
            self._owned = True
        self.target = target

    def record(self, request: Request, exchange: Exchange, status: int, seconds: float,
               body_bytes: int) -> None:
        """Write the line of one answered request."""
        now = time.time()
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
                    + f".{int(now % 1 * 1000):03d}Z",
            "request_id": exchange.request_id,
            "client": request.client,
            "method": request.method,
            "path": request.path[:MAX_PATH_LOGGED],
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "model": exchange.model,
            "version": exchange.version,
            "rows": exchange.rows,
            "bytes": body_bytes,
        }
        # ASCII only: a client's bytes in the path cannot break the line or the terminal
        os.write(self._fd, (json.dumps(line, separators=(",", ":")) + "\n").encode("ascii"))

    def close(self) -> None:
        if self._owned:
            os.close(self._fd)
            self._owned = False
