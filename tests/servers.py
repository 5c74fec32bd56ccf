"""Real servers on loopback for the multi-worker tests: PostgreSQL and ``mlflow server``.

Plain functions, importable from tests as ``from servers import ...``. Everything binds to
127.0.0.1. PostgreSQL is the machine's own cluster (started here if it is installed but down);
each test gets a fresh database that is dropped afterwards. ``mlflow server`` runs as a child
process in its own session on a free port and is stopped (its whole process group) afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"


class Unavailable(RuntimeError):
    """A server cannot be reached or started here; the message says why (for pytest.skip)."""


def _pg_connect(dbname: str = "postgres"):
    import psycopg2

    conn = psycopg2.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname, connect_timeout=5
    )
    conn.autocommit = True
    return conn


def ensure_postgres(wait_s: float = 30.0) -> None:
    """Make sure PostgreSQL answers on 127.0.0.1:5432, starting the local cluster if needed.

    Raises:
        Unavailable: psycopg2 or PostgreSQL is not installed, or the server does not come up.
    """
    try:
        import psycopg2
    except ImportError:
        raise Unavailable("psycopg2 is not installed (pip install psycopg2-binary)") from None
    try:
        _pg_connect().close()
        return
    except psycopg2.OperationalError as err:
        first_error = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions:
        raise Unavailable(
            f"PostgreSQL is not running on {PG_HOST}:{PG_PORT} ({first_error}) and no local "
            "cluster is installed (/etc/postgresql is missing)"
        )
    done = subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            _pg_connect().close()
            return
        except psycopg2.OperationalError:
            time.sleep(0.5)
    raise Unavailable(
        f"PostgreSQL {versions[-1]} did not start on {PG_HOST}:{PG_PORT}: "
        f"{(done.stderr or done.stdout).strip()[:300] or first_error}"
    )


@contextlib.contextmanager
def postgres_database(prefix: str = "cifar_hpo_test") -> Iterator[str]:
    """A fresh, empty database; yields its URL (``postgresql://postgres@127.0.0.1:5432/NAME``)
    and drops it (closing other connections) afterwards."""
    ensure_postgres()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = _pg_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(folder: Path, wait_s: float = 300.0, tables: Path | None = None) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 with a SQLite backend and proxied artifacts under
    ``folder``; yields its URL once ``/health`` answers, then stops its process group.
    MLflow's background job runner (not used by cifar-hpo) is switched off. ``tables``: an
    empty store with MLflow's tables made (the ``mlflow_tables`` fixture), copied as the
    backend so that the server starts without making them.

    Raises:
        Unavailable: the server exits or does not answer within ``wait_s`` seconds.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if tables is not None and not (folder / "mlflow.db").exists():
        shutil.copyfile(tables, folder / "mlflow.db")
    port = free_port()
    exe = Path(sys.executable).parent / "mlflow"
    log = open(folder / "mlflow-server.log", "w")  # noqa: SIM115 - closed below
    cmd = [
        str(exe),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination",
        str(folder / "artifacts"),
    ]
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, cwd=folder, env=env, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + wait_s
        while True:
            if proc.poll() is not None:
                raise Unavailable(
                    f"mlflow server exited with {proc.returncode}: "
                    + (folder / "mlflow-server.log").read_text()[-500:]
                )
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise Unavailable(f"mlflow server did not answer {url}/health in {wait_s:.0f} s")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
