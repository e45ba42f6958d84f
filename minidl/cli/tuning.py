"""The search behind ``minidl tune CONFIG``: a training config's hyper-parameters, tried
with Optuna.

The config's ``tune`` section (docs/config.md) names the score (``metric``, a key of the
epoch logs such as ``"val_accuracy"``), its ``direction`` and the ``space``: the dotted path
of each config value to vary, and its range. Each trial is one training run of the config
with the trial's values put in, scored on the final model; Optuna's TPE sampler proposes the
values from the scores so far, and its median pruner stops a trial whose epoch scores are
worse than the median of the earlier trials' at the same epoch.

Processes that share a study (``--storage``) each run their own ``--n-trials``. A trial that
draws parameters another trial of the study already has is not trained again: it takes that
trial's score, or is pruned if that trial was pruned or is still running.
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from minidl.callbacks import LambdaCallback, OptunaPruningCallback
from minidl.callbacks.pruning import import_optuna
from minidl.cli.files import UsageError
from minidl.cli.train import SECTION_KEYS, build_model, fit_arguments, split_data
from minidl.model import load_model
from minidl.model.rows import hold_out

DEFAULT_TRIALS = 20  # without --n-trials and --timeout
BEST_SHOWN = 5  # trials in the table printed at the end
SAMPLING_WAIT = 10.0  # seconds to wait for another process's trial to draw its parameters
_SPACE_KINDS = ("choice", "int", "float")


@dataclass(frozen=True)
class Dimension:
    """One value of the search space: its config path, its kind and range."""

    path: str
    kind: str  # "choice", "int" or "float"
    values: tuple[Any, ...]  # the choices, or (low, high)
    log: bool = False
    step: float | None = None

    def suggest(self, trial: Any) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.path, list(self.values))
        low, high = self.values
        if self.kind == "int":
            return trial.suggest_int(self.path, low, high, step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.path, low, high, step=self.step, log=self.log)


def parse_dimension(path: str, spec: Any) -> Dimension:
    """A ``space`` entry: ``{"choice": [...]}``, ``{"int": [lo, hi]}`` or ``{"float": [lo,
    hi]}``, with ``"log": true`` or ``"step": s`` for the two ranges."""
    where = f"tune.space[{path!r}]"
    kinds = [kind for kind in _SPACE_KINDS if isinstance(spec, dict) and kind in spec]
    if len(kinds) != 1:
        raise UsageError(f"{where}: give exactly one of {list(_SPACE_KINDS)}, e.g. "
                         '{"int": [16, 128]}, got ' + json.dumps(spec))
    kind = kinds[0]
    unknown = sorted(set(spec) - {kind, "log", "step"})
    if unknown or (kind == "choice" and len(spec) > 1):
        raise UsageError(f"{where}: unknown option(s) {unknown or sorted(set(spec) - {kind})}"
                         f"; a {kind!r} range takes "
                         + ("nothing else" if kind == "choice" else "'log' and 'step'"))
    values = spec[kind]
    if kind == "choice":
        if (not isinstance(values, list) or not values or not all(
                v is None or isinstance(v, (bool, int, float, str)) for v in values)):
            raise UsageError(f"{where}: 'choice' takes a non-empty list of numbers, strings, "
                             "booleans or null")
        return Dimension(path, kind, tuple(values))
    number = int if kind == "int" else (int, float)
    if (not isinstance(values, list) or len(values) != 2
            or not all(isinstance(v, number) and not isinstance(v, bool) for v in values)
            or not values[0] < values[1]):
        raise UsageError(f"{where}: {kind!r} takes [low, high] with low < high"
                         + (" (integers)" if kind == "int" else ""))
    log, step = spec.get("log", False), spec.get("step")
    if not isinstance(log, bool):
        raise UsageError(f"{where}: 'log' is true or false")
    if step is not None and (isinstance(step, bool) or not isinstance(step, number)
                             or step <= 0 or log):
        raise UsageError(f"{where}: 'step' is a positive {kind} and cannot go with 'log'")
    if log and values[0] <= 0:
        raise UsageError(f"{where}: a 'log' range needs low > 0")
    return Dimension(path, kind, tuple(values), log, step)


def config_slot(config: dict[str, Any], path: str) -> tuple[Any, Any]:
    """``(container, key)`` of the config value that the dotted ``path`` names (list items by
    their index: ``model.layers.0.config.units``); a UsageError naming the path if none."""
    parts = path.split(".")
    where = f"tune.space: {path!r} names no key of the config"
    node: Any = config
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        walked = ".".join(parts[:depth]) or "the top level"
        if isinstance(node, list):
            if not (part.isdigit() and int(part) < len(node)):
                raise UsageError(f"{where}: {walked} is a list of {len(node)} entries, "
                                 f"not indexed by {part!r}")
            index = int(part)
            if last:
                return node, index
            node = node[index]
        elif isinstance(node, dict):
            known = SECTION_KEYS.get(parts[0], set()) if depth == 1 else set()
            # a layer's, callback's or optimizer's "config": its constructor checks the key
            takes_arguments = depth >= 1 and parts[depth - 1] == "config"
            if last and (part in node or part in known or takes_arguments):
                return node, part
            if part not in node:
                raise UsageError(f"{where}: {walked} has no key {part!r} (it has "
                                 f"{sorted(node)}; see docs/config.md)")
            node = node[part]
        else:
            raise UsageError(f"{where}: {walked} is {json.dumps(node)}, which has no "
                             f"{part!r}; write it as an object (e.g. "
                             '{"class_name": "Adam", "config": {"lr": 0.001}})')
    raise AssertionError("unreachable")  # the loop returns at the last part


def with_values(config: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with each dotted path set to its value."""
    config = copy.deepcopy(config)
    for path, value in values.items():
        container, key = config_slot(config, path)
        container[key] = value
    return config


class Tuning:
    """One process's part of a study: the config, its data, and the trials it runs."""

    def __init__(self, config: dict[str, Any], folder: str) -> None:
        """``folder``: where this process keeps its trials' models until the study ends."""
        self.optuna = import_optuna()
        spec = config.pop("tune", None)
        if not isinstance(spec, dict):
            raise UsageError("the config has no 'tune' section (an object with 'metric', "
                             "'direction' and 'space'; see docs/config.md)")
        unknown = sorted(set(spec) - {"metric", "direction", "space"})
        missing = sorted({"metric", "direction", "space"} - set(spec))
        if unknown or missing:
            raise UsageError(f"tune: unknown key(s) {unknown}, missing key(s) {missing}; "
                             "known: ['direction', 'metric', 'space']")
        if spec["direction"] not in ("maximize", "minimize"):
            raise UsageError(f"tune.direction: 'maximize' or 'minimize', got "
                             f"{spec['direction']!r}")
        if not isinstance(spec["space"], dict) or not spec["space"]:
            raise UsageError("tune.space: an object mapping config paths to ranges")
        self.config = config
        self.metric: str = spec["metric"]
        self.direction: str = spec["direction"]
        self.dimensions = [parse_dimension(path, entry) for path, entry in spec["space"].items()]
        for dimension in self.dimensions:
            config_slot(config, dimension.path)
        self._check_metric()
        self.split = split_data(config["data"])
        # every value at its first choice or lower bound: a bad argument shows now, not later
        try:
            self._build(with_values(config, {d.path: d.values[0] for d in self.dimensions}))
        except (ValueError, TypeError, KeyError) as error:
            raise UsageError(f"tune.space: the config with each value at its first choice or "
                             f"low bound does not build: {error}") from None
        self.folder = folder

    def _check_metric(self) -> None:
        name = self.metric.removeprefix("val_")
        logged = ["loss", *self.config.get("compile", {}).get("metrics", [])]
        if name not in logged:
            raise UsageError(f"tune.metric {self.metric!r}: the logs hold {logged} (and "
                             "their 'val_' forms); add it to compile.metrics")
        split_paths = {"fit.validation_split"} & {d.path for d in self.dimensions}
        if (self.metric.startswith("val_") and not split_paths
                and not self.config.get("fit", {}).get("validation_split")):
            raise UsageError(f"tune.metric {self.metric!r} needs fit.validation_split > 0")

    def _build(self, config: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        split = self.split if config["data"] == self.config["data"] else split_data(
            config["data"])
        arguments = {**fit_arguments(config), "verbose": 0}
        x, y = split.x_train, split.y_train
        fraction = arguments.pop("validation_split", 0.0)
        if fraction:
            # held out here, as fit would, so that the final model can be scored on them
            (x, y), arguments["validation_data"] = hold_out(fraction, x, y)
        return build_model(config, x), {"x": x, "y": y, **arguments}

    def objective(self, trial: Any) -> float:
        values = {d.path: d.suggest(trial) for d in self.dimensions}
        trial.set_user_attr("sampled", True)
        earlier = self._same_parameters(trial)
        if earlier is not None:
            trial.set_user_attr("duplicate_of", earlier.number)
            if earlier.state == self.optuna.trial.TrialState.COMPLETE:
                return float(earlier.value)
            raise self.optuna.TrialPruned(f"the parameters of trial {earlier.number}, which "
                                          f"is {earlier.state.name.lower()}")
        model, arguments = self._build(with_values(self.config, values))
        epochs = []
        arguments["callbacks"] = [*arguments["callbacks"],
                                  LambdaCallback(on_epoch_end=lambda e, logs: epochs.append(e)),
                                  OptunaPruningCallback(trial, monitor=self.metric)]
        started = time.perf_counter()
        try:
            model.fit(**arguments)
        finally:
            trial.set_user_attr("epochs", len(epochs))
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 3))
        scored = (arguments["validation_data"] if self.metric.startswith("val_")
                  else (arguments["x"], arguments["y"]))
        value = model.evaluate(*scored)[self.metric.removeprefix("val_")]
        model.save(os.path.join(self.folder, f"trial-{trial.number}.npz"))
        if not np.isfinite(value):
            raise self.optuna.TrialPruned(f"{self.metric} is {value}")
        return float(value)

    def _same_parameters(self, trial: Any) -> Any:
        """An earlier trial of the study with the same parameters, or None. Another process's
        trial that is still drawing its parameters is waited for (at most SAMPLING_WAIT s),
        so that of two trials drawing the same values at once, only the first one trains."""
        states = self.optuna.trial.TrialState
        deadline = time.monotonic() + SAMPLING_WAIT
        while True:
            earlier = [t for t in trial.study.get_trials(deepcopy=False)
                       if t.number < trial.number]
            drawing = [t for t in earlier
                       if t.state == states.RUNNING and not t.user_attrs.get("sampled")]
            if not drawing or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        for other in earlier:
            if other.state in (states.COMPLETE, states.PRUNED, states.RUNNING) and (
                    other.params == trial.params):
                return other
        return None

    def best_model(self, study: Any) -> tuple[Any, str]:
        """The best trial's model, and where it came from: this process's file of it, or
        (when another process ran it) trained again with its values."""
        best = study.best_trial
        path = os.path.join(self.folder, f"trial-{best.number}.npz")
        if os.path.isfile(path):
            return load_model(path), f"trial {best.number}"
        model, arguments = self._build(with_values(self.config, best.params))
        model.fit(**arguments)
        return model, f"trial {best.number}'s values, trained again (another process ran it)"


def open_storage(storage: str | None) -> Any:
    """None (in memory), a database URL as Optuna takes it, or a journal file's path."""
    if storage is None or "://" in storage:
        return storage
    optuna = import_optuna()
    journal = optuna.storages.journal
    return optuna.storages.JournalStorage(journal.JournalFileBackend(storage))
