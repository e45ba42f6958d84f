"""minidl.onnx: exported graphs pass onnx's full check, and ONNX Runtime (CPU) and onnx's
reference evaluator both compute what ``model.predict`` computes, to 1e-5 in float32, for
hypothesis-drawn dense, image and sequence models, one model of every layer type, every
activation and a trained digits model; names, shapes, the symbolic batch and metadata; what
cannot be exported; ``minidl export`` and ``minidl info``; the missing extra; docs/onnx.md."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx.reference import ReferenceEvaluator
from onnx.reference.ops.op_max_pool import MaxPool as ReferenceMaxPool

import minidl
from minidl.cli import main
from minidl.layers import (
    ACTIVATIONS,
    LAYERS,
    AveragePooling2D,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    Layer,
    LayerNormalization,
    LeakyReLU,
    Linear,
    MaxPooling2D,
    Normalization,
    ReLU,
    Reshape,
    Sigmoid,
    Softmax,
    Tanh,
)
from minidl.model import Sequential
from minidl.onnx import INPUT_NAME, MIN_OPSET, OUTPUT_NAME, can_export, export
from minidl.onnx.converters import CONVERTERS

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}
BATCH = 3


# ----------------------------------------------------------------------------- helpers

class MaxPool(ReferenceMaxPool):
    """onnx's reference MaxPool, with its unit-stride path's reading of 2-D ``pads`` put
    right: that path unpacks them as [top, bottom, left, right], where the spec (and ONNX
    Runtime) say [top, left, bottom, right]; strided poolings take another, correct, path.
    ``test_onnx_reference_maxpool_misreads_pads_with_unit_strides`` shows the bug, and
    fails once onnx fixes it: then this class goes."""

    op_domain = ""

    def _run(self, x, pads=None, strides=None, dilations=None, **attributes):
        unit = all(s == 1 for s in strides or [1]) and all(d == 1 for d in dilations or [1])
        if unit and pads is not None and len(pads) == 4:
            pads = [pads[0], pads[2], pads[1], pads[3]]  # what that path unpacks as the spec
        return super()._run(x, pads=pads, strides=strides, dilations=dilations, **attributes)


def reference_evaluator(proto: onnx.ModelProto) -> ReferenceEvaluator:
    return ReferenceEvaluator(proto, new_ops=[MaxPool])


def randomize_state(model: Sequential, rng: np.random.Generator) -> None:
    """Non-trivial values where initializers leave constants: biases, normalization scales
    and shifts, BatchNormalization's moving statistics, Normalization's adapted statistics,
    Embedding tables of unit scale; all O(1), so that float32 keeps 1e-5 everywhere."""
    shape = model.input_shape
    for layer in model.layers:
        for param in layer.parameters():
            if param.name == "bias" or param.name == "beta":
                param.data[...] = rng.normal(0.0, 0.3, param.shape)
            elif param.name == "gamma":
                param.data[...] = rng.uniform(0.5, 1.5, param.shape)
            elif param.name == "embeddings":
                param.data[...] = rng.standard_normal(param.shape)
        if isinstance(layer, BatchNormalization):
            layer.moving_mean[...] = rng.normal(0.0, 0.5, layer.moving_mean.shape)
            layer.moving_variance[...] = rng.uniform(0.5, 2.0, layer.moving_variance.shape)
        if isinstance(layer, Normalization) and layer.mean is None:
            layer.adapt(rng.normal(1.0, 2.0, (16, *shape)))
        shape = layer.compute_output_shape(shape)


def inputs_for(model: Sequential, rng: np.random.Generator, batch: int = BATCH) -> np.ndarray:
    if isinstance(model.layers[0], Embedding):
        return rng.integers(0, model.layers[0].input_dim, size=(batch, *model.input_shape))
    return rng.standard_normal((batch, *model.input_shape)).astype(np.float32)


def check_export(model: Sequential, path: Path, seed: int = 0, opset: int = 17) -> onnx.ModelProto:
    """Export, check fully, and compare ONNX Runtime and the reference evaluator with
    ``predict`` on random inputs."""
    proto = export(model, path, opset=opset)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    x = inputs_for(model, np.random.default_rng(seed))
    expected = model.predict(x)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (runtime,) = session.run(None, {INPUT_NAME: x})
    (reference,) = reference_evaluator(proto).run(None, {INPUT_NAME: x})
    assert runtime.dtype == reference.dtype == np.float32
    np.testing.assert_allclose(runtime, expected, **TOLERANCE)
    np.testing.assert_allclose(reference, expected, **TOLERANCE)
    return proto


def built(layers: list[Layer], input_dim, seed: int = 0, dtype: str = "float32") -> Sequential:
    model = Sequential(layers, input_dim=input_dim, seed=seed, dtype=dtype)
    randomize_state(model, np.random.default_rng(seed))
    return model


# ----------------------------------------------------------------------------- strategies

windows = st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3)))
activations = st.sampled_from([None, *ACTIVATIONS])
epsilons = st.sampled_from([1e-5, 1e-3, 1e-2])


def elementwise_layers(axes: list) -> st.SearchStrategy[Layer]:
    """Activations, Dropout and Softmax along one of ``axes``: layers of any input shape."""
    return st.one_of(
        st.sampled_from([ReLU, Tanh, Sigmoid, Linear]).map(lambda cls: cls()),
        st.floats(0.0, 1.0).map(LeakyReLU),
        st.sampled_from(axes).map(Softmax),
        st.floats(0.0, 0.9).map(Dropout))


def normalizations(axes: list) -> st.SearchStrategy[Layer]:
    return st.one_of(
        st.builds(BatchNormalization, axis=st.sampled_from(axes), epsilon=epsilons,
                  center=st.booleans(), scale=st.booleans()),
        st.builds(LayerNormalization, axis=st.sampled_from(axes), epsilon=epsilons,
                  center=st.booleans(), scale=st.booleans()))


@st.composite
def dense_models(draw) -> Sequential:
    """Normalization (given statistics or adapted) or not, then Dense layers of every
    activation, activation layers, Dropout, Flatten and the normalizations on vectors."""
    layers = []
    if draw(st.booleans()):
        layers.append(draw(st.one_of(
            st.just(Normalization()),
            st.builds(Normalization, mean=st.floats(-2.0, 2.0), variance=st.floats(0.1, 4.0),
                      invert=st.booleans()))))
    layers += draw(st.lists(st.one_of(
        st.builds(Dense, st.integers(1, 6), activation=activations, use_bias=st.booleans()),
        elementwise_layers([-1, 1]), normalizations([-1, 1]), st.just(Flatten())),
        min_size=1, max_size=4))
    return built(layers, draw(st.integers(1, 6)), seed=draw(st.integers(0, 2**16)))


def _spatial_layers() -> st.SearchStrategy[Layer]:
    strided = st.builds(Conv2D, st.integers(1, 4), windows, strides=windows,
                        padding=st.sampled_from(["valid", "same"]), activation=activations,
                        use_bias=st.booleans())
    dilated = st.builds(Conv2D, st.integers(1, 4), windows, dilation_rate=windows,
                        padding=st.sampled_from(["valid", "same"]), activation=activations)
    pooling = st.sampled_from([MaxPooling2D, AveragePooling2D]).flatmap(lambda cls: st.builds(
        cls, windows, strides=st.none() | windows, padding=st.sampled_from(["valid", "same"])))
    return st.one_of(strided, dilated, pooling, normalizations([-1, 1, 2, 3]),
                     st.builds(LayerNormalization, axis=st.sampled_from([[1, 2, 3], [1, 2],
                                                                         [2]])),
                     elementwise_layers([-1, 1, 2, 3]))


def _fits(layer: Layer, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The output shape of ``layer`` on examples of ``shape``, None if they do not fit."""
    try:
        return layer.compute_output_shape(shape)
    except ValueError:  # a window larger than the image, with padding="valid"
        return None


@st.composite
def image_models(draw) -> Sequential:
    """Channels-last images through convolutions (strides, dilation, both paddings, every
    activation), poolings, normalizations over any axes and element-wise layers, then a
    head: none, Flatten + Dense, a global pooling (keepdims or not), or a Reshape."""
    input_shape = (draw(st.integers(3, 7)), draw(st.integers(3, 7)), draw(st.integers(1, 3)))
    layers, shape = [], input_shape
    for layer in draw(st.lists(_spatial_layers(), min_size=1, max_size=4)):
        fitted = _fits(layer, shape)
        if fitted is not None and min(fitted[:2]) >= 1:
            layers.append(layer)
            shape = fitted
    head = draw(st.sampled_from(["none", "flatten", "global", "reshape"]))
    if head == "flatten":
        layers += [Flatten(), Dense(draw(st.integers(1, 4)), activation=draw(activations))]
    elif head == "global":
        pooling = draw(st.sampled_from([GlobalAveragePooling2D, GlobalMaxPooling2D]))
        layers.append(pooling(keepdims=draw(st.booleans())))
    elif head == "reshape":
        layers.append(Reshape((-1, shape[-1])))
    if not layers:
        layers.append(ReLU())
    return built(layers, input_shape, seed=draw(st.integers(0, 2**16)))


@st.composite
def sequence_models(draw) -> Sequential:
    """Embedding of index sequences (or grids of indices, which make images), then
    normalizations, softmax and activations over the sequence or the features, and a head:
    Flatten or Reshape + Dense, or (for grids) a convolution."""
    grid = draw(st.booleans())
    input_shape = ((draw(st.integers(1, 4)), draw(st.integers(1, 4))) if grid
                   else (draw(st.integers(1, 6)),))
    layers = [Embedding(draw(st.integers(2, 12)), draw(st.integers(1, 5)))]
    axes = [-1, 1, 2, 3] if grid else [-1, 1, 2]
    layers += draw(st.lists(st.one_of(normalizations(axes), elementwise_layers(axes)),
                            max_size=2))
    if grid and draw(st.booleans()):
        layers += [Conv2D(2, 1, activation="relu"), GlobalMaxPooling2D()]
    else:
        layers += [draw(st.sampled_from([Flatten(), Reshape((-1,))])),
                   Dense(draw(st.integers(1, 4)), activation=draw(activations))]
    return built(layers, input_shape, seed=draw(st.integers(0, 2**16)))


# ----------------------------------------------------------------------------- properties

@given(model=dense_models())
def test_dense_models_agree_with_predict(model, tmp_path_factory):
    check_export(model, tmp_path_factory.mktemp("dense") / "model.onnx")


@given(model=image_models())
def test_image_models_agree_with_predict(model, tmp_path_factory):
    check_export(model, tmp_path_factory.mktemp("image") / "model.onnx")


@given(model=sequence_models())
def test_sequence_models_agree_with_predict(model, tmp_path_factory):
    check_export(model, tmp_path_factory.mktemp("sequence") / "model.onnx")


# one model per layer type: (layers, input_dim)
EVERY_LAYER = {
    "AveragePooling2D": ([AveragePooling2D(3, strides=2, padding="same")], (6, 5, 2)),
    "BatchNormalization": ([Conv2D(3, 2), BatchNormalization()], (4, 4, 2)),
    "Conv2D": ([Conv2D(3, (3, 2), strides=(2, 1), padding="same", activation="relu")],
               (6, 5, 2)),
    "Dense": ([Dense(4, activation="softmax")], 3),
    "Dropout": ([Dense(4), Dropout(0.5)], 3),
    "Embedding": ([Embedding(7, 3)], (4,)),
    "Flatten": ([Conv2D(2, 1), Flatten()], (3, 2, 2)),
    "GlobalAveragePooling2D": ([GlobalAveragePooling2D()], (3, 4, 2)),
    "GlobalMaxPooling2D": ([GlobalMaxPooling2D(keepdims=True)], (3, 4, 2)),
    "LayerNormalization": ([LayerNormalization(axis=[1, 2])], (3, 4)),
    "LeakyReLU": ([LeakyReLU(0.3)], 5),
    "Linear": ([Linear()], 5),
    "MaxPooling2D": ([MaxPooling2D((2, 3), padding="same")], (5, 5, 2)),
    "Normalization": ([Normalization(axis=None, mean=1.0, variance=2.0, invert=True)], 4),
    "ReLU": ([ReLU()], 5),
    "Reshape": ([Reshape((-1, 2)), Softmax(axis=1)], (3, 4)),
    "Sigmoid": ([Sigmoid()], 5),
    "Softmax": ([Softmax(axis=2)], (3, 4, 2)),
    "Tanh": ([Tanh()], 5),
}


def test_every_layer_type_has_a_converter_and_a_model_here():
    assert set(CONVERTERS) == set(LAYERS.values())
    assert set(EVERY_LAYER) == set(LAYERS)


@pytest.mark.parametrize("name", sorted(EVERY_LAYER))
def test_a_model_of_each_layer_type_agrees_with_predict(name, tmp_path):
    layers, input_dim = EVERY_LAYER[name]
    check_export(built(layers, input_dim), tmp_path / f"{name}.onnx")


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_every_activation_of_dense_and_conv2d_agrees_with_predict(activation, tmp_path):
    model = built([Conv2D(3, 3, padding="same", activation=activation), Flatten(),
                   Dense(4, activation=activation)], (4, 4, 2))
    check_export(model, tmp_path / "activation.onnx")


def test_a_float64_model_is_exported_in_float32_with_a_float32_input(tmp_path):
    model = built([Normalization(mean=0.5, variance=2.0), Conv2D(3, 2, activation="tanh"),
                   BatchNormalization(), Flatten(), Dense(3, activation="softmax")], (4, 4, 1),
                  dtype="float64")
    proto = check_export(model, tmp_path / "float64.onnx")
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {init.data_type for init in proto.graph.initializer} == {onnx.TensorProto.FLOAT}


@pytest.fixture(scope="module")
def digits_model():
    """The demo's model, trained briefly on scikit-learn's digits: raw pixels in."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = digits.data.astype(np.float32), digits.target
    model = Sequential([Normalization(), Dense(64, activation="relu"),
                        Dense(64, activation="relu"), Dense(10, activation="softmax")],
                       input_dim=64, seed=0)
    model.layers[0].adapt(x)
    model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"])
    model.fit(x, y, epochs=5, batch_size=32, verbose=0)
    return model, x


def test_the_trained_digits_model_agrees_with_predict_on_every_digit(digits_model, tmp_path):
    model, x = digits_model
    check_export(model, tmp_path / "digits.onnx")
    session = ort.InferenceSession(tmp_path / "digits.onnx",
                                   providers=["CPUExecutionProvider"])
    (probabilities,) = session.run([OUTPUT_NAME], {INPUT_NAME: x})
    expected = model.predict(x)
    np.testing.assert_allclose(probabilities, expected, **TOLERANCE)
    assert np.array_equal(probabilities.argmax(axis=1), expected.argmax(axis=1))


# ----------------------------------------------------------------------------- the graph

def test_names_shapes_and_a_symbolic_batch_match_the_servers_signature(tmp_path):
    from minidl.serving.payload import INPUT_NAME as SERVED_INPUT
    from minidl.serving.payload import OUTPUT_NAME as SERVED_OUTPUT

    assert (INPUT_NAME, OUTPUT_NAME) == (SERVED_INPUT, SERVED_OUTPUT)
    model = built([Conv2D(2, 3, padding="same"), MaxPooling2D()], (6, 4, 3))
    export(model, tmp_path / "m.onnx")
    session = ort.InferenceSession(tmp_path / "m.onnx", providers=["CPUExecutionProvider"])
    (graph_input,), (graph_output,) = session.get_inputs(), session.get_outputs()
    assert (graph_input.name, graph_input.shape) == ("input", ["batch", 6, 4, 3])
    assert (graph_output.name, graph_output.shape) == ("output", ["batch", 3, 2, 2])
    rng = np.random.default_rng(0)
    for batch in (1, 7):  # one session, two batch sizes
        x = rng.standard_normal((batch, 6, 4, 3)).astype(np.float32)
        (y,) = session.run(None, {"input": x})
        np.testing.assert_allclose(y, model.predict(x), **TOLERANCE)


def test_metadata_holds_minidl_version_and_config_and_weights_keep_their_file_names(tmp_path):
    model = built([Normalization(mean=0.0, variance=1.0), Dense(3)], 2)
    proto = export(model, tmp_path / "m.onnx")
    props = {prop.key: prop.value for prop in proto.metadata_props}
    assert props["minidl_version"] == minidl.__version__
    assert json.loads(props["minidl_config"]) == model.get_config()
    assert (proto.producer_name, proto.producer_version) == ("minidl", minidl.__version__)
    initializers = {init.name: onnx.numpy_helper.to_array(init)
                    for init in proto.graph.initializer}
    np.testing.assert_array_equal(initializers["layers.1.kernel"], model.layers[1].kernel.data)


def test_consecutive_spatial_layers_share_one_transpose_in_and_one_out(tmp_path):
    model = built([Conv2D(4, 3, activation="relu"), BatchNormalization(), MaxPooling2D(),
                   Conv2D(4, 1), AveragePooling2D(), Flatten(), Dense(2)], (8, 8, 1))
    proto = export(model, tmp_path / "m.onnx")
    ops = [node.op_type for node in proto.graph.node]
    assert ops.count("Transpose") == 2
    assert ops[0] == "Transpose" and ops[ops.index("Flatten") - 1] == "Transpose"


@pytest.mark.parametrize("opset", [MIN_OPSET, 17, 21, onnx.defs.onnx_opset_version()])
def test_every_supported_opset_loads_in_onnx_runtime_with_the_oldest_ir_that_states_it(
        opset, tmp_path):
    layers = [Conv2D(2, 3, padding="same", activation="relu"), GlobalAveragePooling2D(),
              Dense(3, activation="softmax")]
    if opset >= 17:
        layers.insert(1, LayerNormalization())
    proto = check_export(built(layers, (5, 5, 1)), tmp_path / "m.onnx", opset=opset)
    assert proto.opset_import[0].version == opset
    assert proto.ir_version == onnx.helper.find_min_ir_version_for(proto.opset_import)
    assert proto.ir_version <= onnx.IR_VERSION


@pytest.mark.xfail(strict=True, reason="onnx's reference MaxPool reads 2-D pads as [top, "
                   "bottom, left, right] when the strides are 1 (onnx 1.23.2)")
def test_onnx_reference_maxpool_misreads_pads_with_unit_strides(tmp_path):
    model = built([MaxPooling2D(2, strides=1, padding="same")], (3, 3, 1))  # pads (0, 1) twice
    proto = export(model, tmp_path / "m.onnx")
    x = inputs_for(model, np.random.default_rng(0))
    (reference,) = ReferenceEvaluator(proto).run(None, {INPUT_NAME: x})
    assert reference.shape == model.predict(x).shape  # (3, 2, 4, 1) instead of (3, 3, 3, 1)


def test_embedding_indices_out_of_range_or_negative_are_refused_as_predict_refuses(tmp_path):
    model = built([Embedding(5, 2)], (3,))
    proto = export(model, tmp_path / "m.onnx")
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    session = ort.InferenceSession(tmp_path / "m.onnx", providers=["CPUExecutionProvider"])
    ort.set_default_logger_severity(4)  # the refusal is the test: no error log on stderr
    try:
        for index in (5, -1):
            bad = np.array([[0, index, 1]])
            with pytest.raises(ValueError, match="out of range"):
                model.predict(bad)
            with pytest.raises(ort.capi.onnxruntime_pybind11_state.InvalidArgument,
                               match="out of data bounds"):
                session.run(None, {"input": bad})
    finally:
        ort.set_default_logger_severity(2)


# ----------------------------------------------------------------------------- refusals

class Scale(Layer):
    """A layer of a user's own: y = 2 x."""

    def forward(self, x, training=False):
        return 2 * self._float_input(x)

    def backward(self, grad_y):
        return 2 * grad_y


class MyDense(Dense):
    """A subclass may compute anything: it is not exported as a Dense."""


def test_a_layer_without_a_converter_is_named_in_the_error(tmp_path):
    model = Sequential([Dense(3), Scale(), MyDense(2)], input_dim=2)
    assert [problem.split(":")[0] for problem in can_export(model)] == [
        "layers[1] (Scale)", "layers[2] (MyDense)"]
    with pytest.raises(ValueError, match=r"layers\[1\] \(Scale\): no ONNX converter"):
        export(model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_embedding_later_than_first_and_unbuilt_models_are_refused(tmp_path):
    later = Sequential([Reshape((3,)), Embedding(4, 2)], input_dim=3)
    assert can_export(later) == ["layers[1] (Embedding): an Embedding can be exported only as "
                                 "the first layer, where its indices are the model's input"]
    assert can_export(Sequential([Dense(2)]))[0].startswith("the model is not built")
    with pytest.raises(ValueError, match="not built"):
        export(Sequential([Dense(2)]), tmp_path / "m.onnx")


@pytest.mark.parametrize("opset, error, message", [
    (MIN_OPSET - 1, ValueError, "opset 12 is not supported; give one from 13"),
    (onnx.defs.onnx_opset_version() + 1, ValueError, "is not supported"),
    ("17", TypeError, "opset must be an int"),
])
def test_opsets_outside_the_supported_range_are_refused(opset, error, message, tmp_path):
    with pytest.raises(error, match=message):
        export(built([Dense(2)], 2), tmp_path / "m.onnx", opset=opset)


def test_layer_normalization_needs_opset_17_and_says_where(tmp_path):
    model = built([Dense(4), LayerNormalization()], 2)
    with pytest.raises(ValueError, match=r"layers\[1\] \(LayerNormalization\): the ONNX "
                                         r"operator LayerNormalization needs opset 17"):
        export(model, tmp_path / "m.onnx", opset=16)


# ----------------------------------------------------------------------------- the CLI

def test_minidl_export_writes_a_file_onnx_runtime_runs_and_info_says_so(tmp_path, capsys):
    model = built([Conv2D(2, 3, activation="relu"), Flatten(), Dense(3)], (5, 5, 1))
    model.save(tmp_path / "model.npz")
    assert main(["info", str(tmp_path / "model.npz")]) == 0
    assert "onnx export:     yes" in capsys.readouterr().out
    onnx_path = tmp_path / "new folder" / "m.onnx"  # created, as model.save creates its own
    assert main(["export", str(tmp_path / "model.npz"), "-o", str(onnx_path),
                 "--opset", "18"]) == 0
    assert "ONNX opset 18" in capsys.readouterr().err
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 5, 5, 1)).astype(np.float32)
    np.testing.assert_allclose(session.run(None, {"input": x})[0], model.predict(x),
                               **TOLERANCE)


def test_minidl_export_has_help_naming_the_extra(capsys):
    with pytest.raises(SystemExit) as done:
        main(["export", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: minidl export") and "'onnx' extra" in out


def test_minidl_info_names_the_layer_that_cannot_be_exported(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(LAYERS, "Scale", Scale)  # registered for the file, for this test only
    Sequential([Dense(2), Scale()], input_dim=2).save(tmp_path / "model.npz")
    assert main(["info", str(tmp_path / "model.npz")]) == 0
    (line,) = [line for line in capsys.readouterr().out.splitlines()
               if line.startswith("onnx export:")]
    assert line.startswith("onnx export:     no: layers[1] (Scale): no ONNX converter")
    assert main(["export", str(tmp_path / "model.npz"), "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("minidl: error: minidl.onnx.export: cannot export") and "Scale" in err
    assert len(err.strip().splitlines()) == 1


def test_without_onnx_export_names_the_extra_and_info_still_answers(tmp_path):
    built([Dense(2)], 2).save(tmp_path / "model.npz")
    code = ("import sys; sys.modules['onnx'] = None\n"
            "from minidl.cli import main\n"
            f"assert main(['info', {str(tmp_path / 'model.npz')!r}]) == 0\n"
            f"sys.exit(main(['export', {str(tmp_path / 'model.npz')!r}, '-o', 'm.onnx']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "onnx export:     yes" in done.stdout
    assert done.stderr.strip() == (
        "minidl: error: onnx is not installed; this part of minidl needs the 'onnx' extra: "
        "pip install 'minidl[onnx]'")
    assert not (tmp_path / "m.onnx").exists()


# ----------------------------------------------------------------------------- the docs

def test_the_examples_of_docs_onnx_md_run_and_print_what_the_page_shows(
        tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```(\w+)\n(.*?)```", (ROOT / "docs" / "onnx.md").read_text(), re.S)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    shown = 0
    for (language, code), (next_language, next_code) in zip(blocks, [*blocks[1:], ("", "")],
                                                            strict=True):
        if language != "python":
            continue
        exec(compile(code, "docs/onnx.md", "exec"), namespace)
        printed = capsys.readouterr().out
        if next_language == "text":  # the output the page shows
            assert printed == next_code
            shown += 1
    assert shown == 3
