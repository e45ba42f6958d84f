"""``minidl tune CONFIG``: the study (:mod:`minidl.cli.tuning` runs its trials), and at its
end the table of the best trials, what pruning saved, the best model saved where the config's
``output`` says (with the training config that made it), and Optuna's plots of the search."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import warnings
from typing import Any

from minidl.cli.files import UsageError
from minidl.cli.train import checked_config
from minidl.cli.tuning import BEST_SHOWN, DEFAULT_TRIALS, Tuning, open_storage, with_values
from minidl.model import model_file

HISTORY_PLOT = "optimization_history.png"
IMPORTANCE_PLOT = "param_importances.png"
BEST_CONFIG = "best_config.json"


def command_tune(args: argparse.Namespace) -> int:
    config = checked_config(args.config)
    with tempfile.TemporaryDirectory(prefix="minidl-tune-") as folder:
        tuning = Tuning(config, folder)
        optuna = tuning.optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar and table say it
        study = optuna.create_study(
            storage=open_storage(args.storage), study_name=args.study_name, load_if_exists=True,
            direction=tuning.direction, sampler=optuna.samplers.TPESampler(seed=args.seed),
            pruner=optuna.pruners.MedianPruner())
        if study.direction.name.lower() != tuning.direction:
            raise UsageError(f"study {study.study_name!r} in {args.storage} is to "
                             f"{study.direction.name.lower()}, the config says "
                             f"{tuning.direction}")
        n_trials = args.n_trials or (None if args.timeout else DEFAULT_TRIALS)
        study.optimize(tuning.objective, n_trials=n_trials, timeout=args.timeout,
                       show_progress_bar=True, catch=())
        return report(study, tuning, config.get("output", "model.npz") if args.output is None
                      else args.output)


def trials_table(study: Any, tuning: Tuning) -> str:
    """The best completed trials, best first: number, score, epochs run, seconds, values."""
    states = tuning.optuna.trial.TrialState
    done = [t for t in study.get_trials(deepcopy=False, states=(states.COMPLETE,))
            if "duplicate_of" not in t.user_attrs]
    done.sort(key=lambda t: t.value, reverse=tuning.direction == "maximize")
    header = ["trial", tuning.metric, "epochs", "seconds", *[d.path for d in tuning.dimensions]]
    rows = [[str(t.number), f"{t.value:.4f}", str(t.user_attrs.get("epochs", "")),
             f"{t.user_attrs.get('seconds', 0):.1f}",
             *[_shown(t.params.get(d.path)) for d in tuning.dimensions]]
            for t in done[:BEST_SHOWN]]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
             for row in [header, *rows]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def _shown(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def pruning_summary(study: Any, tuning: Tuning) -> str:
    """How many trials were pruned, and the epochs they did not run."""
    states = tuning.optuna.trial.TrialState
    trained = [t for t in study.get_trials(deepcopy=False) if "epochs" in t.user_attrs]
    pruned = [t for t in trained if t.state == states.PRUNED]
    budget = max((t.user_attrs["epochs"] for t in trained if t.state == states.COMPLETE),
                 default=0)
    saved = sum(budget - t.user_attrs["epochs"] for t in pruned)
    run = sum(t.user_attrs["epochs"] for t in trained)
    return (f"{len(trained)} trials trained, {len(pruned)} pruned: {run} epochs run, "
            f"{saved} epochs not run thanks to pruning")


def report(study: Any, tuning: Tuning, output: str) -> int:
    states = tuning.optuna.trial.TrialState
    if not study.get_trials(deepcopy=False, states=(states.COMPLETE,)):
        raise UsageError(f"study {study.study_name!r}: no trial completed (all were pruned "
                         "or failed), so there is no best model")
    print(f"\nbest trials of study {study.study_name!r} ({tuning.direction} {tuning.metric}):")
    print(trials_table(study, tuning))
    print(pruning_summary(study, tuning))
    model, origin = tuning.best_model(study)
    model.save(output)
    path = model_file(output)
    folder = os.path.dirname(os.path.abspath(path))
    best_config = os.path.join(folder, BEST_CONFIG)
    with open(best_config, "w", encoding="utf-8") as file:
        json.dump(with_values(tuning.config, study.best_trial.params), file, indent=2)
    print(f"saved the best model ({origin}, {tuning.metric} = {study.best_value:.4f}) to "
          f"{path}, and its training config to {best_config}")
    for name in save_plots(study, folder, tuning):
        print(f"saved {name}")
    return 0


def save_plots(study: Any, folder: str, tuning: Tuning) -> list[str]:
    """Optuna's optimization history and (with two completed trials or more) parameter
    importances, as PNG files in ``folder``; the paths written."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no window, whatever the machine has
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    written = []
    completed = study.get_trials(deepcopy=False, states=(tuning.optuna.trial.TrialState.COMPLETE,))
    charts = [(HISTORY_PLOT, plots.plot_optimization_history)]
    if len(completed) >= 2 and len(tuning.dimensions) >= 1:
        charts.append((IMPORTANCE_PLOT, plots.plot_param_importances))
    for name, chart in charts:
        with warnings.catch_warnings():
            # Optuna marks its matplotlib plots experimental; the figures are what they are
            warnings.simplefilter("ignore", tuning.optuna.exceptions.ExperimentalWarning)
            axes = chart(study)
        path = os.path.join(folder, name)
        axes.figure.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(axes.figure)
        written.append(path)
    return written
