"""The Open Inference Protocol (V2) over REST, with the binary tensor data extension
(docs/serving.md)::

    GET  /v2                                             server metadata
    GET  /v2/health/live                                 200 as soon as the process answers
    GET  /v2/health/ready                                200 once every model has a version
    GET  /v2/models/{name}[/versions/{v}]                model metadata
    GET  /v2/models/{name}[/versions/{v}]/ready          200 when that model (version) is ready
    POST /v2/models/{name}[/versions/{v}]/infer          inference

Paths are matched case-sensitively, as the protocol says all strings are; HEAD answers as
GET. The two server health routes need no API key (they are for orchestrators' probes) and
answer with an empty body: 200 for true, 400 for false, as Triton does. Everything else
passes :meth:`ServingApp.admit` first. A model that is not ready answers its ``ready`` route
400 with the reason in ``{"error": ...}``, as Triton does; an unknown model is 404.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np

from minidl import __version__
from minidl.serving import payload, v2tensors
from minidl.serving.errors import HTTPError
from minidl.serving.models import ServableNotFound, ServableUnavailable
from minidl.serving.payload import INPUT_NAME, OUTPUT_NAME

if TYPE_CHECKING:
    from minidl.serving.app import ServingApp
    from minidl.serving.request import Exchange, Request

SERVER_NAME = "minidl"
PLATFORM = "minidl"
EXTENSIONS = ("binary_tensor_data",)
_MODEL_ROUTE = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?(?:/(ready|infer))?")
_HEALTH_ROUTES = ("/v2/health/live", "/v2/health/ready")
_MAX_VERSION = 2 ** 63 - 1  # versions are int64
_SHOWN = 200  # characters of a path an answer shows at most
_NAMES_SHOWN = 10  # model names an unknown model's message lists at most


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def _allow(request: Request, method: str) -> None:
    """Nothing when ``request`` uses ``method`` (or HEAD for GET), else a 405."""
    allowed = ("GET", "HEAD") if method == "GET" else (method,)
    if request.method not in allowed:
        raise HTTPError(405, f"Method {request.method[:20]} is not allowed for "
                             f"{_shown(request.path)}; use {method}",
                        [(b"allow", ", ".join(allowed).encode("ascii"))])


class Routes:
    """The answers of the V2 routes, for the models and limits of ``app``."""

    def __init__(self, app: ServingApp) -> None:
        self.app = app
        self.manager = app.manager

    async def answer(self, request: Request, exchange: Exchange) -> tuple[int, Any]:
        """The status code and answer for ``request``, or an error raised; ``exchange`` gets
        the model's name, version and rows."""
        path = request.path
        if path in _HEALTH_ROUTES:
            _allow(request, "GET")
            live_or_ready = path == "/v2/health/live" or self.ready()
            return (200 if live_or_ready else 400), None
        match = _MODEL_ROUTE.fullmatch(path)
        if match is not None and match.group(1) in self.manager.model_names:
            exchange.model = match.group(1)
        self.app.admit(request)
        if path == "/v2":
            _allow(request, "GET")
            return 200, {"name": SERVER_NAME, "version": __version__,
                         "extensions": list(EXTENSIONS)}
        if match is None:
            raise HTTPError(404, f"Not found: {request.method[:20]} {_shown(path)} (the V2 "
                                 "routes: /v2, /v2/health/live, /v2/health/ready, "
                                 "/v2/models/NAME[/versions/V][/ready | /infer])")
        name, version_text, action = match.groups()
        version = self._version(version_text)
        if action == "infer":
            _allow(request, "POST")
            return await self._infer(request, name, version, exchange)
        _allow(request, "GET")
        if action == "ready":
            return self._model_ready(name, version, exchange)
        return self._metadata(name, version, exchange)

    def ready(self) -> bool:
        """Whether every configured model has a version to serve."""
        return all(count > 0 for count in self.manager.versions_loaded().values())

    @staticmethod
    def _version(text: str | None) -> int | None:
        if text is None:
            return None
        if not (text.isascii() and text.isdigit()) or int(text) > _MAX_VERSION:
            raise payload.InvalidArgument(f"Model version must be an integer from 0 to "
                                          f"{_MAX_VERSION} (its folder's name), got "
                                          f"{_shown(text)!r}")
        return int(text)

    def _resolve(self, name: str, version: int | None) -> tuple[int, Any]:
        """``(version, model)``, or ServableNotFound / ServableUnavailable saying what there
        is instead."""
        if name not in self.manager.model_names:
            names = ", ".join(repr(n) for n in sorted(self.manager.model_names)[:_NAMES_SHOWN])
            raise ServableNotFound(f"Unknown model {_shown(name)!r}; the models served: "
                                   f"{names}")
        try:
            return self.manager.resolve(name, version)
        except ServableNotFound:
            available = ", ".join(map(str, self.manager.available_versions(name))) or "none yet"
            raise ServableNotFound(f"Model {name!r} has no version {version} available "
                                   f"(available: {available})") from None

    def _model_ready(self, name: str, version: int | None,
                     exchange: Exchange) -> tuple[int, None]:
        try:
            served_version, _ = self._resolve(name, version)
        except ServableNotFound as error:
            if name not in self.manager.model_names:
                raise
            raise HTTPError(400, f"Not ready: {error}") from None
        except ServableUnavailable as error:
            raise HTTPError(400, f"Not ready: {error}") from None
        exchange.version = str(served_version)
        return 200, None

    def _metadata(self, name: str, version: int | None,
                  exchange: Exchange) -> tuple[int, dict[str, Any]]:
        served_version, model = self._resolve(name, version)
        exchange.version = str(served_version)
        datatype = v2tensors.datatype_name(model.dtype)
        return 200, {
            "name": name, "platform": PLATFORM,
            "versions": [str(v) for v in self.manager.available_versions(name)],
            "inputs": [{"name": INPUT_NAME, "datatype": datatype,
                        "shape": [-1, *model.input_shape]}],
            "outputs": [{"name": OUTPUT_NAME, "datatype": datatype,
                         "shape": [-1, *model.output_shape]}]}

    async def _infer(self, request: Request, name: str, version: int | None,
                     exchange: Exchange) -> tuple[int, Any]:
        # the model and the body's encoding before the body: a 404, 503 or 415 is answered
        # without waiting for it
        served_version, model = self._resolve(name, version)
        exchange.version = str(served_version)
        encoding = request.headers.get(b"content-encoding", b"").strip().lower()
        if encoding not in (b"", b"identity"):
            raise HTTPError(415, f"Content-Encoding {_shown(encoding.decode('latin-1'))} is "
                                 "not supported: send the body uncompressed")
        body = await request.body()
        parsed = v2tensors.infer_request(body,
                                         request.headers.get(b"inference-header-content-length"),
                                         model.input_shape, model.dtype)
        exchange.rows = len(parsed.x)
        outputs = await self.app.predict(name, model, parsed.x)
        answer, binary = v2tensors.infer_response(name, served_version, parsed,
                                                  np.asarray(outputs, dtype=model.dtype))
        if binary is None:
            return 200, answer
        header = payload.encode(answer)
        exchange.content_type = b"application/octet-stream"
        exchange.headers.append((b"inference-header-content-length",
                                 str(len(header)).encode("ascii")))
        return 200, header + binary
