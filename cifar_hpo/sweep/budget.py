"""A study's time budget: parsing ``--budget``, the ledger of time used, stopping the search.

The budget is wall time for the whole study, search and refit together. A study records its
budget and the seconds used so far in its Optuna user attributes, so that re-running a budgeted
study (after Ctrl-C, or on another worker) continues with the budget left.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import optuna

from cifar_hpo.errors import SweepSpecError
from cifar_hpo.record import BUDGET_ATTR  # noqa: F401 (re-exported)

_PART = re.compile(r"(\d+(?:\.\d+)?)([hms])")


def parse_duration(text: str | float | int) -> float:
    """Seconds of a duration: ``90s``, ``45m``, ``2h``, ``1h30m``, ``1.5h``; a bare number is
    minutes (as ``budget.minutes`` in a study file).

    Raises:
        SweepSpecError: anything else, or a duration that is not > 0 (one line).
    """
    raw = str(text).strip().lower().replace(" ", "")
    seconds = 0.0
    if re.fullmatch(r"\d+(\.\d+)?", raw):
        seconds = float(raw) * 60
    elif raw and _PART.sub("", raw) == "":
        units = {"h": 3600.0, "m": 60.0, "s": 1.0}
        parts = _PART.findall(raw)
        if [u for _, u in parts] == sorted({u for _, u in parts}, key="hms".index):
            seconds = sum(float(v) * units[u] for v, u in parts)
    if not seconds > 0:
        raise SweepSpecError(
            f"budget {str(text)!r}: expected a duration > 0 such as 90s, 45m, 2h or 1h30m"
        )
    return seconds


def format_minutes(seconds: float) -> str:
    """``42 s``, ``12.5 min`` or ``2.1 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass
class BudgetClock:
    """The budget of this call: ``total_s`` for the study, ``used_before_s`` spent by earlier
    calls, and this call's own clock."""

    total_s: float
    used_before_s: float = 0.0
    started: float = 0.0

    def __post_init__(self) -> None:
        self.started = self.started or time.monotonic()

    @property
    def used_s(self) -> float:
        """Seconds of the budget used, earlier calls included."""
        return self.used_before_s + time.monotonic() - self.started

    @property
    def left_s(self) -> float:
        """Seconds left (never negative)."""
        return max(0.0, self.total_s - self.used_s)

    @property
    def used_up(self) -> bool:
        """Less than 5 % of the budget left (too little to start anything useful)."""
        return self.left_s <= 0.05 * self.total_s

    def record(self, study: optuna.Study) -> None:
        """Write the time used so far to the study (resume continues from it)."""
        study.set_user_attr(BUDGET_ATTR, {"total_s": self.total_s, "used_s": self.used_s})

    def text(self) -> str:
        """``budget 12.0/60.0 min used, 48.0 min left``."""
        return (
            f"budget {self.used_s / 60:.1f}/{self.total_s / 60:.1f} min used, "
            f"{format_minutes(self.left_s)} left"
        )


def budget_clock(
    study: optuna.Study, budget_s: float | None, started: float = 0.0
) -> BudgetClock | None:
    """The clock of a budgeted call: a new budget (``budget_s``), or the study's recorded one
    with its time used (a resumed budgeted study without ``--budget``). None: no budget.

    A new ``budget_s`` on a study that recorded one replaces its total; the time already used
    still counts. ``started``: when this call began (``time.monotonic()``; default now), so
    that opening the study and loading the data count too.
    """
    recorded = study.user_attrs.get(BUDGET_ATTR) or {}
    used = float(recorded.get("used_s", 0.0))
    if budget_s is None:
        if not recorded:
            return None
        budget_s = float(recorded["total_s"])
    return BudgetClock(total_s=float(budget_s), used_before_s=used, started=started)


class BudgetStop:
    """Optuna study callback: stop starting trials once the next one would not finish before
    ``search_end_s`` of the budget is used (its cost estimated as ``trial_s``); also records
    the time used after every trial."""

    def __init__(self, clock: BudgetClock, search_end_s: float, trial_s: float):
        self.clock = clock
        self.search_end_s = search_end_s
        self.trial_s = trial_s

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.clock.record(study)
        if self.clock.used_s + self.trial_s > self.search_end_s:
            study.stop()
