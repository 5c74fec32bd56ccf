"""``cifar-hpo train`` as an MLflow run: :func:`tracked_train`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cifar_hpo.callbacks import Callback
from cifar_hpo.engine import Result
from cifar_hpo.tracking.null import NullTracker
from cifar_hpo.tracking.runs import Tracker
from cifar_hpo.tracking.schema import (
    ROLE_TAG,
    RUN_FOLDER_TAG,
    RUN_ID_FILE,
    TRAIN_EXPERIMENT,
    Role,
    RunOutcome,
)


def tracked_train(
    tracker: Tracker | NullTracker,
    config,
    data,
    callbacks: list[Callback],
    *,
    run_folder: str | Path,
    resume: dict[str, Any] | None = None,
    macs: int | None = None,
) -> tuple[Result, str | None]:
    """``cifar-hpo train`` as an MLflow run in experiment ``train``, laid out like a trial run
    (params, per-epoch metrics, dataset input, artifacts, LoggedModel), named after its run
    folder; a resumed run folder continues its own MLflow run. A crash or Ctrl-C ends the run
    FAILED/KILLED with its reason, never RUNNING.

    Returns:
        (the training :class:`Result`, the MLflow run id or None with a :class:`NullTracker`).
    """
    from cifar_hpo.engine import make_splits, train

    folder = Path(run_folder)
    id_file = folder / RUN_ID_FILE
    run = None
    if resume is not None and id_file.is_file() and isinstance(tracker, Tracker):
        run = tracker.reopen_run(id_file.read_text().strip(), macs=macs)
    if run is None:
        tags = {ROLE_TAG: Role.TRAIN.value, RUN_FOLDER_TAG: str(folder)}
        run = tracker.start_run(TRAIN_EXPERIMENT, folder.name, tags, config, macs=macs)
        splits = make_splits(config, data)
        run.log_dataset(data, len(splits.train_idx), len(splits.val_idx))
        if run.run_id:
            folder.mkdir(parents=True, exist_ok=True)
            id_file.write_text(run.run_id + "\n")
    with run.ends_on_error():
        result = train(config, data, [*callbacks, run], resume=resume)
        run.log_result(result)
        if result.status == "diverged":
            run.end(RunOutcome.FAILED, result.message)
        else:
            run.log_model(result, data.mean, data.std)
            run.end(RunOutcome.COMPLETE)
    return result, run.run_id
