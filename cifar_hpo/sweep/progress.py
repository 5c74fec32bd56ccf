"""What a sweep shows while it runs: plain lines (:func:`printer`), the rich trial bar
(:class:`TrialBar`, beside each trial's epoch bar) or, without one, a line per finished trial
(:class:`TrialLog`)."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState
from rich.console import Console
from rich.progress import Progress

from cifar_hpo.sweep.budget import BudgetClock
from cifar_hpo.sweep.ranking import primary_value
from cifar_hpo.sweep.report import best_trial, state_counts
from cifar_hpo.sweep.storage import FAIL_REASON_ATTR


def printer(console: Console | None):
    """``say(text)``: one unwrapped plain line on ``console`` (nothing without one)."""
    if console is None:
        return lambda text: None
    return lambda text: console.print(text, highlight=False, soft_wrap=True, markup=False)


def sweep_progress(console: Console | None) -> Progress:
    """The rich display of the trial bar and each trial's epoch bar, on ``console``."""
    from cifar_hpo.progress import make_progress

    return make_progress(console)


def trial_display(
    progress: Progress | None,
    console: Console | None,
    total: int | None,
    clock: BudgetClock | None = None,
) -> list:
    """The study callbacks that show finished trials: a bar of ``total`` trials (None: open
    ended) on ``progress``, started here; else a line per trial on ``console``; else none."""
    if progress is not None:
        task = progress.add_task("trials", total=total, info="")
        progress.start()
        return [TrialBar(progress, task, clock)]
    if console is not None:
        return [TrialLog(console, clock)]
    return []


class TrialLog:
    """Optuna study callback printing one line per finished trial (when there is no bar)."""

    def __init__(self, console: Console, clock: BudgetClock | None = None):
        self.console = console
        self.clock = clock

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        state = trial.state.name.lower()
        if trial.state == TrialState.COMPLETE:
            state += " " + ", ".join(f"{v:.4g}" for v in trial.values)
        elif trial.state == TrialState.FAIL:
            state += f": {trial.user_attrs.get(FAIL_REASON_ATTR, 'see the MLflow run')}"
        if self.clock is not None:
            state += f" ({self.clock.text()})"
        self.console.print(f"trial {trial.number} {state}", highlight=False, markup=False)


class TrialBar:
    """Optuna study callback updating the trial bar: done/pruned/failed and best so far."""

    def __init__(self, progress: Progress, task, clock: BudgetClock | None = None):
        self.progress = progress
        self.task = task
        self.clock = clock
        self.done = 0

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.done += 1
        if trial.state == TrialState.FAIL:
            reason = trial.user_attrs.get(FAIL_REASON_ATTR, "see the MLflow run")
            self.progress.console.print(f"[yellow]trial {trial.number} failed:[/] {reason}")
        counts = state_counts(study)
        best = best_trial(study)
        info = (
            f"complete {counts['COMPLETE']}  pruned {counts['PRUNED']}  failed {counts['FAIL']}"
            + (f"  best {primary_value(best):.4f} (trial {best.number})" if best else "")
            + (f"  {self.clock.text()}" if self.clock is not None else "")
        )
        self.progress.update(self.task, completed=self.done, info=info)
