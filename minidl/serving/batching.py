"""Server-side batching: concurrent predict requests share one ``model.predict`` call.

A request's rows wait in a queue. A batch thread takes the oldest waiting request and gathers
the others waiting for the *same model object* (one version of one model) until the batch holds
``max_batch_size`` rows or ``batch_timeout_micros`` have passed since that oldest request
arrived; then it runs one predict on the stacked rows and hands each request exactly its rows
back. A request with more rows than ``max_batch_size`` is cut into pieces that are batched
like separate requests and put back together in order.

The server may also say how many predict requests are on their way (``arriving``: their body
is being read or parsed). When none is, the batch runs at once instead of waiting out the
timeout for requests nobody has sent, and under load a batch holds what arrived while the
previous one ran. A request that finds nothing waiting, nothing on its way and a batch thread
free runs its rows in its own thread: a lone request costs neither a timeout nor the two
thread switches to a batch thread and back.

The queue is bounded: more than ``max_enqueued_batches * max_batch_size`` waiting rows and a
new request is refused at once (``BatchQueueFull``, HTTP 429) instead of growing memory.
A failing predict fails only the requests of that batch, with the error it raised.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np


class BatchQueueFull(RuntimeError):
    """Too many rows already wait for a batch: answered with HTTP 429."""


class BatcherClosed(RuntimeError):
    """The batcher stopped (server shutting down) before the request ran: HTTP 503."""


class _Task:
    __slots__ = ("done", "enqueued_at", "error", "key", "model", "result", "rows", "x")

    def __init__(self, model: Any, key: str, x: np.ndarray) -> None:
        self.model = model
        self.key = key
        self.x = x
        self.rows = len(x)
        self.enqueued_at = time.monotonic()
        self.done = threading.Event()
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None


class Batcher:
    """Gathers rows of concurrent requests into batches run by ``num_batch_threads`` threads.

    ``predict_fn(model, x) -> y`` runs one batch; ``on_batch(key, rows)`` is told the size of
    every batch (for the batch-size histogram); ``key`` names the model in it. ``arriving()``
    counts the requests on their way to ``predict`` (None: unknown, always wait the timeout).
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
        self._queue: deque[_Task] = deque()
        self._queued_rows = 0
        self._forming = False  # one thread at a time gathers the next batch
        self._running = 0  # batches in model.predict: at most num_batch_threads
        self._closed = False
        self._started_pid: int | None = None
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the batch threads (again in a forked child, where they did not survive)."""
        pid = os.getpid()
        if self._started_pid == pid:
            return
        if self._started_pid is not None:
            self._cond = threading.Condition()  # the parent's lock might be held forever here
            self._queue.clear()
            self._queued_rows = 0
            self._forming = False
            self._running = 0
        with self._cond:
            if self._started_pid == pid or self._closed:
                return
            self._threads = [threading.Thread(target=self._work, name=f"minidl-batch-{i}",
                                              daemon=True)
                             for i in range(self.num_batch_threads)]
            for thread in self._threads:
                thread.start()
            self._started_pid = pid

    def close(self, timeout: float = 5.0) -> None:
        """Stop the threads; requests still queued fail with BatcherClosed."""
        with self._cond:
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
            self._queued_rows = 0
            self._cond.notify_all()
        for task in pending:
            task.error = BatcherClosed("the server is shutting down")
            task.done.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)

    def predict(self, model: Any, x: np.ndarray, key: str = "") -> np.ndarray:
        """Predict ``x`` (rows first) through the batch queue; blocks until the rows are back."""
        self.start()
        tasks = [_Task(model, key, x[i:i + self.max_batch_size])
                 for i in range(0, len(x), self.max_batch_size)]
        with self._cond:
            if self._closed:
                raise BatcherClosed("the server is shutting down")
            if self._queued_rows + len(x) > self.max_enqueued_rows:
                raise BatchQueueFull(
                    f"the batch queue is full ({self._queued_rows} rows waiting, limit "
                    f"{self.max_enqueued_rows}); retry later")
            # nothing waiting, nothing on its way and a batch slot free: a batch could only
            # hold these rows, so run it in this thread rather than hand it to a batch thread
            # and back (two thread switches, which cost more than a small predict)
            run_here = (len(tasks) == 1 and not self._queue
                        and self._running < self.num_batch_threads
                        and self.arriving is not None and self.arriving() <= 0)
            if run_here:
                self._running += 1
            else:
                was_empty = not self._queue
                self._queue.extend(tasks)
                self._queued_rows += len(x)
                # wake the batch threads only when that changes what they do
                if (was_empty or self._queued_rows >= self.max_batch_size
                        or (self.arriving is not None and self.arriving() <= 0)):
                    self._cond.notify_all()
        if run_here:
            try:
                self._run(tasks)
            finally:
                with self._cond:
                    self._running -= 1
                    if self._queue:  # rows that came meanwhile wait for this slot
                        self._cond.notify_all()
        for task in tasks:
            task.done.wait()
        return self._result(tasks)

    @staticmethod
    def _result(tasks: list[_Task]) -> np.ndarray:
        for task in tasks:
            if task.error is not None:
                raise task.error
        results = [task.result for task in tasks]
        return results[0] if len(results) == 1 else np.concatenate(results)

    # ------------------------------------------------------------------ batch threads

    def _work(self) -> None:
        while True:
            with self._cond:
                batch = self._next_batch()
            if batch is None:
                return
            try:
                self._run(batch)
            finally:
                with self._cond:
                    self._running -= 1
                    self._cond.notify_all()

    def _next_batch(self) -> list[_Task] | None:
        """Wait for a full or timed-out batch and take it off the queue (lock held)."""
        while self._forming or not self._queue or self._running >= self.num_batch_threads:
            if self._closed:
                return None
            self._cond.wait()
        self._forming = True
        try:
            while True:
                if self._closed or not self._queue:
                    return None
                head = self._queue[0]
                same_model_rows = sum(t.rows for t in self._queue if t.model is head.model)
                remaining = head.enqueued_at + self.batch_timeout - time.monotonic()
                if (same_model_rows >= self.max_batch_size or remaining <= 0
                        or (self.arriving is not None and self.arriving() <= 0)):
                    break
                self._cond.wait(remaining)
            batch: list[_Task] = []
            rows = 0
            kept: deque[_Task] = deque()
            for task in self._queue:
                if task.model is head.model and rows + task.rows <= self.max_batch_size:
                    batch.append(task)
                    rows += task.rows
                else:
                    kept.append(task)
            self._queue = kept
            self._queued_rows -= rows
            self._running += 1
            return batch
        finally:
            self._forming = False
            self._cond.notify_all()

    def _run(self, batch: list[_Task]) -> None:
        rows = sum(task.rows for task in batch)
        try:
            x = batch[0].x if len(batch) == 1 else np.concatenate([task.x for task in batch])
            y = np.asarray(self.predict_fn(batch[0].model, x))
            if y.ndim == 0 or len(y) != rows:
                raise RuntimeError(f"predict returned {y.shape[:1]} rows for a batch of {rows}")
        except Exception as error:  # handed to each waiting request, which reports it
            for task in batch:
                task.error = error
                task.done.set()
            return
        if self.on_batch is not None:
            self.on_batch(batch[0].key, rows)
        start = 0
        for task in batch:
            task.result = y[start:start + task.rows]
            start += task.rows
            task.done.set()
