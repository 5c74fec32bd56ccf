"""``cifar-hpo compare``: a champion (or any reference run) against a challenger.

Each side is named by an MLflow run id, a trial number of ``--study`` (the trial's own run), or
an alias of the study's registered model ``cifar-hpo-<study>`` (``champion``, or any other; also
written ``NAME@ALIAS`` without ``--study``), resolved by :func:`resolve_ref`. Then
:func:`compare_runs`:

* reads both runs' logged ``per_class.json`` (the test split when both runs were scored on it,
  else validation) and takes challenger minus champion per class;
* loads both logged models (the weights in their LoggedModel), predicts that split of the
  dataset, and derives the confusion-matrix difference and the images the two disagree on;
* tests whether their accuracies differ: the exact McNemar test on the two models' per-image
  correctness (:func:`cifar_hpo.stats.mcnemar`; one run per side, so no interval across seeds);
* measures parameters, MACs and batch-1 CPU latency of both;
* logs ``compare.json``, ``confusion_diff.png`` and ``disagreements.png`` to the challenger's run
  under ``compare/<champion alias or run id>/``.

A side without a logged model (a trial that left the study's top k) still gets its per-class
deltas; the parts that need both models are skipped with a note.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from cifar_hpo.compare import (
    Disagreements,
    class_probabilities,
    confusion_changes,
    confusion_matrix,
    find_disagreements,
    macro_deltas,
    model_cost,
    model_from_weights,
    per_class_deltas,
)
from cifar_hpo.errors import UserError
from cifar_hpo.stats import McNemar, mcnemar
from cifar_hpo.sweep.storage import RUN_ID_ATTR, load_stored_study, make_storage
from cifar_hpo.tracking import RunRecord, Tracker, registered_model_name

#: where the per-class report of a run is (written by ``TrialRun.log_result``)
PER_CLASS_FILE = "per_class.json"
ARTIFACT_ROOT = "compare"
RUN_ID = re.compile(r"[0-9a-f]{32}")


class RefKind(Enum):
    """How a run was named on the command line."""

    RUN = "run id"
    TRIAL = "trial"
    ALIAS = "alias"


@dataclass(frozen=True)
class RunRef:
    """One side of a comparison.

    Attributes:
        ref: as given (``3``, ``champion``, a run id).
        kind: how ``ref`` was read.
        run_id: the MLflow run.
        model_id: its LoggedModel id, when it logged one (it may have been deleted since).
        label: the alias for alias refs, else the run id (names the artifact folder).
        title: one line for people, e.g. ``champion (cifar-hpo-baseline v2, run 1a2b3c4d)``.
    """

    ref: str
    kind: RefKind
    run_id: str
    model_id: str | None
    label: str
    title: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**self.__dict__, "kind": self.kind.value}


def _unknown(ref: str, study: str | None, tracker: Tracker) -> UserError:
    if study is None:
        return UserError(
            f"unknown run {ref!r}: give an MLflow run id (32 hex digits), NAME@ALIAS of a "
            "registered model, or a trial number or alias with --study"
        )
    aliases = tracker.aliases(registered_model_name(study))
    return UserError(
        f"unknown run, trial or alias {ref!r}: give an MLflow run id (32 hex digits), a trial "
        f"number of study {study!r} or an alias of {registered_model_name(study)} "
        f"({', '.join(aliases) or 'none yet'})"
    )


def resolve_ref(
    ref: str, tracker: Tracker, study: str | None = None, storage: str | None = None
) -> RunRef:
    """The run that ``ref`` names.

    Args:
        ref: an MLflow run id; a trial number of ``study`` (its ``mlflow_run_id`` user
            attribute: the trial's own run, not its refit); an alias of ``cifar-hpo-<study>``
            (``champion``: the study's champion, the refit model when there is one); or
            ``NAME@ALIAS`` of any registered model.
        tracker: reads MLflow.
        study, storage: the Optuna study (and its storage URL) for trial numbers and aliases.

    Raises:
        UserError: nothing by that name (names the value and what is allowed), or a trial
            that has no MLflow run.
        SweepSpecError: ``study`` is not stored.
    """
    ref = ref.strip()
    if RUN_ID.fullmatch(ref):
        record = tracker.run_record(ref)
        if record is None:
            raise UserError(f"no MLflow run {ref!r} in {tracker.tracking_uri}")
        return RunRef(ref, RefKind.RUN, ref, record.model_id, ref, _run_title(record))
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return _alias_ref(ref, name, alias, tracker, study)
    if study is None:
        raise _unknown(ref, study, tracker)
    if ref.isdigit():
        number = int(ref)
        stored = load_stored_study(study, make_storage(storage))
        trials = {t.number: t for t in stored.get_trials(deepcopy=False)}
        if number not in trials:
            raise UserError(
                f"study {study!r} has no trial {number} (trials 0..{len(trials) - 1})"
                if trials
                else f"study {study!r} has no trials yet"
            )
        run_id = trials[number].user_attrs.get(RUN_ID_ATTR)
        record = tracker.run_record(run_id) if run_id else None
        if record is None:
            raise UserError(
                f"trial {number} of {study!r} ({trials[number].state.name}) has no MLflow run"
            )
        title = f"trial {number} of {study} (run {run_id[:8]})"
        return RunRef(ref, RefKind.TRIAL, run_id, record.model_id, run_id, title)
    return _alias_ref(ref, registered_model_name(study), ref, tracker, study)


def _alias_ref(ref: str, name: str, alias: str, tracker: Tracker, study: str | None) -> RunRef:
    found = tracker.alias_version(name, alias)
    if found is None:
        if "@" not in ref:  # a bare alias of the study's registered model
            raise _unknown(ref, study, tracker)
        aliases = tracker.aliases(name)
        raise UserError(
            f"no alias {alias!r} on registered model {name!r} "
            f"(aliases: {', '.join(aliases) or 'none'})"
        )
    version, run_id, model_id = found
    if tracker.run_record(run_id) is None:
        raise UserError(f"{name}@{alias} (v{version}) points at run {run_id}, which is gone")
    title = f"{alias} ({name} v{version}, run {run_id[:8]})"
    return RunRef(ref, RefKind.ALIAS, run_id, model_id, alias, title)


def _run_title(record: RunRecord) -> str:
    where = record.experiment or "?"
    return f"run {record.run_id[:8]} ({record.name or 'unnamed'} in {where})"


@dataclass
class Comparison:
    """What ``cifar-hpo compare`` found; deltas are challenger minus champion.

    Attributes:
        champion, challenger: the two sides.
        split: ``test`` or ``val``: the split of both per-class files and of the predictions.
        class_names: in label order.
        per_class: :func:`cifar_hpo.compare.per_class_deltas` rows.
        macro: :func:`cifar_hpo.compare.macro_deltas` of them.
        accuracy: top-1 accuracy of each side on ``split`` as logged (``champion``,
            ``challenger``, ``delta``; None where the run did not log it).
        cost: per side, :func:`cifar_hpo.compare.model_cost` (or, without a model, ``params``
            and ``macs`` as the run logged them).
        confusion: per side, int (C, C) counts on ``split`` from the loaded models (rows true,
            columns predicted), and ``diff`` = challenger - champion; empty without both
            models.
        changes: the largest off-diagonal changes of the confusion difference.
        disagreements: the images the two classify differently; None without both models.
        notes: lines worth showing (skipped parts, different validation splits).
        artifact_dir: the folder of the challenger's run it was logged to, or None.
    """

    champion: RunRef
    challenger: RunRef
    split: str
    class_names: list[str]
    per_class: list[dict[str, Any]]
    macro: dict[str, dict[str, float]]
    accuracy: dict[str, float | None]
    cost: dict[str, dict[str, Any]]
    confusion: dict[str, np.ndarray] = field(default_factory=dict)
    changes: list[dict[str, Any]] = field(default_factory=list)
    disagreements: Disagreements | None = None
    notes: list[str] = field(default_factory=list)
    artifact_dir: str | None = None
    mcnemar: McNemar | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON written as ``compare.json``."""
        return {
            "champion": self.champion.to_dict(),
            "challenger": self.challenger.to_dict(),
            "split": self.split,
            "per_class_source": PER_CLASS_FILE,
            "class_names": self.class_names,
            "per_class": self.per_class,
            "macro": self.macro,
            "accuracy": self.accuracy,
            "cost": self.cost,
            "confusion": {k: v.tolist() for k, v in self.confusion.items()},
            "confusion_changes": self.changes,
            "disagreements": self.disagreements.to_dict() if self.disagreements else None,
            "notes": self.notes,
            "mcnemar": asdict(self.mcnemar) if self.mcnemar else None,
        }


def _per_class(tracker: Tracker, ref: RunRef) -> tuple[list[dict[str, Any]], str, RunRecord]:
    """(per-class report, its split, the run record) of one side."""
    record = tracker.run_record(ref.run_id)
    report = tracker.read_json(ref.run_id, PER_CLASS_FILE) if record else None
    if record is None or not report:
        raise UserError(
            f"{ref.title} has no {PER_CLASS_FILE} (pruned and failed runs have none); "
            "compare finished runs"
        )
    # TrialRun.log_result logs the test report when the run was scored on test, else val's
    split = "test" if "test_acc" in record.metrics else "val"
    return report, split, record


def compare_runs(
    champion: str,
    challenger: str,
    *,
    study: str | None = None,
    storage: str | None = None,
    data_dir: str | Path | None = None,
    top_n: int = 16,
    device: str = "auto",
    latency_repeats: int = 50,
    log: bool = True,
    tracker: Tracker | None = None,
) -> Comparison:
    """Compare two runs and (with ``log``) log the result to the challenger's run.

    Args:
        champion, challenger: run ids, trial numbers or aliases (see :func:`resolve_ref`).
        study, storage: the study for trial numbers and aliases.
        data_dir: dataset folder for the predictions (default: the one in the champion's
            config, else ``$CIFAR_HPO_DATA_DIR`` or ``./data``).
        top_n: disagreeing images in the grid (0: no grid).
        device: where to predict (``auto``, ``cpu``, ``cuda`` ...); latency is always the CPU's.
        latency_repeats: timed calls per model (0: no latency).
        log: log ``compare.json`` and the plots to the challenger's run under
            ``compare/<champion label>/``.
        tracker: MLflow access (default: the environment's tracking URI).

    Returns:
        A :class:`Comparison`.

    Raises:
        UserError: an unknown ref, a run without a per-class file, runs of different classes
            or scored on different splits.
        SweepSpecError: unknown study.
        DatasetError: the dataset cannot be loaded for the predictions.
        CheckpointError: a logged weights file that does not load.
    """
    tracker = tracker or Tracker()
    refs = {
        "champion": resolve_ref(champion, tracker, study, storage),
        "challenger": resolve_ref(challenger, tracker, study, storage),
    }
    reports, splits, records = {}, {}, {}
    for side, ref in refs.items():
        reports[side], splits[side], records[side] = _per_class(tracker, ref)
    if splits["champion"] != splits["challenger"]:
        raise UserError(
            f"the champion's {PER_CLASS_FILE} is of the {splits['champion']} split, the "
            f"challenger's of the {splits['challenger']} split; compare runs scored on the "
            "same split"
        )
    split = splits["champion"]
    rows = per_class_deltas(reports["champion"], reports["challenger"])
    key = "test_acc" if split == "test" else "final_val_acc"
    acc = {side: records[side].metrics.get(key) for side in refs}
    both = acc["champion"] is not None and acc["challenger"] is not None
    acc["delta"] = acc["challenger"] - acc["champion"] if both else None
    out = Comparison(
        champion=refs["champion"],
        challenger=refs["challenger"],
        split=split,
        class_names=[row["name"] for row in rows],
        per_class=rows,
        macro=macro_deltas(rows),
        accuracy=acc,
        cost={},
    )
    weights = {side: tracker.load_weights(ref.run_id, ref.model_id) for side, ref in refs.items()}
    models = {side: model_from_weights(w) for side, w in weights.items() if w is not None}
    images = None
    if len(models) == 2:
        images = _predict(out, weights, models, data_dir, device, top_n)
    else:
        missing = [refs[s].title for s, w in weights.items() if w is None]
        out.notes.append(
            f"no logged model for {' and '.join(missing)} (only a study's top-k trials keep "
            "one): confusion difference, disagreements and latency need both models"
        )
    for side in refs:
        if side in models:
            out.cost[side] = model_cost(models[side], weights[side], latency_repeats)
        else:
            metrics = records[side].metrics
            out.cost[side] = {
                "params": _int(metrics.get("num_params")),
                "macs": _int(metrics.get("macs")),
                "tta": None,
                "forward_passes": None,
                "latency_ms": None,
            }
    if log:
        out.artifact_dir = f"{ARTIFACT_ROOT}/{refs['champion'].label}"
        _log(tracker, out, images)
    return out


def _int(value: float | None) -> int | None:
    return int(value) if value is not None else None


def _predict(
    out: Comparison,
    weights: dict[str, dict[str, Any]],
    models: dict[str, nn.Module],
    data_dir: str | Path | None,
    device: str,
    top_n: int,
) -> np.ndarray | None:
    """Predict ``out.split`` with both models; fill the confusion, changes and disagreements.
    Returns the images of the top disagreements, uint8 (<= top_n, 32, 32, 3); None when
    ``top_n`` is 0."""
    from cifar_hpo.config import TrainConfig
    from cifar_hpo.data import load_dataset
    from cifar_hpo.device import resolve_device
    from cifar_hpo.engine import make_splits

    configs = {side: w["config"] for side, w in weights.items()}
    names = {side: configs[side]["data"]["dataset"] for side in configs}
    if names["champion"] != names["challenger"]:
        raise UserError(
            f"the champion was trained on {names['champion']}, the challenger on "
            f"{names['challenger']}; compare runs of one dataset"
        )
    for side, w in weights.items():
        if list(w["class_names"]) != out.class_names:
            raise UserError(
                f"the {side}'s model and its {PER_CLASS_FILE} name different classes; "
                "is the run's model from another run?"
            )
    data = load_dataset(names["champion"], data_dir or configs["champion"]["data"].get("data_dir"))
    if list(data.class_names) != out.class_names:
        raise UserError(
            f"the dataset loaded ({data.name}, {data.extra.get('cache_path', data.source)}) has "
            f"other classes than the runs; pass --data-dir"
        )
    if out.split == "test":
        images, labels = data.test_images, data.test_labels
    else:
        split_of = {s: _val_split(c) for s, c in configs.items()}
        if split_of["champion"] != split_of["challenger"]:
            out.notes.append(
                "the runs hold out different validation images (data.val_fraction/split_seed); "
                "predictions use the champion's"
            )
        idx = make_splits(TrainConfig.from_dict(configs["champion"]), data).val_idx
        images, labels = data.train_images[idx], data.train_labels[idx]
    dev = resolve_device(device)
    probs = {side: class_probabilities(models[side], w, images, dev) for side, w in weights.items()}
    num_classes = len(out.class_names)
    for side, p in probs.items():
        out.confusion[side] = confusion_matrix(p.argmax(dim=1).numpy(), labels, num_classes)
    out.confusion["diff"] = out.confusion["challenger"] - out.confusion["champion"]
    out.changes = confusion_changes(out.confusion["diff"], out.class_names)
    out.disagreements = find_disagreements(probs["champion"], probs["challenger"], labels, top_n)
    correct = {side: p.argmax(dim=1).numpy() == labels for side, p in probs.items()}
    out.mcnemar = mcnemar(correct["challenger"], correct["champion"])
    if top_n <= 0:
        return None
    return images[[row["index"] for row in out.disagreements.top]]


def _short(ref: RunRef) -> str:
    return ref.label if ref.kind is RefKind.ALIAS else ref.run_id[:8]


def _val_split(config: dict[str, Any]) -> tuple[Any, Any]:
    return config["data"].get("val_fraction"), config["data"].get("split_seed")


def _log(tracker: Tracker, out: Comparison, images: np.ndarray | None) -> None:
    """Write compare.json and the plots into a temporary folder and log it."""
    from cifar_hpo.plots import plot_confusion_diff, plot_disagreements

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "compare.json").write_text(json.dumps(out.to_dict(), indent=1))
        if "diff" in out.confusion:
            title = (
                f"challenger {_short(out.challenger)} - champion {_short(out.champion)}\n"
                f"images per cell, {out.split} split"
            )
            plot_confusion_diff(
                out.confusion["diff"], out.class_names, folder / "confusion_diff.png", title
            )
        if out.disagreements is not None and images is not None:
            plot_disagreements(
                images, out.disagreements.top, out.class_names, folder / "disagreements.png"
            )
        tracker.log_folder(out.challenger.run_id, folder, out.artifact_dir)
