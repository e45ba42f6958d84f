r"""``Sequential``: a stack of layers, with Keras' ``compile``, ``fit``, ``evaluate``, ``predict``.

One training step on a batch ``(x, y)`` is the whole of backpropagation:

.. code-block:: text

    output = layer_k(... layer_1(x))          forward, each layer caching what it needs
    loss   = loss_fn(output, y) + Σ penalty(θ)
    grad   = ∂loss/∂output                    loss_fn.backward()
    grad   = layer_i.backward(grad)           for i = k .. 1, writing ∂loss/∂θ into θ.grad
    θ      ← optimizer rule(θ, θ.grad)        optimizer.step()

When the last layer is a softmax and the loss is cross-entropy, the step runs on the logits
``z`` before the softmax and uses the fused gradient ``(softmax(z) - y) / N``: it never forms
the softmax Jacobian and stays finite for logits of ±1e4. ``predict`` still returns the
probabilities.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from minidl import functional as F
from minidl import io
from minidl import losses as losses_module
from minidl import metrics as metrics_module
from minidl import optim as optim_module
from minidl.callbacks import Callback, History, ProgressBar
from minidl.data import batches
from minidl.layers import (
    Dense,
    Dropout,
    Layer,
    Sigmoid,
    Softmax,
    layer_from_config,
    layer_to_config,
)
from minidl.losses import BinaryCrossEntropy, CrossEntropy, Loss
from minidl.optim import Optimizer
from minidl.parameter import Parameter

ArrayLike = Any


class Sequential:
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
        self.history: History | None = None
        declared = self.layers[0].declared_input_shape() if self.layers else None
        if input_dim is not None and declared is not None and _as_shape(input_dim) != declared:
            raise ValueError(f"Sequential: input_dim={input_dim!r} but the first layer "
                             f"expects inputs of shape {list(declared)}; give one of them")
        if input_dim is not None or declared is not None:
            self.build(_as_shape(input_dim) if input_dim is not None else declared)

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
        self._first_trainable = next(
            (i for i, layer in enumerate(self.layers) if layer.parameters()), len(self.layers))
        self._store_end_to_end()
        if self._optimizer_spec is not None:
            self.optimizer = optim_module.get(self._optimizer_spec, self.parameters())

    def _store_end_to_end(self) -> None:
        """Move every parameter, and every gradient, into one buffer each, end to end.

        Each ``p.data`` and ``p.grad`` becomes a view of its piece, so layers work as before,
        while an optimizer sees one array to update (see ``minidl.optim.Optimizer``).
        """
        params = self.parameters()
        if not params:
            return
        data = np.concatenate([p.data.ravel() for p in params])
        grad = np.zeros_like(data)
        start = 0
        for param in params:
            stop = start + param.data.size
            param.data = data[start:stop].reshape(param.shape)
            param.grad = grad[start:stop].reshape(param.shape)
            start = stop

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
        for target, array in zip(targets.values(), arrays, strict=True):
            target[...] = array

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
            activation = getattr(layer, "activation", None)
            kind = type(layer).__name__
            if activation is not None:
                kind += f", {type(activation).__name__}"
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
        a name: minidl's "cross_entropy", "binary_cross_entropy", "mse", "mae" (on logits) or
        Keras' "sparse_categorical_crossentropy", "categorical_crossentropy",
        "binary_crossentropy" (on probabilities), "mean_squared_error"/"MSE",
        "mean_absolute_error"/"MAE"; ``metrics`` names
        from ``minidl.metrics.METRICS`` or functions ``(y_true, y_pred) -> float``.
        """
        # everything is checked before anything changes: a failed compile leaves the model as it was
        loss_fn = losses_module.get(loss)
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

    @property
    def fused_output(self) -> bool:
        """True when training runs on the logits before the output activation: a final softmax
        with cross-entropy, or a final sigmoid with binary cross-entropy (module docstring)."""
        if not self.layers:
            return False
        last = self.layers[-1]
        head = last.activation if isinstance(last, Dense) else last
        if isinstance(self.loss, CrossEntropy):
            return isinstance(head, Softmax) and head.axis in (-1, 1)
        return isinstance(self.loss, BinaryCrossEntropy) and isinstance(head, Sigmoid)

    def _training_loss(self) -> Loss:
        """The loss as training applies it: to logits when the output activation is fused,
        whatever ``from_logits`` the compiled loss says."""
        if not self.fused_output:
            return self.loss
        if isinstance(self.loss, CrossEntropy):
            return CrossEntropy(label_smoothing=self.loss.label_smoothing)
        return BinaryCrossEntropy(from_logits=True)

    def _metric_input(self, loss_fn: Loss, output: np.ndarray) -> np.ndarray:
        """What the metrics see: probabilities whenever ``loss_fn`` reads logits, so that
        accuracy thresholds a sigmoid's output at 0.5, never a logit."""
        if isinstance(loss_fn, CrossEntropy) and loss_fn.from_logits:
            return F.softmax(output)
        if isinstance(loss_fn, BinaryCrossEntropy) and loss_fn.from_logits:
            return F.sigmoid(output)
        return output

    def _check_y(self, where: str, y: ArrayLike, rows: int) -> np.ndarray:
        y = np.asarray(y)
        if len(y) != rows:
            raise ValueError(f"{where}: x has {rows} rows but y has {len(y)}")
        if y.ndim == 1 and self.output_shape == (1,) and not isinstance(self.loss, CrossEntropy):
            y = y[:, None]  # one target per row for a one-unit output, as Keras accepts
        return y

    # ------------------------------------------------------------------ forward / backward

    def _check_x(self, where: str, x: ArrayLike) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype.kind not in "fiub":
            raise TypeError(f"{where}: x must be a numeric array, got dtype {x.dtype}")
        if x.ndim == 1 and self.input_shape == (1,):
            x = x[:, None]  # one value per row for a one-feature model, as Keras accepts
        if x.ndim < 2:
            if not self.built:
                hint = ("for rows of one feature each write x[:, None], for a single example "
                        "x[None]")
            elif x.shape == self.input_shape:
                hint = "a single example: write x[None]"
            else:
                hint = f"the model expects examples of shape {self.input_shape}"
            raise ValueError(f"{where}: x must have shape (batch, features...), got shape "
                             f"{x.shape}; {hint}")
        if not self.built:
            self.build(x.shape[1:])
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"{where}: each example of x has shape {x.shape[1:]} but the model "
                             f"expects {self.input_shape}")
        return np.asarray(x, dtype=self.dtype)

    def _forward(self, x: np.ndarray, training: bool, fused: bool = False) -> np.ndarray:
        """The model's output; with ``fused``, the logits before the output activation."""
        last = self.layers[-1]
        for layer in self.layers[:-1]:
            x = layer.forward(x, training=training)
        if fused:
            return last.linear_forward(x, training=training) if isinstance(last, Dense) else x
        return last.forward(x, training=training)

    def _backward(self, grad: np.ndarray, fused: bool) -> None:
        """Backpropagate ∂loss/∂output (∂loss/∂logits when ``fused``) into every ``p.grad``."""
        # Below the first layer with parameters nobody needs a gradient: the loop stops there,
        # and that layer skips its input gradient (the data's), a third of its backward work.
        first = self._first_trainable
        for index in range(len(self.layers) - 1, first - 1, -1):
            layer, input_grad = self.layers[index], index > first
            if fused and index == len(self.layers) - 1:
                # grad is already ∂loss/∂logits: skip the activation, never form its Jacobian
                if isinstance(layer, Dense):
                    grad = layer.linear_backward(grad, input_grad=input_grad)
            elif isinstance(layer, Dense):
                grad = layer.backward(grad, input_grad=input_grad)
            else:
                grad = layer.backward(grad)

    def _penalty(self, add_gradients: bool) -> float:
        """Σ of the parameters' L1/L2 penalties; their gradients go into ``p.grad`` if asked."""
        total = 0.0
        for param in self.parameters():
            if param.regularizer is not None:
                total += param.regularizer(param.data)
                if add_gradients:
                    param.grad += param.regularizer.grad(param.data)
        return total

    # ------------------------------------------------------------------ training

    def fit(self, x: ArrayLike, y: ArrayLike, epochs: int = 1, batch_size: int = 32,
            validation_data: tuple[ArrayLike, ArrayLike] | None = None,
            validation_split: float = 0.0, shuffle: bool = True,
            callbacks: Sequence[Callback] | None = None, verbose: int = 1,
            initial_epoch: int = 0) -> History:
        """Train for epochs ``initial_epoch .. epochs - 1``; return the ``History``.

        ``validation_split`` holds out the *last* fraction of the rows (before shuffling, as
        Keras does). The loss reported includes the L1/L2 penalties. If the loss becomes
        NaN or infinite, training stops with a ``FloatingPointError`` naming the epoch and
        batch, and the weights stay as they were after the last finite step.
        """
        if self.loss is None:
            raise RuntimeError("fit: call compile(optimizer, loss) before fit")
        x = self._check_x("fit", x)
        y = self._check_y("fit", y, len(x))
        if len(x) == 0:
            raise ValueError("fit: x is empty")
        if not 0.0 <= validation_split < 1.0:
            raise ValueError(f"fit: validation_split must be in [0, 1), got {validation_split}")
        if validation_split and validation_data is not None:
            raise ValueError("fit: give validation_data or validation_split, not both")
        if validation_split:
            n_train = math.floor(len(x) * (1.0 - validation_split))  # Keras' rounding
            if not 0 < n_train < len(x):
                raise ValueError(f"fit: validation_split={validation_split} leaves {n_train} "
                                 f"training and {len(x) - n_train} validation rows out of "
                                 f"{len(x)}; both need at least one")
            validation_data = (x[n_train:], y[n_train:])
            x, y = x[:n_train], y[:n_train]
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("fit: validation_data must be a pair (x_val, y_val)")
            x_val = self._check_x("fit: validation_data", validation_data[0])
            y_val = self._check_y("fit: validation_data", validation_data[1], len(x_val))
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"fit: batch_size must be a positive int, got {batch_size!r}")
        if not 0 <= initial_epoch <= epochs:
            raise ValueError(f"fit: need 0 <= initial_epoch <= epochs, got initial_epoch="
                             f"{initial_epoch}, epochs={epochs}")

        self.history = History()
        # the progress bar and History last: they then show and record what the other
        # callbacks added to the logs (e.g. "lr")
        callback_list = list(callbacks or [])
        if verbose:
            callback_list.append(ProgressBar())
        callback_list.append(self.history)
        steps = math.ceil(len(x) / batch_size)
        for callback in callback_list:
            callback.set_model(self)
            callback.set_params({"epochs": epochs, "steps": steps, "verbose": verbose})

        self.stop_training = False
        for callback in callback_list:
            callback.on_train_begin({})
        try:
            for epoch in range(initial_epoch, epochs):
                for callback in callback_list:
                    callback.on_epoch_begin(epoch, {})
                logs = self._train_epoch(x, y, batch_size, shuffle, epoch, epochs, callback_list)
                if validation_data is not None:
                    scores = self.evaluate(x_val, y_val, batch_size=max(batch_size, 256))
                    logs.update({"val_" + key: value for key, value in scores.items()})
                self.epoch = epoch + 1
                for callback in callback_list:
                    callback.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
        finally:
            for callback in callback_list:
                callback.on_train_end({})
        return self.history

    def _train_epoch(self, x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool,
                     epoch: int, epochs: int, callback_list: list[Callback]) -> dict[str, float]:
        optimizer, loss_fn, fused = self.optimizer, self._training_loss(), self.fused_output
        has_penalties = any(p.regularizer is not None for p in self.parameters())
        # calling every callback's do-nothing hook each batch would cost a small model several
        # percent: only the callbacks that have an on_batch_end of their own are called
        inherited = Callback.on_batch_end
        batch_callbacks = [c for c in callback_list
                           if getattr(c.on_batch_end, "__func__", None) is not inherited]
        loss_sum, outputs, targets = 0.0, [], []
        rng = self.shuffle_rng if shuffle else None
        for batch, (x_batch, y_batch) in enumerate(
                batches(x, y, batch_size=batch_size, shuffle=shuffle, rng=rng)):
            # an overflow shows up as a non-finite loss, reported just below with the epoch
            # and batch: numpy's own warnings would only repeat it with less to go on
            with np.errstate(over="ignore", invalid="ignore"):
                output = self._forward(x_batch, training=True, fused=fused)
                loss = loss_fn(output, y_batch)
                self._backward(loss_fn.backward(), fused)
                if has_penalties:
                    loss += self._penalty(add_gradients=True)
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"fit: the loss became {loss} at epoch {epoch + 1}/{epochs}, batch "
                    f"{batch + 1}; training stopped and the weights are those of the last "
                    f"finite step. Try a lower learning rate or scale the inputs.")
            optimizer.step()
            loss_sum += loss * len(x_batch)
            if self.metrics:
                outputs.append(output)
                targets.append(y_batch)
            for callback in batch_callbacks:
                callback.on_batch_end(batch, {"loss": loss, "size": len(x_batch)})
        logs = {"loss": loss_sum / len(x)}
        if self.metrics:
            output = np.concatenate(outputs)
            logs.update(self._metric_values(np.concatenate(targets),
                                            self._metric_input(loss_fn, output)))
        return logs

    def _metric_values(self, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
        return {name: float(function(y_true, y_pred))
                for name, function in self._metric_functions.items()}

    def evaluate(self, x: ArrayLike, y: ArrayLike, batch_size: int = 256) -> dict[str, float]:
        """The loss (with penalties, as in training) and the compiled metrics on ``(x, y)``."""
        if self.loss is None:
            raise RuntimeError("evaluate: call compile(optimizer, loss) first")
        x = self._check_x("evaluate", x)
        y = self._check_y("evaluate", y, len(x))
        if len(x) == 0:
            raise ValueError("evaluate: x is empty")
        loss_fn, fused = self._training_loss(), self.fused_output
        loss_sum, outputs = 0.0, []
        for x_batch, y_batch in batches(x, y, batch_size=batch_size):
            output = self._forward(x_batch, training=False, fused=fused)
            loss_sum += loss_fn(output, y_batch) * len(x_batch)
            outputs.append(output)
        scores = {"loss": loss_sum / len(x) + self._penalty(add_gradients=False)}
        output = np.concatenate(outputs)
        scores.update(self._metric_values(y, self._metric_input(loss_fn, output)))
        return scores

    def predict(self, x: ArrayLike, batch_size: int | None = None) -> np.ndarray:
        """The model's output for ``x`` (probabilities after a softmax), in inference mode.

        ``batch_size`` rows at a time (default: all at once), which bounds the memory of the
        intermediate activations for big inputs.
        """
        x = self._check_x("predict", x)
        if batch_size is None or batch_size >= len(x):
            return self._forward(x, training=False)
        return np.concatenate([self._forward(x_batch, training=False)
                               for x_batch, _ in batches(x, batch_size=batch_size)])

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

        The file holds the architecture, the weights, the compile arguments and, with
        ``include_optimizer``, the optimizer state, the epoch counter and the random
        generators' states, so that ``load_model`` + ``fit(initial_epoch=...)`` resumes
        exactly.
        """
        if not self.built:
            raise ValueError("save: the model is not built yet; give input_dim or call fit")
        arrays = self._weight_arrays()
        meta: dict[str, Any] = {"model": {"class_name": "Sequential",
                                          "config": self.get_config()}}
        if self.loss is not None:
            meta["compile"] = {"optimizer": optim_module.serialize(self.optimizer),
                               "loss": losses_module.serialize(self.loss),
                               "metrics": self._serializable_metrics()}
        if include_optimizer and self.optimizer is not None:
            state = self.optimizer.state_dict()
            numbers = []
            for index, param_state in enumerate(state["state"]):
                numbers.append({key: value for key, value in param_state.items()
                                if not isinstance(value, np.ndarray)})
                for key, value in param_state.items():
                    if isinstance(value, np.ndarray):
                        arrays[f"optimizer.state.{index}.{key}"] = value
            meta["optimizer"] = {"class_name": type(self.optimizer).__name__,
                                 "config": state["config"], "numbers": numbers}
            meta["training"] = {"epoch": self.epoch, "rng_states": self._rng_states()}
        path = model_file(path)
        _make_parent_folder(path)
        io.save_npz(path, meta, arrays)

    def _serializable_metrics(self) -> list[str]:
        unknown = [name for name in self.metrics if name not in metrics_module.METRICS]
        if unknown:
            raise ValueError(f"save: metrics {unknown} are functions, not names from "
                             f"minidl.metrics.METRICS, so they cannot be stored in the file")
        return list(self.metrics)

    def _weight_arrays(self) -> dict[str, np.ndarray]:
        """Every saved array under its key in the file (``layers.0.kernel``,
        ``layers.0.mean``...): the arrays themselves, so writing into them sets the model."""
        arrays = {}
        for index, layer in enumerate(self.layers):
            for param in layer.parameters():
                arrays[f"layers.{index}.{param.name}"] = param.data
            for name, array in layer.state().items():
                arrays[f"layers.{index}.{name}"] = array
        return arrays

    def _generators(self) -> dict[str, np.random.Generator]:
        generators = {"shuffle": self.shuffle_rng}
        for index, layer in enumerate(self.layers):
            if isinstance(layer, Dropout) and layer.rng is not None:
                generators[f"layers.{index}"] = layer.rng
        return generators

    def _rng_states(self) -> dict[str, Any]:
        # PCG64's 128-bit integers as strings: JSON readers in other languages lose them
        states = {}
        for name, generator in self._generators().items():
            state = generator.bit_generator.state
            states[name] = {"bit_generator": state["bit_generator"],
                            "state": str(state["state"]["state"]),
                            "inc": str(state["state"]["inc"]),
                            "has_uint32": int(state["has_uint32"]),
                            "uinteger": int(state["uinteger"])}
        return states

    def _set_rng_states(self, states: dict[str, Any]) -> None:
        generators = self._generators()
        for name, saved in states.items():
            if name not in generators or saved.get("bit_generator") != "PCG64":
                raise ValueError(f"rng state {name!r} does not match this model")
            generators[name].bit_generator.state = {
                "bit_generator": "PCG64",
                "state": {"state": int(saved["state"]), "inc": int(saved["inc"])},
                "has_uint32": int(saved["has_uint32"]), "uinteger": int(saved["uinteger"])}

    def save_weights(self, path: str | os.PathLike) -> None:
        """Write only the weights (and the architecture, to check them against on load)."""
        if not self.built:
            raise ValueError("save_weights: the model is not built yet")
        meta = {"model": {"class_name": "Sequential", "config": self.get_config()},
                "weights_only": True}
        path = model_file(path)
        _make_parent_folder(path)
        io.save_npz(path, meta, self._weight_arrays())

    def load_weights(self, path: str | os.PathLike) -> None:
        """Load weights saved by ``save_weights`` or ``save`` into this (same-shaped) model."""
        path = model_file(path)
        _, arrays = io.load_npz(path)
        if not self.built:
            raise ValueError("load_weights: build the model first (give input_dim)")
        expected = self._weight_arrays()
        _check_weight_arrays(path, expected, arrays)
        for key, data in expected.items():
            data[...] = arrays[key]


MODEL_FILE_NAME = "model.npz"


def model_file(path: str | os.PathLike) -> str:
    """The file a model path means: ``FOLDER/model.npz`` for a path that names a folder (an
    existing folder, or a path that is no existing file and whose last part has no suffix,
    such as ``export/linear/1`` or ``models/``), the path itself otherwise."""
    text = os.fspath(path)
    # a trailing separator leaves an empty last part: no suffix, so a folder too
    names_folder = os.path.isdir(text) or (
        not os.path.isfile(text) and not os.path.splitext(os.path.basename(text))[1])
    return os.path.join(text, MODEL_FILE_NAME) if names_folder else text


def _make_parent_folder(path: str | os.PathLike) -> None:
    # a model path such as "models/digits/3/model.npz" names a new version folder
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)


def _as_shape(input_dim: int | Sequence[int]) -> tuple[int, ...]:
    shape = (input_dim,) if isinstance(input_dim, (int, np.integer)) else tuple(input_dim)
    if not shape or any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1
                        for n in shape):
        raise ValueError(f"Sequential: input_dim must be a positive int or a tuple of them, "
                         f"got {input_dim!r}")
    return tuple(int(n) for n in shape)


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
    ``FOLDER/model.npz``, as for ``save``.
    """
    path = model_file(path)
    meta, arrays = io.load_npz(path)
    where = os.fspath(path)
    try:
        model = _model_from_meta(meta, arrays)
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        if isinstance(error, io.ModelFormatError):
            raise
        raise io.ModelFormatError(f"{where}: invalid model description: "
                                  f"{_problem(error)}") from error
    weights = model._weight_arrays()
    _check_weight_arrays(path, weights, arrays)
    for key, data in weights.items():
        data[...] = arrays[key]
    if "optimizer" in meta and model.optimizer is not None:
        try:
            _restore_training_state(model, meta, arrays)
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise io.ModelFormatError(f"{where}: invalid optimizer state: "
                                      f"{_problem(error)}") from error
    return model


def _problem(error: Exception) -> str:
    # a hand-edited document may hold a list or a string where an object belongs (AttributeError)
    # or lack a key (a bare KeyError prints only the key's name)
    if isinstance(error, KeyError):
        return f"missing key {error}"
    return str(error)


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
    _check_implied_shapes(layers, _as_shape(config["input_dim"]), arrays)
    model = Sequential(layers, input_dim=config["input_dim"], seed=config.get("seed"),
                       dtype=config.get("dtype", "float32"))
    compile_config = meta.get("compile")
    if compile_config is not None:
        optimizer_spec = compile_config["optimizer"]
        optimizer = optim_module.deserialize(optimizer_spec, model.parameters())
        model.compile(optimizer=optimizer, loss=losses_module.deserialize(compile_config["loss"]),
                      metrics=compile_config.get("metrics") or [])
    return model


def _check_implied_shapes(layers: list[Layer], input_shape: tuple[int, ...],
                          arrays: dict[str, np.ndarray]) -> None:
    """Compare the arrays the architecture implies with those the file holds, before
    anything is built: a file that says ``units=20000`` beside a small kernel is refused
    here, not after allocating the large one."""
    shape, implied = input_shape, {}
    for index, layer in enumerate(layers):
        try:
            for name, weight_shape in layer.weight_shapes(shape).items():
                implied[f"layers.{index}.{name}"] = weight_shape
            shape = layer.compute_output_shape(shape)
        except ValueError as error:
            raise ValueError(f"layers[{index}] ({type(layer).__name__}): {error}") from error
    for key, implied_shape in implied.items():
        if key not in arrays:
            raise ValueError(f"missing array {key!r} (of shape {implied_shape}, as the "
                             f"architecture implies)")
        if arrays[key].shape != implied_shape:
            raise ValueError(f"array {key!r} has shape {arrays[key].shape} but the "
                             f"architecture implies {implied_shape}")
    unexpected = sorted(key for key in arrays
                        if key not in implied and not key.startswith("optimizer.state."))
    if unexpected:
        raise ValueError(f"arrays {unexpected} belong to no layer")


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
    model.optimizer.load_state_dict({"config": saved["config"], "state": state})
    training = meta.get("training") or {}
    epoch = training.get("epoch", 0)
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"training epoch must be an int >= 0, got {epoch!r}")
    model.epoch = epoch
    model._set_rng_states(training.get("rng_states", {}))


__all__ = ["Sequential", "load_model"]
