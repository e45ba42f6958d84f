"""``minidl train CONFIG``: the training config (docs/config.md), checked, and the run it
describes; data-parallel when ``mpiexec -n N`` starts it (``minidl.distributed``)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from minidl import callbacks as callbacks_module
from minidl import data as data_module
from minidl import optim as optim_module
from minidl.cli.files import UsageError, load_dataset
from minidl.distributed import DataParallel, launched_processes
from minidl.layers import Normalization, layer_from_config
from minidl.model import Sequential, model_file


def _read_config(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise UsageError(f"no such file: {path}")
    suffix = Path(path).suffix.lower()
    try:
        if suffix == ".json":
            with open(path) as file:
                config = json.load(file)
        elif suffix == ".toml":
            try:
                import tomllib
            except ImportError as error:  # Python 3.10
                raise UsageError("TOML configs need Python 3.11 or newer; use JSON") from error
            with open(path, "rb") as file:
                config = tomllib.load(file)
        else:
            raise UsageError(f"{path}: a training config is a .json or .toml file")
    except (json.JSONDecodeError, ValueError) as error:
        if isinstance(error, UsageError):
            raise
        raise UsageError(f"{path}: {error}") from error
    if not isinstance(config, dict):
        raise UsageError(f"{path}: the config must be an object/table at the top level")
    return config


# "tune" is read by `minidl tune` (minidl.cli.tuning) and ignored by `minidl train`
_CONFIG_KEYS = {"data", "model", "compile", "fit", "callbacks", "output", "tune"}
# each section's keys (docs/config.md): unknown ones are errors, and `minidl tune` may set
# one a config leaves out
SECTION_KEYS = {
    "data": {"name", "params", "path", "test_size", "seed", "scale"},
    "model": {"layers", "input_dim", "seed", "dtype"},
    "compile": {"optimizer", "loss", "metrics"},
    "fit": {"epochs", "batch_size", "validation_split", "shuffle", "verbose", "initial_epoch"},
}
# the flags of `minidl train` that override the config's "fit" section
_FIT_FLAGS = ("epochs", "batch_size", "validation_split", "verbose")


def checked_config(path: str) -> dict[str, Any]:
    """The training config (docs/config.md), its sections checked for unknown keys."""
    config = _read_config(path)
    unknown = sorted(set(config) - _CONFIG_KEYS)
    if unknown:
        raise UsageError(f"{path}: unknown key(s) {unknown}; known: {sorted(_CONFIG_KEYS)} "
                         f"(see docs/config.md)")
    for key in ("data", "model"):
        if key not in config:
            raise UsageError(f"{path}: missing key {key!r} (see docs/config.md)")
    for section, known in SECTION_KEYS.items():
        value = config.get(section, {})
        if not isinstance(value, dict):
            raise UsageError(f"{path}: {section!r} must be an object/table, "
                             f"got {type(value).__name__}")
        unknown = sorted(set(value) - known)
        if unknown:
            raise UsageError(f"{path}: unknown key(s) {unknown} in {section!r}; known: "
                             f"{sorted(known)} (see docs/config.md)")
    if not isinstance(config.get("callbacks", []), list):
        raise UsageError(f"{path}: 'callbacks' must be a list")
    return config


class Split(NamedTuple):
    """The data of a config, split into the rows to train on and the held-out test rows."""

    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray


def split_data(data_spec: dict[str, Any]) -> Split:
    """The ``data`` section's rows, split as it says (stratified for integer labels)."""
    x, y = load_dataset(data_spec)
    return Split(*data_module.train_test_split(
        x, y, test_size=data_spec.get("test_size", 0.2), seed=data_spec.get("seed", 0),
        stratify=y.dtype.kind in "iu"))


def build_model(config: dict[str, Any], x_train: np.ndarray) -> Sequential:
    """The ``model`` and ``compile`` sections' model, compiled; its ``Normalization`` (when
    ``data.scale``) adapted to ``x_train``."""
    model_spec = dict(config["model"])
    layers = [layer_from_config(spec) for spec in model_spec.pop("layers", [])]
    # a first layer that takes the data uncast (Embedding's indices) takes it unscaled too
    takes_raw_data = bool(layers) and layers[0].input_dtype(np.dtype(np.float32)) is None
    scale = config["data"].get("scale", True) and not takes_raw_data
    if scale:
        # the scaling travels with the model: evaluate, predict and serve take raw data
        layers.insert(0, Normalization())
    model_spec.setdefault("input_dim", list(x_train.shape[1:]))
    model = Sequential(layers, **model_spec)
    if scale:
        model.layers[0].adapt(x_train)
    compile_spec = config.get("compile", {})
    optimizer = compile_spec.get("optimizer", "adam")
    if isinstance(optimizer, dict):
        optimizer = optim_module.deserialize(optimizer, model.parameters())
    model.compile(optimizer=optimizer, loss=compile_spec.get("loss", "cross_entropy"),
                  metrics=compile_spec.get("metrics", []))
    return model


def fit_arguments(config: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``fit``: the ``fit`` section over minidl train's defaults,
    and the ``callbacks`` section built."""
    return {"epochs": 10, "batch_size": 32, "verbose": 1, **config.get("fit", {}),
            "callbacks": [_callback_from_config(spec) for spec in config.get("callbacks", [])]}


def command_train(args: argparse.Namespace) -> int:
    config = checked_config(args.config)
    # under `mpiexec -n N` (N > 1), data-parallel: every process reads the same config and
    # data and trains on its share of each batch; rank 0 alone prints and saves
    parallel = DataParallel() if launched_processes() > 1 else None
    split = split_data(config["data"])
    model = build_model(config, split.x_train)
    arguments = fit_arguments(config)
    arguments.update({name: getattr(args, name) for name in _FIT_FLAGS
                      if getattr(args, name) is not None})
    if parallel is not None and not parallel.is_chief:
        with open(os.devnull, "w") as nowhere, contextlib.redirect_stdout(nowhere):
            model.fit(split.x_train, split.y_train, distribute=parallel, **arguments)
            model.evaluate(split.x_test, split.y_test, distribute=parallel)
        return 0
    model.fit(split.x_train, split.y_train, distribute=parallel, **arguments)
    scores = model.evaluate(split.x_test, split.y_test, distribute=parallel)
    # printed as `minidl evaluate` prints them, so the two can be compared digit for digit
    print(f"test ({len(split.x_test)} held-out rows):")
    print(json.dumps(scores, indent=2))
    output = args.output or config.get("output", "model.npz")
    model.save(output)
    print(f"saved {model_file(output)}")
    if args.save_test:
        np.savez(args.save_test, x=split.x_test, y=split.y_test)
        print(f"saved the {len(split.x_test)} test rows to {args.save_test}")
    return 0


# the callbacks a config can name: those whose arguments are all JSON values
_CALLBACKS = {name: getattr(callbacks_module, name)
              for name in ("EarlyStopping", "ModelCheckpoint", "ReduceLROnPlateau",
                           "CSVLogger", "TerminateOnNaN", "BackupAndRestore")}


def _callback_from_config(spec: Any) -> callbacks_module.Callback:
    if not isinstance(spec, dict) or set(spec) != {"class_name", "config"}:
        raise UsageError(f"a callback is {{'class_name': ..., 'config': {{...}}}}, got {spec!r}")
    if spec["class_name"] not in _CALLBACKS:
        raise UsageError(f"unknown callback {spec['class_name']!r}; known: {list(_CALLBACKS)}")
    return _CALLBACKS[spec["class_name"]](**spec["config"])
