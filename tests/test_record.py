"""The study record reads Optuna user attributes with their types and defaults."""

from __future__ import annotations

import optuna

from cifar_hpo.record import (
    MEASURES_ATTR,
    RACE_ATTR,
    REFIT_ATTR,
    TEST_ACC_ATTR,
    StudyRecord,
    TrialRecord,
)


def test_study_and_trial_records_read_what_was_written():
    study = optuna.create_study(direction="maximize")
    empty = StudyRecord(study)
    assert (empty.champion, empty.refit, empty.race, empty.budget) == ({}, {}, {}, {})
    assert empty.parent_run_id is None
    study.set_user_attr(REFIT_ATTR, {"trial": 3, "test_acc": 0.91, "epochs": 10.0})
    study.set_user_attr(RACE_ATTR, "not a dict")  # a foreign writer: read as absent
    record = StudyRecord(study)
    assert record.refit == {"trial": 3, "test_acc": 0.91, "epochs": 10.0}
    assert record.race == {}
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    trial = study.trials[0]
    assert TrialRecord(trial).measures == {} and TrialRecord(trial).test_acc is None
    study.add_trial(
        optuna.trial.create_trial(
            value=0.5, user_attrs={MEASURES_ATTR: {"params": 1200}, TEST_ACC_ATTR: 0.875}
        )
    )
    tested = TrialRecord(study.trials[1])
    assert tested.measures == {"params": 1200} and tested.test_acc == 0.875


def test_champion_version_and_fail_reason():
    from cifar_hpo.record import CHAMPION_ATTR, FAIL_REASON_ATTR

    study = optuna.create_study(direction="maximize")
    assert StudyRecord(study).champion_version(0) is None
    study.set_user_attr(CHAMPION_ATTR, {"trial": 2, "version": "3"})
    record = StudyRecord(study)
    assert record.champion_version(2) == "3"
    assert record.champion_version(1) is None and record.champion_version(None) is None
    failed = optuna.trial.create_trial(
        state=optuna.trial.TrialState.FAIL, user_attrs={FAIL_REASON_ATTR: "loss is nan"}
    )
    assert TrialRecord(failed).fail_reason == "loss is nan"
