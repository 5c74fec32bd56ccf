"""Checkpoint files: round trip, and one-line errors for every way a file can be wrong."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from cifar_hpo.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)


class _Evil:
    """Unpickling this runs a shell command (in the current directory)."""

    def __reduce__(self):
        return (os.system, ("touch MARKER",))


def _error(path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message, message
    return message


def _state():
    gen = torch.Generator().manual_seed(3)
    return {
        "epoch": 2,
        "model": {"w": torch.randn(3, 4, generator=gen), "b": torch.arange(4)},
        "history": [{"epoch": 1, "lr": 0.1, "val_acc": None}, {"epoch": 2, "lr": 0.05}],
        "generator": gen.get_state(),
        "config": {"optim": {"lr": 0.1}, "model": {"name": "seed000_cnn"}},
    }


def test_round_trip(tmp_path):
    state = _state()
    path = save_checkpoint(state, tmp_path / "sub" / "ckpt.pt")
    assert path == tmp_path / "sub" / "ckpt.pt" and path.is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt.pt"]  # no .tmp left
    loaded = load_checkpoint(path)
    assert loaded["format"] == CHECKPOINT_FORMAT
    assert loaded["epoch"] == 2 and loaded["history"] == state["history"]
    assert loaded["config"] == state["config"]
    assert torch.equal(loaded["model"]["w"], state["model"]["w"])
    assert torch.equal(loaded["model"]["b"], state["model"]["b"])
    assert torch.equal(loaded["generator"], state["generator"])
    # overwrite in place
    save_checkpoint({**state, "epoch": 3}, path)
    assert load_checkpoint(path)["epoch"] == 3


def test_missing_file(tmp_path):
    assert "does not exist" in _error(tmp_path / "nope.pt")


def test_truncated_file(tmp_path):
    path = save_checkpoint(_state(), tmp_path / "c.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "corrupt or truncated" in _error(path)
    path.write_bytes(b"")
    assert "corrupt or truncated" in _error(path)


def test_garbage_file_is_corrupt_not_a_refusal(tmp_path):
    path = tmp_path / "g.pt"
    path.write_bytes(b"garbage, not a checkpoint at all\n" * 10)
    message = _error(path)
    assert "corrupt or truncated" in message
    assert "weights_only` set to `False`" not in message  # no advice to load unsafely


@pytest.mark.parametrize("thing", [{"epoch": 1}, [1, 2, 3], {"format": "other/1"}])
def test_other_torch_files_are_not_ours(tmp_path, thing):
    path = tmp_path / "x.pt"
    torch.save(thing, path)
    assert _error(path) == f"{str(path)!r} is not a cifar-hpo checkpoint"


def test_malicious_torch_pickle_is_refused_and_never_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "epoch": 1, "payload": _Evil()}, path)
    message = _error(path)
    assert "refused by weights_only loading" in message
    assert "system" in message  # names what it refused to call
    assert not (tmp_path / "MARKER").exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_plain_pickle_is_refused_and_never_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"format": CHECKPOINT_FORMAT, "x": _Evil()}, protocol=2))
    assert "refused by weights_only loading" in _error(path)
    assert not (tmp_path / "MARKER").exists()
    # newer protocols stop even earlier (an opcode the safe unpickler does not know)
    path.write_bytes(pickle.dumps({"format": CHECKPOINT_FORMAT, "x": _Evil()}, protocol=5))
    assert str(path.name) in _error(path)
    assert not (tmp_path / "MARKER").exists()


def test_unwritable_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(_state(), blocker / "sub" / "c.pt")
    message = str(info.value)
    assert message.startswith("cannot write checkpoint") and "Not a directory" in message
    assert "\n" not in message


def test_failed_save_leaves_no_temporary_file(tmp_path):
    with pytest.raises(Exception, match="pickle"):
        save_checkpoint({"bad": lambda: 1}, tmp_path / "c.pt")
    assert list(tmp_path.iterdir()) == []
