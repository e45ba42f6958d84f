"""The command line: every command's happy path, and one clear line + exit 2 for bad input."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minidl.cli import UsageError, load_dataset, main, read_array
from minidl.data import train_test_split
from minidl.layers import Dense
from minidl.model import Sequential, load_model

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
    assert "held-out rows" in capsys.readouterr().out
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


# ---------------------------------------------------------------------------- train, then evaluate

def printed_scores(out: str) -> dict:
    """The JSON object that follows the last "test (...):" line of train's output."""
    return json.loads(out.rsplit("held-out rows):\n", 1)[1].split("\nsaved ", 1)[0])


def test_a_csv_written_with_a_byte_order_mark_keeps_its_first_row(tmp_path):
    table = tmp_path / "excel.csv"
    table.write_bytes(b"\xef\xbb\xbf1,2,0\n3,4,1\n5,6,0\n7,8,1\n")  # Excel's "CSV UTF-8"
    np.testing.assert_array_equal(read_array(str(table)), [[1, 2, 0], [3, 4, 1], [5, 6, 0],
                                                           [7, 8, 1]])


@pytest.mark.parametrize("argv", [["demo", "--epochs", "0"], ["train", "x.json", "--epochs", "0"],
                                  ["train", "x.json", "--batch-size", "-1"]])
def test_counts_below_one_are_refused_by_the_parser(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "must be a positive integer" in capsys.readouterr().err


def write_data_files(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(5.0, 30.0, size=(120, 3))  # far from standardized: scaling matters
    y = (x[:, 0] + x[:, 1] > 10).astype(np.int64)
    np.savez(tmp_path / "table.npz", x=x, y=y)
    np.savetxt(tmp_path / "table.csv", np.column_stack([x, y]), delimiter=",", fmt="%.17g",
               header="a,b,c,label", comments="")
    return {"npz": {"path": str(tmp_path / "table.npz")},
            "csv": {"path": str(tmp_path / "table.csv")}}


DATA_SOURCES = {
    "digits": {"name": "digits"},
    "linear": {"name": "linear", "params": {"n": 120, "noise": 0.1, "seed": 0}},
    "spirals": {"name": "spirals", "params": {"n_per_class": 40, "seed": 0}},
    "moons": {"name": "moons", "params": {"n": 120, "seed": 0}},
    "blobs": {"name": "blobs", "params": {"n": 120, "seed": 0}},
    "xor": {"name": "xor", "params": {"n": 120, "seed": 0}},
    "npz": None,  # files written by write_data_files
    "csv": None,
}


@pytest.mark.parametrize("source", DATA_SOURCES)
def test_train_then_evaluate_on_the_same_raw_rows_agree(source, tmp_path, capsys):
    # the scaling is saved in the model: evaluating the file on the raw test rows gives
    # exactly what training reported for them (it gave 0.964 against 0.790 before)
    data = DATA_SOURCES[source] or write_data_files(tmp_path)[source]
    x, y = load_dataset(data)
    regression = y.dtype.kind == "f"
    head = ({"units": 1} if regression else {"units": int(y.max()) + 1,
                                               "activation": "softmax"})
    config = {"data": {**data, "seed": 1},
              "model": {"layers": [
                  {"class_name": "Dense", "config": {"units": 16, "activation": "relu"}},
                  {"class_name": "Dense", "config": head}], "seed": 0},
              "compile": {"loss": "mse" if regression else "cross_entropy",
                          "metrics": ["mae"] if regression else ["accuracy"]},
              "fit": {"epochs": 3, "verbose": 0}}
    (tmp_path / "train.json").write_text(json.dumps(config))
    assert main(["train", str(tmp_path / "train.json"), "--output", str(tmp_path / "m"),
                 "--save-test", str(tmp_path / "test.npz")]) == 0
    reported = printed_scores(capsys.readouterr().out)
    # the rows written are the held-out split of the raw data, as the library draws it
    _, x_test, _, y_test = train_test_split(x, y, test_size=0.2, seed=1,
                                            stratify=not regression)
    with np.load(tmp_path / "test.npz") as written:
        np.testing.assert_array_equal(written["x"], x_test)
        np.testing.assert_array_equal(written["y"], y_test)
    assert main(["evaluate", str(tmp_path / "m"), str(tmp_path / "test.npz")]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated.keys() == reported.keys()
    for key, value in reported.items():
        assert evaluated[key] == pytest.approx(value, abs=1e-6), key
    assert load_model(tmp_path / "m").layers[0].get_config()["axis"] == -1  # Normalization


def test_train_without_scaling_adds_no_normalization(tmp_path, capsys):
    config = {**TRAIN_CONFIG, "data": {**TRAIN_CONFIG["data"], "scale": False}}
    (tmp_path / "train.json").write_text(json.dumps(config))
    assert main(["train", str(tmp_path / "train.json"), "--output", str(tmp_path / "m")]) == 0
    assert [type(layer).__name__ for layer in load_model(tmp_path / "m").layers] == [
        "Dense", "Dense"]


def test_train_flags_override_the_config_before_or_after_it(tmp_path, capsys):
    (tmp_path / "train.json").write_text(json.dumps({**TRAIN_CONFIG, "callbacks": []}))
    assert main(["train", "--epochs", "2", str(tmp_path / "train.json"), "--batch-size", "7",
                 "--validation-split", "0.25", "--verbose", "0",
                 "--output", str(tmp_path / "export" / "1")]) == 0
    assert capsys.readouterr().err == ""  # verbose 0
    model = load_model(tmp_path / "export" / "1" / "model.npz")
    assert model.epoch == 2


def test_train_help_points_to_the_config_reference():
    result = run_cli("train", "--help")
    assert "docs/config.md" in result.stdout and "--epochs" in result.stdout


@pytest.mark.parametrize("language", ["json", "toml"])
def test_the_complete_examples_of_docs_config_md_train(language, tmp_path, capsys):
    document = (Path(__file__).parents[1] / "docs" / "config.md").read_text()
    blocks = [block for block in re.findall(rf"```{language}\n(.*?)```", document, re.S)
              if '"tune"' not in block]  # the tune section's example: tests/test_tune.py
    assert len(blocks) == 1
    (tmp_path / f"train.{language}").write_text(blocks[0])
    assert main(["train", str(tmp_path / f"train.{language}"), "--epochs", "2",
                 "--verbose", "0", "--output", str(tmp_path / "out")]) == 0
    assert set(printed_scores(capsys.readouterr().out)) == {"loss", "accuracy"}
    assert (tmp_path / "out" / "model.npz").is_file()


def test_an_unknown_key_inside_a_section_is_named(tmp_path, capsys):
    config = {**TRAIN_CONFIG, "fit": {"epoch": 3}}
    (tmp_path / "train.json").write_text(json.dumps(config))
    assert main(["train", str(tmp_path / "train.json")]) == 2
    err = capsys.readouterr().err
    assert "unknown key(s) ['epoch'] in 'fit'; known: ['batch_size', 'epochs'," in err
    assert "docs/config.md" in err


# ---------------------------------------------------------------------------- CSV errors

def test_csv_errors_name_the_files_own_line_and_column(tmp_path):
    table = tmp_path / "x.csv"
    table.write_text("a,b\n1,2\n\n3,4\n5\n")  # header, a blank line, then a short row
    with pytest.raises(UsageError, match=r"x\.csv: line 5 has 1 columns, expected 2 "
                                         r"\(as on line 2\)"):
        read_array(str(table))
    table.write_text("1,2\n3,x4\n")
    with pytest.raises(UsageError, match=r"x\.csv: line 2, column 2: 'x4' is not a number"):
        read_array(str(table))
    table.write_text("a,b\n")
    with pytest.raises(UsageError, match="holds no rows of numbers"):
        read_array(str(table))


# ---------------------------------------------------------------------------- info

def test_info_explains_from_logits_on_a_softmax_model(model_file, capsys):
    path, _, _, _ = model_file
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert '"from_logits": true' in out
    assert ("the last layer's softmax is fused with the loss in training: the loss reads the "
            "logits before it") in out


def test_info_says_nothing_of_fusing_for_a_linear_output(tmp_path, capsys):
    model = Sequential([Dense(1)], input_dim=2)
    model.compile("sgd", "mse")
    model.save(tmp_path / "m.npz")
    assert main(["info", str(tmp_path / "m.npz")]) == 0
    assert "fused" not in capsys.readouterr().out


# ---------------------------------------------------------------------------- demo

def test_demo_with_its_port_taken_exits_2_before_training(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("demo", "--once", "--port", str(port), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"minidl: error: port {port} on 127.0.0.1 is not available (Address already in use; "
        f"--port): stop what uses it or choose another port, --port 0 for any free one"]
    assert "Epoch" not in result.stdout + result.stderr  # it never started training
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_demo_started_in_the_background_stops_on_sigint_and_sigterm(signum, tmp_path):
    # a shell starts a background job with SIGINT ignored; the demo must still stop on it
    process = subprocess.Popen(
        [sys.executable, "-m", "minidl", "demo", "--port", "0", "--epochs", "2"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        lines = []
        for line in process.stdout:  # ends at EOF if the demo dies: bounded by the demo
            lines.append(line)
            if line.startswith("serving digits at"):
                break
        assert lines and lines[-1].startswith("serving digits at"), "".join(lines)
        process.send_signal(signum)
        rest, _ = process.communicate(timeout=30)
        assert process.returncode == 0
        assert rest.strip().endswith("stopped")
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_an_image_model_trains_from_a_config_on_flat_rows_through_reshape(tmp_path, capsys):
    # digits come as rows of 64 pixels: a Reshape after the Normalization makes them images
    config = {"data": {"name": "digits"},
              "model": {"layers": [
                  {"class_name": "Reshape", "config": {"target_shape": [8, 8, 1]}},
                  {"class_name": "Conv2D", "config": {"filters": 4, "kernel_size": 3,
                                                      "padding": "same", "activation": "relu"}},
                  {"class_name": "MaxPooling2D", "config": {}},
                  {"class_name": "Flatten", "config": {}},
                  {"class_name": "Dense", "config": {"units": 10, "activation": "softmax"}}],
                  "seed": 0},
              "compile": {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]},
              "fit": {"epochs": 2, "verbose": 0}}
    (tmp_path / "cnn.json").write_text(json.dumps(config))
    assert main(["train", str(tmp_path / "cnn.json"), "--output", str(tmp_path / "cnn" / "1"),
                 "--save-test", str(tmp_path / "test.npz")]) == 0
    reported = printed_scores(capsys.readouterr().out)
    assert main(["evaluate", str(tmp_path / "cnn" / "1"), str(tmp_path / "test.npz")]) == 0
    assert json.loads(capsys.readouterr().out) == pytest.approx(reported, abs=1e-6)
    assert main(["info", str(tmp_path / "cnn" / "1")]) == 0
    out = capsys.readouterr().out
    assert "2: Conv2D(filters=4, kernel_size=[3, 3]" in out and "params: 40" in out
    assert "the last layer's softmax is fused with the loss in training" in out


def test_a_model_that_starts_with_an_embedding_gets_its_indices_unscaled(tmp_path, capsys):
    rows = np.random.default_rng(0).integers(0, 20, size=(60, 3))
    labels = (rows[:, 0] > 9).astype(np.int64)
    np.savetxt(tmp_path / "indices.csv", np.column_stack([rows, labels]), delimiter=",",
               fmt="%d")
    config = {"data": {"path": str(tmp_path / "indices.csv")},  # scale left at its default
              "model": {"layers": [
                  {"class_name": "Embedding", "config": {"input_dim": 20, "output_dim": 4}},
                  {"class_name": "Flatten", "config": {}},
                  {"class_name": "Dense", "config": {"units": 2, "activation": "softmax"}}]},
              "fit": {"epochs": 2, "verbose": 0}}
    (tmp_path / "train.json").write_text(json.dumps(config))
    assert main(["train", str(tmp_path / "train.json"), "--output", str(tmp_path / "m")]) == 0
    assert [type(layer).__name__ for layer in load_model(tmp_path / "m").layers] == [
        "Embedding", "Flatten", "Dense"]
