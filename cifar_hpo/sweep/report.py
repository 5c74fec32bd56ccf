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

from cifar_hpo.sweep.ranking import (  # noqa: E402
    best_trial,
    front_rows,
    objective_names,
    primary_value,
)

__all__ = ["best_trial", "state_counts", "study_plots", "study_summary"]


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


def study_summary(study: optuna.Study) -> dict[str, Any]:
    """Counts per state, best value/params/trial and the study's user attributes."""
    best = best_trial(study)
    multi = len(study.directions) > 1
    return {
        "study": study.study_name,
        "direction": study.directions[0].name,
        "objectives": {
            n: d.name for n, d in zip(objective_names(study), study.directions, strict=True)
        },
        "counts": state_counts(study),
        "best_value": primary_value(best) if best else None,
        "best_values": list(best.values) if best else None,
        "pareto_front": front_rows(study) if multi else None,
        "best_trial": best.number if best else None,
        "best_params": best.params if best else None,
        "best_user_attrs": best.user_attrs if best else None,
        "user_attrs": study.user_attrs,
    }


#: legend entries a plot keeps; Optuna's intermediate-values plot names every trial in its
#: legend, which past this many no longer fits the figure (and breaks tight_layout)
MAX_LEGEND_ENTRIES = 20


def drop_crowded_legend(ax: Any) -> None:
    """Remove the legend of a single-axes plot that names more than ``MAX_LEGEND_ENTRIES``
    lines; the lines stay."""
    legend = ax.get_legend() if hasattr(ax, "get_legend") else None
    if legend is not None and len(legend.get_texts()) > MAX_LEGEND_ENTRIES:
        legend.remove()


def study_plots(study: optuna.Study, folder: str | Path) -> list[Path]:
    """Optuna's plots as PNG files: optimization history, parameter importances (Optuna's
    default evaluator, PED-ANOVA), parallel coordinates, intermediate values and, for several
    objectives, the Pareto front (feasible and infeasible trials told apart). History,
    importances and coordinates show the first objective of a multi-objective study. Plots that
    need more completed trials than exist are skipped; a legend naming more than
    ``MAX_LEGEND_ENTRIES`` trials is dropped."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vis = optuna.visualization.matplotlib
    names = objective_names(study)
    first: dict[str, Any] = {}
    if len(study.directions) > 1:
        first = {"target": lambda t: t.values[0], "target_name": names[0]}
    makers = {
        "optimization_history": lambda s: vis.plot_optimization_history(s, **first),
        "param_importances": lambda s: vis.plot_param_importances(s, **first),
        "parallel_coordinate": lambda s: vis.plot_parallel_coordinate(s, **first),
        "intermediate_values": vis.plot_intermediate_values,
    }
    if len(study.directions) in (2, 3):
        makers["pareto_front"] = lambda s: vis.plot_pareto_front(
            s, target_names=names, include_dominated_trials=True
        )
    written = []
    for name, make in makers.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = make(study)
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            drop_crowded_legend(ax)
            fig.set_size_inches(9, 5)
            fig.tight_layout()
            fig.savefig(folder / f"{name}.png", dpi=100)
            plt.close(fig)
            written.append(folder / f"{name}.png")
        except (ValueError, RuntimeError, IndexError, ZeroDivisionError):
            plt.close("all")  # e.g. importances need >= 2 completed trials
    return written
