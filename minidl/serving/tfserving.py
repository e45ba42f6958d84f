"""TensorFlow Serving's REST API: model status, metadata and predict (docs/serving.md).

::

    GET  /v1/models/{name}[/versions/{v} | /labels/{label}]            status
    GET  /v1/models/{name}[/versions/{v} | /labels/{label}]/metadata   metadata
    POST /v1/models/{name}[/versions/{v} | /labels/{label}]:predict    predict

URLs are read as TF Serving reads them (``http_rest_api_util.cc``): its two regular
expressions, matched case-insensitively against the path and query as sent, one for POST and
one for GET; any other method, or a URL neither matches, is 400 ``Malformed request: <METHOD>
<path>``. The verb (``predict``) and ``metadata`` are then compared case-sensitively, as TF
Serving compares them: ``:PREDICT`` is malformed, ``/METADATA`` is the status. Model names and
labels are percent-decoded. Paths outside ``/v1/`` are not TF Serving's: 404.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from minidl.serving import payload, signature
from minidl.serving.errors import HTTPError
from minidl.serving.models import ServableNotFound

if TYPE_CHECKING:
    from minidl.serving.app import ServingApp
    from minidl.serving.request import Exchange, Request

_FLAGS = re.IGNORECASE | re.ASCII
_V1 = re.compile(r"/v1/.*", _FLAGS)  # the paths TF Serving's REST handler is given
_VERSION_OR_LABEL = r"(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?"
_PREDICT_ROUTE = re.compile(
    r"/v1/models/([^/:]+)" + _VERSION_OR_LABEL + r":(classify|regress|predict)", _FLAGS)
_STATUS_ROUTE = re.compile(
    r"/v1/models(?:/([^/:]+))?" + _VERSION_OR_LABEL + r"(?:/(metadata))?", _FLAGS)
_MAX_VERSION = 2 ** 63 - 1  # versions are int64
_SHOWN = 200  # characters of a URL an answer shows at most


def _decoded(text: str, raw: bool) -> str:
    """A model name or label: percent-decoded (curl_easy_unescape: no ``+`` to space)."""
    if not raw:
        return text  # the engine decoded the whole path already
    return unquote_to_bytes(text).decode("utf-8", "surrogateescape")


class Routes:
    """The answers of TF Serving's routes, for the models and limits of ``app``."""

    def __init__(self, app: ServingApp) -> None:
        self.app = app
        self.manager = app.manager

    @staticmethod
    def _target(request: Request) -> tuple[str, bool]:
        """The URL as TF Serving matches it: path and query as sent, and whether it is that
        (else the engine's decoded path, the query left out)."""
        raw_path = getattr(request, "raw_path", None)
        if raw_path is None:
            return request.path, False
        target = raw_path.decode("latin-1")
        query = getattr(request, "query_string", b"")
        return (target + "?" + query.decode("latin-1") if query else target), True

    async def answer(self, request: Request, exchange: Exchange) -> tuple[int, Any]:
        """The status code and answer for ``request``, or an error raised; ``exchange`` gets
        the model's name, version and rows."""
        method = request.method
        target, raw = self._target(request)
        shown = target if len(target) <= _SHOWN else target[:_SHOWN] + "..."  # stay small
        malformed = payload.InvalidArgument(f"Malformed request: {method[:20]} {shown}")
        if not _V1.fullmatch(target):
            raise HTTPError(404, f"Malformed request: {method[:20]} {shown}")
        route = (_PREDICT_ROUTE if method == "POST" else
                 _STATUS_ROUTE if method == "GET" else None)
        match = route.fullmatch(target) if route is not None else None
        if match is None:
            raise malformed
        name_text, version_text, label_text, last = match.groups()
        name = _decoded(name_text, raw) if name_text else ""
        version = None
        if version_text:
            version = int(version_text)
            if version > _MAX_VERSION:
                raise payload.InvalidArgument(f"Failed to convert version: {version_text[:40]}"
                                              " to numeric.")
        label = _decoded(label_text, raw) if label_text else None
        if method == "POST" and last not in ("predict", "classify", "regress"):
            raise malformed  # the regex ignores case, TF Serving's comparison does not
        if method == "GET" and not name:
            raise payload.InvalidArgument("Missing model name in request.")
        if name in self.manager.model_names:
            exchange.model = name
        self.app.admit(request)
        if method == "POST":
            if last == "predict":
                return await self._predict(request, name, version, label, exchange)
            served_version, _ = self._resolve(name, version, label)
            exchange.version = str(served_version)
            raise payload.InvalidArgument(
                f"{last} is not supported for this model type: minidl models answer :predict "
                "only (a classifier's scores are the predictions)")
        if last == "metadata":
            return self._metadata(name, version, label, exchange)
        # the status ignores labels, as TF Serving's GetModelStatus does
        return 200, {"model_version_status": self.manager.status(name, version)}

    def _resolve(self, name: str, version: int | None, label: str | None) -> tuple[int, Any]:
        """``(version, model)`` for a URL's version or label, as TF Serving's ServerCore
        finds it: an unknown label is 400, whether the model exists or not."""
        if label is not None:
            unrecognized = payload.InvalidArgument(
                f"Unrecognized servable version label: {label}")
            if name not in self.manager.model_names:
                raise unrecognized
            try:
                version = self.manager.label_version(name, label)
            except ServableNotFound:
                raise unrecognized from None
        return self.manager.resolve(name, version)

    def _metadata(self, name: str, version: int | None, label: str | None,
                  exchange: Exchange) -> tuple[int, dict[str, Any]]:
        served_version, model = self._resolve(name, version, label)
        exchange.version = str(served_version)
        return 200, {
            "model_spec": {"name": name, "signature_name": "", "version": str(served_version)},
            "metadata": {"signature_def": signature.signature_def(
                model.input_shape, model.output_shape, model.dtype)}}

    async def _predict(self, request: Request, name: str, version: int | None,
                       label: str | None, exchange: Exchange) -> tuple[int, Any]:
        # TF Serving's order: the JSON and its signature_name's type, then the model (its
        # label, version), then the signature, instances/inputs and their values
        body = await request.body()
        document = payload.parse_json(body)
        served_version, model = self._resolve(name, version, label)
        exchange.version = str(served_version)
        parsed = payload.predict_request(document, model.input_shape, model.dtype)
        exchange.rows = len(parsed.x)
        outputs = await self.app.predict(name, model, parsed.x)
        return 200, payload.predict_response(outputs, parsed.columnar)
