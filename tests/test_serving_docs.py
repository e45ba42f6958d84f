"""docs/openapi.json agrees with the server: every documented route exists, and real answers
(TF Serving's and the Open Inference Protocol's) match the documented schemas."""

import json
import os
import re

import jsonschema
import numpy as np
import pytest
import requests
from test_serving_support import running_server, save_version

from minidl.serving import create_app

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")


@pytest.fixture(scope="module")
def spec():
    with open(os.path.join(DOCS, "openapi.json"), encoding="utf-8") as file:
        return json.load(file)


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    base = tmp_path_factory.mktemp("docs")
    save_version(base / "m", 1)
    config = base / "models.config"
    config.write_text(json.dumps({"model_config_list": {"config": [
        {"name": "m", "base_path": str(base / "m"), "version_labels": {"stable": 1}}]}}))
    app = create_app(model_config_file=str(config), file_system_poll_wait_seconds=0)
    with running_server(app) as base_url:
        yield base_url


def check(spec, schema_name, instance):
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": spec["components"]}
    jsonschema.validate(instance, schema)


def test_spec_is_openapi_3_with_the_tf_serving_routes(spec):
    assert spec["openapi"].startswith("3.")
    assert {"/v1/models/{model_name}", "/v1/models/{model_name}/metadata",
            "/v1/models/{model_name}:predict", "/v1/models/{model_name}/versions/{version}",
            "/v1/models/{model_name}/labels/{label}:predict",
            "/monitoring/prometheus/metrics"} <= set(spec["paths"])


def test_spec_has_the_v2_routes(spec):
    prefixes = ("/v2/models/{model_name}", "/v2/models/{model_name}/versions/{version}")
    assert {"/v2", "/v2/health/live", "/v2/health/ready",
            *(prefix + suffix for prefix in prefixes for suffix in ("", "/ready", "/infer"))
            } <= set(spec["paths"])


def test_every_documented_route_answers_as_documented(spec, url):
    values = {"model_name": "m", "version": "1", "label": "stable"}
    for template, operations in spec["paths"].items():
        path = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)
        for method, operation in operations.items():
            response = requests.request(method, url + path, timeout=10,
                                        json={"instances": [[1.0, 2.0, 3.0, 4.0]]})
            assert str(response.status_code) in operation["responses"], (method, path)
            assert "Malformed request" not in response.text


def test_answers_match_the_documented_schemas(spec, url):
    check(spec, "StatusResponse", requests.get(url + "/v1/models/m", timeout=10).json())
    check(spec, "MetadataResponse",
          requests.get(url + "/v1/models/m/metadata", timeout=10).json())
    for body in ({"instances": [[1, 2, 3, 4]]}, {"inputs": {"input": [[1, 2, 3, 4]]}}):
        check(spec, "PredictRequest", body)
        answer = requests.post(url + "/v1/models/m:predict", json=body, timeout=10)
        check(spec, "PredictResponse", answer.json())
    check(spec, "Error", requests.get(url + "/v1/models/nope", timeout=10).json())


def test_v2_answers_match_the_documented_schemas(spec, url):
    check(spec, "V2ServerMetadata", requests.get(url + "/v2", timeout=10).json())
    for path in ("/v2/models/m", "/v2/models/m/versions/1"):
        check(spec, "V2ModelMetadata", requests.get(url + path, timeout=10).json())
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    tensor = {"name": "input", "shape": [2, 4], "datatype": "FP32"}
    as_json = {"id": "1", "inputs": [{**tensor, "data": x.ravel().tolist()}]}
    nested = {"inputs": [{**tensor, "data": x.tolist()}],
              "outputs": [{"name": "output", "parameters": {"binary_data": False}}]}
    for body in (as_json, nested):
        check(spec, "V2InferRequest", body)
        answer = requests.post(url + "/v2/models/m/infer", json=body, timeout=10)
        check(spec, "V2InferResponse", answer.json())
    header = {"inputs": [{**tensor, "parameters": {"binary_data_size": x.nbytes}}],
              "parameters": {"binary_data_output": True}}
    check(spec, "V2InferRequest", header)
    header_bytes = json.dumps(header).encode()
    answer = requests.post(url + "/v2/models/m/versions/1/infer", data=header_bytes + x.tobytes(),
                           headers={"Inference-Header-Content-Length": str(len(header_bytes))},
                           timeout=10)
    length = int(answer.headers["Inference-Header-Content-Length"])
    check(spec, "V2InferResponse", json.loads(answer.content[:length]))
    for path in ("/v2/models/nope", "/v2/models/m/versions/7/ready"):
        check(spec, "Error", requests.get(url + path, timeout=10).json())
