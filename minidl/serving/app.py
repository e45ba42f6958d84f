"""The ASGI application: authentication, CORS, limits, metrics and JSON answers around the
routes of :mod:`minidl.serving.tfserving`.

Every answer is JSON (``Content-Type: application/json``) but the metrics page; every error
is ``{"error": "message"}`` with TF Serving's status code for its kind. Bad input is answered
with a 4xx and changes nothing: the models are only ever changed by the version manager.

The app starts its version manager (which loads the models) on the ASGI lifespan's startup,
or at the first request under an engine without lifespan events, and stops it on shutdown.
Each of the engine's worker processes builds its own app, so each loads and polls the models
itself.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import hashlib
import hmac
import logging
import os
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from minidl.serving import payload, tfserving, v2
from minidl.serving.accesslog import AccessLog
from minidl.serving.batching import Batcher, BatcherClosed, BatchQueueFull
from minidl.serving.config import (
    DEFAULT_MODEL_NAME,
    ModelConfig,
    load_model_config_file,
    read_api_keys,
)
from minidl.serving.errors import ClientGone, HTTPError
from minidl.serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from minidl.serving.metrics import ServingMetrics
from minidl.serving.models import ModelManager, ServableNotFound, ServableUnavailable
from minidl.serving.ratelimit import RateLimiter, retry_after
from minidl.serving.request import JSON, REQUEST_ID_HEADER, Exchange, Request, request_id

logger = logging.getLogger("minidl.serving")

METRICS_ROUTE = "/monitoring/prometheus/metrics"
INLINE_SECONDS = 0.0005  # a predict expected to be shorter runs on the event loop
TIMINGS_KEPT = 8  # the expectation: the least seconds per row of a model's last 8 predicts
_CORS_HEADERS = [(b"access-control-allow-origin", b"*"),
                 (b"access-control-expose-headers", b"X-Request-ID")]
_PREFLIGHT_HEADERS = [(b"access-control-allow-methods", b"GET, HEAD, POST, OPTIONS"),
                      (b"access-control-allow-headers",
                       b"Content-Type, Authorization, X-API-Key, X-Request-ID, "
                       b"Inference-Header-Content-Length"),
                      (b"access-control-max-age", b"600")]


class ServingApp:
    """An ASGI application serving the models of a :class:`ModelManager`.

    ``api_keys``: accepted keys (None: no authentication). ``max_enqueued_requests`` bounds the
    predict requests in progress in this process; one more is answered 429 at once.
    ``predict_threads``: threads that run unbatched predicts off the event loop.
    ``rate_limiter``: limits each key's (or without keys, each client address's) requests.
    ``access_log``: where one JSON line per request goes (None: nowhere).
    """

    def __init__(self, manager: ModelManager, *, batcher: Batcher | None = None,
                 api_keys: Iterable[str] | None = None, max_body_bytes: int = 10 * 1024 * 1024,
                 enable_cors: bool = False, max_enqueued_requests: int = 128,
                 predict_threads: int | None = None, rate_limiter: RateLimiter | None = None,
                 access_log: AccessLog | None = None) -> None:
        for name, value in (("max_body_bytes", max_body_bytes),
                            ("max_enqueued_requests", max_enqueued_requests),
                            ("predict_threads", 1 if predict_threads is None else predict_threads)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
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
        # batching: POST requests whose body is not read yet; the batcher waits for their rows
        self.arriving = 0
        if batcher is not None:
            batcher.arriving = lambda: self.arriving
        self._predict_threads = concurrent.futures.ThreadPoolExecutor(
            predict_threads or 4 * (os.cpu_count() or 1), thread_name_prefix="minidl-predict")
        self.rate_limiter = rate_limiter
        self.access_log = access_log
        self._routes = tfserving.Routes(self)
        self._v2_routes = v2.Routes(self)
        # unbatched predicts: seconds per row of each model's last predicts, forgotten with
        # the model
        self._seconds_per_row: weakref.WeakKeyDictionary[Any, collections.deque[float]] = (
            weakref.WeakKeyDictionary())
        self._started = False
        # called once the models are loaded (the engine prints its ready line there)
        self.on_started: Callable[[], None] | None = None

    def start(self) -> None:
        """Load the models and start the version manager's thread (idempotent)."""
        if not self._started:
            self.manager.start()
            self._started = True
            if self.on_started is not None:
                self.on_started()

    def close(self) -> None:
        """Fail the predicts still queued for a batch and stop the version manager."""
        if self.batcher is not None:
            self.batcher.close()
        self.manager.close()
        self._predict_threads.shutdown(wait=False)
        if self.access_log is not None:
            self.access_log.close()

    # ------------------------------------------------------------------ ASGI entry

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await asyncio.get_running_loop().run_in_executor(None, self.start)
                except Exception as error:
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        started = time.perf_counter()
        if not self._started:  # an engine without lifespan events
            self.start()
        on_body_done = None
        if self.batcher is not None and scope["method"] == "POST":
            self.arriving += 1  # a predict, maybe: its rows may be on their way to a batch
            on_body_done = self._arrived
        request = Request(scope, receive, self.max_body_bytes, on_body_done)
        exchange = Exchange(request_id(request.headers))
        path = request.path.lower()  # routes match case-insensitively
        headers = list(_CORS_HEADERS) if self.enable_cors else []
        try:
            if request.method == "OPTIONS" and self.enable_cors:
                code, answer = 204, None
                headers += _PREFLIGHT_HEADERS
            elif path == METRICS_ROUTE:
                self.admit(request)
                if request.method not in ("GET", "HEAD"):
                    raise HTTPError(405, f"Method {request.method} is not allowed for "
                                         f"{METRICS_ROUTE}; use GET", [(b"allow", b"GET, HEAD")])
                code, answer = 200, self.metrics.render().encode("utf-8")
                exchange.content_type = METRICS_CONTENT_TYPE.encode("ascii")
            elif path == "/v2" or path.startswith("/v2/"):
                code, answer = await self._v2_routes.answer(request, exchange)
            else:
                code, answer = await self._routes.answer(request, exchange)
        except ClientGone:
            return
        except (HTTPError, payload.InvalidArgument, ServableNotFound,
                ServableUnavailable) as error:
            exchange.content_type, exchange.headers = JSON, []
            code, answer = self._error_answer(error, headers)
        finally:
            request.body_done()  # when no route read it
        seconds = time.perf_counter() - started
        self.metrics.requests.inc(exchange.model, exchange.version, str(code))
        if exchange.model and request.method == "POST":
            self.metrics.latency.observe(seconds, exchange.model)
        if code >= 400 and isinstance(answer, dict):
            logger.debug("minidl.serving: %s %s -> %d %s", request.method, request.path, code,
                         answer.get("error"))
        body = (b"" if answer is None else answer if isinstance(answer, bytes)
                else payload.encode(answer))
        headers += exchange.headers
        headers += [(b"content-type", exchange.content_type),
                    (b"content-length", str(len(body)).encode("ascii")),
                    (REQUEST_ID_HEADER, exchange.request_id.encode("ascii"))]
        await send({"type": "http.response.start", "status": code, "headers": headers})
        await send({"type": "http.response.body",
                    "body": b"" if request.method == "HEAD" else body})
        if self.access_log is not None:
            self.access_log.record(request, exchange, code, seconds, len(body))

    @staticmethod
    def _error_answer(error: Exception,
                      headers: list[tuple[bytes, bytes]]) -> tuple[int, dict[str, str]]:
        """The status code and ``{"error": ...}`` of an error raised while answering."""
        if isinstance(error, HTTPError):
            headers += error.headers
            return error.code, {"error": error.message}
        if isinstance(error, ServableUnavailable):
            headers.append((b"retry-after", b"1"))
            return 503, {"error": str(error)}
        code = 400 if isinstance(error, payload.InvalidArgument) else 404  # ServableNotFound
        return code, {"error": str(error)}

    # ------------------------------------------------------------------ used by the routes

    def admit(self, request: Request) -> None:
        """Let ``request`` through, or raise: 401 without a valid key (when keys are on), 429
        when its key (or without keys, its client address) is over the rate limit."""
        key: Any = self._authenticated_key(request)
        if self.rate_limiter is None:
            return
        wait = self.rate_limiter.take(request.client if key is None else key)
        if wait > 0:
            self.metrics.rate_limited.inc()
            raise HTTPError(429, f"Rate limit exceeded ({self.rate_limiter.rate:g} requests per "
                                 f"second, bursts of {self.rate_limiter.burst:g}; "
                                 "--rate_limit); retry after the time in Retry-After",
                            [(b"retry-after", retry_after(wait))])

    def _authenticated_key(self, request: Request) -> int | None:
        """The index of the request's key among the accepted ones (None when keys are off),
        or a 401."""
        if self._key_digests is None:
            return None
        scheme, _, token = request.headers.get(b"authorization", b"").partition(b" ")
        given = token.strip() if scheme.lower() == b"bearer" else b""
        given = given or request.headers.get(b"x-api-key", b"").strip()
        if given:
            digest = hashlib.sha256(given).digest()
            matched = None
            for index, key_digest in enumerate(self._key_digests):  # no early exit
                if hmac.compare_digest(digest, key_digest):
                    matched = index
            if matched is not None:
                return matched
        raise HTTPError(401, "Missing or invalid API key: send 'Authorization: Bearer KEY' or "
                             "'X-API-Key: KEY'", [(b"www-authenticate", b'Bearer realm="minidl"')])

    async def predict(self, name: str, model: Any, x: np.ndarray) -> np.ndarray:
        """The model's outputs for ``x`` (batched when batching is on); at most
        ``max_enqueued_requests`` at once, one more is a 429. A failure is raised as the
        error to answer: 429 or 503 from the batcher, 400 when the model rejects the input,
        500 (logged) for any other exception.

        Without batching, a predict expected to take under ``INLINE_SECONDS`` runs on the
        event loop, and any other in a thread of the pool. Handing a call to a thread and back
        costs ~0.1 ms, a third of a small model's request (benchmarks/SERVING.md), while a
        predict that short holds the loop no longer than parsing its JSON does. The
        expectation is the model's time per row, the least of its last ``TIMINGS_KEPT``
        predicts (a model not yet measured runs in the pool), times the rows. The least, not
        an average: a call is only ever slowed down (waiting for the GIL in a pool thread, the
        host pausing the machine), and one slow call must not send a cheap model to the
        pool, where every call waits for the GIL again.
        """
        try:
            return await self._predict(name, model, x)
        except BatchQueueFull as error:
            raise HTTPError(429, str(error), [(b"retry-after", b"1")]) from None
        except BatcherClosed as error:
            raise HTTPError(503, str(error)) from None
        except (ValueError, TypeError) as error:
            # the model refused an input that passed validation: still the caller's input
            raise payload.InvalidArgument(f"the model rejected the input: {error}") from None
        except HTTPError:
            raise
        except Exception as error:
            logger.exception("minidl.serving: predict failed for model %r", name)
            raise HTTPError(500, f"predict failed: {type(error).__name__}: {error}") from None

    async def _predict(self, name: str, model: Any, x: np.ndarray) -> np.ndarray:
        if self.predicts_in_progress >= self.max_enqueued_requests:
            raise HTTPError(429, f"Too many predict requests in progress (limit "
                                 f"{self.max_enqueued_requests}); retry later",
                            [(b"retry-after", b"1")])
        self.predicts_in_progress += 1
        try:
            if self.batcher is not None:
                return await self.batcher.predict(model, x, key=name)
            timings = self._seconds_per_row.get(model)
            if timings is not None and min(timings) * len(x) < INLINE_SECONDS:
                outputs, seconds = _timed_run(model, x)
            else:
                outputs, seconds = await asyncio.get_running_loop().run_in_executor(
                    self._predict_threads, _timed_run, model, x)
            if timings is None:
                timings = self._seconds_per_row[model] = collections.deque(maxlen=TIMINGS_KEPT)
            timings.append(seconds / max(len(x), 1))
            self._observe_batch(name, len(x))
            return outputs
        finally:
            self.predicts_in_progress -= 1

    def _arrived(self) -> None:
        self.arriving -= 1
        if self.arriving == 0:
            # after this turn, in which the request whose body was just read queues its rows
            asyncio.get_running_loop().call_soon(self.batcher.settle)

    def _observe_batch(self, name: str, rows: int) -> None:
        self.metrics.batch_size.observe(rows, name)


def run_model(model: Any, x: np.ndarray) -> np.ndarray:
    """One ``model.predict`` call; overflow to inf is answered as such, not warned about."""
    with np.errstate(all="ignore"):
        return np.asarray(model.predict(x))


def _timed_run(model: Any, x: np.ndarray) -> tuple[np.ndarray, float]:
    """:func:`run_model` and the seconds it took, measured where it ran."""
    started = time.perf_counter()
    outputs = run_model(model, x)
    return outputs, time.perf_counter() - started


def create_app(model_name: str | None = None, model_base_path: str | None = None, *,
               model_config_file: str | None = None, enable_batching: bool = False,
               max_batch_size: int = 64, batch_timeout_micros: int = 1000,
               num_batch_threads: int = 1, max_enqueued_batches: int = 100,
               api_key_file: str | None = None, file_system_poll_wait_seconds: float = 1.0,
               max_body_bytes: int = 10 * 1024 * 1024, enable_cors: bool = False,
               max_enqueued_requests: int = 128, predict_threads: int | None = None,
               access_log: str | None = None, rate_limit: float | None = None,
               rate_limit_burst: float | None = None,
               model_cache_dir: str | None = None) -> ServingApp:
    """An ASGI app serving one model (``model_base_path``, named ``model_name`` or "default")
    or the models of ``model_config_file``. Arguments are ``tensorflow_model_server``'s flags
    and ``minidl serve``'s own (docs/serving.md).

    Any ASGI engine runs it; ``minidl serve`` runs it under uvicorn
    (:mod:`minidl.serving.engine`)::

        uvicorn --factory 'minidl.serving:app_from_environment'
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
    manager = ModelManager(configs, file_system_poll_wait_seconds=file_system_poll_wait_seconds,
                           cache_dir=model_cache_dir)
    batcher = (Batcher(run_model, max_batch_size=max_batch_size,
                       batch_timeout_micros=batch_timeout_micros,
                       num_batch_threads=num_batch_threads,
                       max_enqueued_batches=max_enqueued_batches)
               if enable_batching else None)
    api_keys = read_api_keys(api_key_file) if api_key_file is not None else None
    if rate_limit_burst is not None and rate_limit is None:
        raise ValueError("rate_limit_burst needs rate_limit")
    rate_limiter = RateLimiter(rate_limit, rate_limit_burst) if rate_limit is not None else None
    return ServingApp(manager, batcher=batcher, api_keys=api_keys, max_body_bytes=max_body_bytes,
                      enable_cors=enable_cors, max_enqueued_requests=max_enqueued_requests,
                      predict_threads=predict_threads, rate_limiter=rate_limiter,
                      access_log=AccessLog(access_log) if access_log is not None else None)
