"""minidl.io.remote, and model.save / load_model / save_weights / load_weights on URLs, against
moto's S3 server on 127.0.0.1 (s3_support.py), reached through the standard AWS environment."""

import os
import sys
import tempfile

import boto3
import numpy as np
import pytest

from minidl.io import ModelFormatError
from minidl.io.remote import filesystem, is_remote, local_path
from minidl.layers import Dense, Dropout
from minidl.model import Sequential, load_model

X = np.linspace(-1, 1, 24, dtype=np.float32).reshape(6, 4)
Y = np.array([0, 1, 2, 0, 1, 2])


def trained_model(seed=0):
    """A model with everything a file holds: weights, compile arguments, Adam's state and
    a dropout generator part-way through its stream."""
    model = Sequential([Dense(8, activation="relu"), Dropout(0.25), Dense(3)], input_dim=4,
                       seed=seed)
    model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"])
    model.fit(X, Y, epochs=2, batch_size=3, verbose=0)
    return model


@pytest.fixture
def local_tmp(tmp_path, monkeypatch):
    """tempfile's folder, made empty and watched: whatever minidl leaves in it is seen."""
    folder = tmp_path / "tempfile"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


# ---------------------------------------------------------------- what is a URL

@pytest.mark.parametrize("path", ["s3://bucket/models/m", "gs://b/m", "memory://m",
                                  "hdfs://namenode:8020/m", "S3://bucket/m"])
def test_a_url_with_a_protocol_is_remote(path):
    assert is_remote(path)


@pytest.mark.parametrize("path", ["models/m", "/srv/models/m", "C:\\models\\m", "C:/models/m",
                                  "c://models/m", "file:///srv/models/m", "FILE:///srv/m",
                                  "s3:/bucket/m", "model.npz"])
def test_a_path_a_windows_drive_or_a_file_url_is_local(path):
    assert not is_remote(path)


def test_a_file_url_is_the_local_path_it_names():
    assert local_path("file:///srv/models/my%20model") == os.path.normpath("/srv/models/my model")
    assert local_path("models/m") == "models/m"
    assert local_path("s3://bucket/m") == "s3://bucket/m"


def test_a_file_url_saves_and_loads_as_its_local_path(tmp_path):
    model = trained_model()
    model.save(f"file://{tmp_path}/m/1")
    assert os.path.isfile(tmp_path / "m" / "1" / "model.npz")
    np.testing.assert_array_equal(load_model(f"file://{tmp_path}/m/1").predict(X),
                                  model.predict(X))


# ---------------------------------------------------------------- what is missing

def test_without_fsspec_the_error_names_the_s3_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "fsspec", None)
    with pytest.raises(ModuleNotFoundError, match=r"^fsspec is not installed; .*"
                                                  r"pip install 'minidl\[s3\]'$"):
        filesystem("s3://bucket/m")


def test_without_s3fs_the_error_names_the_s3_extra(monkeypatch):
    import fsspec  # noqa: F401 (fsspec.registry below is its module, not the mapping)

    # as on a machine where another package brought fsspec but not s3fs
    monkeypatch.setitem(sys.modules, "s3fs", None)
    monkeypatch.delitem(sys.modules["fsspec.registry"]._registry, "s3", raising=False)
    with pytest.raises(ModuleNotFoundError, match=r"^s3fs is not installed; .*"
                                                  r"pip install 'minidl\[s3\]'$"):
        filesystem("s3://bucket/m")


def test_a_protocol_whose_package_is_missing_names_the_package_to_install():
    try:
        import gcsfs  # noqa: F401
    except ModuleNotFoundError:
        pass
    else:
        pytest.skip("gcsfs is installed here")
    with pytest.raises(ModuleNotFoundError, match=r"^gcsfs is not installed; gs://b/m/1/model"
                                                  r"\.npz needs it: pip install gcsfs"):
        trained_model().save("gs://b/m/1")


def test_an_unknown_protocol_is_refused_naming_the_url():
    with pytest.raises(ValueError, match=r"^nope://b/m: Protocol not known: nope$"):
        filesystem("nope://b/m")


# ---------------------------------------------------------------- S3 round trips

def test_the_standard_environment_is_what_s3fs_and_botocore_use(s3_bucket, s3_env,
                                                               monkeypatch):
    trained_model().save(s3_bucket.url("m/1"))
    # read back by a client told the endpoint explicitly, the environment's one removed:
    # the object is on the test's server
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    client = boto3.client("s3", endpoint_url=s3_env)
    body = client.get_object(Bucket=s3_bucket.name, Key="m/1/model.npz")["Body"].read()
    assert body == s3_bucket.get("m/1/model.npz") and body[:2] == b"PK"


def test_save_then_load_model_through_s3_is_bit_identical(s3_bucket, tmp_path):
    model = trained_model()
    model.save(s3_bucket.url("models/m/1"))  # a folder: model.npz inside, as on disk
    model.save(tmp_path / "model.npz")
    assert s3_bucket.keys() == ["models/m/1/model.npz"]
    assert s3_bucket.get("models/m/1/model.npz") == (tmp_path / "model.npz").read_bytes()
    loaded = load_model(s3_bucket.url("models/m/1/model.npz"))
    for saved, read in zip(model.get_weights(), loaded.get_weights(), strict=True):
        assert (read.dtype, read.shape, read.tobytes()) == (saved.dtype, saved.shape,
                                                            saved.tobytes())
    state, loaded_state = model.optimizer.state_dict(), loaded.optimizer.state_dict()
    assert loaded_state["iterations"] == state["iterations"]
    for saved, read in zip(state["state"], loaded_state["state"], strict=True):
        np.testing.assert_array_equal(read["exp_avg"], saved["exp_avg"])
    assert loaded.epoch == model.epoch
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_save_weights_and_load_weights_through_s3(s3_bucket):
    model, other = trained_model(seed=1), trained_model(seed=2)
    model.save_weights(s3_bucket.url("weights.npz"))
    other.load_weights(s3_bucket.url("weights.npz"))
    for saved, read in zip(model.get_weights(), other.get_weights(), strict=True):
        assert read.tobytes() == saved.tobytes()


def test_a_save_replaces_the_object_whole(s3_bucket):
    url = s3_bucket.url("m/1")
    trained_model(seed=1).save(url)
    newer = trained_model(seed=2)
    newer.save(url)
    np.testing.assert_array_equal(load_model(url).predict(X), newer.predict(X))


def test_a_failed_save_leaves_the_old_object_as_it_was(s3_bucket):
    url = s3_bucket.url("m/1")
    trained_model().save(url)
    before = s3_bucket.get("m/1/model.npz")
    unsaveable = trained_model(seed=3)
    unsaveable.compile(loss="cross_entropy", metrics=[lambda y_true, y_pred, sample_weight=None: 0])
    with pytest.raises(ValueError, match="metrics"):
        unsaveable.save(url)
    assert s3_bucket.get("m/1/model.npz") == before


def test_an_upload_to_a_missing_bucket_names_the_url(s3_bucket):
    url = f"s3://{s3_bucket.name}-missing/m/1/model.npz"
    with pytest.raises(FileNotFoundError, match=f"^{url}: "):
        trained_model().save(url)


def test_a_damaged_object_is_refused_naming_the_url_and_nothing_is_left_behind(s3_bucket,
                                                                               tmp_path,
                                                                               local_tmp):
    trained_model().save(tmp_path / "model.npz")
    whole = (tmp_path / "model.npz").read_bytes()
    s3_bucket.put("m/1/model.npz", whole[:len(whole) // 2])  # as a copy cut short would be
    url = s3_bucket.url("m/1/model.npz")
    with pytest.raises(ModelFormatError, match=f"^{url}: not a minidl model file"):
        load_model(url)
    with pytest.raises(ModelFormatError, match=f"^{url}: "):
        trained_model().load_weights(url)
    assert os.listdir(local_tmp) == []


def test_a_missing_object_names_the_url_and_nothing_is_left_behind(s3_bucket, local_tmp):
    url = s3_bucket.url("m/7/model.npz")
    with pytest.raises(FileNotFoundError, match=f"^{url}: no such file$"):
        load_model(url)
    assert os.listdir(local_tmp) == []


def test_a_model_of_another_architecture_is_refused_naming_the_url(s3_bucket):
    trained_model().save(s3_bucket.url("m/1"))
    other = Sequential([Dense(5), Dense(3)], input_dim=4)
    url = s3_bucket.url("m/1/model.npz")
    with pytest.raises(ModelFormatError, match=f"^{url}: "):
        other.load_weights(s3_bucket.url("m/1"))
