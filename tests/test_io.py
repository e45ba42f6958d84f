"""minidl.io: the .npz file format, its checks on load, and atomic saving."""

import hashlib
import io
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

import minidl
from minidl.io import (
    FORMAT,
    FORMAT_VERSION,
    METADATA_KEY,
    ModelFormatError,
    load_npz,
    read_metadata,
    save_npz,
    verify,
)

DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "float32", "float64", ">f4", ">i8"]


def sample_arrays():
    return {
        "layers.0.kernel": np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
        "layers.0.bias": np.array([0.5, -1.0, 2.0], dtype=np.float32),
        "optimizer.state.0.exp_avg": np.full((2, 3), 1e-3, dtype=np.float64),
        "mask": np.array([True, False, True]),
        "steps": np.array(3, dtype=np.int64),
        "empty": np.zeros((0, 4), dtype=np.float32),
    }


def sample_meta():
    return {
        "model": {"class_name": "Sequential",
                  "config": {"layers": [{"class_name": "Dense", "config": {"units": 3}}],
                             "input_dim": 2, "seed": 0, "dtype": "float32"}},
        "optimizer": {"class_name": "Adam", "config": {"lr": 0.001, "betas": [0.9, 0.999]},
                      "numbers": [{"step": 3}]},
        "note": "ünïcode ✓",
    }


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.npz"
    save_npz(path, sample_meta(), sample_arrays())
    return path


def assert_same_arrays(loaded, expected):
    assert list(loaded) == list(expected)
    for key, array in expected.items():
        assert loaded[key].dtype == array.dtype, key
        assert loaded[key].shape == array.shape, key
        assert loaded[key].tobytes() == np.ascontiguousarray(array).tobytes(), key


def npy_bytes(array, allow_pickle=False):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def members_of(path):
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def write_zip(path, members, compression=zipfile.ZIP_STORED):
    """A zip written member by member: CRCs are right, whatever the members hold."""
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def document_member(document):
    payload = document if isinstance(document, bytes) else json.dumps(document).encode()
    return npy_bytes(np.frombuffer(payload, dtype=np.uint8))


def rewrite(path, document=None, replace=None, drop=()):
    """Rebuild the file at ``path`` with a new document and/or replaced or dropped members."""
    members = members_of(path)
    if document is not None:
        members[METADATA_KEY + ".npy"] = document_member(document)
    members.update(replace or {})
    write_zip(path, {name: data for name, data in members.items() if name not in drop})


def array_data_offset(path, key):
    """Byte offset in the file of the first data byte of array ``key`` (after both headers)."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(key + ".npy")
    raw = path.read_bytes()
    local = info.header_offset
    name_length = int.from_bytes(raw[local + 26:local + 28], "little")
    extra_length = int.from_bytes(raw[local + 28:local + 30], "little")
    member_start = local + 30 + name_length + extra_length
    npy_header_length = int.from_bytes(raw[member_start + 8:member_start + 10], "little")
    return member_start + 10 + npy_header_length


def load_error(path):
    with pytest.raises(ModelFormatError) as caught:
        load_npz(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    return message


# ---------------------------------------------------------------------------------------------
# Round trip


@given(arrays(dtype=st.sampled_from(DTYPES),
              shape=array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)))
def test_round_trip_is_bit_identical_for_every_supported_dtype_and_shape(tmp_path_factory, array):
    path = tmp_path_factory.mktemp("round_trip") / "arrays.npz"
    save_npz(path, {}, {"a": array})
    _, loaded = load_npz(path)
    assert_same_arrays(loaded, {"a": array})


def test_round_trip_keeps_nan_and_inf_weights_bit_identical(tmp_path):
    weights = np.array([np.nan, -np.inf, np.inf, -0.0, 1e-45], dtype=np.float32)
    save_npz(tmp_path / "m.npz", {}, {"w": weights})
    assert_same_arrays(load_npz(tmp_path / "m.npz")[1], {"w": weights})


def test_round_trip_of_sample_arrays_and_meta(saved):
    meta, loaded = load_npz(saved)
    assert_same_arrays(loaded, sample_arrays())
    assert meta["format"] == FORMAT == "minidl.npz"
    assert meta["format_version"] == FORMAT_VERSION == 2
    assert meta["minidl_version"] == minidl.__version__
    assert {key: value for key, value in meta.items()
            if key not in ("format", "format_version", "minidl_version", "arrays")} == sample_meta()
    assert list(meta) == ["format", "format_version", "minidl_version", *sample_meta(), "arrays"]


def test_array_table_holds_sha256_shape_and_dtype_of_every_array(saved):
    table = read_metadata(saved)["arrays"]
    assert list(table) == list(sample_arrays())
    for key, array in sample_arrays().items():
        assert table[key] == {"sha256": hashlib.sha256(array.tobytes()).hexdigest(),
                              "shape": list(array.shape), "dtype": array.dtype.str}


def test_non_contiguous_and_fortran_ordered_arrays_are_saved_in_c_order(tmp_path):
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    arrays = {"fortran": np.asfortranarray(base), "strided": base[::2, ::3], "transposed": base.T}
    save_npz(tmp_path / "m.npz", {}, arrays)
    _, loaded = load_npz(tmp_path / "m.npz")
    for key, array in arrays.items():
        np.testing.assert_array_equal(loaded[key], array)
        assert loaded[key].flags.c_contiguous


def test_loaded_arrays_are_writable(saved):
    _, loaded = load_npz(saved)
    for array in loaded.values():
        array[...] = 0
        assert not array.any()


def test_numpy_scalars_and_tuples_in_meta_become_json_numbers_and_lists(tmp_path):
    meta = {"lr": np.float32(0.5), "step": np.int64(7), "flag": np.bool_(True),
            "betas": (0.9, 0.99)}
    save_npz(tmp_path / "m.npz", meta, {})
    loaded = read_metadata(tmp_path / "m.npz")
    assert (loaded["lr"], loaded["step"], loaded["flag"], loaded["betas"]) == (0.5, 7, True,
                                                                             [0.9, 0.99])
    assert type(loaded["step"]) is int and type(loaded["flag"]) is bool


def test_numpy_load_without_pickle_opens_the_file(saved):
    with np.load(saved, allow_pickle=False) as npz:
        assert npz.files == [METADATA_KEY, *sample_arrays()]
        document = json.loads(npz[METADATA_KEY].tobytes().decode("utf-8"))
        for key, array in sample_arrays().items():
            np.testing.assert_array_equal(npz[key], array)
    assert document == read_metadata(saved)


def test_members_are_uncompressed_npy_files_with_metadata_first(saved):
    with zipfile.ZipFile(saved) as archive:
        infos = archive.infolist()
        assert [info.filename for info in infos] == [
            f"{key}.npy" for key in [METADATA_KEY, *sample_arrays()]]
        assert all(info.compress_type == zipfile.ZIP_STORED for info in infos)
        assert all(archive.read(info)[:8] == b"\x93NUMPY\x01\x00" for info in infos)


def test_saving_the_same_content_twice_gives_byte_identical_files(tmp_path):
    save_npz(tmp_path / "a.npz", sample_meta(), sample_arrays())
    time.sleep(0.01)
    save_npz(tmp_path / "b.npz", sample_meta(), sample_arrays())
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_path_may_be_str_or_pathlike_and_is_used_as_given(tmp_path):
    save_npz(str(tmp_path / "model"), {}, {"w": np.ones(2)})
    assert sorted(os.listdir(tmp_path)) == ["model"]
    assert_same_arrays(load_npz(str(tmp_path / "model"))[1], {"w": np.ones(2)})
    assert verify(tmp_path / "model") == []


def test_saving_over_an_existing_file_replaces_it(saved):
    save_npz(saved, {"second": True}, {"w": np.zeros(1)})
    meta, loaded = load_npz(saved)
    assert meta["second"] is True
    assert list(loaded) == ["w"]


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_new_file_follows_the_umask_and_an_overwritten_file_keeps_its_mode(tmp_path):
    previous_umask = os.umask(0o027)
    try:
        save_npz(tmp_path / "m.npz", {}, {})
    finally:
        os.umask(previous_umask)
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o640
    os.chmod(tmp_path / "m.npz", 0o604)
    save_npz(tmp_path / "m.npz", {}, {})
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o604


# ---------------------------------------------------------------------------------------------
# Bad input to save_npz


def test_missing_folder_raises_file_not_found_naming_it_and_creates_nothing(tmp_path):
    missing = tmp_path / "no" / "such"
    with pytest.raises(FileNotFoundError, match=f"folder '{missing}' does not exist"):
        save_npz(missing / "m.npz", {}, {})
    assert list(tmp_path.iterdir()) == []


def test_path_that_is_a_folder_is_refused(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a folder"):
        save_npz(tmp_path, {}, {})


@pytest.mark.parametrize(("key", "error", "message"), [
    ("", ValueError, "key '' is empty"),
    ("layers/0", ValueError, "contains '/' or"),
    ("layers\\0", ValueError, "contains '/' or"),
    ("__minidl__", ValueError, "starts with '__'"),
    ("__private", ValueError, "starts with '__'"),
    ("line\nbreak", ValueError, "control characters"),
    (3, TypeError, "key 3 is a int, not a str"),
])
def test_bad_array_keys_are_refused_by_name(tmp_path, key, error, message):
    with pytest.raises(error, match=message):
        save_npz(tmp_path / "m.npz", {}, {key: np.zeros(1)})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("array", [
    np.array([object()], dtype=object),
    np.array(["text"]),
    np.array([b"bytes"]),
    np.array([1 + 2j]),
    np.zeros(2, dtype=[("x", "<f4"), ("y", "<i4")]),
    np.array(["2024-01-01"], dtype="datetime64[D]"),
    np.zeros(2, dtype="V8"),
], ids=["object", "str", "bytes", "complex", "structured", "datetime", "void"])
def test_non_numeric_arrays_are_refused_naming_the_key(tmp_path, array):
    with pytest.raises(TypeError, match=r"arrays\['layers.0.kernel'\] has dtype .*minidl files"):
        save_npz(tmp_path / "m.npz", {}, {"layers.0.kernel": array})


@pytest.mark.skipif(np.dtype(np.longdouble).itemsize <= 8, reason="longdouble is float64 here")
def test_platform_dependent_long_double_is_refused(tmp_path):
    with pytest.raises(TypeError, match="has dtype"):
        save_npz(tmp_path / "m.npz", {}, {"w": np.zeros(2, dtype=np.longdouble)})


def test_values_that_are_not_numpy_arrays_are_refused(tmp_path):
    with pytest.raises(TypeError, match=r"arrays\['w'\] is a list, not a numpy array"):
        save_npz(tmp_path / "m.npz", {}, {"w": [1.0, 2.0]})
    with pytest.raises(TypeError, match="arrays must be a dict"):
        save_npz(tmp_path / "m.npz", {}, [np.zeros(1)])


def _cyclic():
    meta = {"a": []}
    meta["a"].append(meta)
    return meta


@pytest.mark.parametrize(("meta", "error", "message"), [
    ({"model": {"config": {"units": {3, 4}}}}, TypeError,
     r"meta\['model'\]\['config'\]\['units'\] is a set, which JSON cannot hold"),
    ({"model": {1: "x"}}, TypeError, r"meta\['model'\] has key 1 of type int"),
    ({"layers": [1, np.zeros(2)]}, TypeError,
     r"meta\['layers'\]\[1\] is a numpy array: pass arrays in `arrays`"),
    ({"training": {"loss": float("nan")}}, ValueError,
     r"meta\['training'\]\['loss'\] is nan: JSON has no NaN"),
    ({"lr": np.float32(np.inf)}, ValueError, r"meta\['lr'\] is inf"),
    ({"arrays": {}}, ValueError, r"must not contain \['arrays'\]"),
    ({"format": "x", "format_version": 2}, ValueError, "must not contain"),
    (_cyclic(), ValueError, r"meta\['a'\]\[0\] contains itself"),
    (["not", "a", "dict"], TypeError, "meta must be a dict"),
])
def test_meta_that_json_cannot_hold_exactly_is_refused_naming_the_place(tmp_path, meta, error,
                                                                       message):
    with pytest.raises(error, match=message):
        save_npz(tmp_path / "m.npz", meta, {})


def test_refused_meta_leaves_the_previous_file_intact_and_no_temporary_file(saved):
    before = saved.read_bytes()
    with pytest.raises(TypeError):
        save_npz(saved, {"callback": print}, sample_arrays())
    assert saved.read_bytes() == before
    assert os.listdir(saved.parent) == [saved.name]


# ---------------------------------------------------------------------------------------------
# Atomic saving


def stall_or_fail_on_member(monkeypatch, member_name, action):
    """Make zipfile's member writer run ``action`` once it has written part of ``member_name``."""
    original_write = zipfile._ZipWriteFile.write

    def write_then_act(self, data):
        written = original_write(self, data)
        if self._zinfo.filename == member_name:
            action()
        return written

    monkeypatch.setattr(zipfile._ZipWriteFile, "write", write_then_act)


@pytest.mark.parametrize("interruption", [OSError(28, "No space left on device"),
                                          KeyboardInterrupt()])
def test_save_interrupted_mid_write_leaves_previous_file_and_no_temporary_file(
        saved, monkeypatch, interruption):
    before = saved.read_bytes()

    def interrupt():
        raise interruption

    stall_or_fail_on_member(monkeypatch, "layers.0.bias.npy", interrupt)
    with pytest.raises(type(interruption)):
        save_npz(saved, {"new": 1}, sample_arrays())
    monkeypatch.undo()
    assert saved.read_bytes() == before
    assert os.listdir(saved.parent) == [saved.name]
    assert_same_arrays(load_npz(saved)[1], sample_arrays())


def test_failed_rename_leaves_previous_file_and_no_temporary_file(saved, monkeypatch):
    before = saved.read_bytes()

    def refuse(source, target):
        raise PermissionError(13, "Permission denied", str(target))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError):
        save_npz(saved, {}, {"w": np.zeros(3)})
    monkeypatch.undo()
    assert saved.read_bytes() == before
    assert os.listdir(saved.parent) == [saved.name]


KILLED_SAVE = textwrap.dedent("""
    import sys, time, zipfile
    from pathlib import Path
    import numpy as np
    from minidl.io import save_npz

    original_write = zipfile._ZipWriteFile.write

    def write_then_stall(self, data):
        written = original_write(self, data)
        if self._zinfo.filename == "big.npy":
            Path(sys.argv[2]).touch()
            time.sleep(60)
        return written

    zipfile._ZipWriteFile.write = write_then_stall
    save_npz(sys.argv[1], {"second": True}, {"big": np.ones(1 << 20, dtype=np.float32)})
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_save_killed_mid_write_leaves_previous_file_loadable(saved):
    before = saved.read_bytes()
    started = saved.parent / "started"
    repository = Path(__file__).resolve().parents[1]
    environment = {**os.environ, "PYTHONPATH": str(repository)}
    process = subprocess.Popen([sys.executable, "-c", KILLED_SAVE, str(saved), str(started)],
                               env=environment)
    try:
        deadline = time.monotonic() + 30
        while not started.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert started.exists(), "the saving process never started writing"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL
    assert saved.read_bytes() == before
    assert_same_arrays(load_npz(saved)[1], sample_arrays())
    leftovers = sorted(set(os.listdir(saved.parent)) - {saved.name, started.name})
    assert len(leftovers) == 1 and leftovers[0].startswith(f".{saved.name}.")
    assert leftovers[0].endswith(".tmp")


# ---------------------------------------------------------------------------------------------
# Bad files: each refused with a message saying what and where


def test_missing_file_raises_file_not_found(tmp_path):
    for reader in (load_npz, read_metadata, verify):
        with pytest.raises(FileNotFoundError):
            reader(tmp_path / "absent.npz")


def test_model_format_error_is_a_value_error():
    assert issubclass(ModelFormatError, ValueError)


@pytest.mark.parametrize("content", [b"", b"hello, I am a text file\n", b"\x93NUMPY" + b"\0" * 200],
                         ids=["empty", "text", "npy"])
def test_file_that_is_not_a_zip_is_refused(tmp_path, content):
    path = tmp_path / "m.npz"
    path.write_bytes(content)
    assert "not a minidl model file: it is not a zip archive" in load_error(path)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, -1], ids=["10%", "50%", "90%", "minus-1-byte"])
def test_truncated_file_is_refused(saved, keep):
    raw = saved.read_bytes()
    saved.write_bytes(raw[:keep if keep == -1 else int(len(raw) * keep)])
    assert "not a minidl model file: it is not a zip archive" in load_error(saved)
    with pytest.raises(ModelFormatError):
        read_metadata(saved)
    assert len(verify(saved)) == 1


def test_flipped_byte_inside_array_data_is_caught_naming_the_array(saved):
    raw = bytearray(saved.read_bytes())
    raw[array_data_offset(saved, "layers.0.kernel") + 5] ^= 0x01
    saved.write_bytes(raw)
    message = load_error(saved)
    assert "array 'layers.0.kernel' is corrupted" in message
    assert "CRC" in message
    assert read_metadata(saved)["format"] == FORMAT
    assert len(verify(saved)) == 1


def test_tampered_array_with_a_valid_zip_crc_is_caught_by_its_sha256(saved):
    expected = read_metadata(saved)["arrays"]["layers.0.kernel"]["sha256"]
    tampered = sample_arrays()["layers.0.kernel"].copy()
    tampered[1, 2] += 1
    rewrite(saved, replace={"layers.0.kernel.npy": npy_bytes(tampered)})
    found = hashlib.sha256(tampered.tobytes()).hexdigest()
    assert (f"array 'layers.0.kernel' is corrupted: sha256 mismatch (expected {expected[:12]}…, "
            f"found {found[:12]}…)") in load_error(saved)


def test_every_single_byte_flip_is_refused_or_changes_nothing(tmp_path):
    path = tmp_path / "m.npz"
    save_npz(path, {"k": 1}, {"w": np.arange(3, dtype=np.float32), "s": np.array(2)})
    expected_meta, expected_arrays = load_npz(path)
    raw = path.read_bytes()
    for index in range(len(raw)):
        flipped = bytearray(raw)
        flipped[index] ^= 0xFF
        path.write_bytes(flipped)
        try:
            meta, arrays = load_npz(path)
        except ModelFormatError:
            continue
        # only bytes outside data and names (timestamps, attributes) may flip unnoticed
        assert meta == expected_meta, index
        assert_same_arrays(arrays, expected_arrays)


def test_plain_npz_without_metadata_is_refused_listing_its_entries(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, kernel=np.zeros(2), bias=np.zeros(1))
    message = load_error(path)
    assert f"not a minidl model file: it has no '{METADATA_KEY}' entry" in message
    assert "(entries found: 'kernel', 'bias')" in message


@pytest.mark.parametrize(("document", "message"), [
    (b"\xff\xfe not utf-8", "the '__minidl__' entry is not UTF-8 text"),
    (b"{not json", "the '__minidl__' entry is not valid JSON"),
    (b'{"format": NaN}', "the '__minidl__' entry is not valid JSON (NaN is not JSON)"),
    (b'{"format": "minidl.npz", "format": "x"}', "duplicate keys ['format']"),
    (b"[1, 2]", "the '__minidl__' entry holds a JSON list, not an object"),
    ({"format_version": 1}, "not a minidl model file: the '__minidl__' entry has no 'format'"),
    ({"format": "keras"}, "not a minidl model file: format is 'keras', expected 'minidl.npz'"),
    ({"format": FORMAT, "format_version": "1"}, "format_version is '1'; expected an integer"),
    ({"format": FORMAT, "format_version": 0}, "format_version is 0; expected an integer"),
    ({"format": FORMAT, "format_version": 1, "arrays": {}}, "minidl_version is None"),
    ({"format": FORMAT, "format_version": 1, "minidl_version": "0.1.0"},
     "the array table 'arrays' is None; expected an object"),
])
def test_malformed_metadata_is_refused_saying_what_is_wrong(saved, document, message):
    rewrite(saved, document=document)
    assert message in load_error(saved)
    with pytest.raises(ModelFormatError) as caught:
        read_metadata(saved)
    assert message in str(caught.value)


def test_metadata_entry_that_is_not_a_uint8_vector_is_refused(saved):
    rewrite(saved, replace={"__minidl__.npy": npy_bytes(np.zeros(3))})
    assert "the '__minidl__' entry has dtype '<f8' and shape (3,); expected a 1-D uint8" in (
        load_error(saved))


@pytest.mark.parametrize(("entry", "message"), [
    ({"sha256": "abc", "shape": [2, 3], "dtype": "<f4"}, "sha256 'abc'; expected 64 lowercase"),
    ({"sha256": "0" * 64, "shape": [2, -3], "dtype": "<f4"}, "shape [2, -3]; expected a list"),
    ({"sha256": "0" * 64, "shape": [2, 3], "dtype": "|O"}, "dtype '|O', not a plain numeric"),
    ({"sha256": "0" * 64, "shape": [2, 3]}, "expected an object with sha256, shape and dtype"),
])
def test_malformed_array_table_entry_is_refused_naming_the_key(saved, entry, message):
    document = read_metadata(saved)
    document["arrays"]["layers.0.kernel"] = entry
    rewrite(saved, document=document)
    error = load_error(saved)
    assert "the array table's entry for 'layers.0.kernel'" in error
    assert message in error


def test_array_table_key_that_save_npz_would_refuse_is_refused(saved):
    document = read_metadata(saved)
    document["arrays"]["../../etc/passwd"] = document["arrays"].pop("mask")
    rewrite(saved, document=document)
    assert "the array table has an invalid key '../../etc/passwd' contains '/'" in (
        load_error(saved))


def test_future_format_version_asks_to_upgrade_minidl(saved):
    document = read_metadata(saved)
    document.update(format_version=FORMAT_VERSION + 1, minidl_version="9.9.9", new_field=[1])
    rewrite(saved, document=document)
    expected = (f"written by minidl 9.9.9 with format_version {FORMAT_VERSION + 1}; this minidl "
                f"({minidl.__version__}) reads up to version {FORMAT_VERSION}: upgrade minidl")
    assert expected in load_error(saved)
    with pytest.raises(ModelFormatError, match="upgrade minidl"):
        read_metadata(saved)


class WritesMarkerWhenUnpickled:
    """A pickled object whose unpickling creates a folder: proof that pickle ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("table_dtype", ["<f8", "|O"])
def test_smuggled_object_array_is_refused_and_never_unpickled(saved, tmp_path, monkeypatch,
                                                               table_dtype):
    marker = tmp_path / "unpickled"
    bait = npy_bytes(np.array([WritesMarkerWhenUnpickled(marker)], dtype=object),
                     allow_pickle=True)
    document = read_metadata(saved)
    document["arrays"]["layers.0.kernel"] = {"sha256": hashlib.sha256(bait).hexdigest(),
                                             "shape": [1], "dtype": table_dtype}
    rewrite(saved, document=document, replace={"layers.0.kernel.npy": bait})

    def no_unpickling(*args, **kwargs):
        raise AssertionError("minidl.io must never unpickle")

    with monkeypatch.context() as patch:
        for name in ("load", "loads", "Unpickler"):
            patch.setattr(pickle, name, no_unpickling)
        message = load_error(saved)
        assert verify(saved)
    assert not marker.exists()
    if table_dtype == "|O":
        assert "entry for 'layers.0.kernel' has dtype '|O', not a plain numeric" in message
    else:
        assert "array 'layers.0.kernel' has dtype '|O', not a plain numeric dtype" in message
    # the bait is live: numpy with allow_pickle=True does run it
    np.lib.format.read_array(io.BytesIO(bait), allow_pickle=True)
    assert marker.exists()


def test_array_whose_shape_differs_from_the_table_is_refused(saved):
    rewrite(saved, replace={"layers.0.kernel.npy": npy_bytes(np.zeros((3, 2), np.float32))})
    assert "array 'layers.0.kernel' has shape (3, 2) but the metadata says (2, 3)" in (
        load_error(saved))


def test_array_whose_dtype_differs_from_the_table_is_refused(saved):
    rewrite(saved, replace={"layers.0.kernel.npy": npy_bytes(np.zeros((2, 3), np.float64))})
    assert "array 'layers.0.kernel' has dtype '<f8' but the metadata says '<f4'" in (
        load_error(saved))


def test_array_with_missing_or_extra_data_bytes_is_refused(saved):
    member = npy_bytes(sample_arrays()["layers.0.bias"])
    rewrite(saved, replace={"layers.0.bias.npy": member + b"\0\0\0\0"})
    assert ("array 'layers.0.bias' holds 16 bytes of data, but shape (3,) of dtype '<f4' "
            "needs 12") in load_error(saved)
    rewrite(saved, replace={"layers.0.bias.npy": member[:-1]})
    assert "holds 11 bytes of data" in load_error(saved)


def test_unexpected_extra_array_is_refused_naming_it(saved):
    rewrite(saved, replace={"layers.9.kernel.npy": npy_bytes(np.zeros(2))})
    assert "unexpected array 'layers.9.kernel' in the archive: not listed in the metadata" in (
        load_error(saved))


def test_unexpected_member_that_is_not_npy_is_refused(saved):
    rewrite(saved, replace={"README.txt": b"hello"})
    assert "unexpected member 'README.txt' in the archive" in load_error(saved)


def test_missing_array_is_refused_naming_it(saved):
    rewrite(saved, drop=["optimizer.state.0.exp_avg.npy"])
    assert ("array 'optimizer.state.0.exp_avg' is listed in the metadata but missing from the "
            "archive") in load_error(saved)


def test_compressed_member_is_refused(saved):
    write_zip(saved, members_of(saved), compression=zipfile.ZIP_DEFLATED)
    assert "the '__minidl__' entry is compressed (zip method 8)" in load_error(saved)


def test_fortran_ordered_member_is_refused(saved):
    kernel = np.asfortranarray(sample_arrays()["layers.0.kernel"])
    rewrite(saved, replace={"layers.0.kernel.npy": npy_bytes(kernel)})
    assert "array 'layers.0.kernel' is stored in Fortran order" in load_error(saved)


def test_unsupported_npy_version_is_refused(saved):
    member = bytearray(npy_bytes(sample_arrays()["layers.0.bias"]))
    member[6] = 3
    rewrite(saved, replace={"layers.0.bias.npy": bytes(member)})
    assert "array 'layers.0.bias' uses .npy version 3.0; minidl reads versions 1.0 and 2.0" in (
        load_error(saved))


def test_duplicate_member_names_are_refused(saved):
    with pytest.warns(UserWarning, match="Duplicate name"), \
            zipfile.ZipFile(saved, "a") as archive:
        archive.writestr("mask.npy", npy_bytes(np.array([False, False, False])))
    assert "the zip archive holds several members named ['mask.npy']" in load_error(saved)


def test_members_beyond_the_zip64_limit_are_written_with_zip64_records_and_load(tmp_path,
                                                                                monkeypatch):
    big = np.arange(1000, dtype=np.float64)
    with monkeypatch.context() as patch:
        # the limit lowered to 1000 bytes stands in for 2 GiB
        patch.setattr(zipfile, "ZIP64_LIMIT", 1000)
        save_npz(tmp_path / "m.npz", {}, {"big": big, "small": np.zeros(2)})
    raw = (tmp_path / "m.npz").read_bytes()
    assert b"PK\x06\x06" in raw  # zip64 end of central directory record
    assert_same_arrays(load_npz(tmp_path / "m.npz")[1], {"big": big, "small": np.zeros(2)})


# ---------------------------------------------------------------------------------------------
# The specification in docs/format.md


def reader_from_the_spec():
    spec = (Path(__file__).resolve().parents[1] / "docs" / "format.md").read_text("utf-8")
    section = spec.split("## 6. Reading a file without minidl")[1]
    source = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    namespace = {}
    exec(compile(source, "docs/format.md", "exec"), namespace)
    return namespace["read_minidl"]


def test_the_reader_in_the_spec_reads_what_save_npz_writes(saved):
    document, arrays = reader_from_the_spec()(saved)
    assert document == read_metadata(saved)
    assert_same_arrays(arrays, sample_arrays())


def test_the_reader_in_the_spec_catches_a_tampered_array(saved):
    rewrite(saved, replace={"layers.0.bias.npy": npy_bytes(sample_arrays()["layers.0.bias"] * 2)})
    with pytest.raises(ValueError, match=r"layers\.0\.bias: sha256 mismatch"):
        reader_from_the_spec()(saved)


# ---------------------------------------------------------------------------------------------
# read_metadata and verify


def test_read_metadata_returns_the_document_without_reading_arrays(saved):
    rewrite(saved, drop=["layers.0.kernel.npy"])
    document = read_metadata(saved)
    assert document["model"] == sample_meta()["model"]
    assert set(document["arrays"]) == set(sample_arrays())


def test_verify_is_empty_for_an_intact_file(saved):
    assert verify(saved) == []


def test_verify_reports_every_problem_without_stopping_at_the_first(saved):
    kernel, bias = sample_arrays()["layers.0.kernel"], sample_arrays()["layers.0.bias"]
    rewrite(saved, replace={"layers.0.kernel.npy": npy_bytes(kernel + 1),
                            "layers.0.bias.npy": npy_bytes(bias * 2),
                            "stowaway.npy": npy_bytes(np.zeros(1))},
            drop=["mask.npy"])
    problems = verify(saved)
    assert len(problems) == 4
    assert problems[0] == "unexpected array 'stowaway' in the archive: not listed in the metadata"
    assert problems[1].startswith("array 'layers.0.kernel' is corrupted: sha256 mismatch")
    assert problems[2].startswith("array 'layers.0.bias' is corrupted: sha256 mismatch")
    assert problems[3] == "array 'mask' is listed in the metadata but missing from the archive"
    message = load_error(saved)
    assert "; and 1 more problems (minidl.io.verify lists them all)" in message


# ---------------------------------------------------------------- only regular files are read

def saved_sample(path: Path) -> Path:
    save_npz(path, sample_meta(), sample_arrays())
    return path


def refused_at_once(read, path, seconds=10.0) -> str:
    """The ModelFormatError message of ``read(path)``; fails, rather than hangs, if the read
    blocks (a blocking open of a FIFO waits for a writer that never comes)."""
    outcome = []

    def attempt():
        try:
            read(path)
        except ModelFormatError as error:
            outcome.append(str(error))

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{read.__name__}({path}) still blocked after {seconds} s"
    assert outcome, f"{read.__name__}({path}) did not raise ModelFormatError"
    return outcome[0]


def test_a_fifo_is_refused_at_once_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    # a blocking open would wait forever: nobody ever writes to this FIFO
    for read in (load_npz, read_metadata):
        assert re.search(r"model\.npz: not a regular file but a FIFO \(named pipe\)",
                         refused_at_once(read, fifo))
    assert verify(fifo) == ["not a regular file but a FIFO (named pipe); a model file must "
                            "be a regular file"]


def test_a_link_to_a_device_is_refused_before_reading_any_of_it(tmp_path):
    link = tmp_path / "model.npz"
    link.symlink_to("/dev/zero")  # endless: reading it would never stop growing
    assert "not a regular file but a character device" in refused_at_once(load_npz, link)


def test_a_folder_is_refused_naming_what_a_model_folder_holds(tmp_path):
    with pytest.raises(ModelFormatError, match=r"not a regular file but a folder \(a model "
                                               r"folder holds model\.npz\)"):
        load_npz(tmp_path)


def test_a_link_to_a_regular_file_loads(tmp_path):
    target = saved_sample(tmp_path / "real.npz")
    link = tmp_path / "model.npz"
    link.symlink_to(target)
    meta, arrays = load_npz(link)
    assert meta["note"] == "ünïcode ✓" and set(arrays) == set(sample_arrays())


def test_the_file_kind_is_read_from_the_opened_descriptor_not_from_the_path(
        tmp_path, monkeypatch):
    # a check by name (os.stat, os.path.isfile...) then an open leaves a window in which the
    # path can be swapped for a FIFO: with every by-name look-up failing, loading must still
    # work and still refuse a FIFO
    path = saved_sample(tmp_path / "model.npz")
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    opened_flags = []
    real_open = os.open

    def recording_open(name, flags, *args, **kwargs):
        opened_flags.append(flags)
        return real_open(name, flags, *args, **kwargs)

    def no_lookup_by_name(*args, **kwargs):
        raise AssertionError("the file's kind was looked up by name")

    monkeypatch.setattr(os, "open", recording_open)
    for name in ("stat", "lstat"):
        monkeypatch.setattr(os, name, no_lookup_by_name)
    monkeypatch.setattr(os.path, "isfile", no_lookup_by_name)
    assert set(load_npz(path)[1]) == set(sample_arrays())
    assert "not a regular file but a FIFO" in refused_at_once(load_npz, fifo)
    assert opened_flags and all(flags & os.O_NONBLOCK for flags in opened_flags)
