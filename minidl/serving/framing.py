"""What a guarded connection refuses before the app sees a request, as whole answers.

A refusal is a JSON error answer that closes the connection (``closing_answer``), sent by
:class:`minidl.serving.protocol.GuardedProtocol`; ``framing_refusal`` is the check of a
request's Transfer-Encoding that llhttp leaves to its user.
"""

from __future__ import annotations

import json


def closing_answer(status: bytes, message: str) -> bytes:
    """A whole JSON error answer that closes the connection, as bytes."""
    body = json.dumps({"error": message}).encode("utf-8")
    return (b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, len(body), body))


def framing_refusal(transfer_codings: list[bytes], http_version: str) -> bytes | None:
    """The answer refusing what llhttp lets through to the end of a head, or None:
    Transfer-Encoding in HTTP/1.0, whose framing RFC 9112 (section 6.1) says cannot be
    trusted; a coding list that does not end in chunked (the body's length is unknown);
    codings besides chunked (not implemented here). ``transfer_codings``: the head's
    Transfer-Encoding values split at commas, stripped and lowered."""
    if not transfer_codings:
        return None
    codings = [coding for coding in transfer_codings if coding]
    if http_version == "1.0":
        problem = "Transfer-Encoding in an HTTP/1.0 request (RFC 9112 section 6.1)"
    elif not codings or codings[-1] != b"chunked":
        problem = "Transfer-Encoding does not end in chunked (RFC 9112 section 6.3)"
    else:
        others = sorted({coding.decode("latin-1") for coding in codings} - {"chunked"})
        if not others:
            return None
        return closing_answer(b"501 Not Implemented", f"Transfer-Encoding {', '.join(others)} "
                                                      "is not supported; send the body as is "
                                                      "or chunked")
    return closing_answer(b"400 Bad Request", f"Malformed request: {problem}")
