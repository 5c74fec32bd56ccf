"""Small helpers shared by the tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load_bench(name: str):
    """The benchmark script ``bench/<name>.py`` as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_config(**overrides):
    """A fast config: seed000_cnn, 2 epochs, batch 32, flip-crop, fp32 on CPU."""
    from cifar_hpo.config import TrainConfig

    base = {
        "model.name": "seed000_cnn",
        "epochs": 2,
        "batch_size": 32,
        "optim.lr": 0.05,
        "augment.policy": "flip-crop",
        "device": "cpu",
        "amp": "off",
        "eval_batch_size": 200,
    }
    base.update(overrides)
    return TrainConfig.from_dict(base)


#: Base config of the tiny sweep specs in the worker and bad-input tests (fast on 2 cores).
TINY_SWEEP_BASE = {
    "model.name": "seed000_cnn",
    "batch_size": 32,
    "augment.policy": "flip",
    "device": "cpu",
    "amp": "off",
    "eval_batch_size": 200,
    "data.val_fraction": 0.2,
}


def fails_with(result, *fragments: str) -> str:
    """A CLI result with exit status 2 and one ``error: ...`` line on stderr holding every
    fragment, and no traceback; returns that line."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "Traceback" not in result.output
    return lines[0]


def sweep_ok(name: str, trials: int):
    """``cifar-hpo sweep --study name --trials N --no-progress`` through CliRunner, which must
    exit 0; returns the result."""
    from typer.testing import CliRunner

    from cifar_hpo.cli import app

    result = CliRunner().invoke(
        app, ["sweep", "--study", name, "--trials", str(trials), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    return result


def load_study(name: str):
    """The study ``name`` from the default Optuna storage (``studies/optuna.db``)."""
    import optuna

    from cifar_hpo.sweep.storage import default_storage_url

    return optuna.load_study(study_name=name, storage=default_storage_url())
