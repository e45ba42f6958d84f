"""minidl: a deep-learning library written from scratch in NumPy.

The public face: the model, its building blocks and the file format, re-exported from the
modules that define them (``minidl.layers``, ``minidl.optim``, ...). ``minidl.functional``,
``minidl.metrics``, ``minidl.data`` and ``minidl.testing`` are used as modules.
"""

__version__ = "0.1.0"

from minidl import data, functional, metrics, regularizers
from minidl.callbacks import (
    Callback,
    EarlyStopping,
    History,
    LambdaCallback,
    LearningRateScheduler,
    ModelCheckpoint,
    ProgressBar,
)
from minidl.io import ModelFormatError
from minidl.layers import (
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
    register_layer,
)
from minidl.losses import (
    BinaryCrossEntropy,
    CrossEntropy,
    Loss,
    MeanAbsoluteError,
    MeanSquaredError,
)
from minidl.model import Sequential, load_model
from minidl.optim import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop
from minidl.parameter import Parameter
from minidl.regularizers import L1, L1L2, L2

__all__ = [
    "L1", "L1L2", "L2", "SGD", "Adagrad", "Adam", "AdamW", "AveragePooling2D",
    "BatchNormalization", "BinaryCrossEntropy", "Callback", "Conv2D", "CrossEntropy", "Dense",
    "Dropout",
    "EarlyStopping", "Embedding", "Flatten", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
    "History", "LambdaCallback", "Layer", "LayerNormalization", "LeakyReLU",
    "LearningRateScheduler", "Linear", "Loss", "MaxPooling2D", "MeanAbsoluteError",
    "MeanSquaredError", "ModelCheckpoint", "ModelFormatError", "Normalization", "Optimizer",
    "Parameter", "ProgressBar", "RMSprop", "ReLU", "Reshape", "Sequential", "Sigmoid",
    "Softmax", "Tanh", "__version__", "data", "functional", "load_model", "metrics",
    "register_layer", "regularizers",
]
