"""The bad-input catalogue: every bad input through the CLI gives exit status 2 and one line
``error: ...`` naming the value and what is allowed, and loses nothing (the studies, MLflow run,
run folder and dataset cache that were there stay as they were). docs/errors.md lists the same
catalogue as a table (bench/errors_page.py writes it from CATALOGUE). Also: a non-finite loss
fails its trial and the study goes on, and model files holding a crafted pickle are refused
without running it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import mlflow
import optuna
import pytest
import torch
import yaml
from helpers import TINY_SWEEP_BASE, fails_with
from synthetic import make_archive, make_cifar_data, write_class_folders
from typer.testing import CliRunner

from cifar_hpo.checkpoint import save_checkpoint
from cifar_hpo.cli import app
from cifar_hpo.data import cache_path, save_cache
from cifar_hpo.models import list_models

runner = CliRunner()
STORAGE = "sqlite:///studies/optuna.db"
SPEC = {
    "base": dict(TINY_SWEEP_BASE),
    "budget": {"epochs": 1},
    "space": {"optim.lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True}},
    "sampler": {"name": "random", "seed": 0},
    "pruner": {"name": "none"},
    "top_k_models": 0,
}


class _Evil:
    """Unpickling this runs a shell command (in the current directory)."""

    def __reduce__(self):
        return (os.system, ("touch MARKER",))


def _spec(**changes) -> str:
    spec = json.loads(json.dumps(SPEC))
    for key, value in changes.items():
        spec[key] = value
    return yaml.safe_dump(spec)


def _space(**param) -> str:
    return _spec(space={"optim.lr": param})


# name -> file text, written under sweeps/ once for the whole module
SPECS = {
    "malformed": "base: {optim.lr: [0.1\n",
    "unknown_key": _spec(trails=3),
    "unknown_config_key": _spec(base={**SPEC["base"], "optim.lrr": 0.1}),
    "wrong_type": _spec(budget={"epochs": "four"}),
    "inverted": _space(type="float", low=1.0, high=0.1),
    "empty_range": _space(type="float", low=0.1, high=0.1),
    "log_zero": _space(type="float", low=0.0, high=0.1, log=True),
    "bad_model": _spec(space={"model.name": {"type": "categorical", "choices": ["resnet1000"]}}),
    "bad_optimizer": _spec(
        space={"optim.name": {"type": "categorical", "choices": ["sgd", "rmsprop"]}}
    ),
    "bad_scheduler": _spec(base={**SPEC["base"], "schedule.name": "warmup"}),
    "batch_zero": _spec(space={"batch_size": {"type": "int", "low": 0, "high": 64}}),
    "bad_sampler": _spec(sampler={"name": "bayes"}),
    "keep": _spec(),
    "mo_pruner": _spec(
        objective=[{"metric": "val_acc"}, {"metric": "params"}], pruner={"name": "median"}
    ),
    "mo_cmaes": _spec(
        objective=[{"metric": "val_acc"}, {"metric": "params"}], sampler={"name": "cmaes"}
    ),
    "bad_metric": _spec(objective=[{"metric": "accuracy"}]),
    "wrong_direction": _spec(
        objective=[{"metric": "val_acc"}, {"metric": "params", "direction": "maximize"}],
        pruner={"name": "none"},
    ),
    "bad_constraint": _spec(constraints={"size": {"max": 1}}),
    "nonfinite": _spec(
        space={"optim.lr": {"type": "float", "low": 0.01, "high": 1e30, "log": True}},
        enqueue=[{"optim.lr": 1e30}, {"optim.lr": 0.05}],
    ),
}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def keep(tmp_path_factory):
    """A project with things to keep (studies ``keep`` and ``empty``, an MLflow run, a run
    folder with a checkpoint, the dataset cache) and the bad files of the catalogue."""
    root = tmp_path_factory.mktemp("bad-inputs")
    old = Path.cwd()
    os.chdir(root)
    try:
        save_cache(make_cifar_data("cifar10", 30, 10), cache_path(root / "data", "cifar10"))
        Path("sweeps").mkdir()
        for name, text in SPECS.items():
            Path("sweeps", f"{name}.yaml").write_text(text)
        Path("studies").mkdir()
        dist = optuna.distributions.FloatDistribution(0.01, 0.1, log=True)
        study = optuna.create_study(study_name="keep", storage=STORAGE, direction="maximize")
        study.add_trial(
            optuna.trial.create_trial(
                params={"optim.lr": 0.05}, distributions={"optim.lr": dist}, value=0.5
            )
        )
        empty = optuna.create_study(study_name="empty", storage=STORAGE, direction="maximize")
        empty.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
        client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
        exp = client.create_experiment("cifar-hpo/keep")
        run = client.create_run(exp, run_name="trial-0")
        client.log_metric(run.info.run_id, "val_acc", 0.5)
        client.set_terminated(run.info.run_id, "FINISHED")
        save_checkpoint({"epoch": 1, "config": {}}, "runs/keep/checkpoint.pt")

        # bad files
        Path("garbage.tar.gz").write_bytes(b"\x1f\x8b\x08" + bytes(range(256)) * 2)
        write_class_folders("src_corrupt", n_train=2, n_test=1, fmt="jpg")
        Path("src_corrupt/train/cat/0000.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
        make_archive("src_corrupt", "corrupt_image.tar")
        write_class_folders(
            "src_wrong", names=[f"class{i}" for i in range(10)], n_train=1, n_test=1
        )
        make_archive("src_wrong", "wrong_folders.tar")
        write_class_folders("src_seven", num_classes=7, n_train=1, n_test=1)
        make_archive("src_seven", "seven_classes.tar")
        whole = Path("runs/keep/checkpoint.pt").read_bytes()
        Path("truncated.pt").write_bytes(whole[: len(whole) // 2])
        Path("garbage.pt").write_bytes(b"not a checkpoint " * 40)
        torch.save({"weights": torch.zeros(3)}, "foreign.pt")
        Path("image.png").write_bytes(b"")
        Path("blocker").write_text("a regular file, not a folder")
        Path("empty.yaml").write_text("")
    finally:
        os.chdir(old)
    return root


def snapshot(root: Path) -> dict:
    """What must survive any bad input."""
    studies = {}
    for name in ("keep", "empty"):
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{root}/studies/optuna.db")
        studies[name] = [(t.number, t.state.name, t.value, t.params) for t in study.trials]
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("cifar-hpo/keep")
    runs = client.search_runs([exp.experiment_id])
    files = {
        str(p.relative_to(root)): _sha(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }
    return {
        "files": files,  # every file, new ones included
        "studies": studies,
        "runs": [(r.info.run_id, r.info.status, r.data.metrics) for r in runs],
        "cache": _sha(root / "data" / "cache" / "cifar10.npz"),
        "checkpoint": _sha(root / "runs" / "keep" / "checkpoint.pt"),
    }


@pytest.fixture
def project(keep, monkeypatch, request):
    monkeypatch.chdir(keep)
    monkeypatch.setenv("CIFAR_HPO_DATA_DIR", str(keep / "data"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = snapshot(keep)
    yield keep
    after = snapshot(keep)
    old, new = before.pop("files"), after.pop("files")
    if not request.node.name.startswith("test_non_finite_loss"):  # that one trains on purpose
        changed = sorted(k for k in {*old, *new} if old.get(k) != new.get(k))
        assert not changed, changed  # no file new, changed or gone
    assert after == before  # nothing lost
    assert not (keep / "MARKER").exists()


def _sweep(study: str, *extra: str) -> list[str]:
    return ["sweep", "--study", study, "--trials", "1", "--no-progress", *extra]


MODELS = ", ".join(list_models())

# (id, CLI arguments, fragments of the one error line, extra environment)
CATALOGUE = [
    ("malformed YAML", _sweep("malformed"), ["malformed YAML", "malformed.yaml", "line 2"], {}),
    (
        "unknown key",
        _sweep("unknown_key"),
        ["unknown key 'trails'", "allowed: description, objective, constraints, rules, base"],
        {},
    ),
    (
        "unknown config key",
        _sweep("unknown_config_key"),
        ["unknown key 'optim.lrr'", "allowed: name, lr, momentum"],
        {},
    ),
    (
        "wrong type",
        _sweep("wrong_type"),
        ["budget.epochs", "valid integer", "(got 'four')"],
        {},
    ),
    (
        "inverted range",
        _sweep("inverted"),
        ["space.optim.lr", "low=1.0 must be < high=0.1"],
        {},
    ),
    ("empty range", _sweep("empty_range"), ["low=0.1 must be < high=0.1"], {}),
    ("log range low <= 0", _sweep("log_zero"), ["log range needs low > 0", "low=0.0"], {}),
    (
        "unknown model (sweep)",
        _sweep("bad_model"),
        ["unknown model 'resnet1000'", f"choose one of: {MODELS}"],
        {},
    ),
    (
        "unknown model (train)",
        ["train", "--model", "resnet1000", "--out", "runs_new"],
        ["unknown model 'resnet1000'", f"choose one of: {MODELS}"],
        {},
    ),
    (
        "unknown optimizer",
        _sweep("bad_optimizer"),
        ["optim.name", "'sgd', 'adam', 'adamw' or 'muon'", "(got 'rmsprop')"],
        {},
    ),
    (
        "unknown scheduler (sweep)",
        _sweep("bad_scheduler"),
        [
            "schedule.name",
            "'onecycle', 'linear', 'cosine', 'plateau', 'step' or 'constant'",
            "'warmup'",
        ],
        {},
    ),
    (
        "unknown scheduler (train)",
        ["train", "--scheduler", "warmup", "--out", "runs_new"],
        ["schedule.name", "'onecycle', 'linear', 'cosine'", "(got 'warmup')"],
        {},
    ),
    (
        "batch size < 1 (sweep)",
        _sweep("batch_zero"),
        ["space.batch_size", "greater than or equal to 1", "(got 0)"],
        {},
    ),
    (
        "batch size < 1 (train)",
        ["train", "--batch-size", "0", "--out", "runs_new"],
        ["batch_size", "greater than or equal to 1", "(got 0)"],
        {},
    ),
    ("unknown sampler", _sweep("bad_sampler"), ["'bayes'", "'tpe', 'random', 'grid'"], {}),
    (
        "malformed --set",
        ["train", "--set", "optim.lr", "--out", "runs_new"],
        ["override 'optim.lr'", "key=value"],
        {},
    ),
    (
        "unknown study (sweep)",
        _sweep("nosuch"),
        ["unknown study 'nosuch'", "no sweeps/nosuch.yaml", "available: ", "keep"],
        {},
    ),
    (
        "unknown study (best)",
        ["best", "--study", "nosuch"],
        ["unknown study 'nosuch'", "stored studies: ", "empty, keep"],
        {},
    ),
    (
        "best without a completed trial",
        ["best", "--study", "empty"],
        ["study 'empty' has no completed trial", "cifar-hpo sweep --study empty --trials N"],
        {},
    ),
    (
        "corrupt archive",
        ["data", "import", "garbage.tar.gz"],
        ["garbage.tar.gz is not a readable archive", "expected a .tar, .tar.gz/.tgz or .zip"],
        {},
    ),
    (
        "unreadable image",
        ["data", "import", "corrupt_image.tar"],
        ["cannot decode image", "train/cat/0000.jpg", "corrupt_image.tar"],
        {},
    ),
    (
        "wrong number of class folders",
        ["data", "import", "seven_classes.tar"],
        [
            "has 7 classes; expected 10 (cifar10) or 100 (cifar100)",
            "(class folders apple, aquarium_fish, ",
        ],
        {},
    ),
    (
        "wrong class folders",
        ["data", "import", "wrong_folders.tar"],
        ["do not match cifar10", "unexpected [class0, ", "missing [airplane, "],
        {},
    ),
    (
        "truncated checkpoint",
        ["train", "--resume", "truncated.pt"],
        [
            "checkpoint 'truncated.pt' is corrupt or truncated",
            "expected a checkpoint.pt written by cifar-hpo train",
        ],
        {},
    ),
    (
        "corrupt checkpoint",
        ["train", "--resume", "garbage.pt"],
        [
            "checkpoint 'garbage.pt' is corrupt or truncated",
            "expected a checkpoint.pt written by cifar-hpo train",
        ],
        {},
    ),
    (
        "foreign model file (predict)",
        ["predict", "foreign.pt", "image.png"],
        ["'foreign.pt' is not a model exported by cifar-hpo", "cifar-hpo best --export"],
        {},
    ),
    (
        "output path under a file (train --out)",
        ["train", "--model", "seed000_cnn", "--out", "blocker/runs"],
        ["Not a directory", "blocker/runs"],
        {},
    ),
    (
        "unwritable export path",
        ["best", "--study", "keep", "--export", "/proc/cifar_hpo/model.pt"],
        ["No such file or directory", "/proc/cifar_hpo"],
        {},
    ),
    (
        "export path under a file",
        ["best", "--study", "keep", "--export", "blocker/model.pt"],
        ["blocker"],
        {},
    ),
    (
        "several workers on SQLite",
        [*_sweep("keep"), "--workers", "3"],
        ["--workers 3", "SQLite is for one process", "journal:studies/keep.log", "postgresql://"],
        {},
    ),
    (
        "negative trial count",
        ["sweep", "--study", "keep", "--trials", "-3"],
        ["--trials must be a whole number >= 1, got '-3'"],
        {},
    ),
    (
        "non-numeric trial count",
        ["sweep", "--study", "keep", "--trials", "abc"],
        ["--trials must be a whole number >= 1, got 'abc'"],
        {},
    ),
    (
        "tracking server down",
        _sweep("keep"),
        ["MLflow tracking server http://127.0.0.1:9 does not answer", "unset MLFLOW_TRACKING_URI"],
        {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"},
    ),
    (
        "negative timeout",
        ["sweep", "--study", "keep", "--trials", "1", "--timeout", "-5"],
        ["--timeout must be a number of seconds > 0, got -5"],
        {},
    ),
    (
        "unknown storage URL",
        ["studies", "--storage", "foo://bar"],
        ["'foo://bar'", "expected sqlite:///FILE, postgresql://HOST/DB or journal:FILE"],
        {},
    ),
    (
        "bad heartbeat setting",
        _sweep("keep"),
        ["CIFAR_HPO_HEARTBEAT_INTERVAL='soon'", "whole number of seconds >= 1"],
        {"CIFAR_HPO_HEARTBEAT_INTERVAL": "soon"},
    ),
    (
        "journal file under a file",
        _sweep("keep", "--storage", "journal:blocker/keep.log"),
        ["cannot open journal storage 'blocker/keep.log'", "'blocker' is a file, not a folder"],
        {},
    ),
    (
        "pruner with several objectives",
        _sweep("mo_pruner"),
        ["pruner median needs a single objective", "use pruner: {name: none}"],
        {},
    ),
    (
        "cmaes with several objectives",
        _sweep("mo_cmaes"),
        ["sampler cmaes optimizes one objective", "tpe, nsga2"],
        {},
    ),
    ("unknown objective metric", _sweep("bad_metric"), ["'accuracy'", "val_acc", "params"], {}),
    (
        "wrong objective direction",
        _sweep("wrong_direction"),
        ["objective params must be minimized"],
        {},
    ),
    ("unknown constraint measure", _sweep("bad_constraint"), ["'size'", "params"], {}),
    (
        "best: trial not in the study",
        ["best", "--study", "keep", "--trial", "7"],
        ["--trial 7: not in the study", "completed trials of 'keep' (best first): 0"],
        {},
    ),
    (
        "best: no trial within the limit",
        ["best", "--study", "keep", "--max-params", "10"],
        ["no completed feasible trial of 'keep'", "10"],
        {},
    ),
    (
        "compare: unknown run",
        ["compare", "nosuch", "other"],
        ["unknown run 'nosuch'", "MLflow run id (32 hex digits)"],
        {},
    ),
    (
        "leaderboard: unknown sort key",
        ["studies", "--study", "keep", "--top", "5", "--sort", "size"],
        ["unknown sort key 'size' for study 'keep'; allowed: value"],
        {},
    ),
    (
        "no workers",
        _sweep("keep", "--workers", "0"),
        ["--workers 0: expected 1 or more worker processes"],
        {},
    ),
    (
        "dashboard port out of range",
        ["dashboard", "--port", "99999"],
        ["--port 99999: expected a TCP port from 1 to 65535"],
        {},
    ),
    (
        "unwritable tracking store",
        ["train", "--model", "seed000_cnn", "--epochs", "1"],
        ["MLflow tracking store sqlite:////proc/mlflow.db cannot be written", "in /proc"],
        {"MLFLOW_TRACKING_URI": "sqlite:////proc/mlflow.db"},
    ),
    (
        "empty config file",
        ["train", "--config", "empty.yaml"],
        ["config file 'empty.yaml' is empty: expected a mapping of keys such as 'epochs: 10'"],
        {},
    ),
    (
        "leaderboard: --top 0",
        ["studies", "--study", "keep", "--top", "0"],
        ["--top must be >= 1, got 0"],
        {},
    ),
]


@pytest.mark.parametrize(
    ("args", "fragments", "env"),
    [pytest.param(a, f, e, id=i) for i, a, f, e in CATALOGUE],
)
def test_bad_input(project, monkeypatch, args, fragments, env):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    fails_with(runner.invoke(app, args), *fragments)


def test_missing_dataset(project, monkeypatch):
    import torchvision.datasets

    class Offline:  # never touch the network in tests
        def __init__(self, *args, **kwargs):
            raise RuntimeError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    result = runner.invoke(app, ["lr-find", "--model", "seed000_cnn", "--data-dir", "nodata"])
    fails_with(result, "cifar10 not found in nodata", "cifar-hpo data import PATH")
    args = ["train", "--model", "seed000_cnn", "--data-dir", "nodata", "--out", "fresh-runs"]
    fails_with(runner.invoke(app, args), "cifar10 not found in nodata")
    assert not (project / "fresh-runs").exists()  # no empty run folder left behind


def test_catalogue_is_documented():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "errors.md").read_text()
    for name, *_ in CATALOGUE:
        assert f"| {name} |" in doc, name


# ----------------------------------------------------------------------------- non-finite loss
def test_non_finite_loss_fails_the_trial_and_the_study_goes_on(project):
    result = runner.invoke(app, ["sweep", "--study", "nonfinite", "--trials", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="nonfinite", storage=STORAGE)
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE"]
    assert "non-finite" in study.trials[0].user_attrs["fail_reason"]
    assert "trial 0 fail: " in result.output and "non-finite" in result.output
    run = mlflow.MlflowClient().get_run(study.trials[0].user_attrs["mlflow_run_id"])
    assert run.info.status == "FAILED"


# ----------------------------------------------------------------------------- crafted pickles
@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A genuine exported model file to tamper with."""
    from cifar_hpo.export import export_classifier
    from cifar_hpo.models import create_model

    path = tmp_path_factory.mktemp("export") / "model.pt"
    model = create_model("seed000_cnn", 10).eval()
    names = [f"c{i}" for i in range(10)]
    return export_classifier(model, path, class_names=names, mean=[0.5] * 3, std=[0.25] * 3)


def _tamper(src: Path, dst: Path, edit) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = edit(info.filename.split("/", 1)[1], zin.read(info.filename))
            zout.writestr(info, data)
    return dst


def _evil_bytes() -> bytes:
    buf = io.BytesIO()
    torch.save((_Evil(),), buf)
    return buf.getvalue()


def _pickled_weight(member: str, data: bytes) -> bytes:
    if member == "data/weights/model_weights_config.json":
        config = json.loads(data)
        first = next(iter(config["config"].values()))
        first["use_pickle"] = True
        return json.dumps(config).encode()
    if member == "data/weights/weight_0":
        return _evil_bytes()
    return data


def _pickled_inputs(member: str, data: bytes) -> bytes:
    return _evil_bytes() if member.startswith("data/sample_inputs/") else data


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("plain torch.save", "not a torch.export archive"),
        ("pickled sample inputs", "refused by weights_only loading"),
        ("pickled weight", "is stored as a pickle, refused"),
    ],
)
def test_predict_never_runs_a_crafted_pickle(project, exported, tmp_path, kind, fragment):
    crafted = tmp_path / "crafted.pt"
    if kind == "plain torch.save":
        torch.save({"model": _Evil()}, crafted)
    else:
        _tamper(exported, crafted, _pickled_inputs if "inputs" in kind else _pickled_weight)
    result = runner.invoke(app, ["predict", str(crafted), "image.png"])
    fails_with(result, "is not a model exported by cifar-hpo", fragment)
    assert not Path("MARKER").exists()  # (the project fixture checks it too)
    # the untampered file still loads
    from cifar_hpo.export import load_classifier

    assert load_classifier(exported)[1]["class_names"][0] == "c0"
