"""Training losses: a value for the batch and its gradient with respect to the predictions.

A loss is called as ``loss(pred, target, sample_weight=None)`` (minidl's order: predictions
first, the reverse of Keras' ``(y_true, y_pred)``); the call keeps what ``backward()`` needs,
and ``backward()`` returns ``d value / d pred`` with the shape and dtype of ``pred``.

Two families, one file each:

* Keras' losses, with Keras' names, arguments, defaults, reductions and sample weights
  (:mod:`~minidl.losses.probabilistic`, :mod:`~minidl.losses.regression`,
  :mod:`~minidl.losses.hinge`, on the reduction of :mod:`~minidl.losses.base`). Keras' string
  names (``"mse"``, ``"categorical_crossentropy"``, ...) give these.
* minidl's first, PyTorch-defined ``CrossEntropy`` and ``BinaryCrossEntropy``
  (:mod:`~minidl.losses.pytorch`), which read logits; ``"cross_entropy"`` and
  ``"binary_cross_entropy"`` give these.

``MeanSquaredError`` and ``MeanAbsoluteError`` are Keras' (without weights their value is
PyTorch's mean over all elements, as before). Every class is in ``LOSSES``, so that models
saved with any of them, by this version or an earlier one, load back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from minidl.losses.base import Loss, ReducedLoss
from minidl.losses.hinge import CategoricalHinge, Hinge, SquaredHinge
from minidl.losses.probabilistic import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    KLDivergence,
    Poisson,
    SparseCategoricalCrossentropy,
)
from minidl.losses.pytorch import BinaryCrossEntropy, CrossEntropy
from minidl.losses.regression import (
    CosineSimilarity,
    Huber,
    LogCosh,
    MeanAbsoluteError,
    MeanAbsolutePercentageError,
    MeanSquaredError,
    MeanSquaredLogarithmicError,
)
from minidl.registry import class_and_config, resolve, to_spec

__all__ = [
    "LOSSES", "BinaryCrossEntropy", "BinaryCrossentropy", "CategoricalCrossentropy",
    "CategoricalHinge", "CosineSimilarity", "CrossEntropy", "Hinge", "Huber", "KLDivergence",
    "LogCosh", "Loss", "MeanAbsoluteError", "MeanAbsolutePercentageError", "MeanSquaredError",
    "MeanSquaredLogarithmicError", "Poisson", "ReducedLoss", "SparseCategoricalCrossentropy",
    "SquaredHinge", "deserialize", "get", "serialize",
]

LOSSES: dict[str, type[Loss]] = {
    cls.__name__: cls for cls in (
        CrossEntropy, BinaryCrossEntropy, MeanSquaredError, MeanAbsoluteError,
        MeanAbsolutePercentageError, MeanSquaredLogarithmicError, BinaryCrossentropy,
        CategoricalCrossentropy, SparseCategoricalCrossentropy, Huber, LogCosh, KLDivergence,
        Poisson, Hinge, SquaredHinge, CategoricalHinge, CosineSimilarity)
}

# The function names and aliases that Keras' losses.get accepts, and minidl's own two names.
# Keras' names keep Keras' default from_logits=False (the model's output is probabilities);
# minidl's read logits, as PyTorch's losses do. Either way a softmax or sigmoid output layer
# is fused with the loss in training (minidl.model), so the spellings train alike.
_NAMES: dict[str, type[Loss]] = {
    "cross_entropy": CrossEntropy,
    "binary_cross_entropy": BinaryCrossEntropy,
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError, "MSE": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError,
    "MAE": MeanAbsoluteError,
    "mean_absolute_percentage_error": MeanAbsolutePercentageError,
    "mape": MeanAbsolutePercentageError, "MAPE": MeanAbsolutePercentageError,
    "mean_squared_logarithmic_error": MeanSquaredLogarithmicError,
    "msle": MeanSquaredLogarithmicError, "MSLE": MeanSquaredLogarithmicError,
    "binary_crossentropy": BinaryCrossentropy, "bce": BinaryCrossentropy,
    "BCE": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "huber": Huber,
    "log_cosh": LogCosh, "logcosh": LogCosh,
    "kl_divergence": KLDivergence, "kld": KLDivergence, "KLD": KLDivergence,
    "kullback_leibler_divergence": KLDivergence,
    "poisson": Poisson,
    "hinge": Hinge, "squared_hinge": SquaredHinge, "categorical_hinge": CategoricalHinge,
    "cosine_similarity": CosineSimilarity,
}


def get(identifier: str | Loss | type[Loss] | Mapping[str, Any] | None) -> Loss | None:
    """A loss, as Keras' ``losses.get``: a name (a function name or alias in ``_NAMES``, or a
    class name in ``LOSSES``) gives a new loss with default arguments; a Loss is returned as
    is, a Loss class is instantiated, a ``{"class_name", "config"}`` dict is deserialized,
    and None stays None."""
    return resolve(identifier, Loss, _NAMES, LOSSES, deserialize, "loss")


def serialize(loss: Loss | None) -> dict[str, Any] | None:
    """``{"class_name": ..., "config": ...}`` for a registered loss; None for None."""
    if loss is None:
        return None
    if not isinstance(loss, Loss):
        raise TypeError(f"serialize: expected a Loss or None, got {type(loss).__name__}")
    return to_spec(loss, LOSSES, "minidl.losses.LOSSES")


def deserialize(spec: Mapping[str, Any] | Loss | None) -> Loss | None:
    """The loss described by ``spec``: None, a Loss (returned as is), or a dict
    ``{"class_name": name in LOSSES, "config": {...}}``."""
    if spec is None or isinstance(spec, Loss):
        return spec
    cls, config = class_and_config(spec, LOSSES, "loss")
    return cls.from_config(config)
