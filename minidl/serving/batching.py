"""Server-side batching: concurrent predict requests share one ``model.predict`` call.

A request hands its rows to the queue (:meth:`Batcher.submit`) and then waits for them
(:meth:`Batcher.wait`). There is no batch thread: a waiting request whose rows are still queued
gathers a batch itself when no other request is gathering one and fewer than
``num_batch_threads`` batches are running. It takes the oldest queued rows of its model (one
version of one model) until the batch holds ``max_batch_size`` rows or ``batch_timeout_micros``
have passed since the oldest of them was queued, runs one predict on the stacked rows, and
hands every request of the batch exactly its rows back. Requests that find a batch being
gathered or the batch slots taken wait; one of them gathers the next batch when a slot frees.
So a lone request runs its rows in its own thread at once, and under load a batch holds what
was queued while the previous one ran, with no hand-over to another thread and back.

A request with more rows than ``max_batch_size`` is cut into pieces that are batched like
separate requests and put back together in order.

The server may also say how many predict requests are on their way (``arriving``: their body
is being read or parsed). When none is, a batch runs at once instead of waiting out the
timeout for requests nobody has sent. A single-threaded server submits the rows of every
request it has received before it waits for the first, so its batches hold all of them.

The queue is bounded: more than ``max_enqueued_batches * max_batch_size`` waiting rows and a
new request is refused at once (``BatchQueueFull``, HTTP 429) instead of growing memory.
A failing predict fails only the requests of that batch, with the error it raised.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


class BatchQueueFull(RuntimeError):
    """Too many rows already wait for a batch: answered with HTTP 429."""


class BatcherClosed(RuntimeError):
    """The batcher stopped (server shutting down) before the request ran: HTTP 503."""


class BatchTask:
    """Rows of one request (or one piece of a big one) in the queue; read by its waiter."""

    __slots__ = ("done", "enqueued_at", "error", "key", "model", "queued", "result", "rows", "x")

    def __init__(self, model: Any, key: str, x: np.ndarray) -> None:
        self.model = model
        self.key = key
        self.x = x
        self.rows = len(x)
        self.enqueued_at = time.monotonic()
        self.queued = True  # in the queue: no batch has taken it yet
        self.done = False
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None


class Batcher:
    """Gathers rows of concurrent requests into batches; at most ``num_batch_threads`` run at
    once, each in the thread of one of the requests waiting for it.

    ``predict_fn(model, x) -> y`` runs one batch; ``on_batch(key, rows)`` is told the size of
    every batch (for the batch-size histogram); ``key`` names the model in it. ``arriving()``
    counts the requests on their way to ``submit`` (None: unknown, always wait the timeout).
    """

    def __init__(self, predict_fn: Callable[[Any, np.ndarray], np.ndarray], *,
                 max_batch_size: int = 64, batch_timeout_micros: int = 1000,
                 num_batch_threads: int = 1, max_enqueued_batches: int = 100,
                 on_batch: Callable[[str, int], None] | None = None,
                 arriving: Callable[[], int] | None = None) -> None:
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
        self._cond = threading.Condition()
        self._queue: deque[BatchTask] = deque()
        self._queued_rows = 0
        self._gathering = False  # one request at a time gathers the next batch
        self._running = 0  # batches in predict_fn: at most num_batch_threads
        self._closed = False

    def close(self) -> None:
        """Refuse new rows; requests still queued fail with BatcherClosed. Batches already
        running finish."""
        with self._cond:
            self._closed = True
            for task in self._queue:
                task.queued = False
                task.error = BatcherClosed("the server is shutting down")
                task.done = True
            self._queue.clear()
            self._queued_rows = 0
            self._cond.notify_all()

    def predict(self, model: Any, x: np.ndarray, key: str = "") -> np.ndarray:
        """Predict ``x`` (rows first) through the batch queue; blocks until the rows are back."""
        return self.wait(self.submit(model, x, key))

    def submit(self, model: Any, x: np.ndarray, key: str = "") -> list[BatchTask]:
        """Queue the rows of ``x`` for ``model``; give the result to :meth:`wait` (or to
        :meth:`cancel`). Raises BatchQueueFull or BatcherClosed at once."""
        tasks = [BatchTask(model, key, x[i:i + self.max_batch_size])
                 for i in range(0, len(x), self.max_batch_size)]
        with self._cond:
            if self._closed:
                raise BatcherClosed("the server is shutting down")
            if self._queued_rows + len(x) > self.max_enqueued_rows:
                raise BatchQueueFull(
                    f"the batch queue is full ({self._queued_rows} rows waiting, limit "
                    f"{self.max_enqueued_rows}); retry later")
            self._queue.extend(tasks)
            self._queued_rows += len(x)
            if self._gathering:  # that request counts rows: tell it about these
                self._cond.notify_all()
        return tasks

    def wait(self, tasks: Sequence[BatchTask]) -> np.ndarray:
        """The predictions for submitted rows, in order; runs batches while they are queued."""
        with self._cond:
            while not all(task.done for task in tasks):
                can_gather = not self._gathering and self._running < self.num_batch_threads
                if can_gather and any(task.queued for task in tasks):
                    batch = self._gather(tasks[0].model)
                    if batch:
                        self._running += 1
                        self._cond.release()
                        try:
                            self._run(batch)
                        finally:
                            self._cond.acquire()
                            self._running -= 1
                            self._cond.notify_all()  # results are in, and a slot is free
                    continue
                self._cond.wait()
        for task in tasks:
            if task.error is not None:
                raise task.error
        results = [task.result for task in tasks]
        return results[0] if len(results) == 1 else np.concatenate(results)

    def cancel(self, tasks: Sequence[BatchTask]) -> None:
        """Take rows nobody will wait for out of the queue (a request abandoned after
        ``submit``); rows already in a batch are computed and dropped."""
        with self._cond:
            dropped = [task for task in tasks if task.queued]
            if not dropped:
                return
            for task in dropped:
                task.queued = False
                task.done = True
            self._queue = deque(task for task in self._queue if task.queued)
            self._queued_rows -= sum(task.rows for task in dropped)
            self._cond.notify_all()

    # ------------------------------------------------------------------ gathering

    def _gather(self, model: Any) -> list[BatchTask]:
        """Wait for a full or timed-out batch of ``model``'s rows and take it off the queue
        (lock held). Empty if another request ran them meanwhile, or the batcher closed."""
        self._gathering = True
        try:
            while True:
                waiting = [task for task in self._queue if task.model is model]
                if self._closed or not waiting:
                    return []
                remaining = waiting[0].enqueued_at + self.batch_timeout - time.monotonic()
                if (sum(task.rows for task in waiting) >= self.max_batch_size
                        or remaining <= 0
                        or (self.arriving is not None and self.arriving() <= 0)):
                    break
                self._cond.wait(remaining)
            batch: list[BatchTask] = []
            rows = 0
            for task in waiting:
                if rows + task.rows > self.max_batch_size:
                    break
                task.queued = False
                batch.append(task)
                rows += task.rows
            self._queue = deque(task for task in self._queue if task.queued)
            self._queued_rows -= rows
            return batch
        finally:
            self._gathering = False
            self._cond.notify_all()  # another request may gather the next batch

    def _run(self, batch: list[BatchTask]) -> None:
        """Run one batch (lock not held) and hand each task its rows or the error."""
        rows = sum(task.rows for task in batch)
        try:
            x = batch[0].x if len(batch) == 1 else np.concatenate([task.x for task in batch])
            y = np.asarray(self.predict_fn(batch[0].model, x))
            if y.ndim == 0 or len(y) != rows:
                raise RuntimeError(f"predict returned {y.shape[:1]} rows for a batch of {rows}")
        except BaseException as error:  # handed to each waiting request, which reports it
            for task in batch:
                task.error = error
                task.done = True
            if not isinstance(error, Exception):
                raise  # KeyboardInterrupt and the like stop this thread too
            return
        if self.on_batch is not None:
            self.on_batch(batch[0].key, rows)
        start = 0
        for task in batch:
            task.result = y[start:start + task.rows]
            start += task.rows
            task.done = True
