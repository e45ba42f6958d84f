"""The errors a request can end in that are not about a model (those are in ``models``)."""

from __future__ import annotations

from collections.abc import Iterable


class HTTPError(Exception):
    """An error answer: status code, message and extra headers."""

    def __init__(self, code: int, message: str,
                 headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = list(headers)


class InvalidArgument(ValueError):
    """The request is malformed or does not fit the model: answered with HTTP 400 (TF
    Serving's INVALID_ARGUMENT)."""


class ClientGone(Exception):
    """The client closed the connection before its request was read: nobody to answer."""
