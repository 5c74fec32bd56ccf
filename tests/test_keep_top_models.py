"""keep_top_models: which logged trial models stay when workers finish trials concurrently."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import optuna
from optuna.trial import TrialState

from cifar_hpo.sweep.champion import keep_top_models


class RecordingTracker:
    """The two Tracker calls keep_top_models makes: one live model per trial."""

    def __init__(self, trials: list[int]):
        self.models = [
            SimpleNamespace(model_id=f"m-{n}", tags={"cifar_hpo.trial": str(n)}) for n in trials
        ]
        self.deleted: list[str] = []

    def live_models(self, experiment: str) -> list[SimpleNamespace]:
        return [m for m in self.models if m.model_id not in self.deleted]

    def delete_model(self, model_id: str, registered_name: str | None = None) -> None:
        self.deleted.append(model_id)


def test_a_trial_completed_by_another_worker_during_the_call_keeps_its_model(monkeypatch):
    """Trial 1 (second best of 3, k = 2) logs its model, then another worker's call reads the
    study while trial 1 is still RUNNING and again after it is COMPLETE. Ranking from the first
    read and taking the finished trials from the second deleted trial 1's model and kept trial
    2's, the worst (seen as a flake of the 3-worker test: one model left instead of two)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="race", direction="maximize")
    dist = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    for value in (0.9, 0.8, 0.5):
        study.add_trial(
            optuna.trial.create_trial(value=value, params={"x": value}, distributions=dist)
        )
    done = study.get_trials(deepcopy=False)
    running = copy.deepcopy(done)
    running[1].state, running[1].values = TrialState.RUNNING, None
    reads = iter([running])

    def get_trials(deepcopy=False, states=None):
        snapshot = next(reads, done)  # the first read sees trial 1 running
        return [t for t in snapshot if states is None or t.state in states]

    monkeypatch.setattr(study, "get_trials", get_trials)
    tracker = RecordingTracker([0, 1, 2])
    assert keep_top_models(study, tracker, k=2) == ["m-2"]
    assert [m.model_id for m in tracker.live_models("x")] == ["m-0", "m-1"]
