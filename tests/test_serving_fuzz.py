"""Fuzzing the server with malformed requests: never a 5xx, never a change of what is served."""

import http.client
import json
from urllib.parse import quote

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_serving_support import running_server, save_version

from minidl.model import load_model
from minidl.serving import create_app

ROWS = [[0.5, -1.0, 2.0, 0.0]]


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz") / "m"
    save_version(base, 1, seed=11)
    app = create_app("m", str(base), max_body_bytes=4096, file_system_poll_wait_seconds=0)
    with running_server(app) as url:
        host, port = url.removeprefix("http://").split(":")
        client = Client(host, int(port))
        yield client, load_model(str(base / "1" / "model.npz"))
        client.close()


class Client:
    """One keep-alive connection, reopened whenever the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.connection: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        if self.connection is None:
            self.connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        self.connection.request(method, path, body=body,
                                headers={"Content-Type": "application/json"})
        response = self.connection.getresponse()
        data = response.read()
        if response.will_close:
            self.close()
        return response.status, data

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


leaves = st.one_of(
    st.none(), st.booleans(), st.text(max_size=4),
    st.integers(min_value=-(10 ** 40), max_value=10 ** 40),
    st.floats(allow_nan=True, allow_infinity=True), st.just(3e38), st.just(-1e39))
json_values = st.recursive(leaves, lambda children: st.one_of(
    st.lists(children, max_size=5), st.dictionaries(st.text(max_size=5), children, max_size=3)),
    max_leaves=30)
rows = st.lists(st.one_of(leaves, st.lists(leaves, max_size=6)), max_size=5)
predict_like = st.fixed_dictionaries({}, optional={
    "signature_name": st.one_of(st.just("serving_default"), st.text(max_size=6), leaves),
    "instances": st.one_of(rows, json_values,
                           st.lists(st.dictionaries(st.sampled_from(["input", "x"]), rows,
                                                    max_size=2), max_size=3)),
    "inputs": st.one_of(rows, json_values, st.dictionaries(
        st.sampled_from(["input", "mask"]), rows, max_size=2)),
})
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    predict_like.map(lambda v: json.dumps(v).encode()),
    predict_like.map(lambda v: json.dumps(v).encode()[:-3]),  # truncated JSON
    st.just(b"[" * 5000),
    st.integers(4000, 6000).map(lambda n: b'{"instances": [' + b"1," * n + b"1]}"),  # > limit
)
segments = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=8)
paths = st.one_of(
    st.builds(lambda name, version, tail: f"/v1/models/{name}{version}{tail}",
              st.one_of(st.just("m"), st.just("M"), segments),
              st.one_of(st.just(""), st.builds("/versions/{}".format, st.one_of(
                  st.integers(-5, 10 ** 20), segments)),
                  st.builds("/labels/{}".format, segments)),
              st.one_of(st.just(""), st.just("/metadata"), st.just(":predict"),
                        st.just(":classify"), st.builds(":{}".format, segments),
                        st.builds("/{}".format, segments))),
    st.builds("/{}".format, segments),
    st.just("/monitoring/prometheus/metrics"),
)
methods = st.one_of(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS",
                                     "HEAD"]),
                    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=8))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(method=methods, path=paths, body=bodies)
def test_malformed_requests_never_get_a_5xx(target, method, path, body):
    client, _ = target
    status, data = client.request(method, quote(path, safe="/:%"), body)
    assert status < 500, (status, data[:200])
    if status >= 400 and method != "HEAD":
        assert isinstance(json.loads(data)["error"], str)


def test_after_fuzzing_the_same_version_still_answers_correctly(target):
    client, oracle = target
    status, data = client.request("GET", "/v1/models/m", None)
    assert status == 200
    assert json.loads(data)["model_version_status"][0] == {
        "version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    status, data = client.request("POST", "/v1/models/m:predict",
                                  json.dumps({"instances": ROWS}).encode())
    assert status == 200
    np.testing.assert_array_equal(np.asarray(json.loads(data)["predictions"], np.float32),
                                  oracle.predict(np.asarray(ROWS, np.float32)))
