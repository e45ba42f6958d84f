"""``python -m minidl`` / ``minidl``: demo, train, evaluate, predict, info and serve.

Every command answers ``--help``. A bad argument or file ends with one line on stderr,
``minidl: error: ...``, and exit code 2; never a traceback.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from minidl import callbacks as callbacks_module
from minidl import data as data_module
from minidl import io
from minidl import optim as optim_module
from minidl.layers import Normalization, layer_from_config
from minidl.model import Sequential, load_model, model_file


class UsageError(Exception):
    """A problem with the command's arguments or files: reported in one line, exit code 2."""


# ---------------------------------------------------------------------------- data files

def read_array(path: str) -> np.ndarray:
    """A 2-D float array from ``.npy`` (never unpickled) or ``.csv`` (numbers only)."""
    suffix = Path(path).suffix.lower()
    if not os.path.isfile(path):
        raise UsageError(f"no such file: {path}")
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as error:
            raise UsageError(f"{path}: not a plain numeric .npy file ({error})") from error
    elif suffix == ".csv":
        array = _read_csv(path)
    else:
        raise UsageError(f"{path}: expected a .npy or .csv file, got {suffix or 'no extension'}")
    if array.dtype.kind not in "fiub":
        raise UsageError(f"{path}: expected numbers, got dtype {array.dtype}")
    return array if array.ndim > 1 else array.reshape(len(array), -1)


def _read_csv(path: str) -> np.ndarray:
    """Numbers only, one row per line; a first line that is not numbers is a header. Blank
    lines are skipped; errors name the file's own line numbers."""
    # utf-8-sig: the byte-order mark that spreadsheet programs write is not part of the data
    with open(path, newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        lines = [(reader.line_num, row) for row in reader if row]
    if lines and not _is_number(lines[0][1][0]):
        lines = lines[1:]  # a header line
    if not lines:
        raise UsageError(f"{path}: the file holds no rows of numbers")
    width = len(lines[0][1])
    values = []
    for number, row in lines:
        if len(row) != width:
            raise UsageError(f"{path}: line {number} has {len(row)} columns, expected {width} "
                             f"(as on line {lines[0][0]})")
        for column, text in enumerate(row, start=1):
            if not _is_number(text):
                raise UsageError(f"{path}: line {number}, column {column}: {text!r} is not "
                                 f"a number")
        values.append(row)
    return np.array(values, dtype=np.float64)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def write_array(path: str | None, array: np.ndarray) -> None:
    """Write ``array`` to ``.npy`` or ``.csv`` by extension; CSV on stdout when ``path`` is None."""
    if path is None:
        np.savetxt(sys.stdout, np.atleast_2d(array), delimiter=",", fmt="%.8g")
        return
    suffix = Path(path).suffix.lower()
    if suffix == ".npy":
        np.save(path, array, allow_pickle=False)
    elif suffix == ".csv":
        np.savetxt(path, np.atleast_2d(array), delimiter=",", fmt="%.8g")
    else:
        raise UsageError(f"{path}: the output must end in .npy or .csv")


def read_labelled(path: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` from a ``.npz`` holding arrays x and y, or a ``.csv`` whose last column is y."""
    if Path(path).suffix.lower() == ".npz":
        if not os.path.isfile(path):
            raise UsageError(f"no such file: {path}")
        try:
            with np.load(path, allow_pickle=False) as arrays:
                missing = [key for key in ("x", "y") if key not in arrays.files]
                if missing:
                    raise UsageError(f"{path}: missing array(s) {missing}; "
                                     f"found {arrays.files}")
                return arrays["x"], arrays["y"]
        except ValueError as error:
            raise UsageError(f"{path}: {error}") from error
    table = read_array(path)
    if table.shape[1] < 2:
        raise UsageError(f"{path}: need feature columns and a last label column")
    x, y = table[:, :-1], table[:, -1]
    if np.all(y == np.round(y)):
        y = y.astype(np.int64)  # class labels
    return x, y


# ---------------------------------------------------------------------------- data sets by name

def load_dataset(spec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` for a training config's "data" entry.

    ``{"name": "digits"}`` (scikit-learn's bundled digits, no download), a synthetic set from
    ``minidl.data`` (``"linear"``, ``"spirals"``, ``"moons"``, ``"blobs"``, ``"xor"``, with its
    arguments under ``"params"``), or ``{"path": "train.npz" | "train.csv"}``.
    """
    if "path" in spec:
        return read_labelled(str(spec["path"]))
    name = spec.get("name")
    params = spec.get("params", {})
    if name == "digits":
        try:
            from sklearn.datasets import load_digits
        except ImportError as error:
            raise UsageError("data set 'digits' needs scikit-learn: "
                             "pip install scikit-learn") from error
        digits = load_digits()
        return digits.data.astype(np.float32), digits.target.astype(np.int64)
    makers = {"linear": data_module.make_linear, "spirals": data_module.make_spirals,
              "moons": data_module.make_moons, "blobs": data_module.make_blobs,
              "xor": data_module.make_xor}
    if name not in makers:
        raise UsageError(f"unknown data set {name!r}; known: digits, {', '.join(makers)}, "
                         f"or give a 'path'")
    return makers[name](**params)


# ---------------------------------------------------------------------------- commands

def _model_path(path: str) -> str:
    """The model file ``path`` means (``FOLDER/model.npz`` for a folder); it must exist."""
    file = model_file(path)
    if not os.path.lexists(file):
        raise UsageError(f"no such file: {file}")
    return file


def _load(path: str) -> Sequential:
    return load_model(_model_path(path))


def command_info(args: argparse.Namespace) -> int:
    path = _model_path(args.model)
    problems = io.verify(path)
    meta = io.read_metadata(path)
    print(f"file:            {path}")
    print(f"format:          {meta.get('format')} version {meta.get('format_version')}, "
          f"written by minidl {meta.get('minidl_version')}")
    model_config = meta.get("model", {}).get("config", {})
    print(f"input:           {model_config.get('input_dim')}  dtype {model_config.get('dtype')}")
    print("layers:")
    for index, layer in enumerate(model_config.get("layers", [])):
        config = ", ".join(f"{k}={v!r}" for k, v in layer.get("config", {}).items()
                           if v is not None)
        params = sum(int(np.prod(entry["shape"])) for key, entry in meta["arrays"].items()
                     if key.startswith(f"layers.{index}."))
        print(f"  {index}: {layer.get('class_name')}({config})  params: {params:,}")
    total = sum(int(np.prod(entry["shape"])) for key, entry in meta["arrays"].items()
                if key.startswith("layers."))
    print(f"parameters:      {total:,}")
    compiled = meta.get("compile")
    if compiled:
        print(f"compiled with:   optimizer {json.dumps(compiled.get('optimizer'))}")
        print(f"                 loss {json.dumps(compiled.get('loss'))}, "
              f"metrics {compiled.get('metrics')}")
        fused = _fused_activation(model_config.get("layers", []), compiled.get("loss"))
        if fused:
            print(f"                 (the last layer's {fused} is fused with the loss in "
                  f"training: the loss reads the logits before it, whatever from_logits says; "
                  f"predict returns the {fused}'s probabilities)")
    if "training" in meta:
        print(f"training:        {meta['training'].get('epoch')} epochs done "
              f"(optimizer state included)")
    if problems:
        print(f"integrity:       FAILED ({len(problems)} problem(s))")
        for problem in problems:
            print(f"  - {problem}")
        return 1
    print(f"integrity:       OK (sha256 of all {len(meta['arrays'])} arrays verified)")
    return 0


def _fused_activation(layers: list[Any], loss: Any) -> str | None:
    """"softmax" or "sigmoid" when training fuses the model's output activation with its
    loss (``Sequential.fused_output``), read from the file's JSON alone."""
    if not layers or not isinstance(loss, dict):
        return None
    last = layers[-1] if isinstance(layers[-1], dict) else {}
    activation = (last.get("config") or {}).get("activation") if last.get(
        "class_name") == "Dense" else str(last.get("class_name", "")).lower()
    pairs = {"CrossEntropy": "softmax", "BinaryCrossEntropy": "sigmoid"}
    return activation if pairs.get(loss.get("class_name")) == activation else None


def command_predict(args: argparse.Namespace) -> int:
    model = _load(args.model)
    x = read_array(args.data)
    write_array(args.output, model.predict(x, batch_size=args.batch_size))
    if args.output:
        print(f"wrote predictions for {len(x)} rows to {args.output}", file=sys.stderr)
    return 0


def command_evaluate(args: argparse.Namespace) -> int:
    model = _load(args.model)
    if model.loss is None:
        raise UsageError(f"{args.model}: the model was saved without compile settings, "
                         f"so it has no loss to evaluate")
    x, y = read_labelled(args.data)
    scores = model.evaluate(x, y, batch_size=args.batch_size)
    print(json.dumps(scores, indent=2))
    return 0


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


_CONFIG_KEYS = {"data", "model", "compile", "fit", "callbacks", "output"}
_SECTION_KEYS = {
    "data": {"name", "params", "path", "test_size", "seed", "scale"},
    "model": {"layers", "input_dim", "seed", "dtype"},
    "compile": {"optimizer", "loss", "metrics"},
    "fit": {"epochs", "batch_size", "validation_split", "shuffle", "verbose", "initial_epoch"},
}
# the flags of `minidl train` that override the config's "fit" section
_FIT_FLAGS = ("epochs", "batch_size", "validation_split", "verbose")


def _checked_config(path: str) -> dict[str, Any]:
    """The training config (docs/config.md), its sections checked for unknown keys."""
    config = _read_config(path)
    unknown = sorted(set(config) - _CONFIG_KEYS)
    if unknown:
        raise UsageError(f"{path}: unknown key(s) {unknown}; known: {sorted(_CONFIG_KEYS)} "
                         f"(see docs/config.md)")
    for key in ("data", "model"):
        if key not in config:
            raise UsageError(f"{path}: missing key {key!r} (see docs/config.md)")
    for section, known in _SECTION_KEYS.items():
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


def command_train(args: argparse.Namespace) -> int:
    config = _checked_config(args.config)
    data_spec = config["data"]
    x, y = load_dataset(data_spec)
    test_size = data_spec.get("test_size", 0.2)
    seed = data_spec.get("seed", 0)
    classification = y.dtype.kind in "iu"
    x_train, x_test, y_train, y_test = data_module.train_test_split(
        x, y, test_size=test_size, seed=seed, stratify=classification)

    model_spec = dict(config["model"])
    layers = [layer_from_config(spec) for spec in model_spec.pop("layers", [])]
    scale = data_spec.get("scale", True)
    if scale:
        # the scaling travels with the model: evaluate, predict and serve take raw data
        layers.insert(0, Normalization())
    model_spec.setdefault("input_dim", list(x.shape[1:]))
    model = Sequential(layers, **model_spec)
    if scale:
        model.layers[0].adapt(x_train)
    compile_spec = config.get("compile", {})
    optimizer = compile_spec.get("optimizer", "adam")
    if isinstance(optimizer, dict):
        optimizer = optim_module.deserialize(optimizer, model.parameters())
    model.compile(optimizer=optimizer, loss=compile_spec.get("loss", "cross_entropy"),
                  metrics=compile_spec.get("metrics", []))
    callback_objects = [_callback_from_config(spec) for spec in config.get("callbacks", [])]
    fit_spec = {"epochs": 10, "batch_size": 32, "verbose": 1, **config.get("fit", {})}
    fit_spec.update({name: getattr(args, name) for name in _FIT_FLAGS
                     if getattr(args, name) is not None})
    model.fit(x_train, y_train, callbacks=callback_objects, **fit_spec)
    scores = model.evaluate(x_test, y_test)
    # printed as `minidl evaluate` prints them, so the two can be compared digit for digit
    print(f"test ({len(x_test)} held-out rows):")
    print(json.dumps(scores, indent=2))
    output = args.output or config.get("output", "model.npz")
    model.save(output)
    print(f"saved {model_file(output)}")
    if args.save_test:
        np.savez(args.save_test, x=x_test, y=y_test)
        print(f"saved the {len(x_test)} test rows to {args.save_test}")
    return 0


_CALLBACKS = {"EarlyStopping": callbacks_module.EarlyStopping,
              "ModelCheckpoint": callbacks_module.ModelCheckpoint}


def _callback_from_config(spec: Any) -> callbacks_module.Callback:
    if not isinstance(spec, dict) or set(spec) != {"class_name", "config"}:
        raise UsageError(f"a callback is {{'class_name': ..., 'config': {{...}}}}, got {spec!r}")
    if spec["class_name"] not in _CALLBACKS:
        raise UsageError(f"unknown callback {spec['class_name']!r}; known: {list(_CALLBACKS)}")
    return _CALLBACKS[spec["class_name"]](**spec["config"])


def command_serve(argv: Sequence[str]) -> int:
    from minidl.serving import main as serve_main

    return serve_main(list(argv))


def command_demo(args: argparse.Namespace) -> int:
    from minidl.demo import run_demo

    return run_demo(port=args.port, once=args.once, epochs=args.epochs, folder=args.folder)


# ---------------------------------------------------------------------------- parser

def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minidl", description="minidl: train, inspect and serve NumPy neural networks.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="train on digits, save, serve and query the model",
        description="Train an MLP on scikit-learn's bundled digits (a synthetic set without "
                    "scikit-learn), save it as FOLDER/digits/1/model.npz, serve it on "
                    "127.0.0.1 and query it like a TensorFlow Serving client.")
    demo.add_argument("--port", type=int, default=8501, help="port to serve on (0: any free)")
    demo.add_argument("--once", action="store_true", help="exit after the query")
    demo.add_argument("--epochs", type=_positive_int, default=60,
                      help="maximum epochs (early stopping)")
    demo.add_argument("--folder", default="models", help="where the model versions go")

    train = commands.add_parser(
        "train", help="train a model described by a JSON/TOML file",
        description="Train from a config file with the sections data, model, compile, fit, "
                    "callbacks and output; every key, its default and a complete example are "
                    "in docs/config.md. The flags below override the config.",
        epilog="example: minidl train train.json --epochs 5 --output models/m/1/model.npz")
    train.add_argument("config", help="a .json or .toml training config (docs/config.md)")
    train.add_argument("--epochs", type=_positive_int, help="fit.epochs: epochs to train")
    train.add_argument("--batch-size", dest="batch_size", type=_positive_int,
                       help="fit.batch_size: rows per gradient step")
    train.add_argument("--validation-split", dest="validation_split", type=float,
                       help="fit.validation_split: fraction of the training rows held out")
    train.add_argument("--verbose", type=int, choices=[0, 1],
                       help="fit.verbose: 1 prints progress, 0 nothing")
    train.add_argument("--output", help="output: where to save the model (a file, or a "
                                        "folder that gets model.npz)")
    train.add_argument("--save-test", dest="save_test", metavar="FILE.npz",
                       help="also write the held-out test rows (arrays x and y) to FILE.npz, "
                            "for `minidl evaluate`")

    evaluate = commands.add_parser("evaluate", help="loss and metrics of a model on data")
    evaluate.add_argument("model", help="a .npz model file")
    evaluate.add_argument("data", help=".npz with arrays x and y, or .csv with y last")
    evaluate.add_argument("--batch-size", type=int, default=256)

    predict = commands.add_parser("predict", help="run a model on .npy/.csv rows")
    predict.add_argument("model", help="a .npz model file")
    predict.add_argument("data", help="input rows, .npy or .csv")
    predict.add_argument("--output", "-o", help="output .npy or .csv (default: CSV on stdout)")
    predict.add_argument("--batch-size", type=int, default=1024)

    info = commands.add_parser("info", help="describe a model file and verify its hashes",
                               description="Print the config, parameter counts and versions; "
                                           "exit code 1 if any hash does not verify.")
    info.add_argument("model", help="a .npz model file")

    commands.add_parser("serve", help="the TensorFlow-Serving-compatible predict server "
                                      "(see `minidl serve --help`)", add_help=False)
    return parser


_COMMANDS = {"demo": command_demo, "train": command_train, "evaluate": command_evaluate,
             "predict": command_predict, "info": command_info}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "serve":
        return command_serve(argv[1:])  # the server owns its (TF Serving) flags
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except (UsageError, io.ModelFormatError, ValueError, TypeError, OSError) as error:
        print(f"minidl: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
