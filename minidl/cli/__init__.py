"""``python -m minidl`` / ``minidl``: demo, train, tune, evaluate, predict, info, export and
serve.

Every command answers ``--help``. A bad argument or file ends with one line on stderr,
``minidl: error: ...``, and exit code 2; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

import minidl.onnx
from minidl import io, losses
from minidl.cli.files import (
    UsageError,
    load_dataset,
    read_array,
    read_labelled,
    write_array,
)
from minidl.cli.train import command_train
from minidl.model import Sequential, load_model, model_file

__all__ = ["UsageError", "build_parser", "load_dataset", "main", "read_array", "read_labelled",
           "write_array"]


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
    print(f"onnx export:     {_onnx_exportability(model_config)}")
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
    try:
        fuses_with = losses.deserialize(loss).fuses_with
    except (TypeError, ValueError):  # a spec load_model would refuse: nothing is fused
        return None
    return activation if fuses_with == activation else None


def _onnx_exportability(model_config: dict[str, Any]) -> str:
    """One line: can ``minidl export`` write this model? From the file's JSON alone, so it
    needs neither onnx nor a file whose hashes verify."""
    problems = minidl.onnx.can_export(model_config)
    if not problems:
        return "yes (minidl export MODEL -o MODEL.onnx; the 'onnx' extra)"
    return "no: " + "; ".join(problems)


def command_export(args: argparse.Namespace) -> int:
    model = _load(args.model)
    proto = minidl.onnx.export(model, args.output, opset=args.opset)
    graph = proto.graph
    print(f"wrote {args.output}: ONNX opset {args.opset}, IR version {proto.ir_version}; "
          f"{graph.input[0].name} (batch, {', '.join(map(str, model.input_shape))}) -> "
          f"{graph.output[0].name} (batch, {', '.join(map(str, model.output_shape))})",
          file=sys.stderr)
    return 0


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


def command_serve(argv: Sequence[str]) -> int:
    from minidl.serving import main as serve_main

    return serve_main(list(argv))


def command_tune(args: argparse.Namespace) -> int:
    from minidl.cli.tune import command_tune as tune

    return tune(args)


def command_demo(args: argparse.Namespace) -> int:
    from minidl.demo import run_demo

    return run_demo(port=args.port, once=args.once, epochs=args.epochs, folder=args.folder)


# ---------------------------------------------------------------------------- parser

def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
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
        epilog="example: minidl train train.json --epochs 5 --output models/m/1/model.npz; "
               "data-parallel on N processes: mpiexec -n N python -m minidl train train.json "
               "(docs/distributed.md)")
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

    tune = commands.add_parser(
        "tune", help="search a training config's hyper-parameters with Optuna",
        description="Run Optuna trials of a training config whose 'tune' section names the "
                    "metric, its direction and the search space (docs/config.md), then print "
                    "the best trials and save the best model where the config's output says, "
                    "with its training config and plots of the search. Needs the 'tune' extra.",
        epilog="example: minidl tune tune.json --n-trials 30 --storage study.log --seed 1")
    tune.add_argument("config", help="a .json or .toml training config with a tune section")
    tune.add_argument("--n-trials", dest="n_trials", type=_positive_int,
                      help="trials this process runs (default 20 without --timeout)")
    tune.add_argument("--timeout", type=_positive_float,
                      help="seconds after which this process starts no new trial")
    tune.add_argument("--seed", type=int, help="seed of the sampler (default: random); give "
                                               "each process sharing a study its own")
    tune.add_argument("--storage", help="a journal file (a path) or a database URL "
                                        "(sqlite:///study.db, postgresql://...) shared by "
                                        "several processes; default: in memory")
    tune.add_argument("--study-name", dest="study_name",
                      help="the study's name in --storage (default: a new random name)")
    tune.add_argument("--output", help="output: where to save the best model")

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

    export = commands.add_parser(
        "export", help="write a model as an ONNX file, for ONNX Runtime",
        description="Convert a model file to ONNX (docs/onnx.md): the same predictions in "
                    "float32, input 'input' and output 'output' with a symbolic batch size, "
                    "channels last. Needs the 'onnx' extra.",
        epilog="example: minidl export models/digits/1/model.npz -o digits.onnx")
    export.add_argument("model", help="a .npz model file")
    export.add_argument("--output", "-o", required=True, metavar="FILE.onnx",
                        help="the ONNX file to write")
    export.add_argument("--opset", type=int, default=minidl.onnx.DEFAULT_OPSET,
                        help=f"the ONNX operator set (default {minidl.onnx.DEFAULT_OPSET}; "
                             f"{minidl.onnx.MIN_OPSET} or later, 17 or later for "
                             f"LayerNormalization)")

    commands.add_parser("serve", help="the TensorFlow-Serving-compatible predict server "
                                      "(see `minidl serve --help`)", add_help=False)
    return parser


_COMMANDS = {"demo": command_demo, "train": command_train, "tune": command_tune,
             "evaluate": command_evaluate, "predict": command_predict, "info": command_info,
             "export": command_export}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "serve":
        return command_serve(argv[1:])  # the server owns its (TF Serving) flags
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except (UsageError, io.ModelFormatError, ValueError, TypeError, OSError,
            ModuleNotFoundError) as error:  # an extra not installed: its name and the fix
        print(f"minidl: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
