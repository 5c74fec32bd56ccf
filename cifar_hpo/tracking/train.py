"""``cifar-hpo train`` as an MLflow run: :func:`tracked_train`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cifar_hpo.callbacks import Callback
from cifar_hpo.engine import Result
from cifar_hpo.tracking.base import RunTracker
from cifar_hpo.tracking.lifecycle import RunSpec, tracked_run
from cifar_hpo.tracking.schema import RUN_FOLDER_TAG, RUN_ID_FILE, TRAIN_EXPERIMENT, Role


def tracked_train(
    tracker: RunTracker,
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
    FAILED/KILLED with its reason, a diverged run FAILED, never RUNNING.

    Returns:
        (the training :class:`Result`, the MLflow run id or None with a
        :class:`~cifar_hpo.tracking.NullTracker`).
    """
    folder = Path(run_folder)
    id_file = folder / RUN_ID_FILE
    reopen = id_file.read_text().strip() if resume is not None and id_file.is_file() else None
    spec = RunSpec(
        Role.TRAIN,
        TRAIN_EXPERIMENT,
        folder.name,
        config,
        tags={RUN_FOLDER_TAG: str(folder)},
        log_model=True,
        before=tuple(callbacks),
        macs=macs,
        reopen=reopen,
    )
    with tracked_run(tracker, spec) as tracked:
        if not tracked.reopened:
            tracked.log_dataset(data)
            if tracked.run_id:
                folder.mkdir(parents=True, exist_ok=True)
                id_file.write_text(tracked.run_id + "\n")
        result = tracked.train(data, resume=resume)
        tracked.record(result, data)
    return result, tracked.run_id
