"""The training loop of ``Sequential``: ``fit``, ``evaluate``, ``predict`` (Keras' trainer).

``Trainer`` is the half of ``Sequential`` that runs data through the model's steps
(``Sequential._steps``, see ``minidl.model.sequential``); the place where a batch's
gradients are complete and the optimizer is about to step is ``Trainer._train_epoch``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from minidl.callbacks import Callback, CallbackList, History, ProgressBar
from minidl.data import batches
from minidl.losses import Loss

ArrayLike = Any


class Trainer:
    """``fit``/``evaluate``/``predict`` for a model with ``_steps``, ``loss``, ``optimizer``,
    ``metrics`` and ``parameters()`` (``Sequential``)."""

    def _training_loss(self) -> Loss:
        """The loss as training applies it: to logits when the output activation is fused,
        whatever ``from_logits`` the compiled loss says."""
        return self.loss.on_logits() if self.fused_output else self.loss

    def _check_y(self, where: str, y: ArrayLike, rows: int) -> np.ndarray:
        y = np.asarray(y)
        if len(y) != rows:
            raise ValueError(f"{where}: x has {rows} rows but y has {len(y)}")
        if y.ndim == 1 and self.output_shape == (1,) and not self.loss.index_targets:
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
        dtype = self.layers[0].input_dtype(self.dtype)
        return x if dtype is None else np.asarray(x, dtype=dtype)

    def _forward(self, x: np.ndarray, training: bool, fused: bool = False) -> np.ndarray:
        """The model's output; with ``fused``, the logits before the output activation."""
        for step in self._steps[:-1] if fused else self._steps:
            x = step.forward(x, training=training)
        return x

    def _backward(self, grad: np.ndarray, fused: bool) -> None:
        """Backpropagate ∂loss/∂output (∂loss/∂logits when ``fused``) into every ``p.grad``."""
        # fused: grad is already ∂loss/∂logits, the last step (the activation) is skipped and
        # its Jacobian never formed; the loop ends at the first step with parameters
        last = len(self._steps) - (2 if fused else 1)
        for index in range(last, self._first_trainable - 1, -1):
            grad = self._steps[index].backward(grad)

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
        callback_list = CallbackList(callback_list, self,
                                     {"epochs": epochs, "steps": steps, "verbose": verbose})

        self.stop_training = False
        callback_list.on_train_begin({})
        try:
            for epoch in range(initial_epoch, epochs):
                callback_list.on_epoch_begin(epoch, {})
                logs = self._train_epoch(x, y, batch_size, shuffle, epoch, epochs, callback_list)
                if validation_data is not None:
                    scores = self.evaluate(x_val, y_val, batch_size=max(batch_size, 256))
                    logs.update({"val_" + key: value for key, value in scores.items()})
                self.epoch = epoch + 1
                callback_list.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
        finally:
            callback_list.on_train_end({})
        return self.history

    def _train_epoch(self, x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool,
                     epoch: int, epochs: int, callbacks: CallbackList) -> dict[str, float]:
        optimizer, loss_fn, fused = self.optimizer, self._training_loss(), self.fused_output
        has_penalties = any(p.regularizer is not None for p in self.parameters())
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
            callbacks.on_batch_end(batch, {"loss": loss, "size": len(x_batch)})
        logs = {"loss": loss_sum / len(x)}
        if self.metrics:
            output = np.concatenate(outputs)
            logs.update(self._metric_values(np.concatenate(targets),
                                            loss_fn.predictions(output)))
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
        scores.update(self._metric_values(y, loss_fn.predictions(output)))
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
