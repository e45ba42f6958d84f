r"""``Sequential``: a stack of layers, with Keras' ``compile``, ``fit``, ``evaluate``, ``predict``.

One training step on a batch ``(x, y)`` is the whole of backpropagation:

.. code-block:: text

    output = step_k(... step_1(x))            forward, each step caching what it needs
    loss   = loss_fn(output, y) + Σ penalty(θ)
    grad   = ∂loss/∂output                    loss_fn.backward()
    grad   = step_i.backward(grad)            for i = k .. 1, writing ∂loss/∂θ into θ.grad
    θ      ← optimizer rule(θ, θ.grad)        optimizer.step()

The steps are the layers' ``steps()``: most layers are one step, a ``Dense`` layer with an
activation is two (its affine map, then its activation). When the last step is the
activation that the loss fuses with (``Layer.fused_activation``, ``Loss.fuses_with``: a
softmax with cross-entropy, a sigmoid with binary cross-entropy), training stops before it
and applies ``loss.on_logits()`` to the logits ``z``, whose gradient ``(softmax(z) - y) / N``
never forms the softmax Jacobian and stays finite for logits of ±1e4. ``predict`` still
returns the probabilities. The model never asks what class a layer or a loss is.

Structure lives here; the training loop in ``minidl.model.training``; the file in
``minidl.model.saving``.
"""

from __future__ import annotations

import copy
import os
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from minidl import losses as losses_module
from minidl import metrics as metrics_module
from minidl import optim as optim_module
from minidl.callbacks import History
from minidl.layers import Layer, layer_to_config
from minidl.losses import Loss
from minidl.model import saving
from minidl.model.training import ArrayLike, Trainer
from minidl.optim import Optimizer
from minidl.parameter import Parameter, store_end_to_end, view_members


class Sequential(Trainer):
    """A stack of layers applied in order, trained by backpropagation.

    ``Sequential([Dense(64, activation="relu"), Dense(10)], input_dim=64, seed=0)``.
    With ``input_dim`` (features per example; a tuple for inputs that a ``Flatten`` layer
    flattens), or a first layer that declares its input (Keras' ``Dense(1, input_shape=[1])``),
    the model is built at once, so ``model.parameters()`` can be handed to an optimizer
    before ``compile``; without either, the first batch builds it. ``seed`` makes the
    initial weights, the shuffling and the dropout masks reproducible: the same seed and data
    give bit-identical weights after ``fit``. ``dtype`` is "float32" (default) or "float64".
    """

    def __init__(self, layers: Iterable[Layer] | None = None,
                 input_dim: int | Sequence[int] | None = None, seed: int | None = None,
                 dtype: str = "float32") -> None:
        self.layers: list[Layer] = list(layers or [])
        for index, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: layers[{index}] must be a minidl Layer, "
                                f"got {type(layer).__name__}")
            # a layer holds its parameters and its place in one model's backpropagation
            # (needs_input_grad): a second model would rebuild it under the first one's feet
            owner = getattr(layer, "_model", None)
            if owner is not None and owner() is not None:
                raise ValueError(f"Sequential: layers[{index}] ({type(layer).__name__}) "
                                 f"already belongs to another model; give each model layers "
                                 f"of its own (layer_from_config(layer_to_config(layer)) "
                                 f"copies one's configuration)")
        for layer in self.layers:
            layer._model = weakref.ref(self)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"Sequential: dtype must be 'float32' or 'float64', got {dtype!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"Sequential: seed must be a non-negative int or None, got {seed!r}")
        self.seed = seed
        # two independent streams: adding a layer must not change the order of the batches
        init_seed, shuffle_seed = np.random.SeedSequence(seed).spawn(2)
        self._init_rng = np.random.default_rng(init_seed)
        self.shuffle_rng = np.random.default_rng(shuffle_seed)
        self.input_shape: tuple[int, ...] | None = None
        self.output_shape: tuple[int, ...] | None = None
        self.optimizer: Optimizer | None = None
        self.loss: Loss | None = None
        self.metrics: list[str] = []
        self._metric_functions: dict[str, Any] = {}
        self._optimizer_spec: str | Optimizer | None = None
        self.stop_training = False
        self.epoch = 0  # epochs completed: what fit(initial_epoch=...) resumes from
        # set by a callback in on_train_begin: where fit starts instead (BackupAndRestore)
        self._initial_epoch: int | None = None
        self.history: History | None = None
        declared = self.layers[0].declared_input_shape() if self.layers else None
        if input_dim is not None and declared is not None and as_shape(input_dim) != declared:
            raise ValueError(f"Sequential: input_dim={input_dim!r} but the first layer "
                             f"expects inputs of shape {list(declared)}; give one of them")
        if input_dim is not None or declared is not None:
            self.build(as_shape(input_dim) if input_dim is not None else declared)

    # ------------------------------------------------------------------ structure

    @property
    def built(self) -> bool:
        return self.input_shape is not None

    def build(self, input_shape: tuple[int, ...]) -> None:
        """Create every layer's parameters for examples of ``input_shape`` (no batch axis)."""
        if not self.layers:
            raise ValueError("Sequential: the model has no layers")
        shape = tuple(int(n) for n in input_shape)
        for index, layer in enumerate(self.layers):
            try:
                layer.build(shape, dtype=self.dtype, rng=self._init_rng)
                shape = layer.compute_output_shape(shape)
            except ValueError as error:
                raise ValueError(f"Sequential: layers[{index}] ({type(layer).__name__}): "
                                 f"{error}") from error
        self.input_shape = tuple(int(n) for n in input_shape)
        self.output_shape = shape
        self._steps = [step for layer in self.layers for step in layer.steps()]
        # Below the first step with parameters nobody needs a gradient: backpropagation stops
        # there, and that step skips its input gradient (the data's)
        self._first_trainable = next(
            (i for i, step in enumerate(self._steps) if step.parameters()), len(self._steps))
        for index, step in enumerate(self._steps):
            step.needs_input_grad = index != self._first_trainable
        if self.parameters():
            # one buffer for every parameter, one for every gradient: the optimizer then
            # updates the model in a handful of NumPy calls (minidl.parameter)
            store_end_to_end(self.parameters())
        if self._optimizer_spec is not None:
            self.optimizer = optim_module.get(self._optimizer_spec, self.parameters())

    def __deepcopy__(self, memo: dict[int, Any]) -> Sequential:
        """A deep copy that trains as the original does (what scikit-learn's ``clone`` makes
        of a model given to an estimator): NumPy copies each view of the one parameter buffer
        as an array of its own, so the copy's parameters are made views of its buffer again,
        and its layers belong to the copy."""
        copied = Sequential.__new__(Sequential)
        memo[id(self)] = copied
        for key, value in self.__dict__.items():
            copied.__dict__[key] = copy.deepcopy(value, memo)
        for layer in copied.layers:
            layer._model = weakref.ref(copied)
        params = copied.parameters()
        if params and params[0].storage is not None:
            view_members(params[0].storage)
            if copied.optimizer is not None:
                copied.optimizer.refresh_state_views()
        return copied

    def parameters(self) -> list[Parameter]:
        """Every trainable parameter, layer by layer, each layer's kernel before its bias."""
        return [p for layer in self.layers for p in layer.parameters()]

    def get_weights(self) -> list[np.ndarray]:
        """Copies of every saved array, layer by layer: each layer's parameters (kernel
        before bias), then its state (e.g. ``Normalization``'s mean and variance), as Keras
        orders them."""
        return [array.copy() for array in self._weight_arrays().values()]

    def set_weights(self, weights: Sequence[ArrayLike]) -> None:
        """Overwrite what ``get_weights`` lists, in place (optimizers keep their references)."""
        targets = self._weight_arrays()
        if len(weights) != len(targets):
            raise ValueError(f"set_weights: got {len(weights)} arrays but the model has "
                             f"{len(targets)} weights ({', '.join(targets)})")
        arrays = [np.asarray(w) for w in weights]
        for index, ((name, target), array) in enumerate(
                zip(targets.items(), arrays, strict=True)):
            if array.shape != target.shape:
                raise ValueError(f"set_weights: weights[{index}] has shape {array.shape} but "
                                 f"{name} has shape {target.shape}")
            if array.dtype.kind not in "fiu":
                raise TypeError(f"set_weights: weights[{index}] must be numeric, "
                                f"got dtype {array.dtype}")
        self._assign_weights(dict(zip(targets, arrays, strict=True)))

    def _assign_weights(self, arrays: dict[str, np.ndarray]) -> None:
        """Write ``arrays`` (by key) into the model in place, then ask every layer whether its
        state can be right (``Layer.check_state``); if not, put the old values back and raise
        a ValueError naming the layer."""
        targets = self._weight_arrays()
        previous = {key: target.copy() for key, target in targets.items()}
        for key, target in targets.items():
            target[...] = arrays[key]
        for index, layer in enumerate(self.layers):
            try:
                layer.check_state()
            except ValueError as error:
                for key, target in targets.items():
                    target[...] = previous[key]
                raise ValueError(f"layers[{index}] ({type(layer).__name__}): {error}") from error

    def summary(self) -> str:
        """Print and return a table of the layers, output shapes and parameter counts."""
        if not self.built:
            raise ValueError("summary: the model is not built yet; give input_dim or call fit")
        rows = [("Layer (type)", "Output shape", "Params")]
        shape = self.input_shape
        for index, layer in enumerate(self.layers):
            shape = layer.compute_output_shape(shape)
            count = sum(p.data.size for p in layer.parameters()) + sum(
                array.size for array in layer.state().values())
            # a layer of several steps (Dense with an activation) names the steps after its first
            kind = ", ".join([type(layer).__name__] +
                             [type(step).__name__ for step in layer.steps()[1:]])
            rows.append((f"{index}: {kind}", str((None, *shape)), f"{count:,}"))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        rule = "-" * (sum(widths) + 4)
        lines = [rule]
        for i, row in enumerate(rows):
            lines.append(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}")
            if i == 0:
                lines.append(rule)
        total = sum(array.size for array in self._weight_arrays().values())
        trainable = sum(p.data.size for p in self.parameters())
        lines += [rule, f"Total params: {total:,} ({self.dtype})"]
        if trainable != total:
            lines += [f"Trainable params: {trainable:,}",
                      f"Non-trainable params: {total - trainable:,}"]
        lines.append(rule)
        text = "\n".join(lines)
        print(text)
        return text

    # ------------------------------------------------------------------ compile

    def compile(self, optimizer: str | Optimizer = "adam", loss: str | Loss = "cross_entropy",
                metrics: Sequence[str | Any] | None = None) -> None:
        """Choose the optimizer, the loss and the metrics reported during training.

        Names or objects: ``optimizer`` in "sgd", "momentum", "adagrad", "adam", "adamw",
        "rmsprop" or an ``Optimizer`` built on ``model.parameters()``; ``loss`` a ``Loss`` or
        a name (``minidl.losses.get``): Keras' "sparse_categorical_crossentropy",
        "categorical_crossentropy", "binary_crossentropy", "mse", "mae", "huber"... (Keras'
        classes, on probabilities) or minidl's "cross_entropy", "binary_cross_entropy" (on
        logits, as PyTorch's); ``metrics`` names from ``minidl.metrics.METRICS`` (Keras'
        "acc", "accuracy", "auc"...) or functions ``(y_true, y_pred, sample_weight=None) ->
        float``, each logged under the name given, as Keras does.
        """
        # everything is checked before anything changes: a failed compile leaves the model as it was
        loss_fn = losses_module.get(loss)
        if getattr(loss_fn, "reduction", "") in (None, "none"):
            raise ValueError("compile: a loss with reduction=None gives one loss per sample, "
                             "but training needs one number per batch; use the default "
                             "reduction 'sum_over_batch_size' (or 'sum')")
        metric_functions = {}
        for metric in metrics or []:
            function = metrics_module.get(metric)
            metric_functions[metric if isinstance(metric, str) else function.__name__] = function
        if isinstance(optimizer, Optimizer) and not self.built:
            raise ValueError("compile: an Optimizer instance needs the model's parameters; "
                             "give Sequential an input_dim so it is built before compile")
        if self.built:
            self.optimizer = optim_module.get(optimizer, self.parameters())
        else:
            # check the name now; the optimizer itself is made by build, once parameters exist
            optim_module.get(optimizer, [Parameter(np.zeros(1))])
            self.optimizer = None
        self._optimizer_spec = optimizer
        self.loss = loss_fn
        self.metrics, self._metric_functions = list(metric_functions), metric_functions

    def get_compile_config(self) -> dict[str, Any] | None:
        """``compile``'s arguments as data (Keras' name), None before ``compile``: the
        optimizer as ``{"class_name", "config"}`` (while the model is not built, the name
        ``compile`` was given), the loss's ``{"class_name", "config"}``, and the metrics as
        ``compile`` got them: names, or functions. :meth:`compile_from_config` takes it."""
        if self.loss is None:
            return None
        optimizer = (self._optimizer_spec if self.optimizer is None
                     else optim_module.serialize(self.optimizer))
        return {"optimizer": optimizer, "loss": losses_module.serialize(self.loss),
                "metrics": [name if name in metrics_module.METRICS else function
                            for name, function in self._metric_functions.items()]}

    def compile_from_config(self, config: dict[str, Any]) -> None:
        """``compile`` with the arguments of :meth:`get_compile_config` (Keras' name); a
        built model builds its optimizer from ``{"class_name", "config"}`` at once."""
        optimizer = config["optimizer"]
        if self.built:
            optimizer = optim_module.deserialize(optimizer, self.parameters())
        self.compile(optimizer=optimizer, loss=losses_module.deserialize(config["loss"]),
                     metrics=config.get("metrics") or [])

    @property
    def fused_output(self) -> bool:
        """True when training runs on the logits before the output activation: the last step
        is the activation the loss fuses with (module docstring)."""
        if self.loss is None or self.loss.fuses_with is None or not self.layers:
            return False
        return self.layers[-1].steps()[-1].fused_activation() == self.loss.fuses_with

    # ------------------------------------------------------------------ persistence

    def get_config(self) -> dict[str, Any]:
        """The architecture as JSON-able data: what ``load_model`` rebuilds the model from."""
        return {"layers": [layer_to_config(layer) for layer in self.layers],
                "input_dim": None if self.input_shape is None else list(self.input_shape),
                "seed": self.seed, "dtype": self.dtype.name}

    def save(self, path: str | os.PathLike, include_optimizer: bool = True) -> None:
        """Write the model to one ``.npz`` file (atomically; see ``docs/format.md``),
        creating its folder if needed.

        A path that names a folder (an existing one, one ending in ``/``, or a name without
        a suffix, such as TensorFlow Serving's ``export/linear/1``) gets ``model.npz``
        inside it: ``BASE/<version>/model.npz`` is what ``minidl serve`` reads. Any other
        name is used as given; the content is minidl's format whatever the suffix
        (``my_model.h5`` included).

        ``path`` may be an fsspec URL, such as ``s3://bucket/models/digits/3`` (with the
        ``s3`` extra; docs/storage.md): the file is written locally, then uploaded, which
        on S3 replaces the object whole or, when the upload fails, not at all.

        The file holds the architecture, the weights, the compile arguments and, with
        ``include_optimizer``, the optimizer state, the epoch counter and the random
        generators' states, so that ``load_model`` + ``fit(initial_epoch=...)`` resumes
        exactly.
        """
        saving.save_model(self, path, include_optimizer=include_optimizer)

    def save_weights(self, path: str | os.PathLike) -> None:
        """Write only the weights (and the architecture, to check them against on load);
        ``path`` as for ``save``, a URL included."""
        saving.save_weights(self, path)

    def load_weights(self, path: str | os.PathLike) -> None:
        """Load weights saved by ``save_weights`` or ``save`` into this (same-shaped) model;
        ``path`` may be a URL, as for ``save``."""
        saving.load_weights(self, path)

    def _weight_arrays(self) -> dict[str, np.ndarray]:
        """Every saved array under its key in the file (``layers.0.kernel``,
        ``layers.0.mean``...): the arrays themselves, so writing into them sets the model."""
        arrays = {}
        for index, layer in enumerate(self.layers):
            named = [(param.name, param.data) for param in layer.parameters()]
            for name, array in [*named, *layer.state().items()]:
                key = f"layers.{index}.{name}"
                if key in arrays:
                    raise ValueError(f"layers[{index}] ({type(layer).__name__}) has two arrays "
                                     f"named {name!r}: every parameter and state array of a "
                                     f"layer needs a name of its own")
                arrays[key] = array
        return arrays

    def _generators(self) -> dict[str, np.random.Generator]:
        """The random generators whose states resume training exactly, by name."""
        generators = {"shuffle": self.shuffle_rng}
        for index, layer in enumerate(self.layers):
            generator = layer.generator()
            if generator is not None:
                generators[f"layers.{index}"] = generator
        return generators


def as_shape(input_dim: int | Sequence[int]) -> tuple[int, ...]:
    """``input_dim`` (an int or a sequence of them) as an example shape."""
    shape = (input_dim,) if isinstance(input_dim, (int, np.integer)) else tuple(input_dim)
    if not shape or any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1
                        for n in shape):
        raise ValueError(f"Sequential: input_dim must be a positive int or a tuple of them, "
                         f"got {input_dim!r}")
    return tuple(int(n) for n in shape)
