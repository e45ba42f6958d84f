"""Export a ``Sequential`` model to ONNX (the ``onnx`` extra), to run it in ONNX Runtime or
any other ONNX runtime: ``minidl.onnx.export(model, "model.onnx")``, or on the command line
``minidl export model.npz -o model.onnx``. See docs/onnx.md.

The graph computes what ``model.predict`` computes, in float32:

* input ``"input"`` of shape ``(batch, *model.input_shape)`` and output ``"output"`` of
  shape ``(batch, *model.output_shape)``, the names and shapes of the server's metadata,
  with a symbolic batch size ``"batch"``. The input is float32, or int64 indices for a model
  that starts with an ``Embedding``; every weight is a float32 initializer named like its
  key in the ``.npz`` file (``layers.0.kernel``), a float64 model's included;
* channels last at both ends, as minidl's images are; inside, convolutions and poolings run
  channels first, as ONNX's operators do, with a ``Transpose`` only where the layout changes;
* the model's metadata ``minidl_version`` and ``minidl_config`` (``model.get_config()`` as
  JSON), producer "minidl".

``can_export(model)`` lists what stands in the way, without onnx: the CLI's ``minidl info``
says with it whether a file can be exported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from minidl import __version__
from minidl.extras import missing
from minidl.io import replace_atomically
from minidl.layers import ACTIVATIONS, LAYERS, Embedding, Layer
from minidl.model import Sequential
from minidl.onnx.converters import CONVERTERS, MIN_OPSET, convert
from minidl.onnx.graph import GraphBuilder, Tensor

__all__ = ["DEFAULT_OPSET", "INPUT_NAME", "MIN_OPSET", "OUTPUT_NAME", "can_export", "export"]

DEFAULT_OPSET = 17
# the names of the served model's signature (minidl.serving.payload): one file, one contract
INPUT_NAME, OUTPUT_NAME = "input", "output"
BATCH = "batch"


def can_export(model: Sequential | dict[str, Any]) -> list[str]:
    """What keeps ``model`` from being exported, one line per problem; empty if nothing.

    ``model`` is a ``Sequential`` or its config (``model.get_config()``, as a model file
    stores it). Read from the layer types and configs only: onnx need not be installed.
    """
    if isinstance(model, Sequential):
        built = model.built
        layers = [_classes_of_layer(layer) for layer in model.layers]
    else:
        built = model.get("input_dim") is not None
        layers = [_classes_of_spec(spec) for spec in model.get("layers", [])]
    problems = [] if built else ["the model is not built: give Sequential an input_dim, or "
                                 "call it on data once"]
    for index, (cls, activation) in enumerate(layers):
        name = getattr(cls, "__name__", str(cls))
        if cls not in CONVERTERS:
            problems.append(f"layers[{index}] ({name}): no ONNX converter for this layer type "
                            f"(exportable: {', '.join(sorted(c.__name__ for c in CONVERTERS))})")
        elif activation is not None and activation not in CONVERTERS:
            problems.append(f"layers[{index}] ({name}): no ONNX converter for its activation "
                            f"{activation.__name__}")
        elif cls is Embedding and index > 0:
            problems.append(f"layers[{index}] ({name}): an Embedding can be exported only as "
                            f"the first layer, where its indices are the model's input")
    return problems


def _classes_of_layer(layer: Layer) -> tuple[type, type | None]:
    """(layer class, activation class or None) of a layer (Dense's, Conv2D's activation)."""
    activation = getattr(layer, "activation", None)
    return type(layer), type(activation) if isinstance(activation, Layer) else None


def _classes_of_spec(spec: Any) -> tuple[Any, Any]:
    """(layer class, activation class or None) of a ``{"class_name", "config"}`` spec, by
    the registries' names; a name they lack stays a string."""
    spec = spec if isinstance(spec, dict) else {}
    class_name = spec.get("class_name")
    activation = (spec.get("config") or {}).get("activation")
    return (LAYERS.get(class_name, class_name),
            None if activation is None else ACTIVATIONS.get(activation, activation))


def export(model: Sequential, path: str | os.PathLike, opset: int = DEFAULT_OPSET) -> Any:
    """Write ``model`` to the ONNX file ``path`` (atomically, creating its folder) and return
    the ``onnx.ModelProto``.

    ``opset``: the ONNX operator set, from ``MIN_OPSET`` (13) to the newest the installed
    onnx knows; a ``LayerNormalization`` needs 17. The file's IR version is the oldest that
    can state the opset, so that older runtimes load it too. A layer that cannot be exported
    is a ValueError naming it (``can_export`` lists them all).
    """
    try:
        import onnx
    except ModuleNotFoundError as error:
        raise missing(error, "onnx") from None
    if not isinstance(model, Sequential):
        raise TypeError(f"minidl.onnx.export: model must be a minidl Sequential, "
                        f"got {type(model).__name__}")
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise TypeError(f"minidl.onnx.export: opset must be an int, got {opset!r}")
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(f"minidl.onnx.export: opset {opset} is not supported; give one from "
                         f"{MIN_OPSET} (the oldest whose operators compute what minidl's "
                         f"layers do) to {newest} (the newest onnx {onnx.__version__} knows)")
    problems = can_export(model)
    if problems:
        raise ValueError("minidl.onnx.export: cannot export this model to ONNX: "
                         + "; ".join(problems))
    graph = GraphBuilder(int(opset))
    # indices as they are for a first layer that takes them (Embedding): int64
    input_dtype = np.int64 if model.layers[0].input_dtype(model.dtype) is None else np.float32
    x = Tensor(INPUT_NAME, tuple(range(len(model.input_shape) + 1)))
    shape = model.input_shape
    for index, layer in enumerate(model.layers):
        graph.scope = f"layers.{index}"
        try:
            x = convert(layer, graph, x, shape)
        except ValueError as error:
            raise ValueError(f"minidl.onnx.export: layers[{index}] ({type(layer).__name__}): "
                             f"{error}") from error
        shape = layer.compute_output_shape(shape)
    proto = graph.to_model(
        x, (INPUT_NAME, input_dtype, [BATCH, *model.input_shape]),
        (OUTPUT_NAME, [BATCH, *model.output_shape]), producer_version=__version__,
        metadata={"minidl_version": __version__,
                  "minidl_config": json.dumps(model.get_config())})
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(target.absolute(), lambda file: file.write(proto.SerializeToString()))
    return proto
