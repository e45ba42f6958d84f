"""The version manager: discovery, hot swap, failed versions, unloading, policies, labels.

Most tests call ``manager.poll()`` themselves, so that nothing depends on thread timing;
one test runs the background poller with a short period and bounded waits.
"""

import logging
import os
import shutil
import threading

import numpy as np
import pytest
from test_serving_support import (
    FakeModel,
    save_version,
    wait_until,
    write_corrupt_version,
    write_stand_ins,
)

from minidl.serving import layout
from minidl.serving.config import ConfigError, ModelConfig, VersionPolicy
from minidl.serving.layout import no_version_problem, scan_versions
from minidl.serving.models import ModelManager, ServableNotFound, ServableUnavailable

X = np.arange(8, dtype=np.float32).reshape(2, 4) / 8


def manager_for(base_path, *, policy=None, labels=None, **options):
    config = ModelConfig("m", str(base_path), version_policy=policy or VersionPolicy(),
                         version_labels=labels or {})
    options.setdefault("file_system_poll_wait_seconds", 0)
    return ModelManager([config], **options)


def states(manager):
    return {int(s["version"]): s["state"] for s in manager.status("m")}


def test_only_integer_folders_are_versions(tmp_path):
    save_version(tmp_path, 1)
    for name in ("v2", "3.5", "-4", "tmp", "٣"):
        os.makedirs(tmp_path / name)
        shutil.copy(tmp_path / "1" / "model.npz", tmp_path / name / "model.npz")
    (tmp_path / "7").write_text("a file, not a folder")
    assert scan_versions(str(tmp_path)).keys() == {1}


def test_a_version_folder_with_leading_zeros_is_read_where_it_is(tmp_path):
    model = save_version(tmp_path, "007", seed=3)
    manager = manager_for(tmp_path)
    manager.start()
    version, served = manager.resolve("m")
    assert version == 7
    np.testing.assert_array_equal(served.predict(X), model.predict(X))
    # two folders for one version: the one written as the number counts
    save_version(tmp_path, "7", seed=4)
    assert scan_versions(str(tmp_path))[7][0] == "7"


def test_highest_version_is_served_and_predicts_like_the_saved_model(tmp_path):
    save_version(tmp_path, 1, seed=1)
    model_2 = save_version(tmp_path, 2, seed=2)
    manager = manager_for(tmp_path)
    manager.start()
    version, model = manager.resolve("m")
    assert version == 2
    np.testing.assert_array_equal(model.predict(X), model_2.predict(X))
    assert states(manager) == {2: "AVAILABLE"}
    assert manager.versions_loaded() == {"m": 1}


def test_new_version_is_swapped_in_and_in_flight_holders_keep_the_old_model(tmp_path):
    model_1 = save_version(tmp_path, 1, seed=1)
    manager = manager_for(tmp_path)
    manager.start()
    _, held = manager.resolve("m")  # a request in flight holds this object
    model_2 = save_version(tmp_path, 2, seed=2)
    manager.poll()
    version, served = manager.resolve("m")
    assert version == 2 and served is not held
    np.testing.assert_array_equal(served.predict(X), model_2.predict(X))
    np.testing.assert_array_equal(held.predict(X), model_1.predict(X))
    assert states(manager) == {2: "AVAILABLE", 1: "END"}
    with pytest.raises(ServableNotFound, match=r"Specific\(m, 1\)"):
        manager.resolve("m", 1)


def test_corrupt_version_is_reported_and_never_replaces_the_good_one(tmp_path):
    save_version(tmp_path, 1)
    manager = manager_for(tmp_path)
    manager.start()
    write_corrupt_version(tmp_path, 2)
    manager.poll()
    assert manager.resolve("m")[0] == 1
    failed = manager.status("m", 2)[0]
    assert failed["state"] == "END"
    assert failed["status"]["error_code"] == "INVALID_ARGUMENT"
    assert failed["status"]["error_message"]  # the loader's message
    manager.poll()  # an unchanged broken file is not retried: still reported, still version 1
    assert manager.resolve("m")[0] == 1
    assert manager.status("m", 2)[0]["status"]["error_code"] == "INVALID_ARGUMENT"


def test_failed_version_is_retried_once_its_file_changes(tmp_path):
    save_version(tmp_path, 1)
    write_corrupt_version(tmp_path, 2)
    manager = manager_for(tmp_path)
    manager.start()
    assert manager.resolve("m")[0] == 1
    save_version(tmp_path, 2, seed=5)  # e.g. the copy that was in progress has finished
    manager.poll()
    assert manager.resolve("m")[0] == 2
    assert manager.status("m", 2)[0]["status"] == {"error_code": "OK", "error_message": ""}


def test_broken_highest_version_at_startup_falls_back_to_the_next(tmp_path):
    save_version(tmp_path, 1)
    write_corrupt_version(tmp_path, 3)
    manager = manager_for(tmp_path)
    manager.start()
    assert manager.resolve("m")[0] == 1
    assert states(manager) == {3: "END", 1: "AVAILABLE"}


def test_loader_failure_of_another_kind_is_unknown(tmp_path):
    save_version(tmp_path, 1)

    def loader(path):
        raise OSError("disk on fire")

    manager = manager_for(tmp_path, loader=loader)
    manager.start()
    status = manager.status("m")[0]["status"]
    assert status == {"error_code": "UNKNOWN", "error_message": "disk on fire"}
    with pytest.raises(ServableUnavailable, match="no version available"):
        manager.resolve("m")


def test_removed_version_is_unloaded_and_the_next_one_is_served(tmp_path):
    save_version(tmp_path, 1, seed=1)
    save_version(tmp_path, 2, seed=2)
    manager = manager_for(tmp_path)
    manager.start()
    shutil.rmtree(tmp_path / "2")
    manager.poll()
    assert manager.resolve("m")[0] == 1
    assert states(manager) == {2: "END", 1: "AVAILABLE"}
    shutil.rmtree(tmp_path / "1")
    manager.poll()
    with pytest.raises(ServableUnavailable):
        manager.resolve("m")
    assert manager.versions_loaded() == {"m": 0}


def test_folder_without_model_file_is_waited_for(tmp_path):
    save_version(tmp_path, 1)
    os.makedirs(tmp_path / "2")
    manager = manager_for(tmp_path)
    manager.start()
    assert manager.resolve("m")[0] == 1
    assert states(manager) == {1: "AVAILABLE"}


@pytest.mark.parametrize("policy, served", [
    (VersionPolicy("latest", 2), {2, 3}),
    (VersionPolicy("all"), {1, 2, 3}),
    (VersionPolicy("specific", versions=frozenset({1, 3, 9})), {1, 3}),
])
def test_version_policies(tmp_path, policy, served):
    for version in (1, 2, 3):
        save_version(tmp_path, version, seed=version)
    manager = manager_for(tmp_path, policy=policy)
    manager.start()
    assert {v for v, state in states(manager).items() if state == "AVAILABLE"} == served
    assert manager.resolve("m")[0] == max(served)
    for version in served:
        assert manager.resolve("m", version)[0] == version


def test_labels_name_versions(tmp_path):
    manager = manager_for(tmp_path, labels={"stable": 1})
    assert manager.label_version("m", "stable") == 1
    with pytest.raises(ServableNotFound, match="Unrecognized servable version label: canary"):
        manager.label_version("m", "canary")


def test_unknown_model_and_empty_base_path(tmp_path):
    manager = manager_for(tmp_path / "missing")
    manager.start()
    with pytest.raises(ServableNotFound, match=r"Servable not found for request: Latest\(x\)"):
        manager.resolve("x")
    with pytest.raises(ServableUnavailable):
        manager.resolve("m")
    with pytest.raises(ServableNotFound, match="Could not find any versions of model m"):
        manager.status("m")
    with pytest.raises(ServableNotFound, match="Could not find version 4 of model m"):
        manager.status("m", 4)


def test_background_poller_picks_up_versions_and_stops_on_close(tmp_path):
    save_version(tmp_path, 1)
    manager = manager_for(tmp_path, file_system_poll_wait_seconds=0.05)
    manager.start()
    try:
        save_version(tmp_path, 2, seed=2)
        wait_until(lambda: manager.resolve("m")[0] == 2, timeout=10)
        write_corrupt_version(tmp_path, 3)
        wait_until(lambda: manager.status("m")[0]["status"]["error_code"] != "OK", timeout=10)
        assert manager.resolve("m")[0] == 2
        shutil.rmtree(tmp_path / "2")
        wait_until(lambda: manager.resolve("m")[0] == 1, timeout=10)
    finally:
        manager.close()
    assert not any(t.name == "minidl-serving-poller" and t.is_alive()
                   for t in threading.enumerate())


def test_zero_poll_wait_scans_once_without_a_thread(tmp_path):
    save_version(tmp_path, 1)
    manager = manager_for(tmp_path, file_system_poll_wait_seconds=0)
    manager.start()
    save_version(tmp_path, 2)
    manager.start()  # idempotent: no second scan
    assert manager.resolve("m")[0] == 1
    assert manager._thread is None


def test_negative_poll_wait_is_refused(tmp_path):
    with pytest.raises(ValueError, match="file_system_poll_wait_seconds must be >= 0"):
        manager_for(tmp_path, file_system_poll_wait_seconds=-1)


def test_custom_loader_receives_the_model_file_path(tmp_path):
    save_version(tmp_path, 4)
    seen = []

    def loader(path):
        seen.append(path)
        return FakeModel()

    manager = manager_for(tmp_path, loader=loader)
    manager.start()
    assert seen == [os.path.join(str(tmp_path), "4", "model.npz")]


def test_model_without_input_shape_is_refused_at_load(tmp_path):
    save_version(tmp_path, 1)
    unbuilt = FakeModel()
    unbuilt.input_shape = None
    manager = manager_for(tmp_path, loader=lambda path: unbuilt)
    manager.start()
    status = manager.status("m")[0]["status"]
    assert status["error_code"] == "INVALID_ARGUMENT"
    assert "has no input shape" in status["error_message"]


# ---------------------------------------------------------------- files that are not regular

def make_special_file(path, kind):
    os.makedirs(path.parent, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)  # nobody writes to it: a blocking open would wait forever
    else:
        path.symlink_to("/dev/zero")  # endless: reading it would never stop growing


def bounded(call, seconds=10.0):
    """Run ``call`` in a thread; fail (rather than hang the suite) if it blocks."""
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{call} still blocked after {seconds} s"


@pytest.mark.parametrize(("kind", "what"), [("fifo", "a FIFO"),
                                            ("device", "a character device")])
def test_a_new_version_that_is_not_a_regular_file_is_refused_without_blocking(
        tmp_path, kind, what):
    save_version(tmp_path, 1)
    manager = manager_for(tmp_path)
    manager.start()
    make_special_file(tmp_path / "2" / "model.npz", kind)
    bounded(manager.poll)
    assert manager.resolve("m")[0] == 1
    status = manager.status("m", 2)[0]["status"]
    assert status["error_code"] == "INVALID_ARGUMENT"
    assert f"model.npz: not a regular file but {what}" in status["error_message"]
    save_version(tmp_path, 3, seed=3)  # a good newer version is still picked up
    bounded(manager.poll)
    assert manager.resolve("m")[0] == 3


def test_a_fifo_as_the_newest_version_at_start_up_does_not_block_the_start(tmp_path):
    save_version(tmp_path, 1)
    make_special_file(tmp_path / "2" / "model.npz", "fifo")
    manager = manager_for(tmp_path)
    bounded(manager.start)
    assert manager.resolve("m")[0] == 1
    assert states(manager) == {2: "END", 1: "AVAILABLE"}


# ---------------------------------------------------------------- problems, said once

LAYOUT = "BASE/<integer version>/model.npz"


def reported(caplog):
    """The messages logged at WARNING or above by the version manager."""
    return [record.getMessage() for record in caplog.records
            if record.name == "minidl.serving" and record.levelno >= logging.WARNING]


@pytest.mark.parametrize("entries, found", [
    ([], "an empty folder"),
    (["model.npz"], "model.npz"),
    (["v1/"], "v1/"),
    (["v1/model.npz"], "v1/model.npz"),
    (["1/my_model.h5"], "1/my_model.h5"),
    (["1/"], "1/"),
])
def test_no_version_problem_says_the_layout_expected_and_what_was_found(tmp_path, entries,
                                                                         found):
    write_stand_ins(tmp_path, entries)
    assert no_version_problem(str(tmp_path)) == (
        f"no version to serve in {tmp_path}: expected {LAYOUT} "
        f"(e.g. {tmp_path / '1' / 'model.npz'}); found: {found}")


def test_no_version_problem_lists_a_few_entries_sorted(tmp_path):
    write_stand_ins(tmp_path, ["b.h5", "a/model.npz", "a/notes/", "c/", "d", "e", "f", "g"])
    assert no_version_problem(str(tmp_path)).endswith(
        "found: a/model.npz, a/notes/, b.h5, c/, d, ...")


@pytest.mark.parametrize("entries", [[], ["model.npz"], ["v1/model.npz"], ["1/my_model.h5"]])
def test_a_base_path_without_versions_is_reported_once_not_at_every_poll(tmp_path, caplog,
                                                                         entries):
    write_stand_ins(tmp_path, entries)
    manager = manager_for(tmp_path)
    manager.start()
    for _ in range(3):
        manager.poll()
    messages = reported(caplog)
    assert messages == [f"minidl.serving: model 'm': {no_version_problem(str(tmp_path))}"]


def test_a_changed_problem_is_reported_again_and_a_fixed_one_is_not(tmp_path, caplog):
    manager = manager_for(tmp_path)
    manager.start()
    write_stand_ins(tmp_path, ["model.npz"])
    manager.poll()
    manager.poll()
    assert [message.rsplit("found: ", 1)[1] for message in reported(caplog)] == [
        "an empty folder", "model.npz"]
    save_version(tmp_path, 1)
    manager.poll()
    manager.poll()
    assert manager.resolve("m")[0] == 1
    assert len(reported(caplog)) == 2


def test_a_base_path_that_is_a_file_is_reported_once_without_a_traceback(tmp_path, caplog):
    save_version(tmp_path, 1)
    model_file = tmp_path / "1" / "model.npz"
    manager = manager_for(model_file)
    manager.start()
    for _ in range(3):
        manager.poll()
    assert reported(caplog) == [
        f"minidl.serving: model 'm': base path {model_file} is a file, not a folder; expected "
        f"{LAYOUT}; give the folder holding the version folders: {tmp_path}"]
    assert all(record.exc_info is None for record in caplog.records)


def test_check_base_paths_refuses_a_file_and_leaves_a_missing_path_to_the_poller(tmp_path):
    (tmp_path / "notes.txt").write_text("not a folder")
    save_version(tmp_path / "good", 1)
    manager = ModelManager([ModelConfig("gone", str(tmp_path / "gone")),
                            ModelConfig("good", str(tmp_path / "good")),
                            ModelConfig("text", str(tmp_path / "notes.txt"))])
    with pytest.raises(ConfigError) as raised:
        manager.check_base_paths()
    assert str(raised.value) == (
        f"model 'text': base path {tmp_path / 'notes.txt'} is a file, not a folder; "
        f"expected {LAYOUT}")
    ModelManager([ModelConfig("good", str(tmp_path / "good"))]).check_base_paths()


def test_a_scan_that_fails_keeps_the_served_version_and_is_reported_once(tmp_path, caplog,
                                                                         monkeypatch):
    save_version(tmp_path, 1)
    manager = manager_for(tmp_path)
    manager.start()

    def unreadable(base_path):
        raise PermissionError(13, "Permission denied", base_path)

    monkeypatch.setattr(layout, "scan_versions", unreadable)
    for _ in range(3):
        manager.poll()
    assert manager.resolve("m")[0] == 1
    assert reported(caplog) == [
        f"minidl.serving: model 'm': cannot scan base path {tmp_path}: "
        f"[Errno 13] Permission denied: '{tmp_path}'"]
    assert all(record.exc_info is None for record in caplog.records)


def test_an_unforeseen_poll_failure_is_logged_once_with_its_traceback(tmp_path, caplog,
                                                                      monkeypatch):
    save_version(tmp_path, 1)
    manager = manager_for(tmp_path)
    manager.start()

    def broken(base_path):
        raise RuntimeError("a bug in the scan")

    monkeypatch.setattr(layout, "scan_versions", broken)
    for _ in range(3):
        manager.poll()
    assert reported(caplog) == [
        "minidl.serving: model 'm': polling failed: RuntimeError: a bug in the scan"]
    assert len([record for record in caplog.records if record.exc_info]) == 1
