"""The Open Inference Protocol (V2) over real HTTP: the official client (tritonclient.http)
against a live server, every error path with raw requests, and JSON and binary tensors
agreeing on random inputs.

Each module-level server is stopped by its fixture; each client's connection pool is closed
by the ``client`` fixtures.
"""

import json
import os

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from hypothesis import given
from hypothesis import strategies as st
from test_serving_support import FakeModel, error_of, running_server, save_version
from tritonclient.utils import InferenceServerException

from minidl import __version__
from minidl.model import load_model
from minidl.serving import ModelConfig, ModelManager, ServingApp, create_app

API_KEY = "v2-key"
X = np.array([[0.1, -0.2, 0.3, 0.4], [1.0, 2.0, -3.0, 0.5], [0.0, 0.0, 0.0, 1e-8]],
             dtype=np.float32)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    base = tmp_path_factory.mktemp("v2")
    save_version(base / "m", 1, seed=1)
    save_version(base / "m", 2, seed=2)
    save_version(base / "d", 3, seed=3, dtype="float64")
    return base


@pytest.fixture(scope="module")
def oracles(base):
    """The served models, loaded on the client side: the oracles for the answers."""
    return {(name, version): load_model(str(base / name / str(version) / "model.npz"))
            for name, version in (("m", 1), ("m", 2), ("d", 3))}


def config_file(base, **options):
    config = base / "models.config"
    config.write_text(json.dumps({"model_config_list": {"config": [
        {"name": "m", "base_path": str(base / "m"), "model_version_policy": {"all": {}}},
        {"name": "d", "base_path": str(base / "d")}]}}))
    return create_app(model_config_file=str(config), file_system_poll_wait_seconds=0,
                      **options)


@pytest.fixture(scope="module")
def url(base):
    with running_server(config_file(base)) as base_url:
        yield base_url


@pytest.fixture
def client(url):
    client = triton.InferenceServerClient(url=url.removeprefix("http://"))
    yield client
    client.close()


def infer_input(x, binary=True, datatype="FP32"):
    tensor = triton.InferInput("input", list(x.shape), datatype)
    tensor.set_data_from_numpy(x, binary_data=binary)
    return tensor


# ---------------------------------------------------------------- the official client

def test_client_sees_the_server_live_and_ready(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("m")
    assert client.is_model_ready("m", "1")
    assert client.is_model_ready("d", "3")


def test_client_sees_unknown_models_and_versions_as_not_ready(client):
    assert not client.is_model_ready("nope")
    assert not client.is_model_ready("m", "7")
    assert not client.is_model_ready("d", "1")


def test_server_metadata_names_minidl_and_the_binary_extension(client):
    assert client.get_server_metadata() == {
        "name": "minidl", "version": __version__, "extensions": ["binary_tensor_data"]}


def test_model_metadata_uses_the_tf_serving_tensor_names(client, url):
    assert client.get_model_metadata("m") == {
        "name": "m", "versions": ["1", "2"], "platform": "minidl",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 3]}]}
    assert client.get_model_metadata("d", "3")["inputs"] == [
        {"name": "input", "datatype": "FP64", "shape": [-1, 4]}]
    # the same names as TF Serving's metadata gives
    signature = requests.get(url + "/v1/models/m/metadata", timeout=10).json()[
        "metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert list(signature["inputs"]) == ["input"] and list(signature["outputs"]) == ["output"]


def test_infer_with_binary_outputs_equals_predict_bit_for_bit(client, oracles):
    result = client.infer("m", [infer_input(X)])
    output = result.as_numpy("output")
    assert output.dtype == np.float32
    np.testing.assert_array_equal(output, oracles["m", 2].predict(X))
    response = result.get_response()
    assert response["model_name"] == "m" and response["model_version"] == "2"
    assert response["outputs"][0]["parameters"] == {"binary_data_size": 3 * 3 * 4}
    assert "id" not in response


def test_infer_with_json_outputs_equals_predict_bit_for_bit(client, oracles):
    for binary_input in (True, False):
        result = client.infer("m", [infer_input(X, binary_input)],
                              outputs=[triton.InferRequestedOutput("output", binary_data=False)])
        output = result.get_response()["outputs"][0]
        assert "parameters" not in output and output["shape"] == [3, 3]
        np.testing.assert_array_equal(result.as_numpy("output").astype(np.float32),
                                      oracles["m", 2].predict(X))


def test_infer_a_specific_version(client, oracles):
    for version in (1, 2):
        result = client.infer("m", [infer_input(X)], model_version=str(version))
        assert result.get_response()["model_version"] == str(version)
        np.testing.assert_array_equal(result.as_numpy("output"),
                                      oracles["m", version].predict(X))


def test_infer_a_float64_model(client, oracles):
    x = X.astype(np.float64) / 3
    result = client.infer("d", [infer_input(x, datatype="FP64")])
    assert result.as_numpy("output").dtype == np.float64
    np.testing.assert_array_equal(result.as_numpy("output"), oracles["d", 3].predict(x))
    as_json = client.infer("d", [infer_input(x, False, "FP64")],
                           outputs=[triton.InferRequestedOutput("output", binary_data=False)])
    np.testing.assert_array_equal(as_json.as_numpy("output"), oracles["d", 3].predict(x))


def test_infer_echoes_the_request_id(client):
    result = client.infer("m", [infer_input(X)], request_id="order-42")
    assert result.get_response()["id"] == "order-42"


def test_integer_and_boolean_inputs_are_converted_to_the_model_dtype(client, oracles):
    for x, datatype in ((np.array([[1, -2, 3, 4], [0, 0, 7, 127]], np.int8), "INT8"),
                        (np.array([[1, -2, 3, 4], [0, 0, 7, 2 ** 24]], np.int32), "INT32"),
                        (np.array([[1, 2, 3, 4], [0, 0, 7, 2 ** 24]], np.uint64), "UINT64")):
        result = client.infer("m", [infer_input(x, datatype=datatype)])
        np.testing.assert_array_equal(result.as_numpy("output"),
                                      oracles["m", 2].predict(x.astype(np.float32)))
    mask = np.array([[True, False, True, True]])
    result = client.infer("m", [infer_input(mask, datatype="BOOL")])
    np.testing.assert_array_equal(result.as_numpy("output"),
                                  oracles["m", 2].predict(mask.astype(np.float32)))


@pytest.mark.parametrize("call, status, message", [
    (lambda c: c.infer("nope", [infer_input(X)]), "404", "Unknown model 'nope'"),
    (lambda c: c.infer("m", [infer_input(X)], model_version="9"), "404",
     "Model 'm' has no version 9 available (available: 1, 2)"),
    (lambda c: c.infer("m", [infer_input(X[:, :3])]), "400",
     "Input 'input' has shape [3, 3] but the model expects [-1, 4]"),
    (lambda c: c.infer("m", [infer_input(X.astype(np.float16), datatype="FP16")]), "400",
     "datatype FP16 is not supported"),
    (lambda c: c.infer("m", [infer_input(np.full((1, 4), 0.1), datatype="FP64")]), "400",
     "FP64 value 0.1 at index 0 has no exact FP32 value"),
    (lambda c: c.infer("m", [infer_input(X)], outputs=[triton.InferRequestedOutput("probs")]),
     "400", "Unknown output \"probs\": the model has one output, named 'output'"),
    (lambda c: c.get_model_metadata("nope"), "404", "Unknown model 'nope'"),
])
def test_client_raises_the_servers_error(client, call, status, message):
    with pytest.raises(InferenceServerException) as raised:
        call(client)
    assert raised.value.status() == status
    assert message in raised.value.message()


@pytest.fixture(scope="module")
def secured_url(base, tmp_path_factory):
    keys = tmp_path_factory.mktemp("v2keys") / "api_keys"
    keys.write_text(API_KEY + "\n")
    with running_server(config_file(base, api_key_file=str(keys))) as base_url:
        yield base_url


@pytest.fixture
def secured_client(secured_url):
    client = triton.InferenceServerClient(url=secured_url.removeprefix("http://"))
    yield client
    client.close()


def test_with_api_keys_health_is_open_and_the_rest_needs_the_key(secured_client, oracles):
    assert secured_client.is_server_live() and secured_client.is_server_ready()
    assert not secured_client.is_model_ready("m")  # 401 is not 200
    with pytest.raises(InferenceServerException, match="Missing or invalid API key"):
        secured_client.get_server_metadata()
    with pytest.raises(InferenceServerException, match="Missing or invalid API key"):
        secured_client.infer("m", [infer_input(X)])
    key = {"X-API-Key": API_KEY}
    assert secured_client.is_model_ready("m", headers=key)
    assert secured_client.get_model_metadata("m", headers=key)["name"] == "m"
    result = secured_client.infer("m", [infer_input(X)],
                                  headers={"Authorization": f"Bearer {API_KEY}"})
    np.testing.assert_array_equal(result.as_numpy("output"), oracles["m", 2].predict(X))


# ---------------------------------------------------------------- health and readiness

def test_health_routes_answer_with_an_empty_body(url):
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/m/ready"):
        for method in ("GET", "HEAD"):
            response = requests.request(method, url + path, timeout=10)
            assert response.status_code == 200 and response.content == b""
    response = requests.post(url + "/v2/health/live", timeout=10)
    assert "Method POST is not allowed for /v2/health/live; use GET" in error_of(response, 405)
    assert response.headers["Allow"] == "GET, HEAD"


def test_readiness_flips_once_a_version_is_loaded(tmp_path):
    app = create_app("m", str(tmp_path / "m"), file_system_poll_wait_seconds=0)
    with running_server(app) as base_url:
        live = requests.get(base_url + "/v2/health/live", timeout=10)
        ready = requests.get(base_url + "/v2/health/ready", timeout=10)
        assert live.status_code == 200
        assert ready.status_code == 400 and ready.content == b""
        not_ready = requests.get(base_url + "/v2/models/m/ready", timeout=10)
        assert "Not ready: Model m has no version available yet" in error_of(not_ready, 400)
        metadata = requests.get(base_url + "/v2/models/m", timeout=10)
        assert "has no version available yet" in error_of(metadata, 503)
        infer = requests.post(base_url + "/v2/models/m/infer", json=infer_body(X), timeout=10)
        assert error_of(infer, 503) and infer.headers["Retry-After"] == "1"

        save_version(tmp_path / "m", 1)
        app.manager.poll()
        assert requests.get(base_url + "/v2/health/ready", timeout=10).status_code == 200
        assert requests.get(base_url + "/v2/models/m/ready", timeout=10).status_code == 200
        assert requests.post(base_url + "/v2/models/m/infer", json=infer_body(X),
                             timeout=10).status_code == 200


def test_server_is_not_ready_while_one_model_has_nothing(tmp_path, base):
    config = tmp_path / "models.config"
    config.write_text(json.dumps({"model_config_list": {"config": [
        {"name": "m", "base_path": str(base / "m")},
        {"name": "later", "base_path": str(tmp_path / "later")}]}}))
    app = create_app(model_config_file=str(config), file_system_poll_wait_seconds=0)
    with running_server(app) as base_url:
        assert requests.get(base_url + "/v2/health/ready", timeout=10).status_code == 400
        assert requests.get(base_url + "/v2/models/m/ready", timeout=10).status_code == 200
        assert requests.get(base_url + "/v2/models/later/ready", timeout=10).status_code == 400


# ---------------------------------------------------------------- raw requests

def infer_body(x, datatype="FP32", **extra):
    return {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": datatype,
                        "data": x.ravel().tolist()}], **extra}


def binary_request(header, blob):
    """An infer request of the binary extension: a JSON header then ``blob``."""
    header_bytes = json.dumps(header).encode()
    return header_bytes + blob, {"Inference-Header-Content-Length": str(len(header_bytes))}


def test_binary_answer_has_its_header_length_and_content_type(url, oracles):
    body, headers = binary_request(
        {"inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32",
                     "parameters": {"binary_data_size": X.nbytes}}],
         "parameters": {"binary_data_output": True}}, X.tobytes())
    response = requests.post(url + "/v2/models/m/infer", data=body, headers=headers, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/octet-stream"
    length = int(response.headers["Inference-Header-Content-Length"])
    header = json.loads(response.content[:length])
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 36}
    output = np.frombuffer(response.content[length:], dtype="<f4").reshape(3, 3)
    np.testing.assert_array_equal(output, oracles["m", 2].predict(X))


def test_json_answer_by_default_without_the_header(url, oracles):
    response = requests.post(url + "/v2/models/m/infer", json=infer_body(X, id="7"), timeout=10)
    assert response.headers["Content-Type"] == "application/json"
    assert "Inference-Header-Content-Length" not in response.headers
    answer = response.json()
    assert answer["id"] == "7" and answer["outputs"][0]["datatype"] == "FP32"
    np.testing.assert_array_equal(np.float32(answer["outputs"][0]["data"]).reshape(3, 3),
                                  oracles["m", 2].predict(X))


def test_nested_data_equals_flat_data(url):
    flat = requests.post(url + "/v2/models/m/infer", json=infer_body(X), timeout=10).json()
    nested = infer_body(X)
    nested["inputs"][0]["data"] = X.tolist()
    assert requests.post(url + "/v2/models/m/infer", json=nested, timeout=10).json() == flat


def test_non_finite_inputs_and_outputs(url, oracles):
    with_nan = np.array([[np.nan, 1.0, -np.inf, 2.0]], dtype=np.float32)  # JSON's NaN tokens
    answer = requests.post(url + "/v2/models/m/infer", data=json.dumps(infer_body(with_nan)),
                           timeout=10)  # requests' json= refuses NaN
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(np.float32(answer.json()["outputs"][0]["data"]),
                                      oracles["m", 2].predict(with_nan)[0])
    x = np.full((1, 4), 3e38, dtype=np.float32)
    with np.errstate(all="ignore"):
        expected = oracles["m", 2].predict(x)
    assert not np.isfinite(expected).all()
    answer = requests.post(url + "/v2/models/m/infer", json=infer_body(x), timeout=10)
    assert b"Infinity" in answer.content or b"NaN" in answer.content
    np.testing.assert_array_equal(np.float32(answer.json()["outputs"][0]["data"]), expected[0])
    body, headers = binary_request(
        {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                     "parameters": {"binary_data_size": 16}}],
         "outputs": [{"name": "output", "parameters": {"binary_data": True}}]}, x.tobytes())
    binary = requests.post(url + "/v2/models/m/infer", data=body, headers=headers, timeout=10)
    length = int(binary.headers["Inference-Header-Content-Length"])
    np.testing.assert_array_equal(np.frombuffer(binary.content[length:], "<f4"), expected[0])


def test_head_answers_as_get(url):
    for path in ("/v2", "/v2/models/m", "/v2/models/m/versions/1"):
        get, head = (requests.request(m, url + path, timeout=10) for m in ("GET", "HEAD"))
        assert get.status_code == head.status_code == 200
        assert head.content == b""
        assert head.headers["Content-Length"] == str(len(get.content))


def with_input(**changes):
    entry = {"name": "input", "shape": [2, 4], "datatype": "FP32",
             "data": [1, 2, 3, 4, 5, 6, 7, 8], **changes}
    return {"inputs": [{k: v for k, v in entry.items() if v is not None}]}


OUTPUT = {"name": "output"}
BAD_JSON_BODIES = [
    (b"{", "JSON Parse error: Missing a name for object member. at offset: 1"),
    (b"", "JSON Parse error: The document is empty"),
    (b"[1]", 'The infer request must be a JSON object ({"inputs": [...]}), got [1]'),
    ({"id": 7, **with_input()}, "The request's id must be a string, got 7"),
    ({"parameters": [], **with_input()}, "The parameters of the request must be a JSON object"),
    ({"parameters": {"binary_data_output": 1}, **with_input()},
     "Parameter 'binary_data_output' of the request must be true or false, got 1"),
    ({}, "The request's 'inputs' must be a list of input tensors"),
    ({"inputs": [1]}, "The request's 'inputs' must be a list of input tensors"),
    ({"inputs": []}, "The model takes one input, named 'input'; the request has 0"),
    ({"inputs": with_input()["inputs"] * 2},
     "The model takes one input, named 'input'; the request has 2: \"input\", \"input\""),
    (with_input(name="x"), "Unknown input \"x\": the model's input is named 'input'"),
    (with_input(datatype=None), "Input 'input': datatype must be a string such as 'FP32'"),
    (with_input(datatype="BYTES"), "datatype BYTES is not supported; minidl reads BOOL, INT8"),
    (with_input(datatype="BF16"), "datatype BF16 is not supported"),
    (with_input(datatype="float32"), "unknown datatype \"float32\"; minidl reads BOOL"),
    (with_input(shape=None), "shape must be a list of non-negative integers, got null"),
    (with_input(shape=[2, -4]), "shape must be a list of non-negative integers"),
    (with_input(shape=[2, 4.0]), "shape must be a list of non-negative integers"),
    (with_input(shape=[True, 4]), "shape must be a list of non-negative integers"),
    (with_input(shape=[4, 2]), "Input 'input' has shape [4, 2] but the model expects [-1, 4]"),
    (with_input(shape=[8]), "has shape [8] but the model expects [-1, 4]"),
    (with_input(shape=[0, 4], data=[]), "a batch of at least one input of shape [4]"),
    (with_input(data=None), "Input 'input' has no data: give 'data', or binary data"),
    (with_input(data=5), "data must be a list (flat, or nested as the shape), got 5"),
    (with_input(data=[1, 2, 3, 4, 5, 6, 7]), "data holds 7 values but shape [2, 4] holds 8"),
    (with_input(data=[[1, 2], [3, 4], [5, 6], [7, 8]]),
     "data is nested as [4, 2] but the shape is [2, 4]: give it flat or nested as the shape"),
    (with_input(data=[[1, 2, 3, 4], [5, 6, 7]]), "data is neither flat nor nested as the shape"),
    (with_input(data=[1, 2, 3, "4", 5, 6, 7, 8]),
     "data value \"4\" at index 3 is not a JSON number, as FP32 needs"),
    (with_input(data=[1, 2, 3, 4, 5, None, 7, 8]), "data value null at index 5 is not a JSON"),
    (with_input(data=[1, 2, 3, 4, 5, True, 7, 8]), "data value true at index 5 is not a JSON"),
    (with_input(data=[1, 2, 3, 4, 5, 6, 7, {"b64": "AA=="}]), "at index 7 is not a JSON number"),
    (with_input(data=[1, 2, 3, 4, 5, 6, 7, 1e39]),
     "data value 1e+39 at index 7 is beyond FP32's range (±3.4028235e+38)"),
    (with_input(datatype="INT32", data=[1, 2, 3, 4, 5, 6, 7, 1.5]),
     "data value 1.5 at index 7 is not a JSON integer, as INT32 needs"),
    (with_input(datatype="INT8", data=[1, 2, 3, 4, 5, 6, 7, 128]),
     "data value 128 at index 7 is outside INT8's range [-128, 127]"),
    (with_input(datatype="UINT64", data=[1, 2, 3, 4, 5, 6, 7, -1]),
     "data value -1 at index 7 is outside UINT64's range [0, 18446744073709551615]"),
    (with_input(datatype="INT64", data=[1, 2, 3, 4, 5, 6, 7, -2 ** 63 - 1]),
     "data value -9223372036854775809 at index 7 is outside INT64's range"),
    (with_input(datatype="UINT64", data=[1, 2, 3, 4, 5, 6, 7, 2 ** 64]),
     "data value 18446744073709551616 at index 7 is outside UINT64's range"),
    (with_input(datatype="BOOL", data=[1, 0, 1, 0, 1, 0, 1, 0]),
     "data value 1 at index 0 is not true or false, as BOOL needs"),
    (with_input(datatype="INT32", data=[1, 2, 3, 4, 5, 6, 7, 16777217]),
     "INT32 value 16777217 at index 7 has no exact FP32 value, the model's datatype (integers "
     "up to 2**24 in magnitude are accepted)"),
    (with_input(datatype="UINT64", data=[2 ** 64 - 1, 2, 3, 4, 5, 6, 7, 8]),
     "UINT64 value 18446744073709551615 at index 0 has no exact FP32 value"),
    (with_input(datatype="FP64", data=[1, 2, 3, 4, 5, 6, 7, 0.1]),
     "FP64 value 0.1 at index 7 has no exact FP32 value, the model's datatype (round to FP32 on "
     "your side: values that are FP32 values are accepted)"),
    (with_input(datatype="FP64", data=[1, 2, 3, 4, 5, 6, 7, 1e300]),
     "FP64 value 1e+300 at index 7 has no exact FP32 value"),
    (with_input(parameters=[]), "The parameters of input 'input' must be a JSON object"),
    (with_input(parameters={"shared_memory_region": "r"}),
     "Parameter 'shared_memory_region' of input 'input': the shared memory extensions are not "
     "implemented"),
    (with_input(parameters={"binary_data_size": 32}),
     "Input 'input' has both 'data' and a binary_data_size: give one"),
    (with_input(data=None, parameters={"binary_data_size": 32}),
     "Input 'input' has a binary_data_size but the request has no "
     "Inference-Header-Content-Length header"),
    ({**with_input(), "outputs": {"name": "output"}}, "The request's 'outputs' must be a list"),
    ({**with_input(), "outputs": [{"name": "probs"}]}, "Unknown output \"probs\""),
    ({**with_input(), "outputs": [OUTPUT, OUTPUT]}, "Output 'output' is asked for twice"),
    ({**with_input(), "outputs": [{"name": "output", "parameters": {"binary_data": "yes"}}]},
     "Parameter 'binary_data' of output 'output' must be true or false, got \"yes\""),
    ({**with_input(), "outputs": [{"name": "output", "parameters": {"classification": 2}}]},
     "Parameter 'classification' of output 'output': the classification extension is not "
     "implemented"),
    ({**with_input(), "outputs": [{"name": "output",
                                   "parameters": {"shared_memory_region": "r"}}]},
     "Parameter 'shared_memory_region' of output 'output': the shared memory extensions"),
]


@pytest.mark.parametrize("body, message", BAD_JSON_BODIES)
def test_malformed_json_requests_get_400_naming_the_problem(url, body, message):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = requests.post(url + "/v2/models/m/infer", data=data, timeout=10)
    assert message in error_of(response, 400)


def binary_input(size, datatype="FP32", shape=(2, 4)):
    return {"inputs": [{"name": "input", "shape": list(shape), "datatype": datatype,
                        "parameters": {"binary_data_size": size}}]}


EIGHT_FLOATS = np.arange(8, dtype="<f4").tobytes()
BAD_BINARY_REQUESTS = [
    (binary_input(32), EIGHT_FLOATS, "x1",
     "Inference-Header-Content-Length must be the JSON header's length in bytes, got \"x1\""),
    (binary_input(32), EIGHT_FLOATS, "-1", "Inference-Header-Content-Length must be"),
    (binary_input(32), EIGHT_FLOATS, "99999",
     "Inference-Header-Content-Length is 99999 but the body holds"),
    (binary_input(30), EIGHT_FLOATS[:30], None,
     "Input 'input': binary_data_size is 30 but shape [2, 4] of FP32 takes 32 bytes (4 a value)"),
    (binary_input(-1), b"", None, "binary_data_size must be a byte count, got -1"),
    (binary_input(32.0), EIGHT_FLOATS, None, "binary_data_size must be a byte count, got 32.0"),
    (binary_input(32), EIGHT_FLOATS[:30], None,
     "Input 'input': binary_data_size is 32 but only 30 bytes follow the JSON header"),
    (binary_input(32), EIGHT_FLOATS + b"\0\0", None,
     "The body holds 34 bytes after its JSON header (Inference-Header-Content-Length), but the "
     "inputs' binary_data_size add up to 32"),
    (with_input(), b"\0", None, "The body holds 1 bytes after its JSON header"),
    (binary_input(8, "BOOL"), bytes([1, 0, 1, 2, 0, 0, 0, 0]), None,
     "Input 'input': BOOL byte 2 at index 3 is neither 0 (false) nor 1 (true)"),
    (binary_input(64, "FP64"), np.array([1, 2, 3, 4, 5, 6, 7, 0.1], "<f8").tobytes(), None,
     "FP64 value 0.1 at index 7 has no exact FP32 value"),
    (binary_input(64, "INT64"), np.array([1, 2, 3, 4, 5, 6, 7, -2 ** 40], "<i8").tobytes(),
     None, "INT64 value -1099511627776 at index 7 has no exact FP32 value"),
]


@pytest.mark.parametrize("header, blob, length, message", BAD_BINARY_REQUESTS)
def test_malformed_binary_requests_get_400_naming_the_problem(url, header, blob, length,
                                                              message):
    body, headers = binary_request(header, blob)
    if length is not None:
        headers["Inference-Header-Content-Length"] = length
    response = requests.post(url + "/v2/models/m/infer", data=body, headers=headers, timeout=10)
    assert message in error_of(response, 400)


@pytest.mark.parametrize("method, path, code, message", [
    ("GET", "/v2/models/nope", 404, "Unknown model 'nope'; the models served: 'd', 'm'"),
    ("GET", "/v2/models/nope/ready", 404, "Unknown model 'nope'"),
    ("POST", "/v2/models/nope/infer", 404, "Unknown model 'nope'"),
    ("GET", "/v2/models/m/versions/9", 404, "Model 'm' has no version 9 available "
                                            "(available: 1, 2)"),
    ("GET", "/v2/models/m/versions/9/ready", 400, "Not ready: Model 'm' has no version 9"),
    ("GET", "/v2/models/m/versions/v1", 400, "Model version must be an integer from 0 to "
                                             "9223372036854775807 (its folder's name), got 'v1'"),
    ("GET", "/v2/models/m/versions/99999999999999999999", 400, "Model version must be"),
    ("GET", "/v2/models/m/infer", 405, "Method GET is not allowed for /v2/models/m/infer; "
                                       "use POST"),
    ("POST", "/v2/models/m", 405, "Method POST is not allowed for /v2/models/m; use GET"),
    ("DELETE", "/v2", 405, "Method DELETE is not allowed for /v2; use GET"),
    ("GET", "/v2/", 404, "Not found: GET /v2/ (the V2 routes: /v2, /v2/health/live"),
    ("GET", "/v2/models", 404, "Not found: GET /v2/models"),
    ("GET", "/v2/models/m/", 404, "Not found"),
    ("GET", "/v2/models/m/config", 404, "Not found"),
    ("GET", "/V2/health/live", 404, "Not found"),  # the protocol's strings are case-sensitive
    ("GET", "/v2/Health/Ready", 404, "Not found"),
    ("POST", "/v2/repository/index", 404, "Not found"),
])
def test_route_errors(url, method, path, code, message):
    response = requests.request(method, url + path, json=infer_body(X), timeout=10)
    assert message in error_of(response, code)
    if code == 405:
        assert response.headers["Allow"] in ("GET, HEAD", "POST")


def test_compressed_bodies_are_refused_with_415(url):
    response = requests.post(url + "/v2/models/m/infer", data=b"\x1f\x8b...", timeout=10,
                             headers={"Content-Encoding": "gzip"})
    assert "Content-Encoding gzip is not supported" in error_of(response, 415)


def test_server_is_still_correct_after_bad_requests(client, url, oracles):
    for body, _ in BAD_JSON_BODIES[:10]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        requests.post(url + "/v2/models/m/infer", data=data, timeout=10)
    np.testing.assert_array_equal(client.infer("m", [infer_input(X)]).as_numpy("output"),
                                  oracles["m", 2].predict(X))


def test_metrics_count_v2_requests_by_model_and_version(url):
    before = requests.get(url + "/monitoring/prometheus/metrics", timeout=10).text
    requests.post(url + "/v2/models/m/versions/1/infer", json=infer_body(X), timeout=10)
    after = requests.get(url + "/monitoring/prometheus/metrics", timeout=10).text
    sample = 'minidl_requests_total{model="m",version="1",code="200"} '

    def count(text):
        lines = [line for line in text.splitlines() if line.startswith(sample)]
        return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0

    assert count(after) == count(before) + 1


def test_batching_serves_v2_requests(base, oracles):
    with running_server(config_file(base, enable_batching=True)) as base_url:
        client = triton.InferenceServerClient(url=base_url.removeprefix("http://"))
        try:
            result = client.infer("m", [infer_input(X)])
        finally:
            client.close()
    np.testing.assert_array_equal(result.as_numpy("output"), oracles["m", 2].predict(X))


# ---------------------------------------------------------------- JSON and binary agree

SHAPES = {"flat": (4,), "matrix": (2, 3), "cube": (2, 1, 2)}  # the input shapes served


@pytest.fixture(scope="module")
def shapes_url(tmp_path_factory):
    """Models y = 2x (FakeModel) of the input shapes of SHAPES, named as their keys."""
    base = tmp_path_factory.mktemp("shapes")
    configs = []
    for name in SHAPES:
        os.makedirs(base / name / "1")
        (base / name / "1" / "model.npz").write_bytes(b"stand-in")  # the loader never reads it
        configs.append(ModelConfig(name, str(base / name)))

    def loader(path):
        return FakeModel(input_shape=SHAPES[os.path.basename(os.path.dirname(
            os.path.dirname(path)))])

    manager = ModelManager(configs, file_system_poll_wait_seconds=0, loader=loader)
    with running_server(ServingApp(manager)) as base_url:
        yield base_url


# values every datatype holds and FP32 holds exactly
EXACT = {"BOOL": st.booleans(), "FP32": st.floats(width=32, allow_nan=False),
         "FP64": st.floats(width=32, allow_nan=False)}
EXACT.update({f"{sign}INT{bits}": st.integers(
    max(-2 ** 24, -2 ** (bits - 1)) if sign == "" else 0,
    min(2 ** 24, 2 ** (bits - 1) - 1 if sign == "" else 2 ** bits - 1))
    for sign in ("", "U") for bits in (8, 16, 32, 64)})
NUMPY = {"BOOL": "?", "FP32": "<f4", "FP64": "<f8", **{
    f"{sign}INT{bits}": f"<{sign.lower() or 'i'}{bits // 8}" for sign in ("", "U")
    for bits in (8, 16, 32, 64)}}


@st.composite
def tensors(draw):
    name = draw(st.sampled_from(sorted(SHAPES)))
    datatype = draw(st.sampled_from(sorted(EXACT)))
    rows = draw(st.integers(1, 4))
    shape = (rows, *SHAPES[name])
    count = int(np.prod(shape))
    values = draw(st.lists(EXACT[datatype], min_size=count, max_size=count))
    return name, datatype, np.array(values, dtype=NUMPY[datatype]).reshape(shape)


@given(tensor=tensors(), nested=st.booleans())
def test_json_and_binary_inputs_give_the_same_predictions(shapes_url, tensor, nested):
    name, datatype, values = tensor
    entry = {"name": "input", "shape": list(values.shape), "datatype": datatype}
    as_json = {"inputs": [{**entry, "data": values.tolist() if nested
                           else values.ravel().tolist()}]}
    json_answer = requests.post(f"{shapes_url}/v2/models/{name}/infer",
                                data=json.dumps(as_json), timeout=10)  # with Infinity
    body, headers = binary_request(
        {"inputs": [{**entry, "parameters": {"binary_data_size": values.nbytes}}],
         "parameters": {"binary_data_output": True}}, values.tobytes())
    binary_answer = requests.post(f"{shapes_url}/v2/models/{name}/infer", data=body,
                                  headers=headers, timeout=10)
    assert json_answer.status_code == binary_answer.status_code == 200, json_answer.text
    length = int(binary_answer.headers["Inference-Header-Content-Length"])
    from_binary = np.frombuffer(binary_answer.content[length:], "<f4").reshape(values.shape)
    from_json = np.float32(json_answer.json()["outputs"][0]["data"]).reshape(values.shape)
    with np.errstate(over="ignore"):  # as the server's predict: overflow is inf
        expected = values.astype(np.float32) * 2
    np.testing.assert_array_equal(from_json, expected)
    np.testing.assert_array_equal(from_binary, expected)
