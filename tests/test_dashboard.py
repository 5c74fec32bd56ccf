"""``cifar-hpo dashboard``: optuna-dashboard over a storage, started as a subprocess on a free
port of 127.0.0.1 and asked for its study list over HTTP; one-line errors for a missing
package and a taken port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
from helpers import fails_with
from servers import free_port
from typer.testing import CliRunner

from cifar_hpo.cli import app

REPO_ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _storage(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="served", storage=url, direction="maximize")
    study.tell(study.ask(), 0.5)
    return url


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


def test_dashboard_serves_the_study_list(tmp_path):
    url = _storage(tmp_path)
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    log = tmp_path / "dashboard.log"
    cmd = [sys.executable, "-m", "cifar_hpo.cli", "dashboard", "--port", str(port)]
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*cmd, "--storage", url],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env=env,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"exited {proc.returncode}: {log.read_text()[-800:]}"
            try:
                studies = _get_json(f"http://127.0.0.1:{port}/api/studies")
                break
            except OSError:
                assert time.monotonic() < deadline, f"no answer in 120 s: {log.read_text()}"
                time.sleep(0.5)
        names = [s["study_name"] for s in studies["study_summaries"]]
        assert names == ["served"]
        assert f"http://127.0.0.1:{port}/dashboard" in log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_missing_package_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # import raises ImportError
    result = runner.invoke(app, ["dashboard", "--storage", _storage(tmp_path)])
    fails_with(result, "optuna-dashboard is not installed", "pip install 'cifar-hpo[dashboard]'")


def test_taken_port_gives_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["dashboard", "--storage", _storage(tmp_path), "--port", str(port)]
        result = runner.invoke(app, args)
    fails_with(result, f"cannot serve on 127.0.0.1:{port}", "choose another --port")
