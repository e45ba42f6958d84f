"""docs/deploy.md's Dockerfile and Kubernetes manifests agree with the server: their commands
parse as `minidl serve` flags, the probes they name answer, and their ports match.

No container is built here (the machines have no registry to pull a base image from); what
can go wrong on minidl's side of those files is checked instead.
"""

import json
import os
import re

import requests
import yaml
from test_serving_support import running_server, save_version

from minidl.serving import build_arg_parser, create_app

DEPLOY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                      "deploy.md")


def block(language):
    """The one fenced block of ``language`` in docs/deploy.md."""
    with open(DEPLOY, encoding="utf-8") as file:
        (text,) = re.findall(rf"```{language}\n(.*?)```", file.read(), re.DOTALL)
    return text


def dockerfile_instruction(name):
    """The JSON argument list of the Dockerfile's last ``name`` instruction (CMD, ...)."""
    lines = re.sub(r"\\\n\s*", " ", block("dockerfile")).splitlines()
    last = [line for line in lines if line.startswith(name + " ")][-1]
    return last.split(" ", 1)[1]


def serve_flags(argv):
    """The flags of a ``python -m minidl serve ...`` command line, parsed."""
    assert argv[:4] == ["python", "-m", "minidl", "serve"]
    return build_arg_parser().parse_args(argv[4:])


def manifests():
    documents = list(yaml.safe_load_all(block("yaml")))
    return {document["kind"]: document for document in documents}


def container():
    (server,) = manifests()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return server


def test_the_dockerfile_command_parses_and_listens_on_every_address():
    flags = serve_flags(json.loads(dockerfile_instruction("CMD")))
    assert flags.rest_api_host == "0.0.0.0"  # 127.0.0.1 answers only inside the container
    assert str(flags.rest_api_port) == block("dockerfile").split("EXPOSE ", 1)[1].split()[0]
    assert flags.access_log == "-"
    healthcheck = json.loads(dockerfile_instruction("HEALTHCHECK").split("CMD ", 1)[1])
    assert f"http://127.0.0.1:{flags.rest_api_port}/v2/health/ready" in healthcheck[-1]


def test_the_deployment_command_parses_and_its_ports_agree():
    server = container()
    flags = serve_flags(server["command"])
    (port,) = server["ports"]
    assert port["containerPort"] == flags.rest_api_port
    (service_port,) = manifests()["Service"]["spec"]["ports"]
    assert service_port["targetPort"] == port["name"]
    assert server["livenessProbe"]["httpGet"]["port"] == port["name"]
    assert server["readinessProbe"]["httpGet"]["port"] == port["name"]
    deployment = manifests()["Deployment"]
    assert deployment["spec"]["replicas"] > 1
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert manifests()["Service"]["spec"]["selector"] == labels
    # the pod outlives the server's own grace period for requests in progress
    from minidl.serving.engine import GRACE_SECONDS

    pause = int(server["lifecycle"]["preStop"]["exec"]["command"][1])
    assert (deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            > GRACE_SECONDS + pause)


def test_the_probes_answer_without_the_key_the_rest_needs(tmp_path):
    flags = serve_flags(container()["command"])
    save_version(tmp_path / "digits", 1)
    keys = tmp_path / "keys"
    keys.write_text("k8s-secret\n")
    app = create_app(flags.model_name, str(tmp_path / "digits"), api_key_file=str(keys),
                     rate_limit=flags.rate_limit, rate_limit_burst=flags.rate_limit_burst,
                     file_system_poll_wait_seconds=0)
    server = container()
    with running_server(app) as url:
        for probe in ("livenessProbe", "readinessProbe"):
            answer = requests.get(url + server[probe]["httpGet"]["path"], timeout=10)
            assert answer.status_code == 200, probe
        assert requests.get(f"{url}/v1/models/{flags.model_name}",
                            timeout=10).status_code == 401
