"""One champion, always the study's best, and at most ``top_k_models`` logged models per study.

The objective logs a model for a completed trial that ranks among the top k when it finishes
(:class:`~cifar_hpo.sweep.objective.Objective`). What happens next is decided here, after
Optuna has recorded the trial (a study callback), from the study itself, so that several workers
finishing at once agree:

* :func:`keep_top_models` deletes the logged models (and their registry versions) of finished
  trials that are no longer among the study's k best; models of trials still running are left
  alone, so a model is never deleted before its trial's rank is known.
* :func:`reconcile_champion` registers the study's best trial's model (its refit at full
  fidelity when the study has one for that trial, :mod:`cifar_hpo.sweep.refit`) (once) and moves the
  ``champion`` alias to it, then re-reads the study's best and repeats if another worker's trial
  overtook it meanwhile: whichever worker writes last has checked after its write, so the alias
  ends on the best trial. Every worker also runs both at the end of its sweep.
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from cifar_hpo.sweep.refit import REFIT_ATTR
from cifar_hpo.sweep.report import best_trial
from cifar_hpo.sweep.storage import MODEL_ID_ATTR
from cifar_hpo.tracking import MODEL_ID_TAG, Tracker, experiment_name, registered_model_name

#: study user attribute naming the champion: {"trial", "version", "model_id", "value"}
CHAMPION_ATTR = "champion"


def ranked_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """COMPLETE trials, best first (ties: the earlier trial first)."""
    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None
    ]
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    return sorted(done, key=lambda t: (sign * t.value, t.number))


def keep_top_models(study: optuna.Study, tracker: Tracker, k: int) -> list[str]:
    """Delete the logged models of finished trials outside the study's ``max(k, 1)`` best.

    Returns:
        The ids of the models deleted by this call.
    """
    keep = {t.number for t in ranked_trials(study)[: max(k, 1)]}
    finished = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    name = registered_model_name(study.study_name)
    refit_model = (study.user_attrs.get(REFIT_ATTR) or {}).get("model_id")
    deleted = []
    for model in tracker.live_models(experiment_name(study.study_name)):
        if model.tags.get("cifar_hpo.role") == "refit":
            if model.model_id != refit_model:  # an earlier refit, replaced
                tracker.delete_model(model.model_id, registered_name=name)
                deleted.append(model.model_id)
            continue
        try:
            number = int(model.tags.get("cifar_hpo.trial", ""))
        except ValueError:
            continue  # not a trial's model
        if number in finished and number not in keep:
            tracker.delete_model(model.model_id, registered_name=name)
            deleted.append(model.model_id)
    return deleted


def reconcile_champion(study: optuna.Study, tracker: Tracker, attempts: int = 5) -> str | None:
    """Point the ``champion`` alias of ``cifar-hpo-<study>`` at the study's best trial's model.

    Returns:
        The champion's registry version, or None when the best trial has no logged model
        (no completed trial yet, or its model could not be logged).
    """
    name = registered_model_name(study.study_name)
    version = None
    for _ in range(attempts):
        best = best_trial(study)
        refit = study.user_attrs.get(REFIT_ATTR) or {}
        if best is not None and refit.get("trial") == best.number and refit.get("model_id"):
            model_id = refit["model_id"]  # the best configuration at full fidelity
        elif best is not None and best.user_attrs.get(MODEL_ID_ATTR):
            model_id = best.user_attrs[MODEL_ID_ATTR]
        else:
            return None
        current = tracker.champion_version(name)
        if current is None or current.tags.get(MODEL_ID_TAG) != model_id:
            version = tracker.register_champion(
                name,
                model_id,
                {
                    "study": study.study_name,
                    "trial": best.number,
                    "metric": study.metric_names[0] if study.metric_names else "value",
                    "value": best.value,
                    "refit": model_id == refit.get("model_id"),
                },
            )
        else:
            version = str(current.version)
        again = best_trial(study)
        if again is not None and again.number == best.number:
            record = {"trial": best.number, "version": version, "model_id": model_id}
            if study.user_attrs.get(CHAMPION_ATTR) != {**record, "value": best.value}:
                study.set_user_attr(CHAMPION_ATTR, {**record, "value": best.value})
            return version
    return version


class ChampionKeeper:
    """Optuna study callback (runs after each trial is recorded): keep the top-k models and the
    ``champion`` alias on the study's best. Errors are reported, not raised, so that a registry
    hiccup does not end the sweep; the end-of-sweep reconciliation repairs it."""

    def __init__(self, tracker: Tracker, k: int, warn=None):
        self.tracker = tracker
        self.k = k
        self.warn = warn

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state != TrialState.COMPLETE and not trial.user_attrs.get(MODEL_ID_ATTR):
            return
        try:
            keep_top_models(study, self.tracker, self.k)
            reconcile_champion(study, self.tracker)
        except Exception as err:  # noqa: BLE001
            if self.warn is not None:
                self.warn(f"champion not updated after trial {trial.number}: {err}")
