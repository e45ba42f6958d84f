"""Server-side batching: gathering, splitting, bounds, failures, and answers under load.

About equality. OpenBLAS' float32 matrix product gives a row results that depend, in the
last bits, on the row's position and on the number of rows in the product (measured here:
differences up to ~1e-6 relative for 64-wide layers). So ``model.predict(x)[i]`` and
``model.predict(x[i:i + 1])`` already differ without any server involved, and batched
answers cannot be bit-identical to unbatched ones. What the batcher does guarantee exactly,
and what the unit tests check with tolerance 0 (a row-wise model, y = 2x), is that every
request gets exactly its own rows back. The HTTP test compares with the model at float32
rounding tolerance.
"""

import asyncio
import threading

import numpy as np
import pytest
import requests
from test_serving_support import (
    FakeModel,
    metric_value,
    running_server,
    save_version,
)

from minidl.model import load_model
from minidl.serving import create_app
from minidl.serving.batching import Batcher, BatcherClosed, BatchQueueFull


def double(model, x):
    return model.predict(x)


def run_concurrently(jobs, timeout=20.0):
    """Run callables in threads started together; returns their results in order."""
    results = [None] * len(jobs)
    errors = []
    start = threading.Barrier(len(jobs))

    def runner(i, job):
        start.wait(timeout)
        try:
            results[i] = job()
        except Exception as error:  # collected and re-raised in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=runner, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a request never finished"
    if errors:
        raise errors[0]
    return results


def run(coroutine_function, timeout=20.0):
    """Run ``coroutine_function()`` on a fresh event loop, bounded in time."""
    async def bounded():
        return await asyncio.wait_for(coroutine_function(), timeout)

    return asyncio.run(bounded())


def test_requests_of_one_turn_share_a_batch_and_get_exactly_their_rows():
    model = FakeModel()
    sizes = []
    inputs = [np.full((1 + i % 3, 4), i, dtype=np.float32) for i in range(12)]

    async def requests_together():
        batcher = Batcher(double, max_batch_size=64, batch_timeout_micros=30_000_000,
                          on_batch=lambda key, rows: sizes.append(rows))
        try:
            return await asyncio.gather(*(batcher.predict(model, x) for x in inputs))
        finally:
            batcher.close()

    results = run(requests_together)  # long before the 30 s timeout: nothing else is coming
    for x, y in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(y, x * 2)
    assert sizes == [sum(len(x) for x in inputs)]  # received in one turn: one batch


def test_a_batch_waits_for_requests_on_their_way_and_no_longer():
    model = FakeModel()
    on_their_way = [1]
    sizes = []

    async def one_now_one_later():
        batcher = Batcher(double, max_batch_size=64, batch_timeout_micros=30_000_000,
                          on_batch=lambda key, rows: sizes.append(rows),
                          arriving=lambda: on_their_way[0])
        try:
            first = asyncio.ensure_future(batcher.predict(model, np.ones((1, 4), np.float32)))
            for _ in range(10):
                await asyncio.sleep(0)
            assert batcher.queued_rows == 1 and sizes == []  # one more is on its way: wait
            on_their_way[0] = 0
            second = await batcher.predict(model, np.ones((2, 4), np.float32))
            return await first, second
        finally:
            batcher.close()

    first, second = run(one_now_one_later)
    np.testing.assert_array_equal(first, np.full((1, 4), 2, np.float32))
    np.testing.assert_array_equal(second, np.full((2, 4), 2, np.float32))
    assert sizes == [3]  # one batch with both, long before the 30 s timeout


def test_with_rows_on_their_way_a_batch_closes_at_its_timeout():
    model = FakeModel()

    async def lone_request():
        batcher = Batcher(double, batch_timeout_micros=1000, arriving=lambda: 1)
        try:
            return await batcher.predict(model, np.ones((1, 4), np.float32))
        finally:
            batcher.close()

    np.testing.assert_array_equal(run(lone_request, timeout=10), np.full((1, 4), 2, np.float32))


def test_batches_never_exceed_max_batch_size_and_big_requests_are_split():
    model = FakeModel()
    big = np.arange(100 * 4, dtype=np.float32).reshape(100, 4)
    small = [np.full((3, 4), i, dtype=np.float32) for i in range(5)]

    async def big_and_small():
        batcher = Batcher(double, max_batch_size=8, batch_timeout_micros=20_000)
        try:
            return await asyncio.gather(batcher.predict(model, big),
                                        *(batcher.predict(model, x) for x in small))
        finally:
            batcher.close()

    results = run(big_and_small)
    np.testing.assert_array_equal(results[0], big * 2)
    for x, y in zip(small, results[1:], strict=True):
        np.testing.assert_array_equal(y, x * 2)
    assert max(model.calls) <= 8
    assert sum(model.calls) == 100 + 15


def test_while_a_batch_runs_the_next_one_fills_with_what_arrives():
    gate = threading.Event()
    model = FakeModel(gate=gate)
    sizes = []

    async def load():
        batcher = Batcher(double, max_batch_size=64, batch_timeout_micros=30_000_000,
                          on_batch=lambda key, rows: sizes.append(rows))
        try:
            first = asyncio.ensure_future(batcher.predict(model, np.ones((1, 4), np.float32)))
            while not model.entered.is_set():  # the first batch is in its thread
                await asyncio.sleep(0.001)
            later = [asyncio.ensure_future(batcher.predict(model, np.ones((1, 4), np.float32)))
                     for _ in range(5)]
            for _ in range(10):
                await asyncio.sleep(0)
            assert batcher.queued_rows == 5  # queued while the thread is busy
            gate.set()
            return await asyncio.gather(first, *later)
        finally:
            gate.set()
            batcher.close()

    run(load)
    assert sizes == [1, 5]


def test_rows_of_different_models_are_never_mixed():
    first, second = FakeModel(), FakeModel()

    async def both():
        batcher = Batcher(double, max_batch_size=64, batch_timeout_micros=20_000)
        try:
            await asyncio.gather(*(batcher.predict(m, np.ones((2, 4), np.float32))
                                   for m in (first, second) * 4))
        finally:
            batcher.close()

    run(both)
    assert first.calls == second.calls == [8]


def test_a_failing_batch_fails_only_its_own_requests():
    broken = FakeModel(fail_with=RuntimeError("bad weights"))
    healthy = FakeModel()

    async def mixed():
        batcher = Batcher(double, max_batch_size=64, batch_timeout_micros=20_000)
        try:
            return await asyncio.gather(
                *(batcher.predict(m, np.ones((2, 4), np.float32)) for m in (broken, healthy) * 3),
                return_exceptions=True)
        finally:
            batcher.close()

    results = run(mixed)
    assert [str(error) for error in results[0::2]] == ["bad weights"] * 3
    for result in results[1::2]:
        np.testing.assert_array_equal(result, np.full((2, 4), 2, np.float32))


def test_a_cancelled_request_takes_its_queued_rows_out():
    gate = threading.Event()
    model = FakeModel(gate=gate)

    async def cancel_one():
        batcher = Batcher(double, max_batch_size=64, batch_timeout_micros=0)
        try:
            running = asyncio.ensure_future(batcher.predict(model, np.ones((1, 4), np.float32)))
            while not model.entered.is_set():
                await asyncio.sleep(0.001)
            gone = asyncio.ensure_future(batcher.predict(model, np.ones((3, 4), np.float32)))
            kept = asyncio.ensure_future(batcher.predict(model, np.ones((2, 4), np.float32)))
            await asyncio.sleep(0)
            assert batcher.queued_rows == 5
            gone.cancel()
            await asyncio.sleep(0)
            assert batcher.queued_rows == 2
            gate.set()
            await asyncio.gather(running, kept)
        finally:
            gate.set()
            batcher.close()

    run(cancel_one)
    assert model.calls == [1, 2]  # the cancelled request's 3 rows were never predicted


def test_full_queue_refuses_at_once_and_close_fails_waiting_requests():
    gate = threading.Event()
    model = FakeModel(gate=gate)

    async def overload():
        batcher = Batcher(double, max_batch_size=2, batch_timeout_micros=0,
                          max_enqueued_batches=1)
        running = asyncio.ensure_future(batcher.predict(model, np.ones((2, 4), np.float32)))
        while not model.entered.is_set():  # the first batch, of its 2 rows, is running
            await asyncio.sleep(0.001)
        waiting = asyncio.ensure_future(batcher.predict(model, np.ones((2, 4), np.float32)))
        await asyncio.sleep(0)
        assert batcher.queued_rows == 2  # the queue is full: 1 batch of 2 rows
        with pytest.raises(BatchQueueFull, match="the batch queue is full"):
            await batcher.predict(model, np.ones((1, 4), np.float32))
        batcher.close()
        with pytest.raises(BatcherClosed):
            await waiting
        with pytest.raises(BatcherClosed):
            await batcher.predict(model, np.ones((1, 4), np.float32))
        gate.set()
        return await running

    try:
        np.testing.assert_array_equal(run(overload), np.full((2, 4), 2, np.float32))
    finally:
        gate.set()


@pytest.mark.parametrize("option", ["max_batch_size", "num_batch_threads",
                                    "max_enqueued_batches"])
def test_batcher_options_must_be_positive_integers(option):
    with pytest.raises(ValueError, match=f"{option} must be an integer >= 1"):
        Batcher(double, **{option: 0})


def test_a_lone_batched_request_does_not_wait_for_the_timeout(tmp_path):
    save_version(tmp_path, 1, seed=7)
    app = create_app("m", str(tmp_path), enable_batching=True,
                     batch_timeout_micros=30_000_000, file_system_poll_wait_seconds=0)
    with running_server(app) as url:
        answer = requests.post(url + "/v1/models/m:predict", json={"instances": [[1, 2, 3, 4]]},
                               timeout=10)  # the 30 s batch timeout would fail this
    assert answer.status_code == 200


def test_batched_http_answers_match_the_model_and_batches_form(tmp_path):
    save_version(tmp_path, 1, seed=7)
    oracle = load_model(str(tmp_path / "1" / "model.npz"))
    app = create_app("m", str(tmp_path), enable_batching=True, max_batch_size=16,
                     batch_timeout_micros=20_000, file_system_poll_wait_seconds=0)
    rng = np.random.default_rng(0)
    requests_rows = [rng.standard_normal((1 + i % 4, 4)).astype(np.float32) for i in range(48)]
    with running_server(app) as url, requests.Session() as first_session:
        first_session.get(url + "/v1/models/m", timeout=10)  # loads the model

        def client(rows_list):
            with requests.Session() as session:
                return [session.post(url + "/v1/models/m:predict", timeout=20,
                                     json={"instances": rows.tolist()}).json()
                        for rows in rows_list]

        per_client = [requests_rows[i::8] for i in range(8)]
        answers = run_concurrently([lambda c=c: client(c) for c in per_client])
        metrics = requests.get(url + "/monitoring/prometheus/metrics", timeout=10).text
    for rows_list, answer_list in zip(per_client, answers, strict=True):
        for rows, answer in zip(rows_list, answer_list, strict=True):
            got = np.asarray(answer["predictions"], dtype=np.float32)
            # float32 rounding only (see the module docstring); rows are never mixed up
            np.testing.assert_allclose(got, oracle.predict(rows), rtol=1e-5, atol=1e-6)
    batches = metric_value(metrics, 'minidl_batch_size_count{model="m"}')
    rows_predicted = metric_value(metrics, 'minidl_batch_size_sum{model="m"}')
    assert rows_predicted == sum(len(rows) for rows in requests_rows)
    # fewer predict calls than requests: some batches gathered several requests
    assert batches < len(requests_rows), "no two requests ever shared a batch"
    assert metric_value(metrics, 'minidl_batch_size_bucket{model="m",le="4"}') < batches
