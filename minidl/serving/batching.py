"""Server-side batching on the event loop: concurrent predict requests share one predict call.

A request queues its rows and awaits them (:meth:`Batcher.predict`). Rows wait in one queue
per model (each version is a model of its own). A queue's first rows open a batch, which
closes when it holds ``max_batch_size`` rows, or when no more rows are on their way, or at
the latest ``batch_timeout_micros`` after it opened. "On their way" means two things: the
requests the event loop received in the same turn (their rows are queued before the batch
is settled, one turn later), and the predicts that the server said are reading or parsing
their body (``arriving()``). So a lone request runs at once, and a batch never waits out
the timeout for requests nobody has sent. A closed batch runs as one
``predict_fn(model, x)`` in a worker thread, off the event loop, which goes on reading and
queueing requests meanwhile; at most ``num_batch_threads`` batches run at once, and a batch
that closes while they are busy takes, when its turn comes, every row queued by then (up to
``max_batch_size``): under load, batches fill with what arrived while the previous one ran.

A request with more rows than ``max_batch_size`` is cut into pieces that are batched like
separate requests and put back together in order. The queue is bounded: more than
``max_enqueued_batches * max_batch_size`` waiting rows and a new request is refused at once
(``BatchQueueFull``, HTTP 429) instead of growing memory. A failing predict fails only the
requests of that batch, with the error it raised. A request whose client is gone (its task
cancelled) takes its rows that are still queued out of the queue.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np


class BatchQueueFull(RuntimeError):
    """More rows are waiting than the queue holds: answered 429."""


class BatcherClosed(RuntimeError):
    """The server is shutting down: answered 503."""


class _Piece:
    """At most ``max_batch_size`` rows of one request, and the future of their outputs."""

    __slots__ = ("future", "queue", "x")

    def __init__(self, x: np.ndarray, future: asyncio.Future[np.ndarray],
                 queue: _ModelQueue) -> None:
        self.x = x
        self.future = future
        self.queue = queue


class _ModelQueue:
    """The rows waiting for one model, and the timer of the batch they opened."""

    def __init__(self, model: Any, key: str) -> None:
        self.model = model
        self.key = key
        self.pieces: deque[_Piece] = deque()
        self.rows = 0
        self.timer: asyncio.TimerHandle | None = None
        self.settling = False  # a look at whether to close the open batch is scheduled
        self.closed = False  # the open batch is complete; waiting for a thread


class Batcher:
    """Gathers rows of concurrent requests into batches run by ``num_batch_threads`` threads.

    ``predict_fn(model, x) -> y`` runs one batch; ``on_batch(key, rows)`` is told the size of
    every batch (for the batch-size histogram); ``key`` names the model in it. ``arriving()``
    counts the predicts on their way to :meth:`predict` (reading or parsing their body); the
    server calls :meth:`settle` when that count drops. Use it from one event loop (the
    server's).
    """

    def __init__(self, predict_fn: Callable[[Any, np.ndarray], np.ndarray], *,
                 max_batch_size: int = 64, batch_timeout_micros: int = 1000,
                 num_batch_threads: int = 1, max_enqueued_batches: int = 100,
                 on_batch: Callable[[str, int], None] | None = None,
                 arriving: Callable[[], int] = lambda: 0) -> None:
        for name, value, low in (("max_batch_size", max_batch_size, 1),
                                 ("batch_timeout_micros", batch_timeout_micros, 0),
                                 ("num_batch_threads", num_batch_threads, 1),
                                 ("max_enqueued_batches", max_enqueued_batches, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        self.predict_fn = predict_fn
        self.max_batch_size = max_batch_size
        self.batch_timeout = batch_timeout_micros / 1e6
        self.num_batch_threads = num_batch_threads
        self.max_enqueued_rows = max_enqueued_batches * max_batch_size
        self.on_batch = on_batch
        self.arriving = arriving
        self._queues: dict[int, _ModelQueue] = {}  # by id(model): models need not hash
        self._queued_rows = 0
        self._running = 0
        self._closed = False
        self._threads = concurrent.futures.ThreadPoolExecutor(
            num_batch_threads, thread_name_prefix="minidl-batch")

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    def close(self) -> None:
        """Refuse new rows; requests still queued fail with BatcherClosed. Batches already
        running finish (their threads are not waited for)."""
        self._closed = True
        for queue in self._queues.values():
            if queue.timer is not None:
                queue.timer.cancel()
            for piece in queue.pieces:
                if not piece.future.done():
                    piece.future.set_exception(BatcherClosed("the server is shutting down"))
        self._queues.clear()
        self._queued_rows = 0
        self._threads.shutdown(wait=False)

    async def predict(self, model: Any, x: np.ndarray, key: str = "") -> np.ndarray:
        """Predict ``x`` (rows first) through the batch queue. Raises BatchQueueFull or
        BatcherClosed at once, or what the batch's predict raised."""
        if self._closed:
            raise BatcherClosed("the server is shutting down")
        if self._queued_rows + len(x) > self.max_enqueued_rows:
            raise BatchQueueFull(f"the batch queue is full ({self._queued_rows} rows waiting, "
                                 f"limit {self.max_enqueued_rows}); retry later")
        loop = asyncio.get_running_loop()
        pieces = []
        for start in range(0, len(x), self.max_batch_size):
            queue = self._queues.get(id(model))
            if queue is None:  # the last batch took the queue's rows: a fresh one
                queue = self._queues[id(model)] = _ModelQueue(model, key)
            piece = _Piece(x[start:start + self.max_batch_size], loop.create_future(), queue)
            pieces.append(piece)
            queue.pieces.append(piece)
            queue.rows += len(piece.x)
            self._queued_rows += len(piece.x)
            if queue.rows >= self.max_batch_size:
                self._close_batch(queue)
        queue = self._queues.get(id(model))
        if queue is not None and queue.pieces and not queue.closed and not queue.settling:
            # one turn of the loop later: the requests received with this one are queued
            queue.settling = True
            loop.call_soon(self._settle, queue)
        try:
            outputs = [await piece.future for piece in pieces]
        except asyncio.CancelledError:
            self._withdraw(pieces)
            raise
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)

    def _withdraw(self, pieces: list[_Piece]) -> None:
        """Take the still-queued ``pieces`` of a request nobody waits for out of the queue."""
        for piece in pieces:
            queue = piece.queue
            if not any(piece is queued for queued in queue.pieces):
                continue  # running or done
            queue.pieces = deque(p for p in queue.pieces if p is not piece)
            queue.rows -= len(piece.x)
            self._queued_rows -= len(piece.x)
            if not queue.pieces and self._queues.get(id(queue.model)) is queue:
                if queue.timer is not None:
                    queue.timer.cancel()
                del self._queues[id(queue.model)]

    def settle(self) -> None:
        """Close every open batch if no more rows are on their way (the server calls this
        when a predict stops arriving without queueing rows, e.g. a bad body)."""
        for queue in list(self._queues.values()):
            if not queue.settling:
                self._settle(queue)

    def _settle(self, queue: _ModelQueue) -> None:
        """Close the open batch of ``queue``, unless rows are on their way: then wait for
        them, at most until the batch's timeout."""
        queue.settling = False
        if not queue.pieces or queue.closed or self._queues.get(id(queue.model)) is not queue:
            return
        if self.arriving() == 0 or self.batch_timeout == 0:
            self._close_batch(queue)
        elif queue.timer is None:
            queue.timer = asyncio.get_running_loop().call_later(
                self.batch_timeout, self._close_batch, queue)

    def _close_batch(self, queue: _ModelQueue) -> None:
        if queue.timer is not None:
            queue.timer.cancel()
            queue.timer = None
        queue.closed = True
        self._start_batches()

    def _start_batches(self) -> None:
        """Run closed batches, oldest first, while threads are free."""
        while self._running < self.num_batch_threads:
            ready = [q for q in self._queues.values() if q.closed and q.pieces]
            if not ready:
                return
            self._run(ready[0])

    def _run(self, queue: _ModelQueue) -> None:
        batch, rows = [], 0
        while queue.pieces and rows + len(queue.pieces[0].x) <= self.max_batch_size:
            piece = queue.pieces.popleft()
            batch.append(piece)
            rows += len(piece.x)
        queue.rows -= rows
        self._queued_rows -= rows
        queue.closed = False
        if queue.pieces:  # what is left waited for a thread: it is the next batch
            queue.closed = True
        else:
            del self._queues[id(queue.model)]
        x = batch[0].x if len(batch) == 1 else np.concatenate([piece.x for piece in batch])
        self._running += 1
        running = asyncio.get_running_loop().run_in_executor(
            self._threads, self.predict_fn, queue.model, x)
        running.add_done_callback(lambda done: self._finished(queue.key, batch, rows, done))

    def _finished(self, key: str, batch: list[_Piece], rows: int,
                  done: asyncio.Future[np.ndarray]) -> None:
        self._running -= 1
        error = done.exception()
        if error is None:
            y = np.asarray(done.result())
            if y.ndim == 0 or len(y) != rows:
                error = RuntimeError(f"predict returned {y.shape[:1]} rows for a batch of {rows}")
        if error is None and self.on_batch is not None:
            self.on_batch(key, rows)
        start = 0
        for piece in batch:
            if not piece.future.done():  # its request may have been cancelled
                if error is None:
                    piece.future.set_result(y[start:start + len(piece.x)])
                else:
                    piece.future.set_exception(error)
            start += len(piece.x)
        if not self._closed:
            self._start_batches()
