"""optuna-dashboard over the project's studies (``cifar-hpo dashboard``).

The dashboard is optuna-dashboard's own WSGI app (``optuna_dashboard.wsgi``), served by the
standard library's threading WSGI server (as ``optuna-dashboard`` itself does), on the storage
``make_storage`` opens for every other command: ``studies/optuna.db`` by default, or any
``--storage`` URL (``journal:FILE``, ``postgresql://...``). It is an extra:
``pip install 'cifar-hpo[dashboard]'``.
"""

from __future__ import annotations

from collections.abc import Callable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIServer, make_server

from cifar_hpo.errors import UserError
from cifar_hpo.sweep.storage import make_storage

INSTALL_HINT = "pip install 'cifar-hpo[dashboard]'"


def require_dashboard():
    """The ``optuna_dashboard`` module.

    Raises:
        UserError: it is not installed (names the install command).
    """
    try:
        import optuna_dashboard
    except ImportError:
        raise UserError(f"optuna-dashboard is not installed: {INSTALL_HINT}") from None
    return optuna_dashboard


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """One thread per request, as ``optuna-dashboard`` itself serves (a page loads in parallel)."""

    daemon_threads = True


def serve_dashboard(
    storage: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve optuna-dashboard (its WSGI app, ``optuna_dashboard.wsgi``) for ``storage`` on
    ``host:port`` until interrupted; ``ready(url)`` is called once the port is bound.

    Raises:
        UserError: optuna-dashboard is missing, or the port cannot be bound.
        SweepSpecError: the storage URL cannot be opened.
    """
    optuna_dashboard = require_dashboard()
    app = optuna_dashboard.wsgi(make_storage(storage))
    try:
        server = make_server(host, port, app, server_class=_ThreadingWSGIServer)
    except OSError as err:
        raise UserError(
            f"cannot serve on {host}:{port}: {err.strerror or err}; choose another --port"
        ) from None
    with server:
        if ready is not None:
            ready(f"http://{host}:{port}/dashboard")
        server.serve_forever()
