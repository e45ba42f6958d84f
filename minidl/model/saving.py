"""Saving and loading ``Sequential`` models: what ``model.save`` puts in a minidl file
(``minidl.io``, specified in docs/format.md) and how ``load_model`` checks and reads it.

A path may also be a URL (``s3://bucket/models/m/1``, see ``minidl.io.remote``): the file is
then written locally and uploaded, or downloaded and then read, through a temporary folder.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tempfile
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from minidl import io
from minidl.io import remote
from minidl.layers import Layer, layer_from_config

if TYPE_CHECKING:
    from minidl.model.sequential import Sequential

MODEL_FILE_NAME = "model.npz"
_MAX_PROBLEM_CHARS = 300


def model_file(path: str | os.PathLike) -> str:
    """The file a model path means: ``FOLDER/model.npz`` for a path that names a folder (an
    existing folder, or a path that is no existing file and whose last part has no suffix,
    such as ``export/linear/1`` or ``models/``), the path itself otherwise. A URL names a
    folder when its last part has no suffix (``s3://bucket/m/1``); a ``file://`` URL is its
    local path."""
    text = remote.local_path(path)
    if remote.is_remote(text):
        # nothing to look at without a request: the name alone decides
        names_folder = not posixpath.splitext(posixpath.basename(text))[1]
        return posixpath.join(text, MODEL_FILE_NAME) if names_folder else text
    # a trailing separator leaves an empty last part: no suffix, so a folder too; anything
    # else that exists is a file name, so that io can say what it is if it is no regular file
    names_folder = os.path.isdir(text) or (
        not os.path.lexists(text) and not os.path.splitext(os.path.basename(text))[1])
    return os.path.join(text, MODEL_FILE_NAME) if names_folder else text


def _write(path: str, meta: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """Write the file ``path`` (a ``model_file``) atomically, making its folder if needed; a
    URL's file is written in a temporary folder, then uploaded (``remote.upload``: a failed
    upload leaves the old object as it was)."""
    if not remote.is_remote(path):
        # a model path such as "models/digits/3/model.npz" names a new version folder
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        io.save_npz(path, meta, arrays)
        return
    with tempfile.TemporaryDirectory(prefix="minidl-") as folder:
        local = os.path.join(folder, MODEL_FILE_NAME)
        io.save_npz(local, meta, arrays)
        remote.upload(local, path)


@contextlib.contextmanager
def _readable(path: str) -> Iterator[str]:
    """A local regular file holding the file ``path`` (a ``model_file``): itself, or for a
    URL a copy downloaded into a temporary folder, removed at the end. Errors in the copy
    name the URL, not the copy."""
    if not remote.is_remote(path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="minidl-") as folder:
        local = os.path.join(folder, MODEL_FILE_NAME)
        remote.download(path, local)
        try:
            yield local
        except io.ModelFormatError as error:
            # every message begins with the file it is about
            raise io.ModelFormatError(path + str(error).removeprefix(local)) from None


def save_model(model: Sequential, path: str | os.PathLike, include_optimizer: bool) -> None:
    """``Sequential.save``: the architecture, the weights and the compile arguments; with
    ``include_optimizer`` the optimizer state, the epoch and the random generators too."""
    if not model.built:
        raise ValueError("save: the model is not built yet; give input_dim or call fit")
    arrays = model._weight_arrays()
    meta: dict[str, Any] = {"model": {"class_name": "Sequential",
                                      "config": model.get_config()}}
    compile_config = model.get_compile_config()
    if compile_config is not None:
        meta["compile"] = {**compile_config,
                           "metrics": _serializable_metrics(compile_config["metrics"])}
    if include_optimizer and model.optimizer is not None:
        state = model.optimizer.state_dict()
        numbers = []
        for index, param_state in enumerate(state["state"]):
            numbers.append({key: value for key, value in param_state.items()
                            if not isinstance(value, np.ndarray)})
            for key, value in param_state.items():
                if isinstance(value, np.ndarray):
                    arrays[f"optimizer.state.{index}.{key}"] = value
        meta["optimizer"] = {"class_name": type(model.optimizer).__name__,
                             "config": state["config"], "numbers": numbers,
                             "iterations": state["iterations"]}
        meta["training"] = {"epoch": model.epoch, "rng_states": _rng_states(model)}
    _write(model_file(path), meta, arrays)


def save_weights(model: Sequential, path: str | os.PathLike) -> None:
    """``Sequential.save_weights``: the weights, and the architecture to check them against."""
    if not model.built:
        raise ValueError("save_weights: the model is not built yet")
    meta = {"model": {"class_name": "Sequential", "config": model.get_config()},
            "weights_only": True}
    _write(model_file(path), meta, model._weight_arrays())


def load_weights(model: Sequential, path: str | os.PathLike) -> None:
    """``Sequential.load_weights``: weights of the same architecture, written in place."""
    with _readable(model_file(path)) as local:
        _, arrays = io.load_npz(local)
        if not model.built:
            raise ValueError("load_weights: build the model first (give input_dim)")
        _check_weight_arrays(local, model._weight_arrays(), arrays)
        try:
            model._assign_weights(arrays)
        except ValueError as error:
            raise io.ModelFormatError(f"{local}: {error}") from error


def _serializable_metrics(metrics: list[Any]) -> list[str]:
    unknown = [metric.__name__ for metric in metrics if not isinstance(metric, str)]
    if unknown:
        raise ValueError(f"save: metrics {unknown} are functions, not names from "
                         f"minidl.metrics.METRICS, so they cannot be stored in the file")
    return list(metrics)


def _rng_states(model: Sequential) -> dict[str, Any]:
    # PCG64's 128-bit integers as strings: JSON readers in other languages lose them
    states = {}
    for name, generator in model._generators().items():
        state = generator.bit_generator.state
        states[name] = {"bit_generator": state["bit_generator"],
                        "state": str(state["state"]["state"]),
                        "inc": str(state["state"]["inc"]),
                        "has_uint32": int(state["has_uint32"]),
                        "uinteger": int(state["uinteger"])}
    return states


def _set_rng_states(model: Sequential, states: dict[str, Any]) -> None:
    generators = model._generators()
    for name, saved in states.items():
        if name not in generators or saved.get("bit_generator") != "PCG64":
            raise ValueError(f"rng state {name!r} does not match this model")
        generators[name].bit_generator.state = {
            "bit_generator": "PCG64",
            "state": {"state": int(saved["state"]), "inc": int(saved["inc"])},
            "has_uint32": int(saved["has_uint32"]), "uinteger": int(saved["uinteger"])}


def _check_weight_arrays(path: Any, expected: dict[str, np.ndarray],
                         found: dict[str, np.ndarray]) -> None:
    for key, data in expected.items():
        if key not in found:
            raise io.ModelFormatError(f"{os.fspath(path)}: missing array {key!r}")
        if found[key].shape != data.shape or found[key].dtype != data.dtype:
            raise io.ModelFormatError(
                f"{os.fspath(path)}: array {key!r} has shape {found[key].shape} and dtype "
                f"{found[key].dtype}; the model expects shape {data.shape} and dtype "
                f"{data.dtype}")


def load_model(path: str | os.PathLike) -> Sequential:
    """Read a model written by ``Sequential.save``: architecture, weights, compile arguments
    and, when saved, the optimizer state and the training position.

    The file is checked completely before anything is built (``minidl.io.load_npz``), and
    so are the shapes its architecture implies, against the arrays it holds: a small file
    cannot make the loader allocate a large model. Layer types come from the registry in
    ``minidl.layers``, never from an import by name. Any problem raises
    ``minidl.io.ModelFormatError`` saying what is wrong and where. A folder means
    ``FOLDER/model.npz``, as for ``save``; a URL is downloaded first (``minidl.io.remote``).
    """
    with _readable(model_file(path)) as local:
        return _load_model_file(local)


def _load_model_file(path: str) -> Sequential:
    meta, arrays = io.load_npz(path)
    try:
        model = _model_from_meta(meta, arrays)
    except (AttributeError, KeyError, TypeError, ValueError, OverflowError) as error:
        if isinstance(error, io.ModelFormatError):
            raise
        raise io.ModelFormatError(f"{path}: invalid model description: "
                                  f"{_problem(error)}") from error
    weights = model._weight_arrays()
    _check_weight_arrays(path, weights, arrays)
    unexpected = sorted(key for key in arrays
                        if key not in weights and not key.startswith("optimizer.state."))
    if unexpected:
        raise io.ModelFormatError(f"{path}: arrays {unexpected} belong to no layer")
    try:
        model._assign_weights(arrays)
    except ValueError as error:
        raise io.ModelFormatError(f"{path}: {error}") from error
    if "optimizer" in meta and model.optimizer is not None:
        try:
            _restore_training_state(model, meta, arrays)
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise io.ModelFormatError(f"{path}: invalid optimizer state: "
                                      f"{_problem(error)}") from error
    return model


def _problem(error: Exception) -> str:
    # a hand-edited document may hold a list or a string where an object belongs (AttributeError)
    # or lack a key (a bare KeyError prints only the key's name)
    text = f"missing key {error}" if isinstance(error, KeyError) else str(error)
    # a hostile document can make a message echo a 400-digit number: keep it one readable line
    return text if len(text) <= _MAX_PROBLEM_CHARS else text[:_MAX_PROBLEM_CHARS] + " [...]"


def _model_from_meta(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Sequential:
    spec = meta["model"]
    if spec.get("class_name") != "Sequential":
        raise ValueError(f"model class_name must be 'Sequential', got {spec.get('class_name')!r}")
    config = spec["config"]
    unknown = sorted(set(config) - {"layers", "input_dim", "seed", "dtype"})
    if unknown:
        raise ValueError(f"unknown model config keys {unknown}")
    if config.get("input_dim") is None:
        raise ValueError("the saved model has no input_dim")
    layers = []
    for index, layer_spec in enumerate(config["layers"]):
        try:
            layers.append(layer_from_config(layer_spec))
        except (TypeError, ValueError) as error:
            raise ValueError(f"layers[{index}]: {error}") from error
    from minidl.model.sequential import Sequential, as_shape  # it imports this module

    _check_implied_shapes(layers, as_shape(config["input_dim"]), config.get("dtype", "float32"),
                          arrays)
    model = Sequential(layers, input_dim=config["input_dim"], seed=config.get("seed"),
                       dtype=config.get("dtype", "float32"))
    compile_config = meta.get("compile")
    if compile_config is not None:
        model.compile_from_config(compile_config)
    return model


def _check_implied_shapes(layers: list[Layer], input_shape: tuple[int, ...], dtype: Any,
                          arrays: dict[str, np.ndarray]) -> None:
    """Compare the arrays the architecture implies (``Layer.weight_shapes``) with those the
    file holds, shapes and dtype, before anything is built: a file that says
    ``units=20000`` beside a small kernel is refused here, not after allocating the large
    one. A layer that declares no shapes (a user's own layer may not) is checked after it
    is built instead."""
    dtype = np.dtype(dtype)
    shape, implied = input_shape, {}
    for index, layer in enumerate(layers):
        try:
            shapes = layer.weight_shapes(shape)
            shape = layer.compute_output_shape(shape)
        except ValueError as error:
            raise ValueError(f"layers[{index}] ({type(layer).__name__}): {error}") from error
        implied.update({f"layers.{index}.{name}": weight_shape
                        for name, weight_shape in (shapes or {}).items()})
    for key, implied_shape in implied.items():
        if key not in arrays:
            raise ValueError(f"missing array {key!r} (of shape {implied_shape}, as the "
                             f"architecture implies)")
        if arrays[key].shape != implied_shape or arrays[key].dtype != dtype:
            raise ValueError(f"array {key!r} has shape {arrays[key].shape} and dtype "
                             f"{arrays[key].dtype} but the architecture implies "
                             f"{implied_shape} and {dtype}")


def _restore_training_state(model: Sequential, meta: dict[str, Any],
                            arrays: dict[str, np.ndarray]) -> None:
    saved = meta["optimizer"]
    if saved["class_name"] != type(model.optimizer).__name__:
        raise ValueError(f"optimizer state is for {saved['class_name']} but the compiled "
                         f"optimizer is {type(model.optimizer).__name__}")
    numbers = saved["numbers"]
    if len(numbers) != len(model.parameters()):
        raise ValueError(f"{len(numbers)} optimizer states for {len(model.parameters())} "
                         f"parameters")
    state = []
    for index, param_numbers in enumerate(numbers):
        prefix = f"optimizer.state.{index}."
        param_state = dict(param_numbers)
        param_state.update({key[len(prefix):]: value for key, value in arrays.items()
                            if key.startswith(prefix)})
        state.append(param_state)
    # "iterations" (the steps taken, where a learning-rate schedule is) came with format 2's
    # schedules: a file written before has none, and its optimizer starts counting at 0
    model.optimizer.load_state_dict({"config": saved["config"], "state": state,
                                     "iterations": saved.get("iterations", 0)})
    training = meta.get("training") or {}
    epoch = training.get("epoch", 0)
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"training epoch must be an int >= 0, got {epoch!r}")
    model.epoch = epoch
    _set_rng_states(model, training.get("rng_states", {}))
