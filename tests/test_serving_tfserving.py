"""TF Serving's own REST tests, ported: every case of

* ``tensorflow_serving/model_servers/http_rest_api_handler_test.cc``,
* ``tensorflow_serving/model_servers/http_rest_api_util_test.cc``,
* ``tensorflow_serving/util/json_tensor_test.cc``

that applies to a minidl model (one float input ``input``, one output ``output``, versions,
labels), each named after the TF test it comes from, plus the behaviours of the
implementation those tests exercise (``http_rest_api_handler.cc``, ``http_rest_api_util.cc``,
``json_tensor.cc``, ``server_core.cc``, ``get_model_status_impl.cc``), named after the
function. Where TF Serving's message is fixed text the whole message is compared. What
minidl deliberately does otherwise is in docs/serving.md, "Differences from TensorFlow
Serving", and is not tested here as TF's.

The server runs in-process on 127.0.0.1 with a free port, one for the module.
"""

import http.client
import json
import os

import numpy as np
import pytest
import requests
from test_serving_support import running_server, save_version

from minidl.model import load_model
from minidl.serving import ModelConfig, ModelManager, ServingApp, VersionPolicy
from minidl.serving.models import default_loader

NAME = "saved_model_half_plus_two_2_versions"  # TF's test model: here a small Dense network
VERSION = 123
NEWER = 124
LABEL = "Version_Label"
RESERVED = "modelname!#$%&'()*+,;=?@[]"  # TF's reserved characters but '/' and ':'
RESERVED_LABEL = "latest!#$%&'()*+,/:;=?@[]"
ESCAPED = "%21%23%24%25%26%27%28%29%2A%2B%2C%2F%3A%3B%3D%3F%40%5B%5D"  # !#$%&'()*+,/:;=?@[]
ESCAPED_NO_SLASH = "%21%23%24%25%26%27%28%29%2A%2B%2C%3B%3D%3F%40%5B%5D"
ROWS = [[0.1, -0.2, 0.3, 0.4], [1.0, 2.0, -3.0, 0.5]]
FLOAT = "is not of expected type: float"


class Echo:
    """A model that answers its input: what comes out is what the server read."""

    def __init__(self, input_shape, dtype=np.float32):
        self.input_shape = tuple(input_shape)
        self.output_shape = self.input_shape
        self.dtype = np.dtype(dtype)

    def predict(self, x, batch_size=None):
        return np.array(x, copy=True)


ECHOES = {  # json_tensor_test.cc's tensors, each a model of that input shape
    "pairs": Echo((2,)), "triples": Echo((3,)), "grids": Echo((3, 2)), "scalars": Echo(()),
    "scalars64": Echo((), np.float64), RESERVED: Echo((2,)),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfserving")
    oracles = {v: save_version(root / NAME, v, seed=v) for v in (VERSION, NEWER)}
    configs = [ModelConfig(NAME, str(root / NAME), VersionPolicy("all"), {LABEL: VERSION})]
    echoes = {}
    for index, (name, model) in enumerate(ECHOES.items()):
        base = root / f"echo{index}"
        os.makedirs(base / "1")
        (base / "1" / "model.npz").write_bytes(b"stand-in")  # never read: see loader
        echoes[str(base)] = model
        labels = {RESERVED_LABEL: 1} if name == RESERVED else {}
        configs.append(ModelConfig(name, str(base), version_labels=labels))

    def loader(path):
        base = os.path.dirname(os.path.dirname(path))
        return echoes[base] if base in echoes else default_loader(path)

    manager = ModelManager(configs, file_system_poll_wait_seconds=0, loader=loader)
    return manager, oracles


@pytest.fixture(scope="module")
def url(models):
    with running_server(ServingApp(models[0])) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def oracles(models):
    return models[1]


@pytest.fixture(scope="module")
def session():
    with requests.Session() as http_session:
        yield http_session


def exchange(url, method, target, body=None):
    """``(status, parsed JSON or None, raw body)`` for a request whose target is sent exactly
    as written (requests would re-quote it)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(method, target, body=body,
                           headers={} if body is None else {"Content-Type": "application/json"})
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    parsed = json.loads(data) if data and method != "HEAD" else None
    return response.status, parsed, data


def error(url, method, target, body=None, code=400):
    status, parsed, data = exchange(url, method, target, body)
    assert status == code, data
    assert list(parsed) == ["error"]
    return parsed["error"]


def predict(url, name, body):
    body = body if isinstance(body, bytes) else json.dumps(body).encode()
    return exchange(url, "POST", f"/v1/models/{name}:predict", body)


def predict_error(url, name, body, code=400):
    status, parsed, data = predict(url, name, body)
    assert status == code, data
    return parsed["error"]


def element(n, message, key=None):
    """json_tensor.cc's wrapping of an instance's error."""
    where = f"{n} key: {key}" if key is not None else f"{n}"
    return f"Failed to process element: {where} of 'instances' list. Error: INVALID_ARGUMENT: " \
           + message


# ================================================================ URLs and methods

@pytest.mark.parametrize("method, target", [
    pytest.param("GET", "/v1/foo", id="UnsupportedApiCalls: GET /v1/foo"),
    pytest.param("POST", "/v1/foo", id="UnsupportedApiCalls: POST /v1/foo"),
    pytest.param("GET", "/v1/models/debug/model_name", id="UnsupportedApiCalls: debug"),
    pytest.param("POST", "/v1/models", id="UnsupportedApiCalls: POST /v1/models"),
    pytest.param("GET", "/v1/models/foo:predict", id="UnsupportedApiCalls: GET :predict"),
    pytest.param("GET", "/v1/models/foo/version/50:predict",
                 id="UnsupportedApiCalls: GET version/50:predict"),
    pytest.param("POST", "/v1/models/foo/version/50:regress",
                 id="UnsupportedApiCalls: version/50:regress"),
    pytest.param("POST", "/v1/models/foo/versions/HELLO:regress",
                 id="UnsupportedApiCalls: versions/HELLO"),
    pytest.param("POST", "/v1/models/foo/metadata", id="UnsupportedApiCalls: POST metadata"),
    pytest.param("POST", "/v1/models/foo/label/some_label:regress",
                 id="UnsupportedApiCalls: label/ (singular)"),
    pytest.param("POST", "/v1/models/foo/versions/50/labels/some_label:regress",
                 id="UnsupportedApiCalls: version and label"),
    pytest.param("POST", "/v1/models/foo/versions/some_label:regress",
                 id="UnsupportedApiCalls: versions/some_label"),
    pytest.param("POST", "/v1/models/foo/versions/string:predict",
                 id="TestParseModelInfoForPost: versions/string"),
    pytest.param("GET", f"/v1/models/{NAME}/versions/1/labels/{LABEL}",
                 id="http_rest_api_util.cc kModelStatusApiRegex: version and label"),
    pytest.param("GET", f"/v1/models/{NAME}/", id="kModelStatusApiRegex: a trailing /"),
    pytest.param("POST", f"/v1/models/{NAME}:predict/", id="kPredictionApiGegex: a trailing /"),
    pytest.param("POST", f"/v1/models/{NAME}:predictX", id="kPredictionApiGegex: :predictX"),
    pytest.param("POST", f"/v1/models/{NAME}:predict?x=1",
                 id="evhttp_request.cc uri_path: the query is matched too"),
    pytest.param("POST", f"/v1/models/{NAME}:PREDICT",
                 id="http_rest_api_handler.cc ProcessRequest: the verb compared as written"),
    pytest.param("POST", f"/v1/models/{NAME}/VERSIONS/{VERSION}:Predict",
                 id="ProcessRequest: :Predict"),
    pytest.param("PUT", f"/v1/models/{NAME}", id="ProcessRequest: PUT"),
    pytest.param("DELETE", f"/v1/models/{NAME}", id="ProcessRequest: DELETE"),
    pytest.param("PATCH", f"/v1/models/{NAME}:predict", id="ProcessRequest: PATCH"),
    pytest.param("OPTIONS", f"/v1/models/{NAME}", id="ProcessRequest: OPTIONS"),
])
def test_malformed_requests(url, method, target):
    body = json.dumps({"instances": ROWS}).encode() if method != "GET" else None
    assert error(url, method, target, body) == f"Malformed request: {method} {target}"


def test_head_is_malformed_too(url):
    # ProcessRequest: only GET and POST; libevent sends no body for a HEAD
    status, _, data = exchange(url, "HEAD", f"/v1/models/{NAME}")
    assert (status, data) == (400, b"")


@pytest.mark.parametrize("target", [
    pytest.param("/v1/models", id="UnsupportedApiCalls: GET /v1/models"),
    pytest.param("/v1/models/versions/1/metadata",
                 id="ProcessModelMetadataRequest: no model name"),
])
def test_missing_model_name(url, target):
    assert error(url, "GET", target) == "Missing model name in request."


@pytest.mark.parametrize("method, target", [
    pytest.param("POST", "/v1/models/foo/versions/18446744073709551615:regress",
                 id="UnsupportedApiCalls: uint64 max"),
    pytest.param("POST", "/v1/models/foo/versions/18446744073709551615:predict",
                 id="TestParseModelInfoForPost: uint64 max"),
    pytest.param("GET", f"/v1/models/{NAME}/versions/9223372036854775808",
                 id="ParseModelInfo: int64 max + 1"),
])
def test_versions_beyond_int64(url, method, target):
    version = target.rsplit("/", 1)[1].split(":")[0]
    body = json.dumps({"instances": ROWS}).encode() if method == "POST" else None
    assert error(url, method, target, body) == f"Failed to convert version: {version} to numeric."


@pytest.mark.parametrize("target", ["/statuspage", "/index"])
def test_paths_outside_v1_are_not_the_rest_api(url, target):
    # kPathRegex: these never reach TF Serving's REST handler (its HTTP server says 404)
    assert error(url, "GET", target, code=404).startswith("Malformed request")


def test_routes_match_case_insensitively(url, oracles):
    # kPredictionApiGegex, kModelStatusApiRegex: (?i)
    status, answer, _ = exchange(url, "POST", f"/V1/Models/{NAME}/Versions/{VERSION}:predict",
                                 json.dumps({"instances": ROWS}).encode())
    assert status == 200
    np.testing.assert_array_equal(np.asarray(answer["predictions"], np.float32),
                                  oracles[VERSION].predict(np.asarray(ROWS, np.float32)))
    assert "model_spec" in exchange(url, "GET", f"/V1/MODELS/{NAME}/metadata")[1]


def test_metadata_is_compared_as_written(url):
    # ProcessRequest: model_subresource == "metadata", else the status
    answer = exchange(url, "GET", f"/v1/models/{NAME}/METADATA")[1]
    assert list(answer) == ["model_version_status"]


def test_a_query_is_part_of_the_url_matched(url):
    # evhttp_request.cc uri_path: path and query; the model name is [^/:]+
    assert error(url, "GET", f"/v1/models/{NAME}?x=1", code=404) == \
        f"Could not find any versions of model {NAME}?x=1"


def test_reserved_characters_in_the_model_name_are_decoded(url):
    # TestParseModelInfoForGet: model name with reserved characters
    assert error(url, "GET", f"/v1/models/modelname{ESCAPED}", code=404) == \
        "Could not find any versions of model modelname!#$%&'()*+,/:;=?@[]"
    # TestParseModelInfoForPost: the same for predict
    assert predict_error(url, f"modelname{ESCAPED}", {"instances": [[1, 2]]}, 404) == \
        "Servable not found for request: Latest(modelname!#$%&'()*+,/:;=?@[])"
    status, answer, _ = exchange(url, "GET", f"/v1/models/modelname{ESCAPED_NO_SLASH}")
    assert status == 200 and answer["model_version_status"][0]["state"] == "AVAILABLE"
    status, answer, _ = predict(url, f"modelname{ESCAPED_NO_SLASH}", {"instances": [[1, 2]]})
    assert (status, answer) == (200, {"predictions": [[1.0, 2.0]]})


def test_reserved_characters_in_the_label_are_decoded(url):
    # TestParseModelInfoForGet/Post: labels (and metadata) with reserved characters
    name = f"modelname{ESCAPED_NO_SLASH}"
    status, answer, _ = predict(url, f"{name}/labels/latest{ESCAPED}", {"instances": [[1, 2]]})
    assert (status, answer) == (200, {"predictions": [[1.0, 2.0]]})
    answer = exchange(url, "GET", f"/v1/models/{name}/labels/latest{ESCAPED}/metadata")[1]
    assert answer["model_spec"] == {"name": RESERVED, "signature_name": "", "version": "1"}
    assert predict_error(url, f"{name}/labels/latest", {"instances": [[1, 2]]}) == \
        "Unrecognized servable version label: latest"


# ================================================================ predict

@pytest.mark.parametrize("name", [
    pytest.param("foo", id="PredictModelNameVersionErrors: foo"),
    pytest.param("foo/versions/50", id="PredictModelNameVersionErrors: foo/versions/50"),
    pytest.param(NAME + "99", id="PredictModelNameVersionErrors: name99"),
    pytest.param(f"{NAME}/versions/99", id="Predict: a version not loaded"),
])
def test_unknown_model_or_version_is_404(url, name):
    message = predict_error(url, name, {"instances": [1]}, code=404)
    model, _, version = name.partition("/versions/")
    assert message == ("Servable not found for request: " +
                       (f"Specific({model}, {version})" if version else f"Latest({model})"))


@pytest.mark.parametrize("body, message", [
    pytest.param(b"", "JSON Parse error: The document is empty",
                 id="PredictRequestErrors: empty document"),
    pytest.param(b"instances = [1, 2]", "JSON Parse error: Invalid value. at offset: 0",
                 id="PredictRequestErrors: badly formatted JSON"),
    pytest.param(b'{ "instances": ["x", "y"] }',
                 element(0, 'JSON Value: "x" Type: String ' + FLOAT),
                 id="PredictRequestErrors: incorrect type"),
    pytest.param(b'{ "signature_name": 100 }', 'JSON Value: {\n    "signature_name": 100\n} not '
                 "formatted correctly. 'signature_name' key must be a string value.",
                 id="PredictRequestErrors: incorrect signature_name type"),
])
def test_predict_request_errors(url, body, message):
    assert predict_error(url, NAME, body) == message


def test_nonexistent_version_label_is_400(url):
    # PredictRequestErrors: nonexistent version label (before the values are looked at)
    assert predict_error(url, f"{NAME}/labels/Version_Nonexistent", {"instances": ["x", "y"]}) \
        == "Unrecognized servable version label: Version_Nonexistent"


@pytest.mark.parametrize("path, body, key, version", [
    pytest.param(NAME, {"instances": ROWS}, "predictions", NEWER, id="Predict: latest version"),
    pytest.param(f"{NAME}/versions/{VERSION}", {"instances": ROWS}, "predictions", VERSION,
                 id="Predict: specific version"),
    pytest.param(f"{NAME}/labels/{LABEL}", {"instances": ROWS}, "predictions", VERSION,
                 id="Predict: version label"),
    pytest.param(f"{NAME}/versions/{VERSION}",
                 {"signature_name": "serving_default", "instances": ROWS}, "predictions",
                 VERSION, id="Predict: explicit signature_name"),
    pytest.param(f"{NAME}/versions/{VERSION}",
                 {"signature_name": "serving_default", "inputs": ROWS}, "outputs", VERSION,
                 id="Predict: explicit signature_name and columnar inputs"),
])
def test_predict(url, oracles, path, body, key, version):
    status, answer, _ = predict(url, path, body)
    assert status == 200 and list(answer) == [key]
    np.testing.assert_array_equal(np.asarray(answer[key], np.float32),
                                  oracles[version].predict(np.asarray(ROWS, np.float32)))


# ================================================================ status and metadata

STATUS = {"model_version_status": [
    {"version": str(v), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    for v in (NEWER, VERSION)]}


@pytest.mark.parametrize("suffix, expected", [
    pytest.param("", STATUS, id="GetStatus: all versions"),
    pytest.param(f"/versions/{VERSION}",
                 {"model_version_status": STATUS["model_version_status"][1:]},
                 id="GetStatus: specific version"),
    # GetStatus with a label: GetModelStatusImpl only looks at a version, so every version
    pytest.param(f"/labels/{LABEL}", STATUS, id="GetStatus: version label"),
    pytest.param("/labels/Version_Nonexistent", STATUS,
                 id="get_model_status_impl.cc: an unknown label is ignored too"),
])
def test_get_status(url, suffix, expected):
    status, answer, _ = exchange(url, "GET", f"/v1/models/{NAME}{suffix}")
    assert (status, answer) == (200, expected)


@pytest.mark.parametrize("target, message", [
    pytest.param("/v1/models/foo", "Could not find any versions of model foo",
                 id="get_model_status_impl.cc: unknown model"),
    pytest.param("/v1/models/foo/versions/3", "Could not find version 3 of model foo",
                 id="get_model_status_impl.cc: unknown model, a version"),
    pytest.param(f"/v1/models/{NAME}/versions/3", f"Could not find version 3 of model {NAME}",
                 id="get_model_status_impl.cc: unknown version"),
])
def test_status_not_found(url, target, message):
    assert error(url, "GET", target, code=404) == message


def tensor_info(name, size):
    return {"dtype": "DT_FLOAT",
            "tensor_shape": {"dim": [{"size": "-1", "name": ""}, {"size": str(size), "name": ""}],
                             "unknown_rank": False},
            "name": name}


def metadata(version):
    # the layout of saved_model_half_plus_two_2_versions_metadata.json, for one signature
    return {"model_spec": {"name": NAME, "signature_name": "", "version": str(version)},
            "metadata": {"signature_def": {"signature_def": {"serving_default": {
                "inputs": {"input": tensor_info("input", 4)},
                "outputs": {"output": tensor_info("output", 3)},
                "method_name": "tensorflow/serving/predict",
                "defaults": {}}}}}}


@pytest.mark.parametrize("suffix, version", [
    pytest.param("", NEWER, id="GetModelMetadata: without version"),
    pytest.param(f"/versions/{VERSION}", VERSION, id="GetModelMetadata: a version"),
    pytest.param(f"/labels/{LABEL}", VERSION, id="GetModelMetadata: a label"),
])
def test_get_model_metadata_is_the_whole_document(url, suffix, version):
    status, answer, _ = exchange(url, "GET", f"/v1/models/{NAME}{suffix}/metadata")
    assert status == 200
    assert answer == metadata(version)


def test_metadata_with_an_unknown_label_is_400(url):
    # server_core.cc GetModelVersionForLabel
    assert error(url, "GET", f"/v1/models/{NAME}/labels/nope/metadata") == \
        "Unrecognized servable version label: nope"


# ================================================================ tensors in (json_tensor_test.cc)

@pytest.mark.parametrize("name, body, key, expected", [
    pytest.param("pairs", {"instances": [[1, 2], [3, 4], [5, 6]]}, "predictions",
                 [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], id="SingleUnnamedTensor"),
    pytest.param("scalars", {"instances": [1, 2.0, 3, 4, 5.003, 0.007, 0.0]}, "predictions",
                 [1.0, 2.0, 3.0, 4.0, 5.003, 0.007, 0.0], id="MixedInputForFloatTensor"),
    pytest.param("scalars64", {"instances": [1.0, 2, 3, 4, 0.662, 0, 0.0]}, "predictions",
                 [1.0, 2.0, 3.0, 4.0, 0.662, 0.0, 0.0], id="MixedInputForDoubleTensor"),
    pytest.param("grids", {"inputs": {"input": [[[1, 2], [3, 4], [5, 6]]]}}, "outputs",
                 [[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]], id="SingleUnnamedTensorColumnarFormat"),
    pytest.param("grids", {"inputs": [[[1, 2], [3, 4], [5, 6]]]}, "outputs",
                 [[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]],
                 id="SingleUnnamedTensorColumnarFormat: named input skipped"),
    pytest.param("grids", {"instances": [{"input": [[1, 2], [3, 4], [5, 6]]},
                                         {"input": [[7, 8], [9, 0], [1, 2]]}]}, "predictions",
                 [[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], [[7.0, 8.0], [9.0, 0.0], [1.0, 2.0]]],
                 id="MultipleNamedTensor: one named input"),
])
def test_tensors_in(url, name, body, key, expected):
    status, answer, _ = predict(url, name, body)
    assert status == 200, answer
    dtype = ECHOES[name].dtype  # the values as the model got them, written as TF writes them
    np.testing.assert_array_equal(np.asarray(answer[key], dtype), np.asarray(expected, dtype))


def test_signature_names(url):
    # SingleUnnamedTensorWithSignature: the name is TF's model's; GetInfoMap looks it up
    assert predict_error(url, "pairs", {"signature_name": "predict_images",
                                        "instances": [[1, 2]]}) == \
        'Serving signature name: "predict_images" not found in signature def'
    for signature in ("serving_default", ""):  # GetInfoMap: "" is the default
        assert predict(url, "pairs", {"signature_name": signature, "instances": [[1, 2]]})[0] == 200


def test_bytes_after_a_nul_are_not_read(url):
    # TensorFromNonNullTerminatedBuffer: rapidjson reads up to the end or a NUL
    status, answer, _ = predict(url, "pairs", b'{"instances": [[1,2],[3,4],[5,6]]}\0X')
    assert (status, answer) == (200, {"predictions": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]})


def test_base64_objects_are_objects_for_a_float_input(url):
    # SingleUnnamedTensorBase64Scalars on a DT_FLOAT input: FillTensorProto's TypeError
    message = predict_error(url, "scalars", {"instances": [{"b64": "aGVsbG8="}]})
    assert message == element(0, 'JSON Value: {\n    "b64": "aGVsbG8="\n} Type: Object ' + FLOAT)


@pytest.mark.parametrize("name, body, message", [
    pytest.param("pairs", b"", "JSON Parse error: The document is empty",
                 id="SingleUnnamedTensorErrors: empty"),
    pytest.param("pairs", {"instances": [[1, 2], [3, 4], [5, 6, 7]]},
                 element(2, "Expecting tensor size: 2 but got: 3"),
                 id="SingleUnnamedTensorErrors: tensor size"),
    pytest.param("pairs", {"instances": [[1, 2], [3, 4], [[5, 6]]]},
                 element(2, "Expecting shape [2] but got: [1,2]"),
                 id="SingleUnnamedTensorErrors: shape"),
    pytest.param("pairs", {"instances": [1, [1]]}, element(1, "Expecting shape [] but got: [1]"),
                 id="SingleUnnamedTensorErrors: scalar then list"),
    pytest.param("pairs", {"instances": [[1, 2], ["a", "b"]]},
                 element(1, 'JSON Value: "a" Type: String ' + FLOAT),
                 id="SingleUnnamedTensorErrors: not of expected type"),
    pytest.param("scalars", b'{ "instances": [1.79769e+308] }',
                 element(0, "Cannot convert JSON value: 1.79769e+308 to float without loss of "
                            "precision."), id="SingleUnnamedTensorErrors: double max to float"),
    pytest.param("scalars", {"instances": [16777217]},
                 element(0, "Cannot convert JSON value: 16777217 to float without loss of "
                            "precision."), id="SingleUnnamedTensorErrors: 2**24 + 1 to float"),
    pytest.param("scalars64", {"instances": [9007199254740993]},
                 element(0, "Cannot convert JSON value: 9007199254740993 to double without loss "
                            "of precision."), id="SingleUnnamedTensorErrors: 2**53 + 1 to double"),
    pytest.param("grids", {"instances": [{"input": [[1, 2], [3, 4], [5, 6]]},
                                         {"input": [[[7, 8], [9, 0], [1, 2]]]}]},
                 element(1, "Expecting shape [3,2] but got: [1,3,2]", key="input"),
                 id="MultipleNamedTensorErrors: shapes differ"),
    pytest.param("grids", {"instances": [{"input": [[1, 2], [3, 4], [5, 6], [7, 8]]},
                                         {"input": [[7, 8], [9, 0], [1, 2]]}]},
                 element(1, "Expecting tensor size: 8 but got: 6", key="input"),
                 id="MultipleNamedTensorErrors: sizes differ"),
    pytest.param("grids", {"instances": [{"input": [[1, 2], [3, 4], [5, 6]]}, [1, 20, 30],
                                         {"input": [[[7, 8], [9, 0], [1, 2]]]}]},
                 "Expecting object but got list at item 1 of input list",
                 id="MultipleNamedTensorErrors: object then list"),
    pytest.param("pairs", {"instances": [[1, 2], {"input": [1, 2]}]},
                 "Expecting value/list but got object at item 1 of input list",
                 id="MultipleNamedTensorErrors: list then object"),
])
def test_tensor_errors(url, name, body, message):
    assert predict_error(url, name, body) == message


@pytest.mark.parametrize("body, start, end", [
    pytest.param({"signature_name": 5, "instances": [[1, 2], [3, 4], [5, 6, 7]]},
                 'JSON Value: {\n    "signature_name": 5,\n    "instances": [\n',
                 "... not formatted correctly. 'signature_name' key must be a string value.",
                 id="SingleUnnamedTensorErrors: signature_name not a string"),
    pytest.param({"instances": [[1, 2], [3, 4], [5, 6, 7]], "inputs": [[1, 2], [3, 4], [5, 6, 7]]},
                 'JSON Value: {\n    "instances": [\n        [\n            1,\n',
                 "... Not formatted correctly expecting only one of 'inputs' or 'instances' keys "
                 "to exist ", id="SingleUnnamedTensorErrors: instances and inputs"),
])
def test_errors_quoting_the_document(url, body, start, end):
    # FormatError: the whole document is quoted, pretty-printed (here cut at 200 characters)
    message = predict_error(url, "pairs", body)
    assert message.startswith(start) and message.endswith(end)


@pytest.mark.parametrize("body, message", [
    pytest.param({"instances": [[1, [2]]]},
                 element(0, "Encountered list at unexpected level: 1 expected < 1"),
                 id="FillTensorProto: list below the last level"),
    pytest.param({"instances": [[[1], 2]]},
                 element(0, "JSON Value: 2 found at incorrect level: 2 in the JSON DOM. Expected "
                            "at level: 2"), id="FillTensorProto: value above the last level"),
    pytest.param({"instances": [[[1, 2], [3]]]},
                 element(0, "Encountered list at unexpected size: 1 at level: 1 expected size: 2"),
                 id="FillTensorProto: ragged"),
    pytest.param({"instances": [[1, True]]}, element(0, "JSON Value: true Type: True " + FLOAT),
                 id="AddValueToTensor: a boolean"),
    pytest.param({"instances": [[1, None]]}, element(0, "JSON Value: null Type: Null " + FLOAT),
                 id="AddValueToTensor: null"),
    pytest.param({"instances": [{"input": [1, 2], "mask": [1]}]},
                 element(0, "JSON object: does not have named input: mask", key="mask"),
                 id="AddInstanceItem: an instance with another name"),
    pytest.param({"instances": [{}]}, "Failed to process element: 0 of 'instances' list. JSON "
                 "object: {} must only have keys: input",
                 id="FillTensorMapFromInstancesList: an instance without the input"),
    pytest.param({"inputs": {"mask": [1, 2]}}, "Missing named input: input in 'inputs' object.",
                 id="FillTensorMapFromInputsMap: inputs without the input"),
    pytest.param({"instances": []}, 'JSON Value: {\n    "instances": []\n} No values in '
                 "'instances' array", id="FillPredictRequestFromJson: no instances"),
    pytest.param({"instances": 5}, 'JSON Value: {\n    "instances": 5\n} Excepting '
                 "'instances' to be an list/array",
                 id="FillPredictRequestFromJson: instances not a list"),
    pytest.param({"signature_name": "serving_default"}, "Missing 'inputs' or 'instances' key",
                 id="FillPredictRequestFromJson: neither"),
    pytest.param(b"[1, 2]", "JSON Value: [\n    1,\n    2\n] Is not object",
                 id="ParseJson: not an object"),
])
def test_json_tensor_checks(url, body, message):
    assert predict_error(url, "pairs", body) == message


# ================================================================ leniency, as TF Serving's

def test_other_names_in_inputs_are_ignored(url):
    # FillTensorMapFromInputsMap looks up the signature's inputs only
    status, answer, _ = predict(url, "pairs", {"inputs": {"input": [[1, 2]], "mask": "x"}})
    assert (status, answer) == (200, {"outputs": [[1.0, 2.0]]})


def test_other_keys_of_the_request_are_ignored(url):
    body = {"instances": [[1, 2]], "extra": {"anything": [None, True, "x"]}}
    assert predict(url, "pairs", body)[1] == {"predictions": [[1.0, 2.0]]}


def test_deep_nesting_under_an_unused_key_is_parsed(url):
    # rapidjson parses any depth (its stack permitting); minidl as deep as Python's parser
    body = b'{"instances": [[1, 2]], "extra": ' + b"[" * 500 + b"]" * 500 + b"}"
    assert predict(url, "pairs", body)[:2] == (200, {"predictions": [[1.0, 2.0]]})


def test_the_first_of_repeated_keys_counts(url):
    # rapidjson's FindMember finds the first member of a name
    body = b'{"instances": [[1, 2]], "instances": "x"}'
    assert predict(url, "pairs", body)[:2] == (200, {"predictions": [[1.0, 2.0]]})


@pytest.mark.parametrize("tail, message", [
    pytest.param(b" x", "The document root must not be followed by other values. at offset: 25",
                 id="ParseJson: bytes after the value"),
    pytest.param(b" {}", "The document root must not be followed by other values. at offset: 25",
                 id="ParseJson: a second value"),
])
def test_bytes_after_the_document_are_refused(url, tail, message):
    # ParseJson: kParseNanAndInfFlag only, no kParseStopWhenDoneFlag
    assert predict_error(url, "pairs", b'{"instances": [[1, 2]]}' + b" " + tail) == \
        "JSON Parse error: " + message


@pytest.mark.parametrize("body, message", [
    pytest.param(b'{"instances": [[1, 2]}', "Missing a comma or ']' after an array element. "
                 "at offset: 21", id="rapidjson: array"),
    pytest.param(b'{"instances": [[1, 2]] "x": 1}', "Missing a comma or '}' after an object "
                 "member. at offset: 23", id="rapidjson: object"),
    pytest.param(b'{"instances" [[1, 2]]}', "Missing a colon after a name of object member. "
                 "at offset: 13", id="rapidjson: colon"),
    pytest.param(b'{"instances": [[1, 2]], }', "Missing a name for object member. at offset: 24",
                 id="rapidjson: name"),
    pytest.param(b'{"instances": [[1., 2]]}', "Miss fraction part in number. at offset: 18",
                 id="rapidjson: fraction"),
    pytest.param(b'{"instances": [[1e, 2]]}', "Miss exponent in number. at offset: 18",
                 id="rapidjson: exponent"),
    pytest.param(b'{"instances": "\\x"}', "Invalid escape character in string. at offset: 15",
                 id="rapidjson: escape"),
    pytest.param(b'{"instances": "abc', "Missing a closing quotation mark in string. at offset: "
                 "18", id="rapidjson: unterminated string"),
    pytest.param(b"   ", "The document is empty. at offset: 3", id="rapidjson: only spaces"),
])
def test_json_syntax_errors_are_rapidjsons(url, body, message):
    assert predict_error(url, "pairs", body) == "JSON Parse error: " + message


# ================================================================ non-finite numbers

def test_nan_and_infinities_go_in_and_come_out_as_tokens(url):
    # MultipleNamedTensor (float_tensor [1.0, NaN], [2.0, Infinity]); api_rest.md "JSON
    # conformance"; FromJsonSingleFloatTensorNonFinite: written back as the same tokens
    status, _, data = predict(url, "pairs", b'{"instances": [[1.0, NaN], [2.0, Infinity], '
                                            b'[-Infinity, 3]]}')
    assert status == 200
    assert data == b'{"predictions": [[1.0, NaN], [2.0, Infinity], [-Infinity, 3.0]]}'


def test_non_finite_outputs_as_tf_serving_writes_them(url):
    # FromJsonSingleFloatTensorNonFinite
    status, _, data = predict(url, "pairs", b'{"instances": [[NaN, Infinity], [3, -Infinity]]}')
    assert (status, data) == (200, b'{"predictions": [[NaN, Infinity], [3.0, -Infinity]]}')


def test_six_digit_precision_of_floats_out(url):
    # FromJsonSingleFloatTensorSixDigitPrecision
    body = {"instances": [[9000000, 999999, 0.50000], [.0003, .00003, 555557.5]]}
    status, _, data = predict(url, "triples", body)
    assert (status, data) == (200, b'{"predictions": [[9e+06, 999999.0, 0.5], '
                                   b'[0.0003, 3e-05, 555557.5]]}')


def test_floats_out_that_need_more_digits(url):
    # WriteDecimal: %.9g (float) / %.17g (double) when six digits do not give the value back
    data = predict(url, "scalars", {"instances": [1 / 3, 123456789.0]})[2]
    assert data == b'{"predictions": [0.333333343, 123456792.0]}'
    data = predict(url, "scalars64", {"instances": [1 / 3, 0.1]})[2]
    assert data == b'{"predictions": [0.33333333333333331, 0.1]}'


@pytest.mark.parametrize("token, offset", [("1e400", 15), ("-1e309", 15), ("9" * 400, 15)])
def test_numbers_a_double_cannot_hold_are_parse_errors(url, token, offset):
    # rapidjson: kParseErrorNumberTooBig
    assert predict_error(url, "scalars", b'{"instances": [' + token.encode() + b"]}") == \
        f"JSON Parse error: Number too big to be stored in double. at offset: {offset}"


def test_out_of_float_range_is_a_loss_of_precision(url):
    # IsLosslessDecimal<float>: a double beyond float's range
    assert predict_error(url, "scalars", {"instances": [1e39]}) == element(
        0, "Cannot convert JSON value: 1e+39 to float without loss of precision.")
    assert predict(url, "scalars64", {"instances": [1e39]})[1] == {"predictions": [1e39]}


# ================================================================ the order of checks

@pytest.mark.parametrize("path, body, code, message", [
    pytest.param("nope", b"{", 400, "JSON Parse error: Missing a name for object member. at "
                 "offset: 1", id="ParseJson before the model"),
    pytest.param("nope", b"[1]", 400, "JSON Value: [\n    1\n] Is not object",
                 id="an object before the model"),
    pytest.param("nope", b'{"signature_name": 1}', 400, 'JSON Value: {\n    "signature_name": '
                 "1\n} not formatted correctly. 'signature_name' key must be a string value.",
                 id="FillSignature before the model"),
    pytest.param("nope", b'{"signature_name": "x", "instances": "y"}', 404,
                 "Servable not found for request: Latest(nope)",
                 id="the model before the signature"),
    pytest.param("nope/labels/x", b'{"instances": [1]}', 400,
                 "Unrecognized servable version label: x",
                 id="GetModelVersionForLabel: a label of an unknown model"),
    pytest.param("nope/versions/99999999999999999999", b"{", 400,
                 "Failed to convert version: 99999999999999999999 to numeric.",
                 id="ParseModelInfo before the body"),
    pytest.param("pairs", b'{"signature_name": "x"}', 400,
                 'Serving signature name: "x" not found in signature def',
                 id="the signature before instances/inputs"),
    pytest.param("pairs", b'{"instances": 5, "inputs": 5}', 400, 'JSON Value: {\n    '
                 '"instances": 5,\n    "inputs": 5\n} Not formatted correctly expecting only one '
                 "of 'inputs' or 'instances' keys to exist ",
                 id="both keys before what they hold"),
    pytest.param("pairs", b'{"instances": [[1, "a"], [1, 2, 3]]}', 400,
                 element(0, 'JSON Value: "a" Type: String ' + FLOAT),
                 id="values in document order"),
    pytest.param("pairs", b'{"instances": [[1, 2, 3]]}', 400,
                 "instances has shape [1, 3] but the model expects [-1, 2] (a batch of inputs "
                 "of shape [2]): each instance has shape [3]",
                 id="the values before the model's input shape"),
])
def test_order_of_checks(url, path, body, code, message):
    assert predict_error(url, path, body, code) == message


# ================================================================ CORS

def test_cors_preflight_allows_what_tf_serving_allows(models, tmp_path):
    # http_rest_api_util.cc AddCORSHeaders: Origin *, methods POST and GET, Content-Type
    save_version(tmp_path, 1)
    manager = ModelManager([ModelConfig("m", str(tmp_path))], file_system_poll_wait_seconds=0)
    with running_server(ServingApp(manager, enable_cors=True)) as base:
        answer = requests.options(base + "/v1/models/m:predict", timeout=10, headers={
            "Origin": "https://example.org", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        assert 200 <= answer.status_code < 300
        assert answer.headers["Access-Control-Allow-Origin"] == "*"
        methods = {m.strip() for m in answer.headers["Access-Control-Allow-Methods"].split(",")}
        assert {"POST", "GET"} <= methods
        assert "content-type" in answer.headers["Access-Control-Allow-Headers"].lower()
        predicted = requests.post(base + "/v1/models/m:predict", json={"instances": ROWS},
                                  timeout=10, headers={"Origin": "https://example.org"})
        assert predicted.headers["Access-Control-Allow-Origin"] == "*"
        oracle = load_model(str(tmp_path / "1" / "model.npz"))
        np.testing.assert_array_equal(np.asarray(predicted.json()["predictions"], np.float32),
                                      oracle.predict(np.asarray(ROWS, np.float32)))
