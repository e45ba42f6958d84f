"""The Open Inference Protocol (V2) over REST (docs/serving.md).

::

    GET  /v2/health/live      200 as soon as the process answers
    GET  /v2/health/ready     200 once every configured model has a version available
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from minidl.serving.errors import HTTPError

if TYPE_CHECKING:
    from minidl.serving.app import ServingApp
    from minidl.serving.request import Exchange, Request


class Routes:
    """The answers of the V2 routes, for the models and limits of ``app``."""

    def __init__(self, app: ServingApp) -> None:
        self.app = app
        self.manager = app.manager

    async def answer(self, request: Request, exchange: Exchange) -> tuple[int, Any]:
        """The status code and answer for ``request``, or an error raised; ``exchange`` gets
        the model's name, version and rows."""
        path = request.path.lower()
        if path == "/v2/health/live":
            return 200, None
        if path == "/v2/health/ready":
            return (200 if self.ready() else 400), None
        self.app.admit(request)
        raise HTTPError(404, f"Not found: {request.method[:20]} {request.path[:200]}")

    def ready(self) -> bool:
        """Whether every configured model has a version to serve."""
        return all(count > 0 for count in self.manager.versions_loaded().values())
