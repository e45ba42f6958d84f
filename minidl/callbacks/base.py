"""The callback protocol: :class:`Callback`, whose hooks do nothing until overridden, the
:class:`CallbackList` through which ``fit`` calls them (the order is in :mod:`minidl.callbacks`),
and :class:`LambdaCallback`, a callback made of plain functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Logs = dict[str, float]


class Callback:
    """Base class: every hook does nothing, so a subclass overrides only what it needs."""

    #: True for a callback that writes files or shows progress: in data-parallel training
    #: (``minidl.distributed``) only the chief process (rank 0) runs it. The others run on
    #: every process, on identical logs, so that they decide identically (EarlyStopping).
    chief_only: bool = False

    def __init__(self) -> None:
        self.model: Any = None
        self.params: dict[str, Any] = {}

    def set_model(self, model: Any) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs: Logs | None = None) -> None:
        pass

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        pass

    def on_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        pass

    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        pass

    def on_train_end(self, logs: Logs | None = None) -> None:
        pass


def _overriding(callbacks: list[Callback], hook: str) -> list[Callback]:
    """The callbacks whose ``hook`` is their own, not :class:`Callback`'s no-op."""
    inherited = getattr(Callback, hook)
    return [c for c in callbacks if getattr(getattr(c, hook), "__func__", None) is not inherited]


class CallbackList:
    """Calls each hook of ``callbacks`` in order (Keras' ``CallbackList``): the model calls
    one list, never each callback.

    ``on_batch_begin`` and ``on_batch_end`` run every batch, so only the callbacks that
    override them are called: calling every inherited no-op would cost a small model several
    percent of its step.
    """

    def __init__(self, callbacks: list[Callback], model: Any, params: dict[str, Any]) -> None:
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            callback.set_model(model)
            callback.set_params(params)
        self._batch_begin_callbacks = _overriding(self.callbacks, "on_batch_begin")
        self._batch_end_callbacks = _overriding(self.callbacks, "on_batch_end")

    def on_train_begin(self, logs: Logs | None = None) -> None:
        for callback in self.callbacks:
            callback.on_train_begin(logs)

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        for callback in self.callbacks:
            callback.on_epoch_begin(epoch, logs)

    def on_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        for callback in self._batch_begin_callbacks:
            callback.on_batch_begin(batch, logs)

    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        for callback in self._batch_end_callbacks:
            callback.on_batch_end(batch, logs)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, logs)

    def on_train_end(self, logs: Logs | None = None) -> None:
        for callback in self.callbacks:
            callback.on_train_end(logs)


class LambdaCallback(Callback):
    """A callback made of plain functions, for one-off hooks in scripts and notebooks.

    ``LambdaCallback(on_epoch_end=lambda epoch, logs: print(epoch, logs["loss"]))``
    """

    def __init__(self, on_train_begin: Callable | None = None,
                 on_epoch_begin: Callable | None = None, on_batch_end: Callable | None = None,
                 on_epoch_end: Callable | None = None, on_train_end: Callable | None = None,
                 on_batch_begin: Callable | None = None) -> None:
        super().__init__()
        hooks = {"on_train_begin": on_train_begin, "on_epoch_begin": on_epoch_begin,
                 "on_batch_begin": on_batch_begin, "on_batch_end": on_batch_end,
                 "on_epoch_end": on_epoch_end, "on_train_end": on_train_end}
        for name, function in hooks.items():
            if function is not None:
                setattr(self, name, function)
