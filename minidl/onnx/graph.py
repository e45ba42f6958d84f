"""The ONNX graph under construction: nodes, initializers, and the layout of every tensor.

Nothing here imports onnx until ``to_model``: the converters only add plain records
(``Node``) and arrays, so which layers can be exported is known without the extra.

**Layout.** minidl's images are channels last (N, H, W, C); ONNX's ``Conv`` and pooling
operators read channels first (N, C, H, W). Every tensor in the graph is therefore
minidl's tensor *transposed by* ``perm``: ``Tensor("x", (0, 3, 1, 2))`` holds
``canonical.transpose(0, 3, 1, 2)``, NCHW. An element-wise step keeps the layout it is
given, a step with an ``axis`` maps it through ``perm``, and a step that needs a layout
asks for it with ``transposed``, which adds a ``Transpose`` only when the layout differs:
a stack of convolutions, activations and poolings then runs in NCHW with one transpose on
the way in and one on the way out.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from minidl.extras import missing

NCHW = (0, 3, 1, 2)  # the perm that turns minidl's (N, H, W, C) into ONNX's (N, C, H, W)


@dataclass(frozen=True)
class Tensor:
    """A tensor of the graph: its name, and the perm that takes minidl's (canonical) layout
    to the one it is stored in (the identity for most)."""

    name: str
    perm: tuple[int, ...]

    @property
    def rank(self) -> int:
        return len(self.perm)


@dataclass
class Node:
    """One operator: its name (``layers.3/Conv``), also the name of its output until the
    graph's output takes that over."""

    op_type: str
    inputs: list[str]
    name: str
    output: str
    attributes: dict[str, Any] = field(default_factory=dict)


class GraphBuilder:
    """Nodes and initializers of one graph for ``opset``; ``scope`` (``"layers.3"``)
    prefixes the names of what the current layer adds, so that the graph reads like the
    model: initializers ``layers.3.kernel`` (the ``.npz`` keys), tensors ``layers.3/Conv``."""

    def __init__(self, opset: int) -> None:
        self.opset = opset
        self.scope = ""
        self.nodes: list[Node] = []
        self.initializers: dict[str, np.ndarray] = {}
        self._used = Counter()

    def constant(self, suffix: str, array: Any) -> str:
        """Add ``array`` as an initializer named ``{scope}.{suffix}``: floats as float32
        (the graph computes in float32), integers as int64. Returns its name."""
        array = np.asarray(array)
        dtype = np.float32 if array.dtype.kind == "f" else np.int64
        name = f"{self.scope}.{suffix}"
        self.initializers[name] = np.ascontiguousarray(array, dtype=dtype)
        return name

    def node(self, op_type: str, inputs: list[str], **attributes: Any) -> str:
        """Add an ``op_type`` node; returns the name of its (single) output."""
        name = f"{self.scope}/{op_type}"
        self._used[name] += 1
        if self._used[name] > 1:
            name = f"{name}_{self._used[name] - 1}"
        self.nodes.append(Node(op_type, list(inputs), name, name, attributes))
        return name

    def transposed(self, x: Tensor, perm: tuple[int, ...]) -> Tensor:
        """``x`` stored in layout ``perm``: ``x`` itself when it already is."""
        perm = tuple(perm)
        if x.perm == perm:
            return x
        # stored axis i of the result is canonical axis perm[i], stored in x at x.perm.index
        order = [x.perm.index(axis) for axis in perm]
        return Tensor(self.node("Transpose", [x.name], perm=order), perm)

    def canonical(self, x: Tensor) -> Tensor:
        """``x`` in minidl's own layout (channels last)."""
        return self.transposed(x, tuple(range(x.rank)))

    def require_opset(self, opset: int, why: str) -> None:
        if self.opset < opset:
            raise ValueError(f"{why} needs opset {opset} or later, not {self.opset}")

    def to_model(self, x: Tensor, graph_input: tuple[str, np.dtype, list],
                 graph_output: tuple[str, list], producer_version: str,
                 metadata: dict[str, str]) -> Any:
        """The ``onnx.ModelProto`` whose input is ``graph_input`` (name, dtype, shape) and
        whose float32 output ``graph_output`` (name, shape) is ``x``, in minidl's layout."""
        try:
            import onnx
            from onnx import helper, numpy_helper
        except ModuleNotFoundError as error:
            raise missing(error, "onnx") from None
        input_name, input_dtype, input_shape = graph_input
        output_name, output_shape = graph_output
        self.scope = "output"
        x = self.canonical(x)
        if self.nodes and self.nodes[-1].output == x.name:
            self.nodes[-1].output = output_name  # the last node writes the output itself
        else:  # the input (or a constant) is the output: a model of identities
            self.nodes.append(Node("Identity", [x.name], "output/Identity", output_name))
        nodes = [helper.make_node(node.op_type, node.inputs, [node.output], name=node.name,
                                  **node.attributes) for node in self.nodes]
        graph = helper.make_graph(
            nodes, "minidl.Sequential",
            [helper.make_tensor_value_info(
                input_name, helper.np_dtype_to_tensor_dtype(np.dtype(input_dtype)), input_shape)],
            [helper.make_tensor_value_info(output_name, onnx.TensorProto.FLOAT, output_shape)],
            initializer=[numpy_helper.from_array(array, name)
                         for name, array in self.initializers.items()])
        opset_import = [helper.make_opsetid("", self.opset)]
        # the oldest IR version that can state this opset: runtimes old and new load it
        # (onnx's own default, its newest IR, is more than older runtimes accept)
        model = helper.make_model(graph, opset_imports=opset_import,
                                  ir_version=helper.find_min_ir_version_for(opset_import),
                                  producer_name="minidl",
                                  producer_version=producer_version)
        helper.set_model_props(model, metadata)
        return model
