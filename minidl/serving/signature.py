"""The metadata answer's signature: what a served model takes and gives, in TF Serving's
layout (``GET /v1/models/{name}/metadata``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from minidl.serving.payload import INPUT_NAME, OUTPUT_NAME, SIGNATURE_NAME


def dtype_name(dtype: np.dtype) -> str:
    """TensorFlow's name for a NumPy dtype, as metadata reports it."""
    names = {"float16": "DT_HALF", "float32": "DT_FLOAT", "float64": "DT_DOUBLE",
             "int32": "DT_INT32", "int64": "DT_INT64"}
    return names.get(np.dtype(dtype).name, "DT_INVALID")


def signature_def(input_shape: tuple[int, ...], output_shape: tuple[int, ...],
                  dtype: np.dtype) -> dict[str, Any]:
    """The ``serving_default`` signature of a model: the ``SignatureDefMap`` TF Serving's
    metadata answer holds, every field written as its JSON printer writes it (dimension
    names, ``defaults``, ``unknown_rank`` included)."""

    def tensor(name: str, shape: tuple[int, ...]) -> dict[str, Any]:
        return {"dtype": dtype_name(dtype),
                "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in (-1, *shape)],
                                 "unknown_rank": False},
                "name": name}

    return {"signature_def": {SIGNATURE_NAME: {
        "inputs": {INPUT_NAME: tensor(INPUT_NAME, tuple(input_shape))},
        "outputs": {OUTPUT_NAME: tensor(OUTPUT_NAME, tuple(output_shape))},
        "method_name": "tensorflow/serving/predict",
        "defaults": {}}}}
