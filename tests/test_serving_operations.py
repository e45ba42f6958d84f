"""What operators run the server with: health probes, request ids, access logs, rate limits,
and the flags that set them."""

import datetime
import http.client
import json
import re
import subprocess
import sys

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from test_serving_server import REPO, child_env, ready_url
from test_serving_support import metric_value, running_server, save_version

import minidl.serving.ratelimit as ratelimit
from minidl.serving import create_app, main
from minidl.serving.ratelimit import RateLimiter, retry_after

ROWS = [[0.1, -0.2, 0.3, 0.4], [1.0, 2.0, -3.0, 0.5]]
PREDICT = "/v1/models/m:predict"
LOG_FIELDS = {"time", "request_id", "client", "method", "path", "status", "duration_ms",
              "model", "version", "rows", "bytes"}
SLOW = 0.001  # requests per second: no token comes back while a test runs


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------- the token bucket


def test_a_bucket_admits_its_burst_then_its_rate():
    clock = Clock()
    limiter = RateLimiter(2.0, 3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)  # one token comes every 0.5 s
    clock.now += 0.25
    assert limiter.take("a") == pytest.approx(0.25)  # a refusal takes nothing
    clock.now += 0.25
    assert limiter.take("a") == 0.0
    assert limiter.take("a") == pytest.approx(0.5)
    clock.now += 60  # a long pause fills the bucket up to the burst, no further
    assert [limiter.take("a") for _ in range(4)][-1] > 0


def test_the_burst_defaults_to_the_rate_and_is_at_least_one():
    assert RateLimiter(5.0).burst == 5.0
    assert RateLimiter(0.2).burst == 1.0


@pytest.mark.parametrize("rate, burst, message", [
    (0.0, None, "rate_limit must be a positive number"),
    (float("inf"), None, "rate_limit must be a positive number"),
    (1.0, 0.5, "rate_limit_burst must be a number >= 1"),
])
def test_bad_limits_are_refused(rate, burst, message):
    with pytest.raises(ValueError, match=message):
        RateLimiter(rate, burst)


@pytest.mark.parametrize("seconds, header", [(0.001, b"1"), (1.0, b"1"), (1.01, b"2"),
                                             (999.5, b"1000")])
def test_retry_after_is_whole_seconds_rounded_up(seconds, header):
    assert retry_after(seconds) == header


requests_in_time = st.lists(st.tuples(st.sampled_from("abc"),
                                      st.floats(0, 3, allow_nan=False)), max_size=60)


def decisions(limiter, clock, arrivals):
    out = []
    for key, pause in arrivals:
        clock.now += pause
        out.append(limiter.take(key) == 0.0)
    return out


@given(requests_in_time, st.floats(0.1, 10), st.integers(1, 5))
def test_a_key_never_gets_more_than_its_burst_plus_its_rate_times_the_time(arrivals, rate,
                                                                           burst):
    clock = Clock()
    admitted = decisions(RateLimiter(rate, burst, clock=clock), clock, arrivals)
    times, now = [], 100.0
    for _, pause in arrivals:
        now += pause
        times.append(now)
    for key in "abc":
        mine = [t for (k, _), t, ok in zip(arrivals, times, admitted, strict=True)
                if k == key and ok]
        for i in range(len(mine)):
            for j in range(i, len(mine)):  # the requests admitted in [mine[i], mine[j]]
                assert j - i + 1 <= burst + rate * (mine[j] - mine[i]) + 1e-9


@given(requests_in_time, st.floats(0.1, 10), st.integers(1, 5))
def test_one_keys_decisions_do_not_depend_on_the_others_traffic(arrivals, rate, burst):
    clock = Clock()
    together = decisions(RateLimiter(rate, burst, clock=clock), clock, arrivals)
    # key "a" alone, with the same arrival times
    alone_arrivals, waited = [], 0.0
    for key, pause in arrivals:
        waited += pause
        if key == "a":
            alone_arrivals.append((key, waited))
            waited = 0.0
    clock = Clock()
    alone = decisions(RateLimiter(rate, burst, clock=clock), clock, alone_arrivals)
    assert [ok for (key, _), ok in zip(arrivals, together, strict=True) if key == "a"] == alone


@given(requests_in_time, st.floats(0.1, 10), st.integers(1, 5))
def test_forgetting_full_buckets_changes_no_decision(arrivals, rate, burst):
    clock = Clock()
    remembered = decisions(RateLimiter(rate, burst, clock=clock), clock, arrivals)
    original = ratelimit.MAX_BUCKETS
    ratelimit.MAX_BUCKETS = 1  # forget at every chance
    try:
        clock = Clock()
        forgetful = decisions(RateLimiter(rate, burst, clock=clock), clock, arrivals)
    finally:
        ratelimit.MAX_BUCKETS = original
    assert forgetful == remembered


# ---------------------------------------------------------------- a live server


@pytest.fixture()
def base(tmp_path):
    save_version(tmp_path / "m", 1)
    return tmp_path


def predict(url, **headers):
    return requests.post(url + PREDICT, json={"instances": ROWS}, headers=headers, timeout=10)


def test_each_api_key_has_its_own_bucket(base):
    keys = base / "keys"
    keys.write_text("key-a\nkey-b\n")
    app = create_app("m", str(base / "m"), file_system_poll_wait_seconds=0,
                     api_key_file=str(keys), rate_limit=SLOW, rate_limit_burst=2)
    with running_server(app) as url:
        assert [predict(url, **{"X-API-Key": "key-a"}).status_code for _ in range(2)] == [200,
                                                                                          200]
        refused = predict(url, **{"X-API-Key": "key-a"})
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "1000"  # one token per 1000 s
        assert refused.json() == {"error": "Rate limit exceeded (0.001 requests per second, "
                                           "bursts of 2; --rate_limit); retry after the time "
                                           "in Retry-After"}
        # the other key is untouched, with a bearer token as with X-API-Key
        assert predict(url, Authorization="Bearer key-b").status_code == 200
        # a wrong key is a 401 and takes no one's token
        assert predict(url, **{"X-API-Key": "key-c"}).status_code == 401
        # probes are neither authenticated nor limited
        for _ in range(5):
            assert requests.get(url + "/v2/health/ready", timeout=10).status_code == 200
        text = requests.get(url + "/monitoring/prometheus/metrics",
                            headers={"X-API-Key": "key-b"}, timeout=10).text
        assert metric_value(text, "minidl_rate_limited_total") == 1
        assert metric_value(text, 'minidl_requests_total{model="m",version="",code="429"}') == 1
        assert predict(url, **{"X-API-Key": "key-b"}).status_code == 429  # b's burst is spent


def get_from(source, url, path):
    """GET ``path`` from a connection that leaves from the address ``source``."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10,
                                            source_address=(source, 0))
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


def test_without_keys_each_client_address_has_its_own_bucket(base):
    app = create_app("m", str(base / "m"), file_system_poll_wait_seconds=0, rate_limit=SLOW)
    with running_server(app) as url:
        assert get_from("127.0.0.1", url, "/v1/models/m") == 200  # burst: max(rate, 1) = 1
        assert get_from("127.0.0.1", url, "/v1/models/m") == 429
        assert get_from("127.0.0.2", url, "/v1/models/m") == 200  # another client
        assert get_from("127.0.0.2", url, "/v1/models/m") == 429


# ---------------------------------------------------------------- request ids


def test_every_answer_carries_a_request_id_and_a_callers_id_is_kept(base):
    keys = base / "keys"
    keys.write_text("secret\n")
    app = create_app("m", str(base / "m"), file_system_poll_wait_seconds=0,
                     api_key_file=str(keys), max_body_bytes=100, enable_cors=True)
    auth = {"X-API-Key": "secret"}
    with running_server(app) as url:
        answers = [
            requests.get(url + "/v1/models/m", headers=auth, timeout=10),        # 200
            requests.get(url + "/v1/models/nope", headers=auth, timeout=10),     # 404
            requests.get(url + "/v1/models/m", timeout=10),                      # 401
            requests.post(url + PREDICT, data=b"{", headers=auth, timeout=10),   # 400
            requests.post(url + PREDICT, data=b"x" * 200, headers=auth, timeout=10),  # 413
            requests.options(url + PREDICT, timeout=10),                         # 204
            requests.get(url + "/v2/health/live", timeout=10),                   # 200
        ]
        assert [a.status_code for a in answers] == [200, 404, 401, 400, 413, 204, 200]
        made = [a.headers["X-Request-ID"] for a in answers]
        assert all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in made)
        assert len(set(made)) == len(made)
        kept = requests.get(url + "/v1/models/m", timeout=10,
                            headers={**auth, "X-Request-ID": "trace-42/abc"})
        assert kept.headers["X-Request-ID"] == "trace-42/abc"
        # an id that cannot be logged as it is (spaces, too long) is replaced by a new one
        for bad in ("has space", "x" * 129):
            replaced = requests.get(url + "/v1/models/m", timeout=10,
                                    headers={**auth, "X-Request-ID": bad})
            assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["X-Request-ID"])
        # browsers may read it
        assert "X-Request-ID" in answers[0].headers["Access-Control-Expose-Headers"]


# ---------------------------------------------------------------- access logs


def test_the_access_log_has_one_json_line_per_request(base):
    log = base / "access.log"
    log.write_text('{"earlier": "line"}\n')  # appended to, never truncated
    app = create_app("m", str(base / "m"), file_system_poll_wait_seconds=0,
                     access_log=str(log))
    with running_server(app) as url:
        ok = predict(url, **{"X-Request-ID": "req-1"})
        missing = requests.get(url + "/v1/models/nope", timeout=10)
        # a path holding a newline and non-ASCII characters stays on one ASCII line
        odd = requests.get(url + "/v1/models/a%0Ab%C3%A9", timeout=10)
    lines = log.read_bytes().decode("ascii").splitlines()
    assert lines[0] == '{"earlier": "line"}'
    records = [json.loads(line) for line in lines[1:]]
    assert len(records) == 3
    assert all(set(r) == LOG_FIELDS for r in records)
    first = records[0]
    assert {k: first[k] for k in ("request_id", "client", "method", "path", "status", "model",
                                  "version", "rows", "bytes")} == {
        "request_id": "req-1", "client": "127.0.0.1", "method": "POST", "path": PREDICT,
        "status": 200, "model": "m", "version": "1", "rows": 2, "bytes": len(ok.content)}
    assert 0 < first["duration_ms"] < 10_000
    logged_at = datetime.datetime.strptime(first["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    assert abs((now - logged_at).total_seconds()) < 600
    assert (records[1]["status"], records[1]["model"], records[1]["rows"]) == (404, "", None)
    assert records[1]["request_id"] == missing.headers["X-Request-ID"]
    assert records[2]["path"] == "/v1/models/a\nb\u00e9"
    assert odd.status_code == 404


def test_the_documented_log_line_has_every_field():
    with open(f"{REPO}/docs/serving.md", encoding="utf-8") as file:
        (example,) = [line for line in file if line.startswith('{"time":')]
    assert set(json.loads(example)) == LOG_FIELDS


def test_the_access_log_goes_to_stdout_with_a_dash(base):
    command = [sys.executable, "-m", "minidl", "serve", "--model_name", "m",
               "--model_base_path", str(base / "m"), "--rest_api_port", "0",
               "--access_log", "-"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, env=child_env(), cwd=REPO)
    try:
        url = ready_url(process)
        answer = predict(url)
        process.terminate()
        out, _ = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=5)
    assert process.returncode == 0
    (line,) = [line for line in out.splitlines() if line.startswith("{")]
    record = json.loads(line)
    assert (record["status"], record["rows"]) == (200, 2)
    assert record["request_id"] == answer.headers["X-Request-ID"]


# ---------------------------------------------------------------- health


def test_live_at_once_ready_only_when_every_model_has_a_version(tmp_path):
    save_version(tmp_path / "a", 1)
    (tmp_path / "b").mkdir()  # b has no version yet
    config = tmp_path / "models.json"
    config.write_text(json.dumps([{"name": "a", "base_path": str(tmp_path / "a")},
                                  {"name": "b", "base_path": str(tmp_path / "b")}]))
    keys = tmp_path / "keys"
    keys.write_text("secret\n")
    app = create_app(model_config_file=str(config), file_system_poll_wait_seconds=0,
                     api_key_file=str(keys))
    with running_server(app) as url:
        live = requests.get(url + "/v2/health/live", timeout=10)
        assert (live.status_code, live.content) == (200, b"")
        assert requests.get(url + "/v2/health/ready", timeout=10).status_code == 400
        save_version(tmp_path / "b", 3)
        app.manager.poll()
        assert requests.get(url + "/v2/health/ready", timeout=10).status_code == 200
        assert requests.head(url + "/v2/health/ready", timeout=10).status_code == 200
        # everything else stays behind the key
        assert requests.get(url + "/v2", timeout=10).status_code == 401


# ---------------------------------------------------------------- flags


@pytest.mark.parametrize("argv, message", [
    (["--rate_limit", "abc"], "argument --rate_limit: expected a number, got 'abc'"),
    (["--rate_limit", "0"], "argument --rate_limit: must be a number > 0, got 0"),
    (["--rate_limit", "inf"], "argument --rate_limit: must be a number > 0, got inf"),
    (["--rate_limit", "5", "--rate_limit_burst", "0.5"],
     "argument --rate_limit_burst: must be a number >= 1, got 0.5"),
    (["--rate_limit_burst", "3"], "--rate_limit_burst needs --rate_limit"),
    (["--max_batch_size", "x"], "argument --max_batch_size: expected an integer, got 'x'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_flags_are_one_line_and_exit_2(argv, message, base, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--model_base_path", str(base / "m"), *argv])
    assert exited.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == f"minidl serve: error: {message} (see minidl serve --help)"


def test_an_access_log_that_cannot_be_opened_is_one_line(base, capsys):
    assert main(["--model_base_path", str(base / "m"), "--access_log",
                 str(base / "no" / "such" / "folder.log")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (f"minidl serve: error: access log {base / 'no' / 'such' / 'folder.log'}: "
                    "cannot open it for appending: No such file or directory")


def test_help_lists_the_new_flags(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for flag in ("--access_log PATH|-", "--rate_limit R", "--rate_limit_burst B"):
        assert flag in text


def test_every_flag_is_in_the_docs_table():
    from minidl.serving import build_arg_parser

    with open(f"{REPO}/docs/serving.md", encoding="utf-8") as file:
        table = [line for line in file if line.startswith("| `--")]
    documented = {flag for line in table for flag in re.findall(r"`(--[a-z_]+)", line)}
    flags = {option for action in build_arg_parser()._actions for option in action.option_strings
             if option.startswith("--") and option != "--help"}
    assert flags - documented == set()
