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

import threading

import numpy as np
import pytest
import requests
from test_serving_support import (
    FakeModel,
    metric_value,
    running_server,
    save_version,
    wait_until,
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


def test_concurrent_requests_share_batches_and_get_exactly_their_rows():
    model = FakeModel()
    sizes = []
    batcher = Batcher(double, max_batch_size=64, batch_timeout_micros=50_000,
                      on_batch=lambda key, rows: sizes.append(rows))
    inputs = [np.full((1 + i % 3, 4), i, dtype=np.float32) for i in range(12)]
    try:
        results = run_concurrently([lambda x=x: batcher.predict(model, x) for x in inputs])
    finally:
        batcher.close()
    for x, y in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(y, x * 2)
    assert sum(sizes) == sum(len(x) for x in inputs)
    assert max(sizes) > 1 and len(sizes) < len(inputs)
    assert all(size <= 64 for size in sizes)


def test_a_batch_waits_for_requests_on_their_way_and_no_longer():
    model = FakeModel()
    on_their_way = [1]
    sizes = []
    batcher = Batcher(double, max_batch_size=64, batch_timeout_micros=30_000_000,
                      on_batch=lambda key, rows: sizes.append(rows),
                      arriving=lambda: on_their_way[0])
    first = threading.Thread(target=batcher.predict, args=(model, np.ones((1, 4), np.float32)))
    try:
        first.start()
        wait_until(lambda: batcher._queued_rows == 1)
        assert sizes == []  # one more request is on its way: the batch waits for it
        on_their_way[0] = 0
        batcher.predict(model, np.ones((2, 4), np.float32))  # arrives; nothing else will
        first.join(10)
    finally:
        batcher.close()
    # one batch with both, long before the 30 s timeout
    assert not first.is_alive() and sizes == [3]


def test_batches_never_exceed_max_batch_size_and_big_requests_are_split():
    model = FakeModel()
    batcher = Batcher(double, max_batch_size=8, batch_timeout_micros=20_000)
    big = np.arange(100 * 4, dtype=np.float32).reshape(100, 4)
    small = [np.full((3, 4), i, dtype=np.float32) for i in range(5)]
    try:
        results = run_concurrently([lambda: batcher.predict(model, big)]
                                   + [lambda x=x: batcher.predict(model, x) for x in small])
    finally:
        batcher.close()
    np.testing.assert_array_equal(results[0], big * 2)
    for x, y in zip(small, results[1:], strict=True):
        np.testing.assert_array_equal(y, x * 2)
    assert max(model.calls) <= 8
    assert sum(model.calls) == 100 + 15


def test_rows_of_different_models_are_never_mixed():
    first, second = FakeModel(), FakeModel()
    batcher = Batcher(double, max_batch_size=64, batch_timeout_micros=20_000)
    try:
        run_concurrently([lambda m=m: batcher.predict(m, np.ones((2, 4), np.float32))
                          for m in (first, second) * 4])
    finally:
        batcher.close()
    assert sum(first.calls) == sum(second.calls) == 8


def test_a_failing_batch_fails_only_its_own_requests():
    broken = FakeModel(fail_with=RuntimeError("bad weights"))
    healthy = FakeModel()
    batcher = Batcher(double, max_batch_size=64, batch_timeout_micros=20_000)
    outcomes = []

    def call(model):
        try:
            return batcher.predict(model, np.ones((2, 4), np.float32))
        except RuntimeError as error:
            outcomes.append(str(error))
            return None

    try:
        results = run_concurrently([lambda: call(broken), lambda: call(healthy)] * 3)
    finally:
        batcher.close()
    assert outcomes == ["bad weights"] * 3
    for result in results[1::2]:
        np.testing.assert_array_equal(result, np.full((2, 4), 2, np.float32))


def test_full_queue_refuses_at_once_and_close_fails_waiting_requests():
    gate = threading.Event()
    model = FakeModel(gate=gate)
    batcher = Batcher(double, max_batch_size=2, batch_timeout_micros=0, max_enqueued_batches=1)
    outcomes = []

    def call(rows):
        try:
            batcher.predict(model, np.ones((rows, 4), np.float32))
            outcomes.append("ok")
        except (BatchQueueFull, BatcherClosed) as error:
            outcomes.append(type(error).__name__)

    running = threading.Thread(target=call, args=(2,))
    running.start()
    assert model.entered.wait(10)  # the first request runs the batch of its 2 rows
    waiting = threading.Thread(target=call, args=(2,))
    waiting.start()  # fills the queue (limit: 1 batch of 2 rows)
    wait_until(lambda: batcher._queued_rows == 2)
    try:
        with pytest.raises(BatchQueueFull, match="the batch queue is full"):
            batcher.predict(model, np.ones((1, 4), np.float32))
    finally:
        batcher.close()
        gate.set()
        running.join(10)
        waiting.join(10)
    assert sorted(outcomes) == ["BatcherClosed", "ok"]
    with pytest.raises(BatcherClosed):
        batcher.predict(model, np.ones((1, 4), np.float32))


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
