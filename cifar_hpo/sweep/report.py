"""Study summaries and Optuna's own plots (matplotlib backend) for the parent run and CLI."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402


def state_counts(study: optuna.Study) -> dict[str, int]:
    """Number of trials per state name (COMPLETE, PRUNED, FAIL, RUNNING, WAITING)."""
    counts = {
        s.name: 0
        for s in (
            TrialState.COMPLETE,
            TrialState.PRUNED,
            TrialState.FAIL,
            TrialState.RUNNING,
            TrialState.WAITING,
        )
    }
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The best COMPLETE trial, or None when there is none."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return study.best_trial if done else None


def study_summary(study: optuna.Study) -> dict[str, Any]:
    """Counts per state, best value/params/trial and the study's user attributes."""
    best = best_trial(study)
    return {
        "study": study.study_name,
        "direction": study.direction.name,
        "counts": state_counts(study),
        "best_value": best.value if best else None,
        "best_trial": best.number if best else None,
        "best_params": best.params if best else None,
        "best_user_attrs": best.user_attrs if best else None,
        "user_attrs": study.user_attrs,
    }


def study_plots(study: optuna.Study, folder: str | Path) -> list[Path]:
    """Optimization history, parameter importances, parallel coordinates and intermediate
    values as PNG files. Plots that need more completed trials than exist are skipped."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vis = optuna.visualization.matplotlib
    makers = {
        "optimization_history": vis.plot_optimization_history,
        "param_importances": vis.plot_param_importances,
        "parallel_coordinate": vis.plot_parallel_coordinate,
        "intermediate_values": vis.plot_intermediate_values,
    }
    written = []
    for name, make in makers.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = make(study)
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(9, 5)
            fig.tight_layout()
            fig.savefig(folder / f"{name}.png", dpi=100)
            plt.close(fig)
            written.append(folder / f"{name}.png")
        except (ValueError, RuntimeError, IndexError, ZeroDivisionError):
            plt.close("all")  # e.g. importances need >= 2 completed trials
    return written
