"""The record of training: :class:`History` keeps every epoch's logs and plots them."""

from __future__ import annotations

from typing import Any

from minidl.callbacks.base import Callback, Logs


class History(Callback):
    """Records every epoch's logs: ``history["loss"][i]`` is the training loss of epoch ``i``.

    ``epoch`` lists the epoch numbers (they start at ``initial_epoch`` when training resumes).
    """

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def plot(self, keys: list[str] | None = None, restored_epoch: int | None = None) -> Any:
        """Draw the curves and return the matplotlib ``Figure``.

        One panel per quantity (loss, then each metric), training and validation curves
        together, over epochs numbered from 1 as the progress bar counts them. ``keys``
        limits the panels to those names (without ``val_``). ``restored_epoch`` (an entry of
        ``epoch``: ``EarlyStopping.best_epoch`` with ``restore_best_weights``) draws a dashed
        line at the epoch whose weights the model kept.
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as error:
            raise ImportError("History.plot needs matplotlib: "
                              "pip install 'minidl[plot]'") from error
        if not self.history:
            raise ValueError("History.plot: the history is empty (call fit first)")
        names = [k for k in self.history if not k.startswith("val_") and k != "learning_rate"]
        if keys is not None:
            unknown = [k for k in keys if k not in names]
            if unknown:
                raise ValueError(f"History.plot: unknown keys {unknown}; recorded: {names}")
            names = list(keys)
        if restored_epoch is not None and restored_epoch not in self.epoch:
            raise ValueError(f"History.plot: restored_epoch {restored_epoch} was not recorded; "
                             f"recorded epochs: {self.epoch[0]}..{self.epoch[-1]}")
        epochs = [epoch + 1 for epoch in self.epoch]
        figure, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
        for axis, name in zip(axes[0], names, strict=True):
            axis.plot(epochs, self.history[name], label="train")
            if "val_" + name in self.history:
                axis.plot(epochs, self.history["val_" + name], label="validation")
            if restored_epoch is not None:
                axis.axvline(restored_epoch + 1, color="grey", linestyle="--",
                             label=f"restored (epoch {restored_epoch + 1})")
            axis.xaxis.get_major_locator().set_params(integer=True)
            axis.set_xlabel("epoch")
            axis.set_title(name)
            axis.legend()
        figure.tight_layout()
        return figure
