"""The WSGI application: TF Serving's REST routes, authentication, limits, JSON answers.

Every answer is JSON (``Content-Type: application/json``); every error is
``{"error": "message"}`` with TF Serving's status code for its kind. Bad input is answered
with a 4xx and changes nothing: the models are only ever changed by the version manager.

No thread is started when the app is created: the first request starts the version manager
(which loads the models before answering). Threads do not survive a ``fork``, so this is what
lets ``gunicorn -w N 'minidl.serving:create_app(...)'`` work: each worker starts its own after
it was forked.

With batching, a predict's answer is computed when the server first iterates the iterable the
app returned (PEP 3333 lets ``start_response`` be called then): calling the app queues the
rows, iterating waits for them. A server that calls the app for every request it has received
before iterating the first answer gets them all into one batch, with no thread per request.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from minidl.serving import http11, payload
from minidl.serving.batching import Batcher, BatcherClosed, BatchQueueFull, BatchTask
from minidl.serving.config import (
    DEFAULT_MODEL_NAME,
    ModelConfig,
    load_model_config_file,
    read_api_keys,
)
from minidl.serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from minidl.serving.metrics import ServingMetrics
from minidl.serving.models import ModelManager, ServableNotFound, ServableUnavailable

logger = logging.getLogger("minidl.serving")

_MODEL_ROUTE = re.compile(
    r"/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[0-9]+)|/labels/(?P<label>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>predict|classify|regress))?",
    re.IGNORECASE)
_METRICS_ROUTE = "/monitoring/prometheus/metrics"
_JSON = "application/json"
_CORS_HEADERS = [("Access-Control-Allow-Origin", "*")]
_PREFLIGHT_HEADERS = [("Access-Control-Allow-Methods", "GET, HEAD, POST, OPTIONS"),
                      ("Access-Control-Allow-Headers", "Content-Type, Authorization, X-API-Key"),
                      ("Access-Control-Max-Age", "600")]
_MAX_VERSION_DIGITS = 18  # TF Serving's versions are int64
# json.dumps(answer, allow_nan=False) without building an encoder per answer
_ENCODER = json.JSONEncoder(allow_nan=False)


class HTTPError(Exception):
    """An error answer: status code, message and extra headers."""

    def __init__(self, code: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = list(headers)


def _read(stream: Any, size: int) -> bytes:
    try:
        return stream.read(size)
    except Exception as error:  # the client vanished or broke the framing: its fault, not ours
        raise HTTPError(400, f"Could not read the request body: {error}",
                        [("Connection", "close")]) from None


def read_body(environ: dict[str, Any], max_body_bytes: int) -> bytes:
    """The request body, refused with 413 before reading when it is declared too large, and
    while reading when it has no declared length (chunked)."""
    stream = environ["wsgi.input"]
    length_text = environ.get("CONTENT_LENGTH", "").strip()
    too_large = HTTPError(413, f"Request body is larger than the limit of {max_body_bytes} "
                               "bytes (--max_body_bytes)", [("Connection", "close")])
    if length_text:
        if not (length_text.isascii() and length_text.isdigit()):
            raise HTTPError(400, f"Invalid Content-Length: {length_text[:40]!r}")
        # int() refuses more than 4300 digits; any 19-digit length is over the limit anyway
        length = int(length_text) if len(length_text) <= 18 else max_body_bytes + 1
        if length > max_body_bytes:
            raise too_large
        body = _read(stream, length) if length else b""
        if len(body) != length:
            raise HTTPError(400, f"Request body ended after {len(body)} of {length} bytes")
        return body
    if not environ.get("wsgi.input_terminated"):
        return b""  # no length and a server that cannot tell where the body ends: none
    chunks, total = [], 0
    while True:
        chunk = _read(stream, min(1 << 16, max_body_bytes + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > max_body_bytes:
            raise too_large


class ServingApp:
    """A WSGI application serving the models of a :class:`ModelManager`.

    ``api_keys``: accepted keys (None: no authentication). ``max_enqueued_requests`` bounds the
    predict requests in progress in this process; one more is answered 429 at once.
    """

    def __init__(self, manager: ModelManager, *, batcher: Batcher | None = None,
                 api_keys: Iterable[str] | None = None, max_body_bytes: int = 10 * 1024 * 1024,
                 enable_cors: bool = False, max_enqueued_requests: int = 128) -> None:
        if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) \
                or max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be a positive integer, got {max_body_bytes!r}")
        if isinstance(max_enqueued_requests, bool) or not isinstance(max_enqueued_requests, int) \
                or max_enqueued_requests < 1:
            raise ValueError("max_enqueued_requests must be a positive integer, "
                             f"got {max_enqueued_requests!r}")
        self.manager = manager
        self.batcher = batcher
        self.metrics = ServingMetrics(manager.versions_loaded)
        if batcher is not None:
            batcher.on_batch = self._observe_batch
        # keys are compared as SHA-256 digests: equal lengths, so compare_digest leaks nothing
        self._key_digests = (None if api_keys is None else
                             [hashlib.sha256(k.encode("utf-8")).digest() for k in api_keys])
        if self._key_digests == []:
            raise ValueError("api_keys is empty: give at least one key, or None for no keys")
        self.max_body_bytes = max_body_bytes
        self.enable_cors = enable_cors
        self.max_enqueued_requests = max_enqueued_requests
        self.predicts_in_progress = 0
        # predicts reading or parsing their body: the batcher waits for them (Batcher.arriving)
        self.predicts_arriving = 0
        self._count_lock = threading.Lock()
        if batcher is not None:
            batcher.arriving = lambda: self.predicts_arriving

    def close(self) -> None:
        """Fail the predicts still queued for a batch and stop the version manager."""
        if self.batcher is not None:
            self.batcher.close()
        self.manager.close()

    def start(self) -> None:
        """Load the models and start the version manager's thread (done by the first request)."""
        self.manager.start()

    # ------------------------------------------------------------------ WSGI entry

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        self.start()
        method = environ.get("REQUEST_METHOD", "GET").upper()
        # PEP 3333 hands the path over as latin-1; URLs carry UTF-8
        raw_path = environ.get("PATH_INFO", "") or "/"
        path = raw_path.encode("latin-1", "replace").decode("utf-8", "replace")
        headers = list(_CORS_HEADERS) if self.enable_cors else []
        if path.lower() == _METRICS_ROUTE:
            return self._metrics(environ, method, start_response, headers)
        labels = ["", ""]  # model, version for the requests counter
        answer: Any
        try:
            code, answer = self._route(environ, method, path, headers, labels)
        except _ANSWERED_ERRORS as error:
            code, answer = self._error_answer(error, headers)
        if not isinstance(answer, _QueuedPredict):
            return self._complete(start_response, method, path, code, answer, headers, labels,
                                  started)
        queued = answer

        def finish() -> list[bytes]:
            try:
                code, answer = 200, queued.answer()
            except _ANSWERED_ERRORS as error:
                code, answer = self._error_answer(error, headers)
            return self._complete(start_response, method, path, code, answer, headers, labels,
                                  started)

        return _AnswerWhenIterated(finish, queued.cancel)

    # ------------------------------------------------------------------ pieces

    def _route(self, environ: dict[str, Any], method: str, path: str,
               headers: list[tuple[str, str]], labels: list[str]) -> tuple[int, Any]:
        """The status code and answer of a TF Serving route, or an error raised."""
        match = _MODEL_ROUTE.fullmatch(path)
        if match is None:
            shown = path if len(path) <= 200 else path[:200] + "..."  # answers stay small
            raise HTTPError(404, f"Malformed request: {method[:20]} {shown}")
        name = match["name"]
        if name in self.manager.model_names:
            labels[0] = name
        verb = (match["verb"] or "").lower()
        allowed = "POST" if verb else "GET, HEAD"
        if method == "OPTIONS" and self.enable_cors:
            headers += _PREFLIGHT_HEADERS
            return 204, None
        self._authenticate(environ)
        if method not in allowed.split(", "):
            raise HTTPError(405, f"Method {method} is not allowed for {path}; use {allowed}",
                            [("Allow", allowed + (", OPTIONS" if self.enable_cors else ""))])
        version = self._requested_version(match)
        if verb:
            return self._predict(environ, name, version, verb, labels)
        if match["metadata"]:
            return self._metadata(name, version, labels)
        return 200, {"model_version_status": self.manager.status(name, version)}

    @staticmethod
    def _error_answer(error: Exception,
                      headers: list[tuple[str, str]]) -> tuple[int, dict[str, str]]:
        """The status code and ``{"error": ...}`` of an error raised while answering."""
        if isinstance(error, HTTPError):
            headers += error.headers
            return error.code, {"error": error.message}
        if isinstance(error, ServableUnavailable):
            headers.append(("Retry-After", "1"))
            return 503, {"error": str(error)}
        code = 400 if isinstance(error, payload.InvalidArgument) else 404  # ServableNotFound
        return code, {"error": str(error)}

    def _complete(self, start_response: Callable[..., Any], method: str, path: str, code: int,
                  answer: Any, headers: list[tuple[str, str]], labels: list[str],
                  started: float) -> list[bytes]:
        """Count the request, time a predict, and answer."""
        self.metrics.requests.inc(labels[0], labels[1], str(code))
        if labels[0] and _is_predict(path):
            self.metrics.latency.observe(time.perf_counter() - started, labels[0])
        if code >= 400:
            logger.debug("minidl.serving: %s %s -> %d %s", method, path, code, answer["error"])
        return self._respond(start_response, code, answer, headers, method)

    def _respond(self, start_response: Callable[..., Any], code: int, answer: Any,
                 headers: list[tuple[str, str]], method: str,
                 content_type: str = _JSON) -> list[bytes]:
        if answer is None:
            body = b""
        elif isinstance(answer, bytes):
            body = answer
        else:
            body = _ENCODER.encode(answer).encode("utf-8")
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body))),
                   *headers]
        start_response(http11.status_line(code), headers)
        return [b""] if method == "HEAD" else [body]

    def _authenticate(self, environ: dict[str, Any]) -> None:
        if self._key_digests is None:
            return
        scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else ""
        given = given or environ.get("HTTP_X_API_KEY", "").strip()
        if given:
            # headers reach WSGI as latin-1 text: back to the bytes the client sent
            digest = hashlib.sha256(given.encode("latin-1", "replace")).digest()
            matched = False
            for key_digest in self._key_digests:  # every key, no early exit: constant time
                matched |= hmac.compare_digest(digest, key_digest)
            if matched:
                return
        raise HTTPError(401, "Missing or invalid API key: send 'Authorization: Bearer KEY' or "
                             "'X-API-Key: KEY'", [("WWW-Authenticate", 'Bearer realm="minidl"')])

    def _requested_version(self, match: re.Match[str]) -> int | None:
        name, version_text, label = match["name"], match["version"], match["label"]
        if label is not None:
            return self.manager.label_version(name, label)
        if version_text is None:
            return None
        if len(version_text) > _MAX_VERSION_DIGITS:
            raise ServableNotFound(f"Servable not found for request: Specific({name}, "
                                   f"{version_text[:40]})")
        return int(version_text)

    def _metrics(self, environ: dict[str, Any], method: str, start_response: Callable[..., Any],
                 headers: list[tuple[str, str]]) -> list[bytes]:
        try:
            if method == "OPTIONS" and self.enable_cors:
                return self._respond(start_response, 204, None, headers + _PREFLIGHT_HEADERS,
                                     method)
            self._authenticate(environ)
            if method not in ("GET", "HEAD"):
                raise HTTPError(405, f"Method {method} is not allowed for {_METRICS_ROUTE}; "
                                     "use GET", [("Allow", "GET, HEAD")])
        except HTTPError as error:
            return self._respond(start_response, error.code, {"error": error.message},
                                 headers + error.headers, method)
        return self._respond(start_response, 200, self.metrics.render().encode("utf-8"),
                             headers, method, METRICS_CONTENT_TYPE)

    def _metadata(self, name: str, version: int | None,
                  labels: list[str]) -> tuple[int, dict[str, Any]]:
        served_version, model = self.manager.resolve(name, version)
        labels[1] = str(served_version)
        return 200, {
            "model_spec": {"name": name, "signature_name": "", "version": str(served_version)},
            "metadata": {"signature_def": payload.signature_def(
                model.input_shape, model.output_shape, model.dtype)}}

    def _predict(self, environ: dict[str, Any], name: str, version: int | None, verb: str,
                 labels: list[str]) -> tuple[int, Any]:
        """200 and the answer; with batching, 200 and a :class:`_QueuedPredict`."""
        served_version, model = self.manager.resolve(name, version)
        labels[1] = str(served_version)
        if verb != "predict":
            raise payload.InvalidArgument(
                f"{verb} is not supported for this model type: minidl models answer :predict "
                "only (a classifier's scores are the predictions)")
        with self._count_lock:
            if self.predicts_in_progress >= self.max_enqueued_requests:
                raise HTTPError(429, f"Too many predict requests in progress (limit "
                                     f"{self.max_enqueued_requests}); retry later",
                                [("Retry-After", "1")])
            self.predicts_in_progress += 1
            self.predicts_arriving += 1
        arriving, in_progress = True, True
        try:
            body = read_body(environ, self.max_body_bytes)
            request = payload.parse_predict_request(body, model.input_shape, model.dtype)
            with self._count_lock:
                self.predicts_arriving -= 1
            arriving = False
            if self.batcher is None:
                with self._model_errors(name):
                    outputs = run_model(model, request.x)
                self._observe_batch(name, len(request.x))
                return 200, payload.predict_response(outputs, request.columnar)
            with self._model_errors(name):
                tasks = self.batcher.submit(model, request.x, key=name)
            in_progress = False  # from here the _QueuedPredict counts it
            return 200, _QueuedPredict(self, self.batcher, name, tasks, request.columnar)
        finally:
            if arriving or in_progress:
                with self._count_lock:
                    self.predicts_in_progress -= in_progress
                    self.predicts_arriving -= arriving

    @contextlib.contextmanager
    def _model_errors(self, name: str) -> Iterator[None]:
        """Errors of the batcher or the model as the HTTP errors they are answered with."""
        try:
            yield
        except BatchQueueFull as error:
            raise HTTPError(429, str(error), [("Retry-After", "1")]) from None
        except BatcherClosed as error:
            raise HTTPError(503, str(error)) from None
        except (ValueError, TypeError) as error:
            # the model refused an input that passed validation: still the caller's input
            raise payload.InvalidArgument(f"the model rejected the input: {error}") from None
        except Exception as error:
            logger.exception("minidl.serving: predict failed for model %r", name)
            raise HTTPError(500, f"predict failed: {type(error).__name__}: {error}") from None

    def _predict_finished(self) -> None:
        with self._count_lock:
            self.predicts_in_progress -= 1

    def _observe_batch(self, name: str, rows: int) -> None:
        self.metrics.batch_size.observe(rows, name)


_ANSWERED_ERRORS = (HTTPError, payload.InvalidArgument, ServableNotFound, ServableUnavailable)


def _is_predict(path: str) -> bool:
    return path.lower().endswith(":predict")


class _QueuedPredict:
    """A batched predict whose rows are queued: :meth:`answer` waits for them (running a
    batch if it is this request's turn), :meth:`cancel` drops them unanswered."""

    def __init__(self, app: ServingApp, batcher: Batcher, name: str, tasks: list[BatchTask],
                 columnar: bool) -> None:
        self._app = app
        self._batcher = batcher
        self._name = name
        self._tasks = tasks
        self._columnar = columnar
        self._finished = False

    def answer(self) -> dict[str, Any]:
        try:
            with self._app._model_errors(self._name):
                outputs = self._batcher.wait(self._tasks)
            return payload.predict_response(outputs, self._columnar)
        finally:
            self._finish()

    def cancel(self) -> None:
        if not self._finished:
            self._batcher.cancel(self._tasks)
            self._finish()

    def _finish(self) -> None:
        if not self._finished:
            self._finished = True
            self._app._predict_finished()


class _AnswerWhenIterated:
    """A WSGI answer computed on first iteration; ``close`` before that calls ``abandon``."""

    def __init__(self, compute: Callable[[], list[bytes]], abandon: Callable[[], None]) -> None:
        self._compute = compute
        self._abandon = abandon
        self._body: list[bytes] | None = None

    def __iter__(self) -> Iterator[bytes]:
        if self._body is None:
            self._body = self._compute()
        return iter(self._body)

    def close(self) -> None:
        if self._body is None:
            self._abandon()


def run_model(model: Any, x: np.ndarray) -> np.ndarray:
    """One ``model.predict`` call; overflow to inf is reported afterwards, not as a warning."""
    with np.errstate(all="ignore"):
        return np.asarray(model.predict(x))


def create_app(model_name: str | None = None, model_base_path: str | None = None, *,
               model_config_file: str | None = None, enable_batching: bool = False,
               max_batch_size: int = 64, batch_timeout_micros: int = 1000,
               num_batch_threads: int = 1, max_enqueued_batches: int = 100,
               api_key_file: str | None = None, file_system_poll_wait_seconds: float = 1.0,
               max_body_bytes: int = 10 * 1024 * 1024, enable_cors: bool = False,
               max_enqueued_requests: int = 128) -> ServingApp:
    """A WSGI app serving one model (``model_base_path``, named ``model_name`` or "default")
    or the models of ``model_config_file``. Arguments are ``tensorflow_model_server``'s flags.

    Nothing starts until the first request (see the module docstring), so the result can be
    handed to any WSGI server, gunicorn's forked workers included::

        gunicorn -w 2 'minidl.serving:create_app(model_name="m", model_base_path="/models/m")'
    """
    if model_config_file is not None:
        if model_base_path is not None or model_name is not None:
            raise ValueError("give either model_config_file or model_name/model_base_path, "
                             "not both")
        configs = load_model_config_file(model_config_file)
    elif model_base_path is not None:
        configs = [ModelConfig(model_name or DEFAULT_MODEL_NAME, model_base_path)]
    else:
        raise ValueError("nothing to serve: give model_base_path (and model_name) "
                         "or model_config_file")
    manager = ModelManager(configs, file_system_poll_wait_seconds=file_system_poll_wait_seconds)
    batcher = (Batcher(run_model, max_batch_size=max_batch_size,
                       batch_timeout_micros=batch_timeout_micros,
                       num_batch_threads=num_batch_threads,
                       max_enqueued_batches=max_enqueued_batches)
               if enable_batching else None)
    api_keys = read_api_keys(api_key_file) if api_key_file is not None else None
    return ServingApp(manager, batcher=batcher, api_keys=api_keys, max_body_bytes=max_body_bytes,
                      enable_cors=enable_cors, max_enqueued_requests=max_enqueued_requests)
