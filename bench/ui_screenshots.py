"""What a user sees in ``mlflow ui`` and optuna-dashboard after a sweep, as PNG screenshots from
headless Chromium.

Starts ``mlflow server`` (what ``mlflow ui`` runs) on a free port of 127.0.0.1 over the
project's tracking store, waits for ``/health``, and saves, for study ``--study``:

* ``runs.png``: the experiment ``cifar-hpo/<study>`` in the model-training view (runs table),
  as a fresh browser profile opens it (no clicks: :data:`MLFLOW_VIEW`);
* ``trial.png``: the best trial's run page, its per-epoch metric charts;
* ``models.png``: the experiment's Models tab (the top-k LoggedModels);
* ``champion.png``: the registered model ``cifar-hpo-<study>`` with its ``champion`` alias.

Then starts ``cifar-hpo dashboard`` (optuna-dashboard) on another free port over the study's
Optuna storage, waits for ``/api/studies``, and saves:

* ``dashboard-history.png``: the study's page, its optimization history on top;
* ``dashboard-importance.png``: the study's hyperparameter importance chart.

Needs Debian's ``chromium`` (``apt-get install chromium``) and ``pip install 'cifar-hpo[ui]'``
(Playwright, to click through the pages as a person does, and optuna-dashboard); without
Playwright, ``chromium --screenshot`` renders each page as it first opens. The servers are
stopped at the end. ``--only mlflow`` or ``--only dashboard`` takes one of the two sets.
Screenshots are runtime output, not committed (``--out`` defaults to ``/tmp/cifar-hpo-ui``)::

    .venv/bin/python bench/ui_screenshots.py --study baseline
    .venv/bin/python bench/ui_screenshots.py --study quick --tracking-uri sqlite:///mlflow.db
    .venv/bin/python bench/ui_screenshots.py --study baseline --only dashboard \
        --storage journal:studies/baseline.log
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from cifar_hpo.sweep.report import best_trial
from cifar_hpo.sweep.storage import RUN_ID_ATTR, load_stored_study, make_storage
from cifar_hpo.tracking import MLFLOW_VIEW, Tracker, experiment_name, registered_model_name

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(cmd: list[str], probe: str, log: Path, env: dict[str, str] | None = None):
    """Start ``cmd`` in its own session (output to ``log``); returns it once ``probe`` (a URL)
    answers.

    Raises:
        RuntimeError: the server exits or does not answer within 120 s.
    """
    proc = subprocess.Popen(
        cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(probe, timeout=2):
                return proc
        except OSError:
            time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f"{' '.join(cmd[:3])} did not answer within 120 s; see {log}")


def stop(proc: subprocess.Popen) -> None:
    """Stop a server started by :func:`_start` (its whole process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def start_server(backend: str, artifacts: str, port: int, log: Path) -> subprocess.Popen:
    """``mlflow server`` on 127.0.0.1:``port``; returns once ``/health`` answers."""
    exe = Path(sys.executable).parent / "mlflow"
    cmd = [str(exe), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    cmd += ["--backend-store-uri", backend, "--default-artifact-root", artifacts]
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    return _start(cmd, f"http://127.0.0.1:{port}/health", log, env)


def start_dashboard(storage: str | None, port: int, log: Path) -> subprocess.Popen:
    """``cifar-hpo dashboard`` (optuna-dashboard) on 127.0.0.1:``port``; returns once
    ``/api/studies`` answers."""
    cmd = [sys.executable, "-m", "cifar_hpo.cli", "dashboard", "--port", str(port)]
    cmd += ["--storage", storage] if storage else []
    env = dict(os.environ)  # this checkout's cifar_hpo, as the script imports it
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return _start(cmd, f"http://127.0.0.1:{port}/api/studies", log, env)


def dashboard_study_id(port: int, study: str) -> int:
    """optuna-dashboard's id of ``study`` (from its study list)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=10) as resp:
        listed = json.load(resp)["study_summaries"]
    ids = {s["study_name"]: s["study_id"] for s in listed}
    if study not in ids:
        raise RuntimeError(f"optuna-dashboard does not list study {study!r}: {sorted(ids)}")
    return ids[study]


EXPAND_PARENT = "button[data-component-id*='runnamecellrenderer']"
#: MLflow 3.17's UI ignores an experiment's ``mlflow.experimentKind`` tag: its view (GenAI
#: "Overview" with the assistant, or the model-training runs table) follows the URL's
#: ``workflowType`` parameter, else the browser's remembered choice (localStorage
#: ``mlflow.workflowType_v1``), else ``genai``. Every MLflow page is opened with it, so a fresh
#: browser profile shows the runs table without a click (:data:`MLFLOW_VIEW`, imported).


def mlflow_page(base: str, route: str) -> str:
    """URL of ``mlflow ui`` page ``route`` (``/experiments/1/runs``) in the model-training view;
    the parameter goes inside the ``#`` route, where the UI's router reads it."""
    return f"{base}{route}?{MLFLOW_VIEW}"


def prepare_mlflow(page, url: str) -> None:
    """mlflow ui as a person leaves it: the assistant panel closed, nested runs expanded (the
    model-training view comes from the URL, :data:`MLFLOW_VIEW`)."""
    page.wait_for_timeout(5000)
    for action in (
        lambda: page.get_by_role("button", name="Close").first.click(timeout=3000),
        lambda: page.locator(EXPAND_PARENT).first.click(timeout=3000),
    ):
        try:
            action()
            page.wait_for_timeout(1500)
        except Exception:  # noqa: BLE001 - a control this page does not have
            pass


def _card(page, title: str):
    """The optuna-dashboard card headed ``title``, once its chart is drawn."""
    heading = page.get_by_role("heading", name=title, exact=True).first
    heading.wait_for(timeout=60000)
    box = heading.locator("xpath=ancestor::div[contains(@class, 'MuiCard-root')][1]")
    box.locator(".plot-container, svg.main-svg").first.wait_for(timeout=60000)
    return box


def dashboard_chart(title: str):
    """For :func:`screenshot`: ``prepare`` waiting for the chart of the card headed ``title``."""
    return lambda page, url: _card(page, title)


def dashboard_card(title: str):
    """For :func:`screenshot`: ``element`` picking the card headed ``title`` (chart drawn)."""

    def card(page):
        box = _card(page, title)
        box.scroll_into_view_if_needed()
        return box

    return card


def screenshot(
    url: str,
    path: Path,
    wait_ms: int = 12000,
    size: str = "1600,1000",
    prepare=None,
    element=None,
) -> Path:
    """Render ``url`` in headless Chromium into ``path``.

    With Playwright installed (``pip install playwright``; it drives Debian's chromium, no
    browser download) the page is used as a person would: ``prepare(page, url)`` clicks what
    needs clicking, charts get ``wait_ms`` to draw, and ``element(page)``, when given, picks the
    part of the page to save. Without it, ``chromium --screenshot`` renders the whole window as
    the page first opens.
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
        with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
            chrome = pw.chromium.launch_persistent_context(  # a fresh profile: nothing remembered
                profile,
                executable_path=browser,
                args=["--no-sandbox"],
                viewport={"width": width, "height": height},
            )
            page = chrome.new_page()
            page.goto(url)
            if prepare is not None:
                prepare(page, url)
            target = element(page) if element is not None else page
            page.wait_for_timeout(wait_ms)
            target.screenshot(path=str(path))
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


def mlflow_views(study, args) -> list[Path]:
    """runs.png, models.png, champion.png and trial.png from ``mlflow server``."""
    backend = args.tracking_uri or "sqlite:///mlflow.db"
    experiment = experiment_name(args.study)
    exp_id = Tracker(backend, system_metrics=False).find_experiment_id(experiment)
    if exp_id is None:
        sys.exit(f"no MLflow experiment {experiment} in {backend} (--only dashboard?)")
    best = best_trial(study) if len(study.directions) == 1 else None
    port = free_port()
    base = f"http://127.0.0.1:{port}/#"
    pages = {
        "runs.png": mlflow_page(base, f"/experiments/{exp_id}/runs"),
        "models.png": mlflow_page(base, f"/experiments/{exp_id}/models"),
        "champion.png": mlflow_page(base, f"/models/{registered_model_name(args.study)}"),
    }
    if best is not None and best.user_attrs.get(RUN_ID_ATTR):
        run_id = best.user_attrs[RUN_ID_ATTR]
        route = f"/experiments/{exp_id}/runs/{run_id}/model-metrics"
        pages["trial.png"] = mlflow_page(base, route)
    artifacts = str(Path(args.artifacts).resolve())
    proc = start_server(backend, artifacts, port, server_log(args, "mlflow"))
    written = []
    try:
        for name, url in pages.items():
            written.append(screenshot(url, args.out / name, prepare=prepare_mlflow))
            print(f"{name}: {url}")
    finally:
        stop(proc)
    return written


def server_log(args, server: str) -> Path:
    """Where a server's output goes: the temporary folder, not the screenshots' (docs/)."""
    return Path(tempfile.gettempdir()) / f"cifar-hpo-ui-{args.study}-{server}.log"


def dashboard_views(args) -> list[Path]:
    """dashboard-history.png and dashboard-importance.png from ``cifar-hpo dashboard``."""
    port = free_port()
    proc = start_dashboard(args.storage, port, server_log(args, "dashboard"))
    written = []
    try:
        url = f"http://127.0.0.1:{port}/dashboard/studies/{dashboard_study_id(port, args.study)}"
        history = screenshot(
            url,
            args.out / "dashboard-history.png",
            wait_ms=3000,
            prepare=dashboard_chart("History"),
        )
        # without Playwright (no element to pick) a taller window reaches the importance chart
        importance = screenshot(
            url,
            args.out / "dashboard-importance.png",
            wait_ms=3000,
            size="1600,1500",
            element=dashboard_card("Hyperparameter Importance"),
        )
        written += [history, importance]
        print(f"dashboard-history.png, dashboard-importance.png: {url}")
    finally:
        stop(proc)
    return written


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", default="baseline")
    parser.add_argument("--storage", default=None, help="Optuna storage URL (default: studies/)")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"))
    parser.add_argument("--artifacts", default="mlruns", help="artifact root of a local store")
    parser.add_argument("--out", type=Path, default=Path("/tmp/cifar-hpo-ui"))
    parser.add_argument(
        "--only", choices=("mlflow", "dashboard"), help="one set of views [default: both]"
    )
    args = parser.parse_args(argv)
    study = load_stored_study(args.study, make_storage(args.storage))
    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    if args.only != "dashboard":
        written += mlflow_views(study, args)
    if args.only != "mlflow":
        written += dashboard_views(args)
    return written


if __name__ == "__main__":
    main()
