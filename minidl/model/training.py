"""The training loop of ``Sequential``: ``fit``, ``evaluate``, ``predict`` (Keras' trainer).

``Trainer`` is the half of ``Sequential`` that runs data through the model's steps
(``Sequential._steps``, see ``minidl.model.sequential``); the place where a batch's
gradients are complete and the optimizer is about to step is ``Trainer._train_epoch``.

``fit(..., distribute=DataParallel())`` and ``evaluate(..., distribute=...)`` train and
evaluate data-parallel over MPI (``minidl.distributed``): this process takes its share of
each batch, and the gradients are summed across the processes at that same place.

Weights follow Keras: ``sample_weight`` (one number per row) scales each row's loss and its
say in the metrics; ``class_weight`` (``{class: weight}``) gives every row of a class its
class's weight, in training only. The losses' reduction (Keras' "sum_over_batch_size")
divides a batch's weighted sum by the batch's rows, not by the sum of the weights.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from minidl.callbacks import Callback, CallbackList, History, ProgressBar
from minidl.data import batches
from minidl.losses import Loss
from minidl.model.rows import (
    ArrayLike,
    Weights,
    check_sample_weight,
    class_weights_of_rows,
    hold_out,
    weighted_batches,
)


def _loss(loss_fn: Loss, output: np.ndarray, y: np.ndarray, weights: Weights) -> float:
    # weights are passed only when there are some: a user's own loss need not take them
    return loss_fn(output, y) if weights is None else loss_fn(output, y, sample_weight=weights)


def _share_loss(loss_fn: Loss, output: np.ndarray, y: np.ndarray, weights: Weights,
                fraction: float) -> float:
    """A share's term of its batch's loss (``fraction`` × the loss on the share's rows,
    ``Loss.shard_fraction``): 0 for a share without rows, whose loss is undefined."""
    return fraction * _loss(loss_fn, output, y, weights) if len(output) else 0.0


@contextlib.contextmanager
def _failing_together(distribute: Any) -> Iterator[None]:
    """In data-parallel training, an error inside ends every process of the run
    (``DataParallel.abort``): the others would wait forever for this one in their next
    collective call. Nothing without ``distribute``."""
    try:
        yield
    except BaseException as error:
        if distribute is not None:
            distribute.abort(error)
        raise


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
            validation_data: tuple[ArrayLike, ...] | None = None,
            validation_split: float = 0.0, shuffle: bool = True,
            callbacks: Sequence[Callback] | None = None, verbose: int = 1,
            initial_epoch: int = 0, sample_weight: ArrayLike | None = None,
            class_weight: dict[int, float] | None = None, distribute: Any = None) -> History:
        """Train for epochs ``initial_epoch .. epochs - 1``; return the ``History``.

        ``validation_split`` holds out the *last* fraction of the rows (before shuffling, as
        Keras does), with their sample weights; ``validation_data`` is ``(x, y)`` or
        ``(x, y, sample_weight)``. ``class_weight`` weighs the training rows only, and cannot
        be given with ``sample_weight`` (Keras' rule). The loss reported includes the L1/L2
        penalties.

        As in Keras, a callback may set ``model.stop_training`` (checked after every batch
        and every epoch) or, in ``on_train_begin``, ``model._initial_epoch`` (where
        ``BackupAndRestore`` resumes). If the loss becomes NaN or infinite, the optimizer does
        not step (the weights stay as they were after the last finite step) and the batch's
        callbacks see the loss; if one of them stops training (``TerminateOnNaN``), the epoch
        ends there with that loss in its logs, else ``fit`` raises a ``FloatingPointError``
        naming the epoch and batch.

        ``distribute`` (a ``minidl.distributed.DataParallel``, in a program started by
        ``mpiexec``) trains data-parallel: every process calls ``fit`` with the same data and
        arguments, takes its share of each batch, and ends with the weights one process
        would have; only rank 0 runs the callbacks whose ``chief_only`` is set (progress,
        files). An error in any process then ends them all (docs/distributed.md).
        """
        if self.loss is None:
            raise RuntimeError("fit: call compile(optimizer, loss) before fit")
        x = self._check_x("fit", x)
        y = self._check_y("fit", y, len(x))
        if len(x) == 0:
            raise ValueError("fit: x is empty")
        weights = check_sample_weight("fit", sample_weight, len(x))
        if weights is not None and class_weight is not None:
            raise ValueError("fit: give sample_weight or class_weight, not both (as Keras); "
                             "multiply them into one sample_weight instead")
        if not 0.0 <= validation_split < 1.0:
            raise ValueError(f"fit: validation_split must be in [0, 1), got {validation_split}")
        if validation_split and validation_data is not None:
            raise ValueError("fit: give validation_data or validation_split, not both")
        validation = None
        if validation_split:
            (x, y, weights), validation = hold_out(validation_split, x, y, weights)
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError("fit: validation_data must be (x_val, y_val) or "
                                 "(x_val, y_val, sample_weight_val)")
            x_val = self._check_x("fit: validation_data", validation_data[0])
            y_val = self._check_y("fit: validation_data", validation_data[1], len(x_val))
            w_val = check_sample_weight("fit: validation_data",
                                         validation_data[2] if len(validation_data) == 3
                                         else None, len(x_val))
            validation = (x_val, y_val, w_val)
        if class_weight is not None:
            weights = class_weights_of_rows(y, class_weight)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"fit: batch_size must be a positive int, got {batch_size!r}")
        if not 0 <= initial_epoch <= epochs:
            raise ValueError(f"fit: need 0 <= initial_epoch <= epochs, got initial_epoch="
                             f"{initial_epoch}, epochs={epochs}")
        self._check_metrics_take(weights is not None or (validation is not None
                                                         and validation[2] is not None))

        self.history = History()
        # the progress bar and History last: they then show and record what the other
        # callbacks added to the logs (e.g. "learning_rate")
        callback_list = list(callbacks or [])
        if verbose:
            callback_list.append(ProgressBar())
        callback_list.append(self.history)
        if distribute is not None and not distribute.is_chief:
            # one process shows progress and writes files; every process runs the callbacks
            # that decide (EarlyStopping, ReduceLROnPlateau), on logs equal in all of them
            callback_list = [c for c in callback_list if not c.chief_only]
        steps = math.ceil(len(x) / batch_size)
        callback_list = CallbackList(callback_list, self,
                                     {"epochs": epochs, "steps": steps, "verbose": verbose})

        self.stop_training = False
        self._initial_epoch = None
        with _failing_together(distribute):
            callback_list.on_train_begin({})
            if distribute is not None:
                # rank 0's weights, optimizer state, generators and epoch (restored by
                # BackupAndRestore, perhaps) become every process's
                distribute.start(self, x, y, batch_size, epochs, verbose)
        try:
            with _failing_together(distribute):
                first = initial_epoch if self._initial_epoch is None else self._initial_epoch
                for epoch in range(first, epochs):
                    callback_list.on_epoch_begin(epoch, {})
                    logs = self._train_epoch(x, y, weights, batch_size, shuffle, epoch, epochs,
                                             callback_list, distribute)
                    if validation is not None:
                        scores = self.evaluate(*validation[:2], batch_size=max(batch_size, 256),
                                               sample_weight=validation[2],
                                               distribute=distribute)
                        logs.update({"val_" + key: value for key, value in scores.items()})
                    self.epoch = epoch + 1
                    callback_list.on_epoch_end(epoch, logs)
                    if distribute is not None:  # equal logs decide equally; to be sure:
                        self.stop_training = distribute.decision_of_chief(self.stop_training)
                    if self.stop_training:
                        break
        finally:
            self._initial_epoch = None
            callback_list.on_train_end({})
        return self.history

    def _train_epoch(self, x: np.ndarray, y: np.ndarray, weights: Weights, batch_size: int,
                     shuffle: bool, epoch: int, epochs: int, callbacks: CallbackList,
                     distribute: Any = None) -> dict[str, float]:
        """One pass over the data (up to a batch after which a callback stopped training);
        the epoch's logs. With ``distribute``, this process's share of every batch."""
        optimizer, loss_fn, fused = self.optimizer, self._training_loss(), self.fused_output
        has_penalties = any(p.regularizer is not None for p in self.parameters())
        loss_sum, seen, outputs, targets, row_weights, sizes = 0.0, 0, [], [], [], []
        rng = self.shuffle_rng if shuffle else None
        shares = (weighted_batches(x, y, weights, batch_size, shuffle, rng) if distribute is None
                  else distribute.shares(self, x, y, weights, batch_size, shuffle, rng, loss_fn))
        for batch, (x_batch, y_batch, w_batch, rows, fraction) in enumerate(shares):
            callbacks.on_batch_begin(batch, {"size": rows})
            # an overflow shows up as a non-finite loss, handled just below with the epoch
            # and batch: numpy's own warnings would only repeat it with less to go on
            with np.errstate(over="ignore", invalid="ignore"):
                output = self._forward(x_batch, training=True, fused=fused)
                if distribute is None:
                    loss = _loss(loss_fn, output, y_batch, w_batch)
                    self._backward(loss_fn.backward(), fused)
                else:
                    # the share's term of the batch's loss and its gradients; summed over the
                    # processes (one Allreduce) they are the whole batch's, in every process
                    loss = _share_loss(loss_fn, output, y_batch, w_batch, fraction)
                    self._backward(loss_fn.backward() * fraction if len(output)
                                   else np.zeros_like(output), fused)
                    loss = distribute.sum_gradients(loss)
                if has_penalties:  # once per batch, not once per process
                    loss += self._penalty(add_gradients=True)
            finite = math.isfinite(loss)
            if finite:
                optimizer.step()
            loss_sum += loss * rows
            seen += rows
            if self.metrics:
                outputs.append(output)
                targets.append(y_batch)
                row_weights.append(w_batch)
                sizes.append(rows)
            callbacks.on_batch_end(batch, {"loss": loss, "size": rows})
            # a non-finite loss ends training: quietly when a callback stopped it
            # (TerminateOnNaN: the epoch then ends with that loss in its logs, as in Keras)
            if not finite and not self.stop_training:
                raise FloatingPointError(
                    f"fit: the loss became {loss} at epoch {epoch + 1}/{epochs}, batch "
                    f"{batch + 1}; training stopped and the weights are those of the last "
                    f"finite step. Try a lower learning rate or scale the inputs.")
            if self.stop_training:
                break
        logs = {"loss": loss_sum / seen}
        if self.metrics:
            output, target = np.concatenate(outputs), np.concatenate(targets)
            row_weight = None if weights is None else np.concatenate(row_weights)
            if distribute is not None:  # every process's rows, in one process's order
                output, target = (distribute.gather_rows(a, sizes) for a in (output, target))
                row_weight = None if weights is None else distribute.gather_rows(row_weight,
                                                                                 sizes)
            logs.update(self._metric_values(target, loss_fn.predictions(output), row_weight))
        return logs

    def _check_metrics_take(self, weighted: bool) -> None:
        """With weights, every metric must take them: a user's function may not."""
        if not weighted:
            return
        for name, function in self._metric_functions.items():
            parameters = inspect.signature(function).parameters.values()
            if not any(p.name == "sample_weight" or p.kind is p.VAR_KEYWORD
                       for p in parameters):
                raise TypeError(f"metric {name!r} takes no sample_weight, but the data has "
                                f"weights; give it a sample_weight=None parameter")

    def _metric_values(self, y_true: np.ndarray, y_pred: np.ndarray,
                       weights: Weights) -> dict[str, float | np.ndarray]:
        """Each metric's value: a float, or an array for a metric with one value per class
        (``f1_score``'s default ``average=None``), logged as it is, as Keras does."""
        options = {} if weights is None else {"sample_weight": weights}
        values: dict[str, float | np.ndarray] = {}
        for name, function in self._metric_functions.items():
            value = np.asarray(function(y_true, y_pred, **options), dtype=np.float64)
            values[name] = float(value) if value.ndim == 0 else value
        return values

    def evaluate(self, x: ArrayLike, y: ArrayLike, batch_size: int = 256,
                 sample_weight: ArrayLike | None = None,
                 distribute: Any = None) -> dict[str, float]:
        """The loss (with penalties, as in training) and the compiled metrics on ``(x, y)``,
        each row weighted by ``sample_weight`` if given; a loss that overflows is reported
        as inf (or NaN), without a warning, as in training. With ``distribute`` (as for
        ``fit``) each process computes its share of every batch and every process returns
        the scores of the whole of ``(x, y)``."""
        if self.loss is None:
            raise RuntimeError("evaluate: call compile(optimizer, loss) first")
        x = self._check_x("evaluate", x)
        y = self._check_y("evaluate", y, len(x))
        if len(x) == 0:
            raise ValueError("evaluate: x is empty")
        weights = check_sample_weight("evaluate", sample_weight, len(x))
        self._check_metrics_take(weights is not None)
        loss_fn, fused = self._training_loss(), self.fused_output
        loss_sum, outputs, sizes = 0.0, [], []
        with _failing_together(distribute):
            shares = (weighted_batches(x, y, weights, batch_size) if distribute is None
                      else distribute.shares(self, x, y, weights, batch_size, False, None,
                                             loss_fn))
            for x_batch, y_batch, w_batch, rows, fraction in shares:
                # an overflow is reported as it is in training: an infinite (or NaN) loss
                with np.errstate(over="ignore", invalid="ignore"):
                    output = self._forward(x_batch, training=False, fused=fused)
                    loss_sum += rows * (_loss(loss_fn, output, y_batch, w_batch)
                                        if distribute is None else
                                        _share_loss(loss_fn, output, y_batch, w_batch, fraction))
                outputs.append(output)
                sizes.append(rows)
            output = np.concatenate(outputs)
            if distribute is not None:
                loss_sum = distribute.sum(loss_sum)
                if self.metrics:
                    output = distribute.gather_rows(output, sizes)
        scores = {"loss": loss_sum / len(x) + self._penalty(add_gradients=False)}
        scores.update(self._metric_values(y, loss_fn.predictions(output), weights))
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
