"""The server as a process (ready line, SIGTERM), graceful drain, the command line (and the
one line it says about a base path or port it cannot use), and two worker processes."""

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest
import requests
from test_serving_support import (
    free_port,
    gated_app,
    save_version,
    wait_until,
    write_stand_ins,
)

from minidl.model import load_model
from minidl.serving import build_arg_parser, main
from minidl.serving.engine import ServingServer

ROWS = [[0.1, -0.2, 0.3, 0.4], [1.0, 2.0, -3.0, 0.5]]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYOUT = "BASE/<integer version>/model.npz"
# what people put in a base path instead of LAYOUT, and the entries the server says it found
NO_VERSION_LAYOUTS = [([], "an empty folder"), (["model.npz"], "model.npz"),
                      (["v1/model.npz"], "v1/model.npz"), (["1/my_model.h5"], "1/my_model.h5")]


def child_env():
    return dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))


def start_process(args, log_path):
    """Start ``python args...``: stdout piped (for the ready line), stderr to ``log_path``."""
    with open(log_path, "w") as log:
        return subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=log,
                                text=True, env=child_env(), cwd=REPO)


def run_serve(args, timeout=20.0):
    """Run ``python -m minidl serve args...`` to its end: ``(exit code, stderr lines)``."""
    done = subprocess.run([sys.executable, "-m", "minidl", "serve", *args], capture_output=True,
                          text=True, env=child_env(), cwd=REPO, timeout=timeout)
    return done.returncode, done.stderr.splitlines()


def read_ready_line(process, timeout=30.0):
    """The first stdout line, read in a thread so that the wait is bounded."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        process.kill()
        raise AssertionError(f"no ready line within {timeout} s") from None


def ready_url(process):
    line = read_ready_line(process)
    assert line.startswith("minidl serving on http://127.0.0.1:"), line
    return line.split(" on ", 1)[1].strip()


def stop(process, signum=signal.SIGTERM, timeout=15.0):
    """Signal the process, wait (bounded) and return its exit code; kill it if it hangs."""
    try:
        if process.poll() is None:
            process.send_signal(signum)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
            raise
    finally:
        process.stdout.close()


def test_module_server_prints_its_url_serves_and_exits_0_on_sigterm(tmp_path):
    save_version(tmp_path, 1, seed=2)
    oracle = load_model(str(tmp_path / "1" / "model.npz"))
    log = tmp_path / "server.log"
    process = start_process(["-m", "minidl.serving", "--model_name", "m", "--model_base_path",
                             str(tmp_path), "--rest_api_port", "0"], log)
    try:
        line = read_ready_line(process)
        assert line.startswith("minidl serving on http://127.0.0.1:")
        url = line.split(" on ", 1)[1].strip()
        answer = requests.post(url + "/v1/models/m:predict", timeout=10,
                               json={"signature_name": "serving_default", "instances": ROWS})
        np.testing.assert_array_equal(np.asarray(answer.json()["predictions"], np.float32),
                                      oracle.predict(np.asarray(ROWS, np.float32)))
    finally:
        code = stop(process)
    assert code == 0
    assert "Traceback" not in log.read_text()


def test_bad_configuration_exits_2_with_a_message(tmp_path, capsys):
    assert main(["--model_config_file", str(tmp_path / "missing.config")]) == 2
    assert "missing.config" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--rest_api_port", "80"])  # nothing to serve: argparse error


def test_flags_are_tensorflow_model_servers():
    parser = build_arg_parser()
    defaults = parser.parse_args([])
    assert (defaults.rest_api_port, defaults.rest_api_host) == (8501, "127.0.0.1")
    assert (defaults.max_batch_size, defaults.batch_timeout_micros) == (64, 1000)
    assert defaults.file_system_poll_wait_seconds == 1.0
    assert defaults.max_body_bytes == 10 * 1024 * 1024
    assert defaults.enable_batching is False
    args = parser.parse_args(["--enable_batching=true", "--rest_api_enable_cors_support",
                              "--num_batch_threads", "2", "--max_enqueued_batches", "7",
                              "--rest_api_num_threads", "8", "--api_key_file", "k"])
    assert args.enable_batching is True and args.rest_api_enable_cors_support is True
    assert (args.num_batch_threads, args.max_enqueued_batches) == (2, 7)
    assert parser.parse_args(["--enable_batching=false"]).enable_batching is False
    with pytest.raises(SystemExit):
        parser.parse_args(["--max_batch_size", "0"])


@contextlib.contextmanager
def server_thread(app, **options):
    """A ServingServer for ``app`` serving in a thread; joined (bounded) at exit."""
    server = ServingServer(app, "127.0.0.1", 0, **options)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), timeout=30)
        yield server, thread
    finally:
        server.shutdown()
        thread.join(30)


def test_sigterm_drain_lets_the_request_in_progress_finish(tmp_path):
    gate = threading.Event()
    app, model = gated_app(tmp_path, gate)
    result: dict = {}
    with server_thread(app, grace_seconds=10) as (server, thread):
        client = threading.Thread(target=lambda: result.setdefault("response", requests.post(
            server.url + "/v1/models/m:predict", json={"instances": ROWS}, timeout=20)))
        client.start()
        assert model.entered.wait(10)
        server.shutdown()  # what SIGTERM does: no new connections from here on
        wait_until(lambda: not _accepts(server.server_address), timeout=10)
        assert thread.is_alive()  # still waiting for the request in progress
        gate.set()
        thread.join(10)
        assert not thread.is_alive()
        client.join(20)
    assert result["response"].status_code == 200
    assert result["response"].headers["Connection"] == "close"


def _accepts(address):
    try:
        with socket.create_connection(address, timeout=1):
            return True
    except OSError:
        return False


def test_drain_gives_up_after_the_grace_period(tmp_path):
    gate = threading.Event()
    app, model = gated_app(tmp_path, gate)
    outcome: dict = {}

    def stuck_client(url):
        try:
            outcome["response"] = requests.post(url + "/v1/models/m:predict",
                                                json={"instances": ROWS}, timeout=20)
        except requests.ConnectionError as error:
            outcome["error"] = error

    try:
        with server_thread(app, grace_seconds=1) as (server, thread):
            client = threading.Thread(target=stuck_client, args=(server.url,))
            client.start()
            assert model.entered.wait(10)
            server.shutdown()
            thread.join(10)  # the grace period is 1 s; the predict is held for good
            assert not thread.is_alive()
            client.join(20)
    finally:
        gate.set()
    # its connection was cut at the end of the grace period, answered or not
    assert "error" in outcome or outcome["response"].status_code >= 500


def test_two_worker_processes_serve_the_same_answers_and_each_polls(tmp_path):
    save_version(tmp_path, 1, seed=4)
    oracle = load_model(str(tmp_path / "1" / "model.npz"))
    port = free_port()
    log = tmp_path / "workers.log"
    # batching on: its threads, like the poller's, start in each worker
    process = start_process(["-m", "minidl", "serve", "--model_name", "m",
                             "--model_base_path", str(tmp_path), "--rest_api_port", str(port),
                             "--workers", "2", "--enable_batching",
                             "--file_system_poll_wait_seconds", "0.1"], log)
    url = f"http://127.0.0.1:{port}"
    try:
        assert read_ready_line(process).startswith(f"minidl serving on {url} (worker ")
        assert read_ready_line(process).startswith(f"minidl serving on {url} (worker ")
        expected = oracle.predict(np.asarray(ROWS, np.float32))
        for _ in range(10):
            with requests.Session() as session:  # a new connection: any worker may take it
                answer = session.post(url + "/v1/models/m:predict", json={"instances": ROWS},
                                      timeout=10)
                np.testing.assert_array_equal(
                    np.asarray(answer.json()["predictions"], np.float32), expected)
        # each worker polls and loads on its own: a new version reaches both
        save_version(tmp_path, 2, seed=5)
        newer = load_model(str(tmp_path / "2" / "model.npz")).predict(
            np.asarray(ROWS, np.float32))

        def all_on_version_2():
            versions = set()
            for _ in range(6):
                with requests.Session() as session:
                    status = session.get(url + "/v1/models/m", timeout=5).json()
                versions.add(status["model_version_status"][0]["version"])
            return versions == {"2"}

        wait_until(all_on_version_2, timeout=20, interval=0.2)
        answer = requests.post(url + "/v1/models/m:predict", json={"instances": ROWS}, timeout=10)
        np.testing.assert_array_equal(np.asarray(answer.json()["predictions"], np.float32), newer)
        bad = requests.post(url + "/v1/models/m:predict", data=b"{", timeout=10)
        assert bad.status_code == 400 and "JSON Parse error" in bad.json()["error"]
    finally:
        assert stop(process) == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def test_tls_serves_https_with_the_given_certificate_and_refuses_plain_http(tmp_path):
    trustme = pytest.importorskip("trustme")  # in the test extra: never skipped there
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    cert_file, key_file, ca_file = (tmp_path / name for name in ("cert.pem", "key.pem", "ca.pem"))
    certificate.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    certificate.private_key_pem.write_to_path(str(key_file))
    authority.cert_pem.write_to_path(str(ca_file))
    save_version(tmp_path / "m", 1, seed=2)
    oracle = load_model(str(tmp_path / "m" / "1" / "model.npz"))
    log = tmp_path / "server.log"
    process = start_process(["-m", "minidl", "serve", "--model_name", "m", "--model_base_path",
                             str(tmp_path / "m"), "--rest_api_port", "0", "--ssl_certfile",
                             str(cert_file), "--ssl_keyfile", str(key_file)], log)
    try:
        line = read_ready_line(process)
        assert line.startswith("minidl serving on https://127.0.0.1:"), line
        url = line.split(" on ", 1)[1].strip()
        answer = requests.post(url + "/v1/models/m:predict", json={"instances": ROWS},
                               verify=str(ca_file), timeout=10)
        np.testing.assert_array_equal(np.asarray(answer.json()["predictions"], np.float32),
                                      oracle.predict(np.asarray(ROWS, np.float32)))
        with pytest.raises(requests.exceptions.SSLError):  # a certificate nobody vouches for
            requests.get(url + "/v1/models/m", timeout=10)
        with pytest.raises(requests.ConnectionError):  # plain HTTP on the TLS port
            requests.get(url.replace("https://", "http://") + "/v1/models/m", timeout=10)
        assert requests.get(url + "/v1/models/m", verify=str(ca_file), timeout=10).ok
    finally:
        assert stop(process) == 0, log.read_text()
    # idle TLS connections are cut at once, not waited for until the grace period ends
    assert "graceful shutdown exceeded" not in log.read_text()


def test_without_the_serving_extra_serve_names_the_extra_in_one_line(tmp_path):
    save_version(tmp_path, 1)
    # what a machine without uvicorn sees: importing it fails
    code = ("import sys; sys.modules['uvicorn'] = None; from minidl.serving import main; "
            f"sys.exit(main(['--model_base_path', {str(tmp_path)!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=child_env(), cwd=REPO, timeout=60)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("minidl serve: error: uvicorn")
    assert line.endswith("is not installed; this part of minidl needs the 'serving' extra: "
                         "pip install 'minidl[serving]'")


def test_tls_needs_both_the_certificate_and_the_key(tmp_path, capsys):
    save_version(tmp_path, 1)
    with pytest.raises(SystemExit):
        main(["--model_base_path", str(tmp_path), "--ssl_certfile", "cert.pem"])
    assert "give both --ssl_certfile and --ssl_keyfile" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--model_base_path", str(tmp_path), "--ssl_certfile", str(tmp_path / "c.pem"),
              "--ssl_keyfile", str(tmp_path / "k.pem")])
    assert f"--ssl_certfile {tmp_path / 'c.pem'}: no such file" in capsys.readouterr().err


# ---------------------------------------------------------------- base paths, ports it cannot use

def layout_lines(log_path):
    """The lines of a server's stderr that explain the layout a base path should have."""
    return [line for line in log_path.read_text().splitlines() if LAYOUT in line]


def wait_for_version(url, name, version):
    """Wait (bounded) until ``version`` is the highest one of ``name`` and AVAILABLE."""
    def served():
        answer = requests.get(f"{url}/v1/models/{name}", timeout=10)
        entries = answer.json().get("model_version_status", [])
        return entries and (entries[0]["version"], entries[0]["state"]) == (str(version),
                                                                            "AVAILABLE")

    wait_until(served, timeout=20, interval=0.05)


def test_serve_refuses_a_base_path_that_is_a_file_in_one_line(tmp_path):
    save_version(tmp_path, 1)
    code, lines = run_serve(["--model_base_path", str(tmp_path / "1" / "model.npz"),
                             "--rest_api_port", "0"])
    assert code == 2
    assert lines == [f"minidl serve: error: model 'default': base path "
                     f"{tmp_path / '1' / 'model.npz'} is a file, not a folder; expected "
                     f"{LAYOUT}; give the folder holding the version folders: {tmp_path}"]


def test_serve_waits_for_a_missing_base_path_and_says_so_once(tmp_path):
    base = tmp_path / "base"
    log = tmp_path / "server.log"
    process = start_process(["-m", "minidl", "serve", "--model_base_path", str(base),
                             "--rest_api_port", "0", "--file_system_poll_wait_seconds", "0.05"],
                            log)
    try:
        url = ready_url(process)
        save_version(tmp_path / "staging", 1)
        os.rename(tmp_path / "staging", base)  # the models arrive after the server started
        wait_for_version(url, "default", 1)
    finally:
        code = stop(process)
    assert code == 0
    text = log.read_text()
    assert "Traceback" not in text
    assert text.count(f"base path {base} does not exist; expected {LAYOUT}") == 1


def test_serve_on_a_port_in_use_names_the_port_and_the_flag(tmp_path):
    save_version(tmp_path, 1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, lines = run_serve(["--model_base_path", str(tmp_path), "--rest_api_port", str(port)])
    assert code == 2
    assert lines == [f"minidl serve: error: port {port} on 127.0.0.1 is already in use "
                     "(--rest_api_port); stop the other server or choose another port"]


@pytest.mark.parametrize("entries, found", NO_VERSION_LAYOUTS)
def test_serve_says_once_at_start_up_that_a_base_path_has_no_version(tmp_path, entries, found):
    base = tmp_path / "base"
    write_stand_ins(base, entries)
    log = tmp_path / "server.log"
    process = start_process(["-m", "minidl", "serve", "--model_base_path", str(base),
                             "--rest_api_port", "0", "--file_system_poll_wait_seconds", "0.05"],
                            log)
    try:
        url = ready_url(process)
        # the start-up scan, and the line it logs (flushed), come before the ready line
        at_start_up = layout_lines(log)
        assert len(at_start_up) == 1 and at_start_up[0].endswith(
            f"model 'default': no version to serve in {base}: expected {LAYOUT} "
            f"(e.g. {base / '1' / 'model.npz'}); found: {found}")
        assert requests.get(url + "/v1/models/default", timeout=10).status_code == 404
        # a version put in place in one rename: no scan sees a half-made folder
        save_version(tmp_path / "staging", 7)
        os.rename(tmp_path / "staging" / "7", base / "7")
        wait_for_version(url, "default", 7)  # a later scan ran, and said nothing more
    finally:
        code = stop(process)
    assert code == 0
    assert "Traceback" not in log.read_text()
    assert layout_lines(log) == at_start_up


def test_serve_with_a_model_config_file_says_once_per_model_that_it_has_no_version(tmp_path):
    configs = []
    for index, (entries, _) in enumerate(NO_VERSION_LAYOUTS):
        write_stand_ins(tmp_path / f"broken{index}", entries)
        configs.append({"name": f"broken{index}", "base_path": str(tmp_path / f"broken{index}")})
    # scanned after the broken ones: each new version it serves proves one more scan of them
    save_version(tmp_path / "witness", 1)
    configs.append({"name": "witness", "base_path": str(tmp_path / "witness")})
    config_file = tmp_path / "models.json"
    config_file.write_text(json.dumps({"model_config_list": {"config": configs}}))
    log = tmp_path / "server.log"
    process = start_process(["-m", "minidl", "serve", "--model_config_file", str(config_file),
                             "--rest_api_port", "0", "--file_system_poll_wait_seconds", "0.05"],
                            log)
    try:
        url = ready_url(process)
        assert len(layout_lines(log)) == len(NO_VERSION_LAYOUTS)  # at start-up
        for version in (2, 3):  # two scans after the start-up one, at least
            save_version(tmp_path / "witness", version, seed=version)
            wait_for_version(url, "witness", version)
    finally:
        code = stop(process)
    assert code == 0
    assert "Traceback" not in log.read_text()
    lines = layout_lines(log)
    assert len(lines) == len(NO_VERSION_LAYOUTS)
    for index, (_, found) in enumerate(NO_VERSION_LAYOUTS):
        assert sum(f"model 'broken{index}': no version to serve" in line
                   and line.endswith(f"found: {found}") for line in lines) == 1, lines
