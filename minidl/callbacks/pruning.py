"""Pruning for Optuna studies: stop a trial whose learning curve is hopeless.

After every epoch the monitored value is reported to the trial as the value at step
``epoch``; the study's pruner compares it with what other trials reported at that step (the
median pruner: is it worse than the median of the earlier trials' values there?) and when
``trial.should_prune()`` says so, the callback raises ``optuna.TrialPruned``, which ends
``fit`` and tells ``study.optimize`` that the trial was pruned, as Optuna's own integrations
for Keras and PyTorch Lightning do.
"""

from __future__ import annotations

from typing import Any

from minidl.callbacks.base import Callback, Logs
from minidl.extras import missing


def import_optuna() -> Any:
    """The ``optuna`` module, or an error naming the ``tune`` extra."""
    try:
        import optuna
    except ModuleNotFoundError as error:
        raise missing(error, "tune") from None
    return optuna


class OptunaPruningCallback(Callback):
    """Report ``logs[monitor]`` to ``trial`` after every epoch; raise ``optuna.TrialPruned``
    when the study's pruner says the trial should stop.

    ``trial`` is an ``optuna.Trial`` of any study (Python or ``minidl tune``); ``monitor`` a
    key of the epoch's logs: ``"val_loss"``, ``"val_accuracy"``, ``"loss"``, ...
    """

    def __init__(self, trial: Any, monitor: str = "val_loss") -> None:
        super().__init__()
        self._optuna = import_optuna()
        self.trial = trial
        self.monitor = monitor

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        logs = logs or {}
        if self.monitor not in logs:
            raise KeyError(f"OptunaPruningCallback: monitor {self.monitor!r} is not in the "
                           f"epoch's logs {sorted(logs)}; a 'val_' value needs validation "
                           "data in fit")
        self.trial.report(float(logs[self.monitor]), step=epoch)
        if self.trial.should_prune():
            raise self._optuna.TrialPruned(
                f"trial {self.trial.number} pruned at epoch {epoch}: {self.monitor} = "
                f"{float(logs[self.monitor]):.6g}")
