"""The REST API over real HTTP: TF Serving's answers, and every error code with its JSON body.

The server runs in-process on 127.0.0.1 with a free port; each module-level server is
stopped by its fixture.
"""

import json
import shutil
import socket
import threading

import numpy as np
import pytest
import requests
from test_serving_support import (
    INPUT_DIM,
    OUTPUT_DIM,
    error_of,
    gated_app,
    running_server,
    save_version,
    wait_until,
    write_corrupt_version,
)

from minidl.model import load_model
from minidl.serving import create_app

ROWS = [[0.1, -0.2, 0.3, 0.4], [1.0, 2.0, -3.0, 0.5], [0.0, 0.0, 0.0, 0.0]]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    base = tmp_path_factory.mktemp("serving") / "m"
    save_version(base, 1, seed=3)
    return base


@pytest.fixture(scope="module")
def url(model_path):
    app = create_app("m", str(model_path), file_system_poll_wait_seconds=0)
    with running_server(app) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def reference(model_path):
    """The same model loaded on the client side: the oracle for the answers."""
    return load_model(str(model_path / "1" / "model.npz"))


@pytest.fixture(scope="module")
def session():
    with requests.Session() as http:
        yield http


def raw_exchange(base_url, data: bytes, read_timeout=5.0) -> bytes:
    """Send raw bytes on a fresh connection and read until the server closes it."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=read_timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


# ---------------------------------------------------------------- the happy paths

def test_tf_serving_client_gets_the_models_predictions(url, session, reference):
    response = session.post(url + "/v1/models/m:predict",
                            json={"signature_name": "serving_default", "instances": ROWS})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    predictions = np.asarray(response.json()["predictions"], dtype=np.float32)
    # same weights, same rows, same batch: bit for bit the same numbers
    np.testing.assert_array_equal(predictions, reference.predict(np.asarray(ROWS, np.float32)))


@pytest.mark.parametrize("body, key", [
    ({"inputs": ROWS}, "outputs"),
    ({"inputs": {"input": ROWS}}, "outputs"),
    ({"instances": [{"input": row} for row in ROWS]}, "predictions"),
    ({"signature_name": "", "instances": ROWS}, "predictions"),
])
def test_columnar_and_named_forms(url, session, reference, body, key):
    response = session.post(url + "/v1/models/m/versions/1:predict", json=body)
    assert response.status_code == 200, response.text
    assert list(response.json()) == [key]
    np.testing.assert_array_equal(np.asarray(response.json()[key], dtype=np.float32),
                                  reference.predict(np.asarray(ROWS, np.float32)))


def test_integers_are_numbers_too(url, session, reference):
    response = session.post(url + "/v1/models/m:predict", json={"instances": [[1, 2, 3, 4]]})
    np.testing.assert_array_equal(np.asarray(response.json()["predictions"], np.float32),
                                  reference.predict(np.array([[1, 2, 3, 4]], np.float32)))


def test_status_answers_like_tf_serving(url, session):
    expected = {"model_version_status": [{"version": "1", "state": "AVAILABLE", "status": {
        "error_code": "OK", "error_message": ""}}]}
    assert session.get(url + "/v1/models/m").json() == expected
    assert session.get(url + "/v1/models/m/versions/1").json() == expected


def test_metadata_describes_the_serving_signature(url, session):
    metadata = session.get(url + "/v1/models/m/metadata").json()
    assert metadata["model_spec"] == {"name": "m", "signature_name": "", "version": "1"}
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    assert signature["inputs"]["input"]["dtype"] == "DT_FLOAT"
    assert signature["inputs"]["input"]["tensor_shape"] == {
        "dim": [{"size": "-1", "name": ""}, {"size": str(INPUT_DIM), "name": ""}],
        "unknown_rank": False}
    assert signature["outputs"]["output"]["tensor_shape"]["dim"] == [
        {"size": "-1", "name": ""}, {"size": str(OUTPUT_DIM), "name": ""}]
    assert session.get(url + "/v1/models/m/versions/1/metadata").json() == metadata


def test_routes_match_case_insensitively_but_not_the_verb(url, session):
    # TF Serving's regexes are (?i); it then compares "predict" and "metadata" as written
    response = session.post(url + "/V1/Models/m/VERSIONS/1:predict", json={"instances": ROWS})
    assert response.status_code == 200
    assert error_of(session.post(url + "/v1/models/m:PREDICT", json={"instances": ROWS}),
                    400) == "Malformed request: POST /v1/models/m:PREDICT"
    assert "model_spec" in session.get(url + "/V1/MODELS/m/metadata").json()
    assert "model_version_status" in session.get(url + "/V1/MODELS/m/METADATA").json()
    assert session.get(url + "/Monitoring/Prometheus/Metrics").status_code == 200


def test_head_is_malformed_as_in_tf_serving(url, session):
    response = session.head(url + "/v1/models/m")
    assert response.status_code == 400 and response.content == b""
    assert int(response.headers["Content-Length"]) > 0


def test_float64_models_report_dt_double(tmp_path):
    save_version(tmp_path, 1, dtype="float64")
    with running_server(create_app("d", str(tmp_path), file_system_poll_wait_seconds=0)) as base:
        metadata = requests.get(base + "/v1/models/d/metadata", timeout=10).json()
        signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
        assert signature["outputs"]["output"]["dtype"] == "DT_DOUBLE"
        answer = requests.post(base + "/v1/models/d:predict", json={"instances": ROWS},
                               timeout=10).json()["predictions"]
    oracle = load_model(str(tmp_path / "1" / "model.npz")).predict(np.asarray(ROWS))
    np.testing.assert_array_equal(np.asarray(answer), oracle)


def test_several_models_from_a_config_file(tmp_path):
    save_version(tmp_path / "a", 1, seed=1)
    save_version(tmp_path / "b", 5, seed=2)
    config = tmp_path / "models.config"
    config.write_text(f'model_config_list {{ config {{ name: "a" base_path: "{tmp_path / "a"}" '
                      f'model_platform: "tensorflow" }} config {{ name: "b" base_path: '
                      f'"{tmp_path / "b"}" version_labels {{ key: "stable" value: 5 }} }} }}')
    app = create_app(model_config_file=str(config), file_system_poll_wait_seconds=0)
    with running_server(app) as base:
        assert requests.get(base + "/v1/models/a", timeout=10).json()[
            "model_version_status"][0]["version"] == "1"
        by_label = requests.post(base + "/v1/models/b/labels/stable:predict",
                                 json={"instances": ROWS}, timeout=10)
        assert by_label.status_code == 200
        assert requests.get(base + "/v1/models/b/labels/stable/metadata",
                            timeout=10).json()["model_spec"]["version"] == "5"
        assert error_of(requests.post(base + "/v1/models/b/labels/canary:predict",
                                      json={"instances": ROWS}, timeout=10),
                        400) == "Unrecognized servable version label: canary"


# ---------------------------------------------------------------- 400

FLOAT_TYPE = "is not of expected type: float"
BAD_BODIES = [  # TF Serving's messages (test_serving_tfserving.py has the exact ones)
    (b"{not json", "JSON Parse error: Missing a name for object member. at offset: 1"),
    (b"", "JSON Parse error: The document is empty"),
    (b"\xff\xfe\x00garbage", "JSON Parse error: Invalid value. at offset: 0"),
    (b"[1, 2]", "Is not object"),
    (b'{"instances": [[1,2,3,4]], "inputs": [[1,2,3,4]]}',
     "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist"),
    (b'{"signature_name": "serving_default"}', "Missing 'inputs' or 'instances' key"),
    (b'{"signature_name": "classify_x", "instances": [[1,2,3,4]]}',
     'Serving signature name: "classify_x" not found in signature def'),
    (b'{"signature_name": 7, "instances": [[1,2,3,4]]}',
     "'signature_name' key must be a string value."),
    (b'{"instances": [[1,2,3,4], [1,2,3]]}', "Expecting tensor size: 4 but got: 3"),
    (b'{"instances": [[1,2,3,4], 5]}', "Expecting tensor size: 4 but got: 1"),
    (b'{"instances": [[1,2,"3",4]]}', 'JSON Value: "3" Type: String ' + FLOAT_TYPE),
    (b'{"instances": [[1,2,true,4]]}', "JSON Value: true Type: True " + FLOAT_TYPE),
    (b'{"instances": [[false,false,false,false]]}', "JSON Value: false Type: False " + FLOAT_TYPE),
    (b'{"instances": [[1,2,null,4]]}', "JSON Value: null Type: Null " + FLOAT_TYPE),
    (b'{"instances": [[1,2,{"a":1},4]]}', "Type: Object " + FLOAT_TYPE),
    (b'{"instances": [[1,2,1e400,4]]}', "Number too big to be stored in double. at offset: 20"),
    (b'{"instances": [[1,2,1e39,4]]}',
     "Cannot convert JSON value: 1e+39 to float without loss of precision."),
    (b'{"instances": [[1,2,' + b"9" * 400 + b',4]]}', "Number too big to be stored in double."),
    (b'{"instances": [[1,2,1' + b"0" * 39 + b',4]]}',
     "Cannot convert JSON value: 1e+39 to float without loss of precision."),
    (b'{"instances": [[1,2,16777216,4]]}',
     "Cannot convert JSON value: 16777216 to float without loss of precision."),
    (b'{"instances": [[1,2,' + b"9" * 5000 + b',4]]}', "Number too big to be stored in double."),
    (b'{"instances": [[1,2,3]]}', "has shape [1, 3] but the model expects [-1, 4]"),
    (b'{"instances": [1,2,3,4]}', "has shape [4] but the model expects [-1, 4]"),
    (b'{"inputs": 5}', "is a single value, but the model expects a batch of shape [-1, 4]"),
    (b'{"instances": []}', "No values in 'instances' array"),
    (b'{"instances": {"input": [1,2,3,4]}}', "Excepting 'instances' to be an list/array"),
    (b'{"instances": [{"input": [1,2,3,4]}, [1,2,3,4]]}',
     "Expecting object but got list at item 1 of input list"),
    (b'{"instances": [{"x": [1,2,3,4]}]}', "JSON object: does not have named input: x"),
    (b'{"inputs": {"mask": [1]}}', "Missing named input: input in 'inputs' object."),
    (b'{"instances": ' + b"[" * 40 + b"1" + b"]" * 40 + b"}",
     "has shape [1, 1, 1, 1, 1, 1, ... (40 dimensions)] but the model expects [-1, 4]"),
    (b'{"instances": ' + b"[" * 70 + b"1" + b"]" * 70 + b"}", "(70 dimensions)"),
    (b'{"instances": ' + b"[" * 100000 + b"]" * 100000 + b"}", "nested too deeply"),
]


@pytest.mark.parametrize("body, message", BAD_BODIES)
def test_bad_predict_bodies_get_400_naming_the_problem(url, session, body, message):
    response = session.post(url + "/v1/models/m:predict", data=body,
                            headers={"Content-Type": "application/json"})
    assert message in error_of(response, 400)


def test_server_is_still_correct_after_bad_requests(url, session, reference):
    for body, _ in BAD_BODIES:
        session.post(url + "/v1/models/m:predict", data=body)
    response = session.post(url + "/v1/models/m:predict", json={"instances": ROWS})
    np.testing.assert_array_equal(np.asarray(response.json()["predictions"], np.float32),
                                  reference.predict(np.asarray(ROWS, np.float32)))
    assert session.get(url + "/v1/models/m").json()["model_version_status"][0]["state"] == \
        "AVAILABLE"


def test_non_finite_model_output_is_answered_as_tf_serving_writes_it(url, session):
    huge = [[3e38, 3e38, 3e38, 3e38]] * 2  # finite in float32, the output overflows
    response = session.post(url + "/v1/models/m:predict", json={"instances": huge})
    assert response.status_code == 200
    assert b"Infinity" in response.content or b"NaN" in response.content
    assert not np.isfinite(np.asarray(response.json()["predictions"])).all()


@pytest.mark.parametrize("verb", ["classify", "regress"])
def test_classify_and_regress_are_not_supported(url, session, verb):
    response = session.post(url + f"/v1/models/m:{verb}", json={"examples": [{"x": 1}]})
    assert "not supported for this model type" in error_of(response, 400)


# ---------------------------------------------------------------- 404 / 405

@pytest.mark.parametrize("method, path, code, message", [
    ("GET", "/v1/models/nope", 404, "Could not find any versions of model nope"),
    ("POST", "/v1/models/nope:predict", 404, "Servable not found for request: Latest(nope)"),
    ("POST", "/v1/models/m/versions/3:predict", 404,
     "Servable not found for request: Specific(m, 3)"),
    ("GET", "/v1/models/m/versions/3/metadata", 404,
     "Servable not found for request: Specific(m, 3)"),
    ("GET", "/v1/models/m/versions/3", 404, "Could not find version 3 of model m"),
    ("GET", "/v1/models/m/versions/123456789012345678901234567890", 400,
     "Failed to convert version: 123456789012345678901234567890 to numeric."),
    ("GET", "/v1/models/m/labels/stable/metadata", 400,
     "Unrecognized servable version label: stable"),
    ("GET", "/v3/models/m", 404, "Malformed request: GET /v3/models/m"),
    ("POST", "/v1/models/m:explain", 400, "Malformed request: POST /v1/models/m:explain"),
    ("GET", "/v1/models/m/versions/x", 400, "Malformed request: GET /v1/models/m/versions/x"),
    ("GET", "/", 404, "Malformed request: GET /"),
])
def test_error_answers(url, session, method, path, code, message):
    # a valid body: TF Serving parses it before it looks the model up
    body = {"instances": ROWS} if method == "POST" else None
    assert error_of(session.request(method, url + path, json=body), code) == message


@pytest.mark.parametrize("method, path", [
    ("GET", "/v1/models/m:predict"), ("PUT", "/v1/models/m"), ("POST", "/v1/models/m/metadata"),
    ("DELETE", "/v1/models/m"), ("PATCH", "/v1/models/m:predict"),
])
def test_wrong_method_is_a_malformed_request(url, session, method, path):
    response = session.request(method, url + path)
    assert error_of(response, 400) == f"Malformed request: {method} {path}"
    assert "Allow" not in response.headers


def test_wrong_method_for_the_metrics_gets_405_with_allow(url, session):
    response = session.delete(url + "/monitoring/prometheus/metrics")
    assert "is not allowed" in error_of(response, 405)
    assert response.headers["Allow"] == "GET, HEAD"


# ---------------------------------------------------------------- 401

@pytest.fixture(scope="module")
def secured_url(model_path, tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys") / "api_keys"
    keys.write_text("# production\nfirst-key\nsecond-key\n")
    app = create_app("m", str(model_path), api_key_file=str(keys),
                     file_system_poll_wait_seconds=0)
    with running_server(app) as base_url:
        yield base_url


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "first-key-but-longer"},
    {"Authorization": "Basic Zmlyc3Qta2V5"}, {"Authorization": "Bearer"},
    {"X_API_Key": "first-key"},  # underscores: dropped, so it cannot pose as X-API-Key
])
def test_missing_or_wrong_api_key_gets_401(secured_url, headers):
    for method, path in [("POST", "/v1/models/m:predict"), ("GET", "/v1/models/m"),
                         ("GET", "/v1/models/m/metadata"),
                         ("GET", "/monitoring/prometheus/metrics")]:
        response = requests.request(method, secured_url + path, json={"instances": ROWS},
                                    headers=headers, timeout=10)
        assert "Missing or invalid API key" in error_of(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("headers", [
    {"Authorization": "Bearer first-key"}, {"Authorization": "bearer second-key"},
    {"X-API-Key": "second-key"},
])
def test_api_key_by_bearer_or_x_api_key(secured_url, headers):
    response = requests.post(secured_url + "/v1/models/m:predict", json={"instances": ROWS},
                             headers=headers, timeout=10)
    assert response.status_code == 200
    metrics = requests.get(secured_url + "/monitoring/prometheus/metrics", headers=headers,
                           timeout=10)
    assert metrics.status_code == 200


# ---------------------------------------------------------------- 413

@pytest.fixture(scope="module")
def small_body_url(model_path):
    app = create_app("m", str(model_path), max_body_bytes=200, file_system_poll_wait_seconds=0)
    with running_server(app) as base_url:
        yield base_url


def test_declared_body_over_the_limit_is_refused_before_it_is_sent(small_body_url):
    # headers only: the server must answer without waiting for the 10 MB it was promised
    head = (b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n")
    answer = raw_exchange(small_body_url, head)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in answer.lower()
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert "larger than the limit of 200 bytes" in body["error"]


def test_expect_100_continue_is_not_sent_for_a_refused_body(small_body_url):
    head = (b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: 5000\r\n\r\n")
    answer = raw_exchange(small_body_url, head)
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_expect_100_continue_for_an_accepted_body(small_body_url):
    body = json.dumps({"instances": ROWS[:1]}).encode()
    head = (b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    host, port = small_body_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head)
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ")


def test_sent_body_over_the_limit_gets_413(small_body_url):
    response = requests.post(small_body_url + "/v1/models/m:predict",
                             json={"instances": ROWS * 10}, timeout=10)
    assert "larger than the limit" in error_of(response, 413)


def test_chunked_body_over_the_limit_gets_413(small_body_url):
    def chunks():
        for _ in range(100):
            yield b"[1, 2, 3, 4], "

    response = requests.post(small_body_url + "/v1/models/m:predict", data=chunks(), timeout=10)
    assert "larger than the limit" in error_of(response, 413)


def test_chunked_body_within_the_limit_is_served(small_body_url):
    parts = [b'{"instances": ', b"[[1, 2, 3, 4]]", b"}"]
    response = requests.post(small_body_url + "/v1/models/m:predict", data=iter(parts),
                             timeout=10)
    assert response.status_code == 200


@pytest.mark.parametrize("head", [
    b"POST /v1/models/m:predict HTTP/1.1\r\nContent-Length: 12abc\r\n\r\n",
    b"POST /v1/models/m:predict HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n",
    b"POST /v1/models/m:predict HTTP/1.1\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n",
    b"GET /v1/models/m HTTP/1.1\r\n" + b"X-A: b\r\n" * 10000 + b"\r\n",
    b"POST /v1/models/m:predict HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
    b"POST /v1/models/m:predict HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"POST /v1/models/m:predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST /v1/models/m:predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\n{}\r\n",
    b"POST /v1/models/m:predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"2\r\n{}XX\r\n0\r\n\r\n",
    b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
    b"NONSENSE\r\n\r\n",
    b"GET /v1/models/m HTTP/1.1\r\nA header line without a colon\r\n\r\n",
    b"GET /v1/models/m HTTP/1.1\r\nX-Name : space before the colon\r\n\r\n",
    b"GET /v1/models/m HTTP/1.1\r\n folded line with nothing to continue\r\n\r\n",
])
def test_malformed_http_gets_a_json_4xx(small_body_url, head):
    answer = raw_exchange(small_body_url, head)
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500
    assert "error" in json.loads(answer.split(b"\r\n\r\n", 1)[1])


# ---------------------------------------------------------------- 429 / 503

def test_overload_is_shed_with_429_and_recovers(tmp_path):
    gate = threading.Event()
    app, model = gated_app(tmp_path, gate, max_enqueued_requests=1)
    with running_server(app) as base:
        first: dict = {}
        slow = threading.Thread(target=lambda: first.setdefault("response", requests.post(
            base + "/v1/models/m:predict", json={"instances": ROWS}, timeout=20)))
        slow.start()
        try:
            assert model.entered.wait(10)
            response = requests.post(base + "/v1/models/m:predict", json={"instances": ROWS},
                                     timeout=10)
            assert "Too many predict requests in progress" in error_of(response, 429)
            assert response.headers["Retry-After"] == "1"
            assert requests.get(base + "/v1/models/m", timeout=10).status_code == 200
        finally:
            gate.set()
            slow.join(20)
        assert first["response"].status_code == 200
        again = requests.post(base + "/v1/models/m:predict", json={"instances": ROWS}, timeout=10)
        # written as TF Serving writes float32 (0.2, not 0.20000000298023224): equal as float32
        np.testing.assert_array_equal(np.asarray(again.json()["predictions"], np.float32),
                                      np.asarray(ROWS, np.float32) * 2)


def test_connection_limit_answers_503_busy(tmp_path):
    app, _ = gated_app(tmp_path, None)
    with running_server(app, max_connections=1) as base:
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as held:
            held.sendall(b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\n\r\n")
            assert held.recv(65536).startswith(b"HTTP/1.1 200 ")  # kept alive: the one slot
            answer = raw_exchange(base, b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 503 ")
            assert b"limit of 1 connections open (--max_connections)" in answer


def test_nothing_loaded_yet_is_503(tmp_path):
    app = create_app("m", str(tmp_path / "empty"), file_system_poll_wait_seconds=0)
    with running_server(app) as base:
        response = requests.post(base + "/v1/models/m:predict", json={"instances": ROWS},
                                 timeout=10)
        assert "has no version available yet" in error_of(response, 503)
        assert response.headers["Retry-After"] == "1"
        assert "Could not find any versions" in error_of(
            requests.get(base + "/v1/models/m", timeout=10), 404)


def test_model_that_raises_is_a_500_not_a_crash(tmp_path):
    app, model = gated_app(tmp_path, None)
    model.fail_with = RuntimeError("kernel exploded")
    with running_server(app) as base:
        response = requests.post(base + "/v1/models/m:predict", json={"instances": ROWS},
                                 timeout=10)
        assert "kernel exploded" in error_of(response, 500)
        model.fail_with = None
        assert requests.post(base + "/v1/models/m:predict", json={"instances": ROWS},
                             timeout=10).status_code == 200


# ---------------------------------------------------------------- HTTP details

def test_keep_alive_serves_several_requests_on_one_connection(url):
    request = b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\n\r\n"
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        for _ in range(3):
            sock.sendall(request)
            answer = b""
            while b"\r\n\r\n" not in answer:  # head and body may come in separate reads
                answer += sock.recv(65536)
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            while len(body) < length:
                body += sock.recv(65536)
            assert len(body) == length  # and nothing more: the next answer is the next one's
            assert b"connection: close" not in head.lower()


def test_a_folded_header_line_is_refused_as_rfc_9112_allows(url):
    # obs-fold hides one header inside another's value: a request-smuggling vector
    answer = raw_exchange(url, b"GET /v1/models/m HTTP/1.1\r\nX-Note: first\r\n  second\r\n"
                               b"Connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")


def test_idle_and_stalled_connections_are_closed_after_keep_alive_timeout(model_path):
    app = create_app("m", str(model_path), file_system_poll_wait_seconds=0)
    with running_server(app, keep_alive_timeout=0.3) as base:
        for stalled in (b"", b"GET /v1/models/m HTT", b"GET /v1/models/m HTTP/1.1\r\nHost: x"):
            # closed without an answer: a request cut short is never answered as if whole
            assert raw_exchange(base, stalled) == b""
        answer = raw_exchange(base, b"GET /v1/models/m HTTP/1.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 ")  # kept alive, then closed when idle


def test_http_1_0_client_is_answered_and_closed(url):
    answer = raw_exchange(url, b"GET /v1/models/m HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"AVAILABLE" in answer


def test_cors_headers_and_preflight(model_path):
    app = create_app("m", str(model_path), enable_cors=True, file_system_poll_wait_seconds=0)
    with running_server(app) as base:
        preflight = requests.options(base + "/v1/models/m:predict", timeout=10, headers={
            "Origin": "https://example.org", "Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == "*"
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
        answer = requests.post(base + "/v1/models/m:predict", json={"instances": ROWS},
                               timeout=10)
        assert answer.headers["Access-Control-Allow-Origin"] == "*"
        error = requests.get(base + "/v1/models/nope", timeout=10)
        assert error.headers["Access-Control-Allow-Origin"] == "*"


def test_metrics_count_requests_by_model_version_and_code(model_path):
    app = create_app("m", str(model_path), file_system_poll_wait_seconds=0)
    with running_server(app) as base:
        for _ in range(3):
            requests.post(base + "/v1/models/m:predict", json={"instances": ROWS}, timeout=10)
        requests.post(base + "/v1/models/m:predict", data=b"{", timeout=10)
        requests.get(base + "/v1/models/zzz", timeout=10)
        response = requests.get(base + "/monitoring/prometheus/metrics", timeout=10)
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert 'minidl_requests_total{model="m",version="1",code="200"} 3' in text
    # the body is parsed before the model is looked up: a bad one names no version
    assert 'minidl_requests_total{model="m",version="",code="400"} 1' in text
    assert 'minidl_requests_total{model="",version="",code="404"} 1' in text
    assert 'minidl_request_latency_seconds_count{model="m"} 4' in text
    assert 'minidl_batch_size_bucket{model="m",le="4"} 3' in text
    assert 'minidl_model_versions_loaded{model="m"} 1' in text


def test_create_app_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="nothing to serve"):
        create_app()
    with pytest.raises(ValueError, match="either model_config_file or"):
        create_app("m", str(tmp_path), model_config_file="x.config")
    with pytest.raises(ValueError, match="max_body_bytes must be a positive integer"):
        create_app("m", str(tmp_path), max_body_bytes=0)
    with pytest.raises(ValueError, match="max_batch_size must be an integer >= 1"):
        create_app("m", str(tmp_path), enable_batching=True, max_batch_size=0)
    with pytest.raises(FileNotFoundError):
        create_app("m", str(tmp_path), api_key_file=str(tmp_path / "missing"))


def test_hot_reload_over_http(tmp_path):
    save_version(tmp_path, 1, seed=1)
    app = create_app("m", str(tmp_path), file_system_poll_wait_seconds=0.05)

    def status(base):
        return {s["version"]: s for s in requests.get(base + "/v1/models/m",
                                                      timeout=10).json()["model_version_status"]}

    def predictions(base):
        answer = requests.post(base + "/v1/models/m:predict", json={"instances": ROWS}, timeout=10)
        return np.asarray(answer.json()["predictions"], np.float32)

    with running_server(app) as base:
        assert status(base)["1"]["state"] == "AVAILABLE"
        model_2 = save_version(tmp_path, 2, seed=2)
        wait_until(lambda: status(base).get("2", {}).get("state") == "AVAILABLE")
        np.testing.assert_array_equal(predictions(base),
                                      model_2.predict(np.asarray(ROWS, np.float32)))
        write_corrupt_version(tmp_path, 3)
        wait_until(lambda: "3" in status(base) and status(base)["3"]["state"] == "END")
        failed = status(base)["3"]["status"]
        assert failed["error_code"] == "INVALID_ARGUMENT" and failed["error_message"]
        np.testing.assert_array_equal(predictions(base),
                                      model_2.predict(np.asarray(ROWS, np.float32)))
        shutil.rmtree(tmp_path / "2")
        wait_until(lambda: status(base).get("1", {}).get("state") == "AVAILABLE")
        assert status(base)["2"]["state"] == "END"
        assert "Specific(m, 2)" in error_of(
            requests.post(base + "/v1/models/m/versions/2:predict", json={"instances": ROWS},
                          timeout=10), 404)


class ThreadRecordingModel:
    """y = 2x, recording the thread of each predict; ``pause`` seconds per call."""

    def __init__(self, pause: float) -> None:
        self.input_shape = self.output_shape = (INPUT_DIM,)
        self.dtype = np.dtype(np.float32)
        self.pause = pause
        self.threads: list[str] = []

    def predict(self, x, batch_size=None):
        self.threads.append(threading.current_thread().name)
        pause = self.pause(len(self.threads)) if callable(self.pause) else self.pause
        if pause:
            threading.Event().wait(pause)
        return x * 2


@pytest.mark.parametrize("pause, later_threads", [(0.0, "the event loop's"), (0.005, "pool")])
def test_a_cheap_unbatched_predict_runs_on_the_event_loop_and_a_costly_one_in_the_pool(
        tmp_path, pause, later_threads):
    from minidl.serving import ModelConfig, ModelManager, ServingApp

    model = ThreadRecordingModel(pause)
    save_version(tmp_path, 1)
    manager = ModelManager([ModelConfig("m", str(tmp_path))], file_system_poll_wait_seconds=0,
                           loader=lambda path: model)
    with running_server(ServingApp(manager)) as base, requests.Session() as http:
        for _ in range(4):
            answer = http.post(base + "/v1/models/m:predict", json={"instances": ROWS},
                               timeout=10)
            np.testing.assert_array_equal(np.asarray(answer.json()["predictions"], np.float32),
                                          np.asarray(ROWS, np.float32) * 2)
    first, *later = model.threads
    assert first.startswith("minidl-predict")  # not measured yet: the pool
    if later_threads == "pool":  # 5 ms a call: longer than INLINE_SECONDS
        assert all(name.startswith("minidl-predict") for name in later)
    else:  # measured as cheap: the server's own thread, which runs the event loop
        assert later == ["minidl-serving"] * 3


def test_one_slow_predict_does_not_send_a_cheap_model_to_the_pool(tmp_path):
    # a cheap model whose third call is slowed down (in a pool thread that waits for the GIL,
    # or by the host pausing the machine, a call only ever takes longer): the expectation is
    # the least of the last predicts, so the calls after it still run on the event loop
    from minidl.serving import ModelConfig, ModelManager, ServingApp

    model = ThreadRecordingModel(lambda call: 0.05 if call == 3 else 0.0)
    save_version(tmp_path, 1)
    manager = ModelManager([ModelConfig("m", str(tmp_path))], file_system_poll_wait_seconds=0,
                           loader=lambda path: model)
    with running_server(ServingApp(manager)) as base, requests.Session() as http:
        for _ in range(6):
            assert http.post(base + "/v1/models/m:predict", json={"instances": ROWS},
                             timeout=10).ok
    assert model.threads[0].startswith("minidl-predict")
    assert model.threads[1:] == ["minidl-serving"] * 5
