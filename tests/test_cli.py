"""The command line: every command's happy path, and one clear line + exit 2 for bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minidl.cli import main
from minidl.layers import Dense
from minidl.model import Sequential

COMMANDS = ["demo", "train", "evaluate", "predict", "info", "serve"]


@pytest.fixture
def model_file(tmp_path):
    model = Sequential([Dense(8, activation="relu"), Dense(3, activation="softmax")],
                       input_dim=4, seed=0)
    model.compile("adam", "cross_entropy", metrics=["accuracy"])
    x = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    y = np.arange(30) % 3
    model.fit(x, y, epochs=2, verbose=0)
    path = tmp_path / "model.npz"
    model.save(path)
    return path, model, x, y


def run_cli(*args, cwd=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "minidl", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()


def test_info_prints_config_counts_and_verified_hashes(model_file, capsys):
    path, model, _, _ = model_file
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Dense" in out and "integrity:       OK" in out
    total = sum(p.data.size for p in model.parameters())
    assert f"parameters:      {total:,}" in out


def test_info_exits_1_when_a_hash_does_not_verify(model_file, tmp_path, capsys):
    path, model, _, _ = model_file
    corrupt = tmp_path / "corrupt.npz"
    blob = bytearray(path.read_bytes())
    kernel = model.layers[0].kernel.data.tobytes()
    offset = bytes(blob).index(kernel[:32])
    blob[offset + 5] ^= 0xFF
    corrupt.write_bytes(bytes(blob))
    assert main(["info", str(corrupt)]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_predict_npy_to_csv_and_csv_to_npy_match_model_predict(model_file, tmp_path):
    path, model, x, _ = model_file
    np.save(tmp_path / "x.npy", x)
    assert main(["predict", str(path), str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "p.csv")]) == 0
    from_csv = np.loadtxt(tmp_path / "p.csv", delimiter=",")
    np.testing.assert_allclose(from_csv, model.predict(x), rtol=1e-6, atol=1e-7)
    np.savetxt(tmp_path / "x.csv", x, delimiter=",", fmt="%.9g")
    assert main(["predict", str(path), str(tmp_path / "x.csv"), "-o",
                 str(tmp_path / "p.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), model.predict(x), rtol=1e-6)


def test_evaluate_prints_loss_and_metrics_as_json(model_file, tmp_path, capsys):
    path, model, x, y = model_file
    np.savez(tmp_path / "data.npz", x=x, y=y)
    assert main(["evaluate", str(path), str(tmp_path / "data.npz")]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores == pytest.approx(model.evaluate(x, y))


TRAIN_CONFIG = {
    "data": {"name": "blobs", "params": {"n": 150, "centers": 3, "seed": 0}, "test_size": 0.2},
    "model": {"layers": [{"class_name": "Dense", "config": {"units": 16, "activation": "relu"}},
                         {"class_name": "Dense", "config": {"units": 3}}], "seed": 0},
    "compile": {"optimizer": {"class_name": "Adam", "config": {"lr": 0.01}},
                "loss": "cross_entropy", "metrics": ["accuracy"]},
    "fit": {"epochs": 5, "batch_size": 16, "verbose": 0, "validation_split": 0.1},
    "callbacks": [{"class_name": "EarlyStopping", "config": {"patience": 2}}],
}


def test_train_from_json_config_saves_a_loadable_model(tmp_path, capsys):
    config = tmp_path / "train.json"
    config.write_text(json.dumps(TRAIN_CONFIG))
    output = tmp_path / "out" / "model.npz"
    assert main(["train", str(config), "--output", str(output)]) == 0
    assert "test: loss=" in capsys.readouterr().out
    assert main(["info", str(output)]) == 0


def test_train_from_toml_config(tmp_path):
    pytest.importorskip("tomllib")
    config = tmp_path / "train.toml"
    config.write_text("""
output = "m.npz"
[data]
name = "moons"
params = { n = 100, seed = 1 }
[model]
seed = 0
layers = [ { class_name = "Dense", config = { units = 8, activation = "tanh" } },
           { class_name = "Dense", config = { units = 2 } } ]
[compile]
optimizer = "sgd"
loss = "cross_entropy"
[fit]
epochs = 2
verbose = 0
""")
    os.chdir(tmp_path)
    assert main(["train", str(config)]) == 0
    assert (tmp_path / "m.npz").is_file()


@pytest.mark.parametrize("argv, message", [
    (["info", "missing.npz"], "no such file"),
    (["predict", "{model}", "x.txt"], "expected a .npy or .csv"),
    (["evaluate", "{model}", "{tmp}/nolabels.npz"], "missing array(s) ['y']"),
    (["train", "{tmp}/bad.json"], "unknown key(s) ['optimiser']"),
    (["train", "{tmp}/notjson.json"], "notjson.json: Expecting"),
])
def test_bad_arguments_give_one_line_and_exit_2(argv, message, model_file, tmp_path, capsys):
    path, _, x, _ = model_file
    np.savez(tmp_path / "nolabels.npz", x=x)
    (tmp_path / "x.txt").write_text("1,2,3,4\n")
    (tmp_path / "bad.json").write_text(json.dumps({"data": {}, "model": {}, "optimiser": 1}))
    (tmp_path / "notjson.json").write_text("{")
    os.chdir(tmp_path)
    argv = [a.format(model=path, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("minidl: error: ") and message in err
    assert len(err.strip().splitlines()) == 1


def test_not_a_model_file_is_a_clean_error(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    result = run_cli("predict", str(junk), str(junk))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "minidl: error:" in result.stderr


def test_demo_once_trains_saves_serves_and_prints_predictions(tmp_path):
    result = run_cli("demo", "--once", "--port", "0", "--epochs", "8", cwd=tmp_path,
                     timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "test accuracy" in result.stdout
    assert "true  predicted  probability" in result.stdout
    rows = result.stdout.split("true  predicted  probability")[1].strip().splitlines()
    assert len(rows) == 8
    assert Path(tmp_path, "models", "digits", "1", "model.npz").is_file()
