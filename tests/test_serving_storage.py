"""Versions on object storage: a ModelManager, and ``minidl serve``, on an ``s3://`` base path
of moto's S3 server on 127.0.0.1 (s3_support.py).

Objects are written and removed with boto3, as another program would publish models; the
manager reads them with s3fs. Tests call ``manager.poll()`` themselves: nothing waits on the
poller's timing.
"""

import logging
import os
import re
import shlex
from pathlib import Path

import boto3
import numpy as np
import requests
from test_serving_server import ROWS, ready_url, start_process, stop
from test_serving_support import free_port, save_version

from minidl.io import remote
from minidl.serving import ModelConfig, ModelManager, build_arg_parser
from minidl.serving.storage import default_cache_dir

X = np.arange(8, dtype=np.float32).reshape(2, 4) / 8
LAYOUT = "BASE/<integer version>/model.npz"
DOCS = Path(__file__).parents[1] / "docs"
BLOCK = re.compile(r"```(bash|python)\n(.*?)```", re.S)


def model_bytes(tmp_path, seed):
    """A model saved on disk, and its file's bytes."""
    model = save_version(tmp_path / f"seed-{seed}", 1, seed=seed)
    return model, (tmp_path / f"seed-{seed}" / "1" / "model.npz").read_bytes()


def publish(bucket, tmp_path, version, seed, prefix="models/m"):
    """Upload a model as ``prefix/<version>/model.npz``; returns the model."""
    model, body = model_bytes(tmp_path, seed)
    bucket.put(f"{prefix}/{version}/model.npz", body)
    return model


def manager_for(base_path, cache_dir, name="m"):
    return ModelManager([ModelConfig(name, base_path)], file_system_poll_wait_seconds=0,
                        cache_dir=cache_dir)


def served(manager, name="m"):
    version, model = manager.resolve(name)
    return version, model.predict(X)


def states(manager, name="m"):
    return {int(s["version"]): s["state"] for s in manager.status(name)}


def cached_versions(cache_dir):
    """The versions that have a copy in the cache (of the one base URL used)."""
    (folder,) = cache_dir.iterdir()
    return sorted(int(version.name) for version in folder.iterdir())


def reported(caplog):
    return [record.getMessage() for record in caplog.records
            if record.name == "minidl.serving" and record.levelno >= logging.WARNING]


def test_versions_are_found_swapped_and_unloaded_at_each_poll(s3_bucket, tmp_path, caplog):
    cache = tmp_path / "cache"
    model_1 = publish(s3_bucket, tmp_path, 1, seed=1)
    manager = manager_for(s3_bucket.url("models/m"), cache)
    manager.start()
    assert served(manager)[0] == 1
    np.testing.assert_array_equal(served(manager)[1], model_1.predict(X))

    model_2 = publish(s3_bucket, tmp_path, 2, seed=2)
    manager.poll()
    assert served(manager)[0] == 2
    np.testing.assert_array_equal(served(manager)[1], model_2.predict(X))
    assert states(manager) == {2: "AVAILABLE", 1: "END"}
    assert cached_versions(cache) == [2]  # an unloaded version's copy is dropped

    s3_bucket.delete("models/m/2/model.npz")
    manager.poll()
    assert served(manager)[0] == 1
    np.testing.assert_array_equal(served(manager)[1], model_1.predict(X))
    assert cached_versions(cache) == [1]

    _, body_3 = model_bytes(tmp_path, seed=3)
    s3_bucket.put("models/m/3/model.npz", body_3[:len(body_3) // 2])  # cut short
    manager.poll()
    manager.poll()  # a failed version is not retried while it stays the same
    (status_3,) = manager.status("m", 3)
    assert status_3["state"] == "END"
    assert status_3["status"]["error_code"] == "INVALID_ARGUMENT"
    assert status_3["status"]["error_message"].startswith(
        s3_bucket.url("models/m/3/model.npz") + ": not a minidl model file")
    assert served(manager)[0] == 1
    assert cached_versions(cache) == [1]  # a failed version's copy is dropped
    failures = [m for m in reported(caplog) if "version 3 failed to load" in m]
    assert len(failures) == 1

    s3_bucket.put("models/m/3/model.npz", body_3)  # fixed: a new ETag and size
    manager.poll()
    assert served(manager)[0] == 3
    assert states(manager)[3] == "AVAILABLE"
    manager.close()


def test_a_version_folder_with_leading_zeros_is_read_where_it_is(s3_bucket, tmp_path):
    model = publish(s3_bucket, tmp_path, "007", seed=4)
    manager = manager_for(s3_bucket.url("models/m"), tmp_path / "cache")
    manager.start()
    assert served(manager)[0] == 7
    np.testing.assert_array_equal(served(manager)[1], model.predict(X))


def test_a_half_uploaded_version_is_not_seen_until_its_upload_completes(s3_bucket, tmp_path):
    publish(s3_bucket, tmp_path, 1, seed=1)
    manager = manager_for(s3_bucket.url("models/m"), tmp_path / "cache")
    manager.start()
    _, body = model_bytes(tmp_path, seed=2)
    client, key = s3_bucket.client, "models/m/2/model.npz"
    upload = client.create_multipart_upload(Bucket=s3_bucket.name, Key=key)
    part = client.upload_part(Bucket=s3_bucket.name, Key=key, UploadId=upload["UploadId"],
                              PartNumber=1, Body=body)
    manager.poll()
    assert served(manager)[0] == 1
    assert states(manager) == {1: "AVAILABLE"}
    client.complete_multipart_upload(
        Bucket=s3_bucket.name, Key=key, UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]})
    manager.poll()
    assert served(manager)[0] == 2
    manager.close()


def test_a_copy_that_fails_is_tried_again_at_the_next_poll(s3_bucket, tmp_path,
                                                           monkeypatch):
    model = publish(s3_bucket, tmp_path, 1, seed=1)
    manager = manager_for(s3_bucket.url("models/m"), tmp_path / "cache")

    def dropped(url, destination):  # the connection, mid-download
        raise OSError(f"{url}: Connection reset by peer")

    with monkeypatch.context() as patched:
        patched.setattr(remote, "download", dropped)
        manager.start()
    (status,) = manager.status("m")
    assert (status["state"], status["status"]["error_message"]) == (
        "END", s3_bucket.url("models/m/1/model.npz") + ": Connection reset by peer")
    manager.poll()
    assert served(manager)[0] == 1
    np.testing.assert_array_equal(served(manager)[1], model.predict(X))


def test_a_url_base_path_is_kept_as_given_and_a_file_url_is_a_folder():
    assert ModelConfig("m", "s3://bucket/models/m").base_path == "s3://bucket/models/m"
    assert ModelConfig("m", "file:///srv/models/m").base_path == os.path.abspath("/srv/models/m")


def test_a_missing_bucket_or_prefix_is_reported_once_and_waited_for(s3_bucket, tmp_path,
                                                                    caplog):
    no_bucket = f"s3://{s3_bucket.name}-none/models/m"
    no_prefix = s3_bucket.url("models/later")
    manager = ModelManager([ModelConfig("gone", no_bucket), ModelConfig("later", no_prefix)],
                           file_system_poll_wait_seconds=0, cache_dir=tmp_path / "cache")
    manager.check_base_paths()
    manager.start()
    manager.poll()
    assert reported(caplog) == [
        f"minidl.serving: model 'gone': base path {no_bucket} does not exist; "
        f"expected {LAYOUT}",
        f"minidl.serving: model 'later': base path {no_prefix} does not exist; "
        f"expected {LAYOUT}"]
    publish(s3_bucket, tmp_path, 4, seed=4, prefix="models/later")
    manager.poll()
    assert manager.resolve("later")[0] == 4
    assert len(reported(caplog)) == 2
    manager.close()


def test_a_prefix_without_versions_says_what_it_holds(s3_bucket, tmp_path, caplog):
    for key in ("models/m/model.npz", "models/m/v1/model.npz", "models/m/1/my_model.h5"):
        s3_bucket.put(key, b"stand-in")
    base = s3_bucket.url("models/m")
    manager = manager_for(base, tmp_path / "cache")
    manager.start()
    manager.poll()
    assert reported(caplog) == [
        f"minidl.serving: model 'm': no version to serve in {base}: expected {LAYOUT} "
        f"(e.g. {base}/1/model.npz); found: 1/my_model.h5, model.npz, v1/model.npz"]


def test_a_base_path_that_is_one_versions_object_says_which_folder_to_give(s3_bucket,
                                                                          tmp_path, caplog):
    publish(s3_bucket, tmp_path, 1, seed=1)
    base = s3_bucket.url("models/m/1/model.npz")
    manager = manager_for(base, tmp_path / "cache")
    manager.check_base_paths()  # no request at start-up: the poller says it
    manager.start()
    assert reported(caplog) == [
        f"minidl.serving: model 'm': base path {base} is a file, not a folder; expected "
        f"{LAYOUT}; give the folder holding the version folders: {s3_bucket.url('models/m')}"]


def test_an_unreachable_endpoint_is_a_problem_of_the_poller_not_a_crash(s3_env, tmp_path,
                                                                        monkeypatch, caplog):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nobody there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's standard setting: fail fast
    base = "s3://bucket/models/m"
    manager = manager_for(base, tmp_path / "cache")
    manager.check_base_paths()
    manager.start()
    manager.poll()
    (message,) = reported(caplog)
    assert message.startswith(f"minidl.serving: model 'm': cannot scan base path {base}: "
                              f"{base}: EndpointConnectionError: Could not connect")
    assert all(record.exc_info is None for record in caplog.records)


def test_the_cache_is_reused_after_a_restart_and_still_verified(s3_bucket, tmp_path,
                                                               monkeypatch, caplog):
    cache = tmp_path / "cache"
    model = publish(s3_bucket, tmp_path, 1, seed=1)
    base = s3_bucket.url("models/m")
    first = manager_for(base, cache)
    first.start()
    first.close()
    (copy,) = cache.glob("*/1/*/model.npz")
    before = copy.stat()

    def no_download(url, destination):
        raise AssertionError(f"{url} downloaded again")

    with monkeypatch.context() as patched:
        patched.setattr(remote, "download", no_download)
        second = manager_for(base, cache)
        second.start()
        np.testing.assert_array_equal(served(second)[1], model.predict(X))
        second.close()
        assert (copy.stat().st_ino, copy.stat().st_mtime_ns) == (before.st_ino,
                                                                  before.st_mtime_ns)
        copy.write_bytes(copy.read_bytes()[:-100])  # a damaged copy: refused at load
        third = manager_for(base, cache)
        third.start()
        (status,) = third.status("m")
        assert status["status"]["error_message"].startswith(
            f"{base}/1/model.npz: not a minidl model file")
        assert not copy.exists()
        third.close()
    fourth = manager_for(base, cache)
    fourth.start()
    np.testing.assert_array_equal(served(fourth)[1], model.predict(X))
    fourth.close()


def test_the_default_cache_is_under_the_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == os.path.join(tmp_path, "minidl", "serving")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # ignored, as the XDG spec says
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == os.path.join(tmp_path, "home", ".cache", "minidl", "serving")


def test_serve_answers_tf_serving_predict_from_an_s3_base_path(s3_bucket, tmp_path,
                                                              monkeypatch):
    model = publish(s3_bucket, tmp_path, 1, seed=5)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))  # not used: the flag is
    log = tmp_path / "server.log"
    process = start_process(["-m", "minidl", "serve", "--model_base_path",
                             s3_bucket.url("models/m"), "--rest_api_port", "0",
                             "--model_cache_dir", str(tmp_path / "cache")], log)
    try:
        url = ready_url(process)
        answer = requests.post(url + "/v1/models/default:predict", timeout=10,
                               json={"instances": ROWS})
        assert answer.status_code == 200, answer.text
        np.testing.assert_array_equal(np.asarray(answer.json()["predictions"], np.float32),
                                      model.predict(np.asarray(ROWS, np.float32)))
    finally:
        code = stop(process)
    assert code == 0
    assert "Traceback" not in log.read_text()
    assert list((tmp_path / "cache").glob("*/1/*/model.npz"))
    assert not (tmp_path / "xdg-cache").exists()


def test_the_storage_docs_examples_run_and_their_commands_parse(s3_env):
    boto3.client("s3").create_bucket(Bucket="my-bucket")  # the bucket the examples name
    blocks = BLOCK.findall((DOCS / "storage.md").read_text())
    python = [code for language, code in blocks if language == "python"]
    assert python
    for code in python:
        exec(compile(code, "docs/storage.md", "exec"), {})
    listing = boto3.client("s3").list_objects_v2(Bucket="my-bucket")
    assert [entry["Key"] for entry in listing["Contents"]] == ["models/digits/1/model.npz"]
    commands = [code.strip() for language, code in blocks if language == "bash"]
    assert commands
    for command in commands:
        argv = shlex.split(command)
        assert argv[:4] == ["python", "-m", "minidl", "serve"]
        arguments = build_arg_parser().parse_args(argv[4:])
        assert ModelConfig("m", arguments.model_base_path).base_path.startswith("s3://")
