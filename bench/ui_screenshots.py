"""What a user sees in ``mlflow ui`` after a sweep, as PNG screenshots from headless Chromium.

Starts ``mlflow server`` (what ``mlflow ui`` runs) on a free port of 127.0.0.1 over the
project's tracking store, waits for ``/health``, and saves, for study ``--study``:

* ``runs.png``: the experiment ``cifar-hpo/<study>`` in the model-training view (runs table);
* ``trial.png``: the best trial's run page, its per-epoch metric charts;
* ``models.png``: the experiment's Models tab (the top-k LoggedModels);
* ``champion.png``: the registered model ``cifar-hpo-<study>`` with its ``champion`` alias.

Needs Debian's ``chromium`` (``apt-get install chromium``) and, to click through the pages as
a person does, ``pip install 'cifar-hpo[ui]'`` (Playwright); the server is stopped at the end.
Screenshots are runtime output, not committed (``--out`` defaults to ``/tmp/cifar-hpo-ui``)::

    .venv/bin/python bench/ui_screenshots.py --study baseline
    .venv/bin/python bench/ui_screenshots.py --study quick --tracking-uri sqlite:///mlflow.db
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient

from cifar_hpo.sweep.report import best_trial
from cifar_hpo.sweep.storage import RUN_ID_ATTR, make_storage


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(backend: str, artifacts: str, port: int, log: Path) -> subprocess.Popen:
    """``mlflow server`` on 127.0.0.1:``port``; returns once ``/health`` answers.

    Raises:
        RuntimeError: the server exits or does not answer within 120 s.
    """
    exe = Path(sys.executable).parent / "mlflow"
    cmd = [str(exe), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    cmd += ["--backend-store-uri", backend, "--default-artifact-root", artifacts]
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    proc = subprocess.Popen(
        cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"mlflow server did not answer within 120 s; see {log}")


EXPAND_PARENT = "button[data-component-id*='runnamecellrenderer']"


def screenshot(url: str, path: Path, wait_ms: int = 12000, size: str = "1600,1000") -> Path:
    """Render ``url`` in headless Chromium into ``path``.

    With Playwright installed (``pip install playwright``; it drives Debian's chromium, no
    browser download) the page is used as a person would: the "Model training" view chosen,
    the assistant panel closed, nested runs expanded, charts given time to draw. Without it,
    ``chromium --screenshot`` renders the page as it first opens.
    """
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise RuntimeError("no chromium: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is not None:
        width, height = (int(v) for v in size.split(","))
        with sync_playwright() as pw:
            chrome = pw.chromium.launch(executable_path=browser, args=["--no-sandbox"])
            page = chrome.new_page(viewport={"width": width, "height": height})
            page.goto(url)
            page.wait_for_timeout(5000)
            try:  # the UI's mode is remembered; choosing it may navigate away, so come back
                page.get_by_text("Model training", exact=True).first.click(timeout=3000)
                page.wait_for_timeout(1500)
                page.goto(url)
                page.wait_for_timeout(4000)
            except Exception:  # noqa: BLE001 - no mode switch on this page
                pass
            for action in (
                lambda: page.get_by_role("button", name="Close").first.click(timeout=3000),
                lambda: page.locator(EXPAND_PARENT).first.click(timeout=3000),
            ):
                try:
                    action()
                    page.wait_for_timeout(1500)
                except Exception:  # noqa: BLE001 - a control this page does not have
                    pass
            page.wait_for_timeout(wait_ms)
            page.screenshot(path=str(path))
            chrome.close()
        return path
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={size}",
            f"--virtual-time-budget={wait_ms}",
            f"--screenshot={path}",
            url,
        ]
        subprocess.run(cmd, capture_output=True, timeout=180, check=False)
    if not path.is_file():
        raise RuntimeError(f"chromium wrote no screenshot of {url}")
    return path


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", default="baseline")
    parser.add_argument("--storage", default=None, help="Optuna storage URL (default: studies/)")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"))
    parser.add_argument("--artifacts", default="mlruns", help="artifact root of a local store")
    parser.add_argument("--out", type=Path, default=Path("/tmp/cifar-hpo-ui"))
    args = parser.parse_args(argv)
    backend = args.tracking_uri or "sqlite:///mlflow.db"
    client = MlflowClient(backend)
    exp = client.get_experiment_by_name(f"cifar-hpo/{args.study}")
    if exp is None:
        sys.exit(f"no MLflow experiment cifar-hpo/{args.study} in {backend}")
    study = optuna.load_study(study_name=args.study, storage=make_storage(args.storage))
    best = best_trial(study)
    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}/#"
    pages = {
        "runs.png": f"{base}/experiments/{exp.experiment_id}/runs",
        "models.png": f"{base}/experiments/{exp.experiment_id}/models",
        "champion.png": f"{base}/models/cifar-hpo-{args.study}",
    }
    if best is not None and best.user_attrs.get(RUN_ID_ATTR):
        run_id = best.user_attrs[RUN_ID_ATTR]
        pages["trial.png"] = f"{base}/experiments/{exp.experiment_id}/runs/{run_id}/model-metrics"
    artifacts = str(Path(args.artifacts).resolve())
    proc = start_server(backend, artifacts, port, args.out / "mlflow-server.log")
    written = []
    try:
        for name, url in pages.items():
            written.append(screenshot(url, args.out / name))
            print(f"{name}: {url}")
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    return written


if __name__ == "__main__":
    main()
