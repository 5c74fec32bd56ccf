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
* :func:`reconcile_rule_aliases` does the same for each export rule of the spec (``rules:
  {champion-under-200k: {params: {max: 200000}}}``): the alias names the best trial within the
  rule's limits (:func:`cifar_hpo.sweep.ranking.rule_pick`), and that trial's model is kept too.

"Best" is :mod:`cifar_hpo.sweep.ranking`'s: feasible trials only, first objective first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from cifar_hpo.record import CHAMPION_ATTR  # noqa: F401 (re-exported)
from cifar_hpo.sweep.ranking import best_trial, primary_value, ranked_trials, rule_pick
from cifar_hpo.sweep.refit import REFIT_ATTR
from cifar_hpo.sweep.storage import MODEL_ID_ATTR
from cifar_hpo.tracking import (
    CHAMPION_ALIAS,
    MODEL_ID_TAG,
    Tracker,
    experiment_name,
    registered_model_name,
)


def keep_top_models(
    study: optuna.Study, tracker: Tracker, k: int, rules: Mapping[str, Mapping] | None = None
) -> list[str]:
    """Delete the logged models of finished trials outside the study's ``max(k, 1)`` best
    (and not the pick of one of ``rules``: alias -> limits).

    Returns:
        The ids of the models deleted by this call.
    """
    # finished trials are read before the ranking: a trial another worker completes between
    # the two reads is then ranked but not yet deletable, never deletable but unranked
    finished = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    keep = {t.number for t in ranked_trials(study, feasible_only=True)[: max(k, 1)]}
    for limits in (rules or {}).values():
        pick = rule_pick(study, limits)
        if pick is not None:
            keep.add(pick.number)
    name = registered_model_name(study.study_name)
    refit_model = (study.user_attrs.get(REFIT_ATTR) or {}).get("model_id")
    deleted = []
    for model in tracker.live_models(experiment_name(study.study_name)):
        if str(model.tags.get("cifar_hpo.role", "")).startswith("refit"):
            if model.model_id != refit_model:  # an earlier refit, or a race arm not promoted
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


def champion_trial(study: optuna.Study) -> FrozenTrial | None:
    """The trial whose model stands as ``champion``: the arm a finalists' race promoted (its
    refit carries ``promoted``; it may be the reference recipe rather than the search's best),
    else the study's best trial."""
    refit = study.user_attrs.get(REFIT_ATTR) or {}
    if refit.get("promoted") and refit.get("model_id"):
        for t in study.get_trials(deepcopy=False):
            if t.number == refit.get("trial"):
                return t
    return best_trial(study)


def model_of(study: optuna.Study, trial: FrozenTrial | None) -> str | None:
    """The logged model standing for ``trial``: the refit of its configuration at full fidelity
    when the study has one, else the trial's own (None: it has none)."""
    if trial is None:
        return None
    refit = study.user_attrs.get(REFIT_ATTR) or {}
    if refit.get("trial") == trial.number and refit.get("model_id"):
        return refit["model_id"]
    return trial.user_attrs.get(MODEL_ID_ATTR)


def _point_alias(study, tracker, alias: str, choose, attempts: int) -> tuple[str | None, Any]:
    """Move ``alias`` to the model of ``choose(study)``, re-reading the choice after the write
    (another worker may have finished a better trial meanwhile). Returns (version, trial)."""
    name = registered_model_name(study.study_name)
    version = None
    for _ in range(attempts):
        best = choose(study)
        model_id = model_of(study, best)
        if model_id is None:
            return None, None
        current = tracker.champion_version(name, alias)
        if current is None or current.tags.get(MODEL_ID_TAG) != model_id:
            refit = study.user_attrs.get(REFIT_ATTR) or {}
            version = tracker.register_champion(
                name,
                model_id,
                {
                    "study": study.study_name,
                    "trial": best.number,
                    "metric": study.metric_names[0] if study.metric_names else "value",
                    "value": primary_value(best),
                    "refit": model_id == refit.get("model_id"),
                },
                alias=alias,
            )
        else:
            version = str(current.version)
        again = choose(study)
        if again is not None and again.number == best.number:
            return version, best
    return version, None


def reconcile_champion(study: optuna.Study, tracker: Tracker, attempts: int = 5) -> str | None:
    """Point the ``champion`` alias of ``cifar-hpo-<study>`` at the model of
    :func:`champion_trial` (the race's promoted arm, else the study's best trial).

    Returns:
        The champion's registry version, or None when the best trial has no logged model
        (no completed trial yet, or its model could not be logged).
    """
    version, best = _point_alias(study, tracker, CHAMPION_ALIAS, champion_trial, attempts)
    if best is not None:
        record = {
            "trial": best.number,
            "version": version,
            "model_id": model_of(study, best),
            "value": primary_value(best),
        }
        if study.user_attrs.get(CHAMPION_ATTR) != record:
            study.set_user_attr(CHAMPION_ATTR, record)
    return version


def reconcile_rule_aliases(
    study: optuna.Study, tracker: Tracker, rules: Mapping[str, Mapping], attempts: int = 5
) -> dict[str, str | None]:
    """Point each rule's alias (its name) at the model of the best trial within its limits.

    Returns:
        alias -> registry version (None: no trial within the limits has a logged model).
    """
    versions = {}
    for alias, limits in rules.items():
        versions[alias], _ = _point_alias(
            study, tracker, alias, lambda s, lim=limits: rule_pick(s, lim), attempts
        )
    return versions


class ChampionKeeper:
    """Optuna study callback (runs after each trial is recorded): keep the top-k models and the
    ``champion`` alias on the study's best. Errors are reported, not raised, so that a registry
    hiccup does not end the sweep; the end-of-sweep reconciliation repairs it."""

    def __init__(self, tracker: Tracker, k: int, warn=None, rules: Mapping | None = None):
        self.tracker = tracker
        self.k = k
        self.warn = warn
        self.rules = dict(rules or {})

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state != TrialState.COMPLETE and not trial.user_attrs.get(MODEL_ID_ATTR):
            return
        try:
            keep_top_models(study, self.tracker, self.k, self.rules)
            reconcile_champion(study, self.tracker)
            reconcile_rule_aliases(study, self.tracker, self.rules)
        except Exception as err:  # noqa: BLE001
            if self.warn is not None:
                self.warn(f"champion not updated after trial {trial.number}: {err}")
