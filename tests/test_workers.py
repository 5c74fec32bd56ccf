"""Many workers on one study, with real servers on loopback: PostgreSQL (Optuna RDB storage), a
journal file, and ``mlflow server`` (every MLflow call over HTTP). Workers are real processes;
one is killed with SIGKILL mid-trial and another is stopped with SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import optuna
import pytest
import yaml
from helpers import TINY_SWEEP_BASE
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from servers import Unavailable, mlflow_server, postgres_database
from typer.testing import CliRunner

from cifar_hpo.cli import app
from cifar_hpo.sweep.storage import make_storage, process_gone, worker_identity
from cifar_hpo.sweep.workers import split_trials
from cifar_hpo.tracking import PARENT_RUN_ATTR, Tracker

# one test process for these and the wall-clock budget tests (see test_budget.WALL_CLOCK)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("wall-clock")]

SPEC = {
    "description": "multi-worker test study",
    "objective": {"metric": "val_acc", "direction": "maximize"},
    "base": dict(TINY_SWEEP_BASE),
    "budget": {"epochs": 1, "train_fraction": 1.0},
    "space": {"optim.lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True}},
    "sampler": {"name": "random", "seed": 0},
    "pruner": {"name": "none"},
    "top_k_models": 0,  # only a new best logs a model: keeps the test short
}
STATUS_OF = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
EXE = Path(sys.executable).parent / "cifar-hpo"
runner = CliRunner()


@pytest.fixture(scope="session")
def mlflow_url(tmp_path_factory, mlflow_tables):
    """One ``mlflow server`` on 127.0.0.1 for the whole session (it takes a while to start)."""
    server = mlflow_server(tmp_path_factory.mktemp("mlflow-server"), tables=mlflow_tables)
    try:
        url = server.__enter__()
    except Unavailable as err:
        pytest.skip(f"no mlflow server: {err}")
    yield url
    server.__exit__(None, None, None)


@pytest.fixture
def project(tmp_path, data_dir, monkeypatch, mlflow_url):
    """A project folder using the MLflow server; heartbeats every 1 s, stale after 10 s (so a
    starved but live worker on a busy machine is not taken for dead)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_url)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("CIFAR_HPO_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("CIFAR_HPO_HEARTBEAT_GRACE", "10")
    (tmp_path / "sweeps").mkdir()
    return tmp_path


@pytest.fixture(params=["postgres", "journal"])
def storage(request, tmp_path):
    """A fresh PostgreSQL database (dropped afterwards) or a journal file."""
    if request.param == "journal":
        yield f"journal:{tmp_path / 'studies' / 'study.log'}"
        return
    database = postgres_database()
    try:
        url = database.__enter__()
    except Unavailable as err:
        pytest.skip(f"no PostgreSQL: {err}")
    yield url
    database.__exit__(None, None, None)


def new_study(**changes) -> str:
    """A study name unique on the shared MLflow server; writes its spec."""
    name = f"w{uuid.uuid4().hex[:8]}"
    Path("sweeps", f"{name}.yaml").write_text(yaml.safe_dump({**SPEC, **changes}))
    return name


def sweep(*args: str):
    result = runner.invoke(app, ["sweep", *args, "--no-progress"])
    assert result.exit_code == 0, result.output
    return result


def load(name: str, storage: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=make_storage(storage))


def check_tracking(study: optuna.Study, url: str) -> dict[int, object]:
    """One parent run; exactly one run per trial, nested under it; nothing left RUNNING.
    Returns the trial runs by trial number."""
    client = MlflowClient(url)
    exp = client.get_experiment_by_name(f"cifar-hpo/{study.study_name}")
    runs = client.search_runs(
        [exp.experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=1000
    )
    parents = [r for r in runs if r.data.tags.get("cifar_hpo.role") == "study"]
    trial_runs = [r for r in runs if r.data.tags.get("cifar_hpo.role") == "trial"]
    assert len(parents) == 1, [r.info.run_id for r in parents]
    parent = parents[0]
    assert study.user_attrs[PARENT_RUN_ATTR] == parent.info.run_id
    assert parent.info.status == "FINISHED"
    numbers = sorted(int(r.data.tags["cifar_hpo.trial"]) for r in trial_runs)
    assert numbers == sorted(t.number for t in study.trials)  # one run per trial
    by_number = {int(r.data.tags["cifar_hpo.trial"]): r for r in trial_runs}
    for t in study.trials:
        run = by_number[t.number]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status == STATUS_OF[t.state.name], (t.number, run.info.status)
        assert t.user_attrs["mlflow_run_id"] == run.info.run_id
    return by_number


def start_worker(name: str, storage: str, *extra: str, epochs: int = 300) -> subprocess.Popen:
    """``cifar-hpo sweep`` as a separate process whose one trial runs for ``epochs`` epochs
    (by default for minutes)."""
    cmd = [str(EXE), "sweep", "--study", name, "--storage", storage, "--no-progress"]
    cmd += ["--trials", "1", "--set", f"epochs={epochs}", *extra]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ)
    )


def wait_running(
    name: str, storage: str, proc: subprocess.Popen, n: int = 1, timeout=300, epochs_done=1
):
    """Wait until ``n`` trials are RUNNING with an MLflow run and ``epochs_done`` epochs
    reported."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"worker exited with {proc.returncode}:\n{proc.stdout.read()}")
        try:
            running = load(name, storage).get_trials(states=(optuna.trial.TrialState.RUNNING,))
        except KeyError:  # study not created yet
            running = []
        ready = [
            t
            for t in running
            if "mlflow_run_id" in t.user_attrs and len(t.intermediate_values) >= epochs_done
        ]
        if len(ready) >= n:
            return ready
        time.sleep(0.5)
    proc.kill()
    pytest.fail(f"no running trial after {timeout} s:\n{proc.communicate()[0]}")


# ----------------------------------------------------------------------------- units
def test_split_trials():
    assert split_trials(5, 3) == [2, 2, 1]
    assert split_trials(6, 3) == [2, 2, 2]
    assert split_trials(2, 4) == [1, 1]  # never a worker with nothing to do
    assert split_trials(None, 2) == [None, None]


def test_process_gone_sees_exit_zombie_and_reuse():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        me = worker_identity()
        owner = {**me, "pid": proc.pid, "started": None}
        assert not process_gone(owner)
        with open(f"/proc/{proc.pid}/stat", "rb") as f:
            started = int(f.read().rsplit(b")", 1)[1].split()[19])
        assert not process_gone({**owner, "started": started})
        assert process_gone({**owner, "started": started + 1})  # the pid now names another
        assert not process_gone({**owner, "host": "elsewhere"})  # cannot tell: assume alive
        proc.kill()
        deadline = time.monotonic() + 10
        while not process_gone(owner) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process_gone(owner)  # a zombie, not reaped yet
    finally:
        proc.kill()
        proc.wait()
    assert process_gone(owner)


def test_racing_workers_agree_on_one_parent_run(project, mlflow_url, tmp_path):
    """Workers starting together each create a parent; all end up using one of them."""
    url = f"journal:{tmp_path / 'race.log'}"
    optuna.create_study(study_name="race", storage=make_storage(url))
    ids: list[str] = []

    def worker():
        study = optuna.load_study(study_name="race", storage=make_storage(url))
        ids.append(Tracker(mlflow_url).parent_run(study, {"study": "race"}, settle=1.0))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1
    client = MlflowClient(mlflow_url)
    exp = client.get_experiment_by_name("cifar-hpo/race")
    active = client.search_runs([exp.experiment_id], run_view_type=ViewType.ACTIVE_ONLY)
    assert [r.info.run_id for r in active] == ids[:1]
    assert load("race", url).user_attrs[PARENT_RUN_ATTR] == ids[0]


# ----------------------------------------------------------------------------- workers
def test_three_workers_share_one_study(project, storage, mlflow_url):
    name = new_study(top_k_models=2)
    out = sweep("--study", name, "--trials", "3", "--workers", "3", "--storage", storage).output
    assert "3 workers, trials 1 + 1 + 1" in out and "3 new trials" in out, out
    study = load(name, storage)
    trials = study.trials
    assert [t.number for t in trials] == list(range(3))
    states = [(t.state.name, t.user_attrs.get("fail_reason")) for t in trials]
    assert all(t.state.name == "COMPLETE" for t in trials), (states, out)
    assert len({t.user_attrs["worker"]["pid"] for t in trials}) == 3  # all three took part
    assert len({t.params["optim.lr"] for t in trials}) == 3  # workers sample differently
    check_tracking(study, mlflow_url)
    # at most k = 2 logged models, those of the study's two best trials
    client = MlflowClient(mlflow_url)
    exp = client.get_experiment_by_name(f"cifar-hpo/{name}")
    models = list(client.search_logged_models([exp.experiment_id]))
    ranked = sorted(trials, key=lambda t: (-t.value, t.number))
    assert sorted(int(m.tags["cifar_hpo.trial"]) for m in models) == sorted(
        t.number for t in ranked[:2]
    )
    # the champion is the study's best, and `cifar-hpo best` names the same trial
    champion = client.get_model_version_by_alias(f"cifar-hpo-{name}", "champion")
    best = study.best_trial
    assert champion.tags["trial"] == str(best.number)
    assert champion.tags["cifar_hpo.model_id"] == best.user_attrs["mlflow_model_id"]
    shown = runner.invoke(app, ["best", "--study", name, "--storage", storage])
    assert shown.exit_code == 0, shown.output
    assert f"best trial of {name}: #{best.number}" in shown.output
    assert f"cifar-hpo-{name} v{champion.version}" in shown.output


def test_sqlite_refused_for_several_workers(project):
    result = runner.invoke(app, ["sweep", "--study", "x", "--trials", "2", "--workers", "2"])
    assert result.exit_code == 2
    assert "journal:studies/x.log" in result.output and "postgresql://" in result.output


def test_killed_worker_trial_fails_is_retried_and_its_run_closed(
    project, storage, mlflow_url, monkeypatch
):
    name = new_study()
    sweep("--study", name, "--trials", "1", "--storage", storage)  # trial 0: COMPLETE
    done = load(name, storage).trials[0]

    proc = start_worker(name, storage)
    (victim,) = wait_running(name, storage, proc)
    run_id = victim.user_attrs["mlflow_run_id"]
    client = MlflowClient(mlflow_url)
    assert client.get_run(run_id).info.status == "RUNNING"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = time.monotonic()
    if storage.startswith("postgresql"):
        monkeypatch.setenv("CIFAR_HPO_HEARTBEAT_GRACE", "3")  # for the worker that restarts
        time.sleep(max(0.0, killed_at + 4.5 - time.monotonic()))  # past the grace period

    out = sweep("--study", name, "--trials", "1", "--storage", storage).output
    study = load(name, storage)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "FAIL", "COMPLETE"], (states, out)
    assert study.trials[0].value == done.value  # completed trials intact
    assert study.trials[0].user_attrs == done.user_attrs
    killed, retry = study.trials[1], study.trials[2]
    assert killed.number == victim.number
    assert retry.params == killed.params  # the retry of the killed trial
    assert retry.system_attrs["retry_history"] == [killed.number]
    assert retry.system_attrs["failed_trial"] == killed.number
    runs = check_tracking(study, mlflow_url)
    assert runs[killed.number].info.run_id == run_id
    assert runs[killed.number].info.status == "FAILED"


def test_killed_trial_resumes_from_its_checkpoint_with_the_same_history(project, tmp_path):
    """SIGKILL a worker mid-trial, restart the same command: the retry continues the killed
    trial from its last epoch checkpoint and ends with the history of an uninterrupted run."""
    import torch

    from cifar_hpo.config import with_overrides
    from cifar_hpo.data import load_dataset
    from cifar_hpo.engine import train
    from cifar_hpo.sweep.spec import load_spec

    storage = f"journal:{tmp_path / 'studies' / 'kill.log'}"
    name = new_study(enqueue=[{"optim.lr": 0.02}])  # a learning rate that trains stably
    epochs = 20  # long enough to kill mid-way, short enough to finish soon after
    proc = start_worker(name, storage, epochs=epochs)
    (victim,) = wait_running(name, storage, proc, epochs_done=2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    checkpoint = Path("studies", "checkpoints", name, f"trial-{victim.number}.pt")
    assert checkpoint.is_file()  # left for the retry

    restart = start_worker(name, storage, epochs=epochs)  # the same command again
    out, _ = restart.communicate(timeout=600)
    assert restart.returncode == 0, out
    study = load(name, storage)
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE"], out
    killed, retry = study.trials
    resumed = retry.user_attrs["resumed_from"]
    assert resumed["trial"] == killed.number and resumed["epoch"] >= 2
    assert not checkpoint.exists()  # removed once the retry was recorded

    spec = load_spec(name, "sweeps")
    config = with_overrides(spec.base_config(), {"epochs": epochs, **retry.params})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers (OMP_NUM_THREADS=1)
    try:
        uninterrupted = train(config, load_dataset("cifar10"), evaluate_test=False)
    finally:
        torch.set_num_threads(threads)
    expected = {r["epoch"]: r["val_acc"] for r in uninterrupted.history}
    assert retry.intermediate_values == pytest.approx(expected, abs=1e-6)
    assert retry.value == pytest.approx(uninterrupted.val.metrics["acc"], abs=1e-6)


def test_tracking_server_dying_mid_study_stops_it_cleanly(project, tmp_path, mlflow_tables):
    """The MLflow server goes away during trial 1: that trial fails with one line naming the
    server, no further trial starts, the command exits non-zero within seconds, and the study
    keeps what it had (re-running continues it)."""
    from servers import mlflow_server

    storage = f"journal:{tmp_path / 'studies' / 'dies.log'}"
    name = new_study()
    server = mlflow_server(tmp_path / "dying-server", tables=mlflow_tables)
    try:
        url = server.__enter__()
    except Unavailable as err:
        pytest.skip(f"no mlflow server: {err}")
    # MLflow's retries (cifar-hpo's 2) without its seconds of backoff between them
    env = dict(
        os.environ,
        MLFLOW_TRACKING_URI=url,
        MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="0",
        MLFLOW_HTTP_REQUEST_BACKOFF_JITTER="0",
    )
    cmd = [str(EXE), "sweep", "--study", name, "--storage", storage, "--no-progress"]
    cmd += ["--trials", "3", "--set", "epochs=300"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        wait_running(name, storage, proc)
    finally:
        server.__exit__(None, None, None)  # the server stops mid-trial
    start = time.monotonic()
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0, out
    assert time.monotonic() - start < 240, out  # epochs run on; then seconds, not MLflow's minutes
    study = load(name, storage)
    assert [t.state.name for t in study.trials] == ["FAIL"], out  # no trial after it
    reason = study.trials[0].user_attrs["fail_reason"]
    assert reason.startswith(f"TrackingError: MLflow tracking server {url} stopped answering")
    assert f"error: MLflow tracking server {url}" in out


def test_sigterm_records_the_running_trial_and_exits_130(project, mlflow_url, tmp_path):
    storage = f"journal:{tmp_path / 'studies' / 'term.log'}"
    name = new_study()
    proc = start_worker(name, storage)
    (trial,) = wait_running(name, storage, proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)  # generous: a busy machine can be very slow
    assert proc.returncode == 130, out
    assert "interrupted" in out
    study = load(name, storage)
    assert [t.state.name for t in study.trials] == ["FAIL"]
    run = MlflowClient(mlflow_url).get_run(trial.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED"
    assert run.data.tags["cifar_hpo.reason"].startswith("interrupted")
    parent = MlflowClient(mlflow_url).get_run(study.user_attrs[PARENT_RUN_ATTR])
    assert parent.info.status == "KILLED"
    assert trial.user_attrs["worker"]["pid"] == proc.pid
