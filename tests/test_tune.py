"""`minidl tune` and OptunaPruningCallback: a search that finds a better config than the
default, pruning that stops trials, processes sharing one study, and one-line errors."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import optuna
import pytest

from minidl.callbacks import OptunaPruningCallback
from minidl.cli import main
from minidl.layers import Dense
from minidl.model import Sequential, load_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = {
    "data": {"name": "digits", "test_size": 0.25, "seed": 0},
    "model": {"layers": [{"class_name": "Dense", "config": {"units": 8, "activation": "relu"}},
                         {"class_name": "Dense", "config": {"units": 10,
                                                            "activation": "softmax"}}],
              "seed": 0},
    # the default learns slowly: a search over the learning rate has room to win
    "compile": {"optimizer": {"class_name": "SGD", "config": {"lr": 0.002}},
                "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]},
    "fit": {"epochs": 8, "batch_size": 64, "validation_split": 0.2, "verbose": 0},
}
SPACE = {"compile.optimizer.config.lr": {"float": [0.001, 0.5], "log": True},
         "model.layers.0.config.units": {"int": [8, 48]}}


def write_config(folder, space=SPACE, **changes):
    config = {**json.loads(json.dumps(BASE)), "output": str(folder / "best") + "/",
              "tune": {"metric": "val_accuracy", "direction": "maximize", "space": space},
              **changes}
    path = folder / "tune.json"
    path.write_text(json.dumps(config))
    return path


def journal(path):
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def test_a_search_on_digits_beats_the_default_config(tmp_path, capsys):
    config = write_config(tmp_path)
    assert main(["tune", str(config), "--n-trials", "12", "--seed", "0",
                 "--storage", str(tmp_path / "study.log"), "--study-name", "digits"]) == 0
    out = capsys.readouterr().out
    assert "best trials of study 'digits' (maximize val_accuracy):" in out
    # the default config, trained as `minidl train` trains it, scored on the same test rows
    default = {**json.loads(config.read_text()), "output": str(tmp_path / "default") + "/"}
    (tmp_path / "default.json").write_text(json.dumps(default))
    assert main(["train", str(tmp_path / "default.json"), "--save-test",
                 str(tmp_path / "test.npz")]) == 0
    test = np.load(tmp_path / "test.npz")
    scores = {name: load_model(str(tmp_path / name / "model.npz")).evaluate(test["x"],
                                                                             test["y"])
              for name in ("best", "default")}
    assert scores["best"]["accuracy"] > scores["default"]["accuracy"] + 0.05
    study = optuna.load_study(study_name="digits", storage=journal(tmp_path / "study.log"))
    # the saved training config reproduces the best trial's values
    best_config = json.loads((tmp_path / "best" / "best_config.json").read_text())
    assert "tune" not in best_config
    assert (best_config["compile"]["optimizer"]["config"]["lr"]
            == study.best_params["compile.optimizer.config.lr"])
    for plot in ("optimization_history.png", "param_importances.png"):
        assert (tmp_path / "best" / plot).read_bytes().startswith(b"\x89PNG")


def test_pruning_stops_hopeless_trials_early(tmp_path, capsys):
    config = write_config(tmp_path, space={
        "compile.optimizer.config.lr": {"float": [1e-5, 0.5], "log": True}})
    assert main(["tune", str(config), "--n-trials", "16", "--seed", "3",
                 "--storage", str(tmp_path / "study.log"), "--study-name", "p"]) == 0
    study = optuna.load_study(study_name="p", storage=journal(tmp_path / "study.log"))
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, "no trial was pruned"
    assert all(t.user_attrs["epochs"] < BASE["fit"]["epochs"] for t in pruned)
    epochs_run = sum(t.user_attrs["epochs"] for t in study.trials)
    assert f"{len(pruned)} pruned: {epochs_run} epochs run" in capsys.readouterr().out


def run_tune(config, *flags):
    return subprocess.Popen([sys.executable, "-m", "minidl", "tune", str(config), *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO))


def test_two_processes_share_one_journal_and_never_train_the_same_values_twice(tmp_path):
    # 2 x 3 = 6 combinations for 10 trials: some draws must repeat earlier ones
    config = write_config(tmp_path, space={
        "fit.batch_size": {"choice": [32, 64]},
        "model.layers.0.config.units": {"choice": [8, 16, 32]}})
    storage = str(tmp_path / "shared.log")
    processes = [run_tune(config, "--n-trials", "5", "--seed", str(seed), "--storage", storage,
                          "--study-name", "shared") for seed in (1, 2)]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-2000:]
    study = optuna.load_study(study_name="shared", storage=journal(storage))
    states = optuna.trial.TrialState
    assert len(study.trials) == 10
    assert all(t.state in (states.COMPLETE, states.PRUNED) for t in study.trials)
    trained = [t for t in study.trials if "duplicate_of" not in t.user_attrs]
    values = [tuple(sorted(t.params.items())) for t in trained]
    assert len(values) == len(set(values)), "the same values were trained twice"
    assert len(trained) <= 6 < len(study.trials)
    for trial in study.trials:
        if "duplicate_of" in trial.user_attrs:
            assert "epochs" not in trial.user_attrs  # not trained
            first = study.trials[trial.user_attrs["duplicate_of"]]
            assert first.params == trial.params and first.number < trial.number


@pytest.mark.parametrize("space, message", [
    ({"model.layers.5.config.units": {"int": [8, 16]}},
     "tune.space: 'model.layers.5.config.units' names no key of the config: model.layers is "
     "a list of 2 entries, not indexed by '5'"),
    ({"fit.batch_sise": {"choice": [16, 32]}},
     "tune.space: 'fit.batch_sise' names no key of the config: fit has no key 'batch_sise'"),
    ({"compile.loss.config.x": {"choice": [1]}},
     "tune.space: 'compile.loss.config.x' names no key of the config: compile.loss is "
     '"sparse_categorical_crossentropy", which has no \'config\''),
    ({"fit.epochs": {"int": [8]}},
     "tune.space['fit.epochs']: 'int' takes [low, high] with low < high (integers)"),
    ({"fit.epochs": {"range": [1, 2]}},
     "tune.space['fit.epochs']: give exactly one of ['choice', 'int', 'float']"),
    ({"model.layers.0.config.units": {"choice": [0, 8]}},
     "tune.space: the config with each value at its first choice or low bound does not "
     "build"),
])
def test_a_bad_search_space_is_one_line_naming_the_key(tmp_path, capsys, space, message):
    config = write_config(tmp_path, space=space)
    assert main(["tune", str(config), "--n-trials", "1"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"minidl: error: {message}")


@pytest.mark.parametrize("tune, message", [
    ({"metric": "val_f1", "direction": "maximize", "space": SPACE},
     "tune.metric 'val_f1': the logs hold ['loss', 'accuracy']"),
    ({"metric": "val_loss", "direction": "up", "space": SPACE},
     "tune.direction: 'maximize' or 'minimize', got 'up'"),
    ({"metric": "val_loss", "space": SPACE}, "tune: unknown key(s) [], missing key(s) "
                                             "['direction']"),
])
def test_a_bad_tune_section_is_one_line(tmp_path, capsys, tune, message):
    config = write_config(tmp_path)
    data = json.loads(config.read_text())
    data["tune"] = tune
    config.write_text(json.dumps(data))
    assert main(["tune", str(config)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"minidl: error: {message}")


def test_train_ignores_the_tune_section(tmp_path, capsys):
    config = write_config(tmp_path)
    assert main(["train", str(config), "--epochs", "1"]) == 0
    assert (tmp_path / "best" / "model.npz").is_file()


# ---------------------------------------------------------------- the callback in Python


def small_fit(trial, epochs=5, monitor="val_loss"):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = (x[:, 0] > 0).astype(np.int64)
    model = Sequential([Dense(2)], input_dim=3, seed=0)
    model.compile("sgd", "cross_entropy")
    return model.fit(x, y, epochs=epochs, validation_split=0.25, verbose=0,
                     callbacks=[OptunaPruningCallback(trial, monitor=monitor)])


def test_the_callback_reports_every_epoch_and_raises_trial_pruned():
    reported = optuna.create_study(pruner=optuna.pruners.NopPruner())
    trial = reported.ask()
    history = small_fit(trial)
    assert trial.storage.get_trial(trial._trial_id).intermediate_values == dict(
        enumerate(history.history["val_loss"]))
    # a pruner that prunes any val_loss above 0: the first epoch ends the fit
    pruning = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.0))
    trial = pruning.ask()
    with pytest.raises(optuna.TrialPruned, match="pruned at epoch 0"):
        small_fit(trial)


def test_the_callback_names_a_monitor_missing_from_the_logs():
    trial = optuna.create_study().ask()
    with pytest.raises(KeyError, match="monitor 'val_acc' is not in the epoch's logs"):
        small_fit(trial, monitor="val_acc")


def test_without_optuna_tune_names_the_extra(tmp_path):
    config = write_config(tmp_path)
    code = ("import sys; sys.modules['optuna'] = None; from minidl.cli import main; "
            f"sys.exit(main(['tune', {str(config)!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), timeout=120)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line == ("minidl: error: optuna is not installed; this part of minidl needs the "
                    "'tune' extra: pip install 'minidl[tune]'")


def test_the_example_of_docs_config_md_tunes(tmp_path, capsys):
    with open(os.path.join(REPO, "docs", "config.md"), encoding="utf-8") as file:
        document = file.read()
    (example,) = [block for block in re.findall(r"```json\n(.*?)```", document, re.S)
                  if '"tune"' in block]
    config = json.loads(example)
    config["output"] = str(tmp_path / "models" / "digits" / "1")
    config["fit"]["epochs"] = 2
    (tmp_path / "tune.json").write_text(json.dumps(config))
    assert main(["tune", str(tmp_path / "tune.json"), "--n-trials", "2", "--seed", "0"]) == 0
    assert load_model(str(tmp_path / "models" / "digits" / "1" / "model.npz")).input_shape == (
        64,)
