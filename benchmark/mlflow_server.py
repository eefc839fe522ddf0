"""Start, check and stop the one MLflow tracking server a grid's jobs log to.

On a cluster many SLURM jobs on many nodes must not share one SQLite file on shared storage
(NFS/Lustre locking is unreliable: "database is locked", corrupted files). Instead one server
process owns the store (``<store>/mlflow.db`` or a PostgreSQL URI, artifacts under
``<store>/artifacts``, proxied by the server) and every job is an HTTP client
(``MLFLOW_TRACKING_URI=http://<host>:<port>``). MLflow's client retries failed requests with
exponential backoff (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, default 7;
``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR``, default 2; POSTs included), so jobs ride out a short
server restart, killed or not, and a database restart (the server answers 503 meanwhile and
re-checks pooled connections before use): the defaults suffice and are left as they are.
A backend URI is checked before anything starts (:func:`check_backend_uri`): a database MLflow
serves, whose driver this Python imports.

Process tree (MLflow 3.17.2): ``python -m mlflow server`` runs ``python -m uvicorn`` as a child
(with ``workers > 1`` uvicorn adds a supervisor's worker processes) and forwards SIGTERM/SIGINT to
it, then exits 0. Unless ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`` it also starts a job runner
and seven ``huey_consumer`` processes (10 processes, 2.3 GB instead of 2 and 0.5 GB) that a
SIGTERM to the ``mlflow`` process alone leaves behind as orphans. :func:`start_server` therefore
disables job execution and makes the server the leader of its own session and process group, and
:func:`stop_server` signals that whole group.
"""

from __future__ import annotations

import http.client
import importlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

WILDCARD_HOSTS = ("0.0.0.0", "::")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
DATABASE_DRIVERS = {
    "sqlite": ("sqlite3", "Python's sqlite3"),
    "postgresql+psycopg2": ("psycopg2", "pip install psycopg2-binary"),
    "postgresql+psycopg": ("psycopg", "pip install 'psycopg[binary]'"),
    "postgresql+pg8000": ("pg8000", "pip install pg8000"),
    "mysql": ("MySQLdb", "pip install mysqlclient"),
    "mysql+mysqldb": ("MySQLdb", "pip install mysqlclient"),
    "mysql+pymysql": ("pymysql", "pip install pymysql"),
    "mssql": ("pyodbc", "pip install pyodbc"),
    "mssql+pyodbc": ("pyodbc", "pip install pyodbc"),
}
"""The database URI schemes (SQLAlchemy ``dialect+driver``) a server's backend may use, each
with the module its driver is imported as and how to install it: MLflow's SQL store takes
PostgreSQL, MySQL, SQLite and SQL Server, and the server exits at start when the driver is
missing, with an error buried in its log."""
POSTGRESQL_DRIVERS = ("postgresql+psycopg2", "postgresql+psycopg")
"""What a bare ``postgresql://`` means, first importable wins: SQLAlchemy's own default changed
from psycopg2 (2.0) to psycopg 3 (2.1), while ``psycopg2-binary`` is what this project's
``test`` extra installs and the most common driver on clusters."""


def masked_uri(uri: str) -> str:
    """``uri`` with its password, if any, replaced by ``***``: fit for messages and logs."""
    parts = urllib.parse.urlsplit(uri)
    if not parts.password:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _importable(scheme: str) -> bool:
    try:
        importlib.import_module(DATABASE_DRIVERS[scheme][0])
    except ImportError:
        return False
    return True


def server_backend_uri(uri: str) -> str:
    """The backend URI handed to the server: ``uri``, checked (:func:`check_backend_uri`), with
    a bare ``postgresql://`` naming the driver installed here (:data:`POSTGRESQL_DRIVERS`)."""
    check_backend_uri(uri)
    scheme, _, rest = uri.partition("://")
    if scheme == "postgresql":
        scheme = next(driver for driver in POSTGRESQL_DRIVERS if _importable(driver))
    return f"{scheme}://{rest}"


def check_backend_uri(uri: str) -> None:
    """Refuse a backend URI that is no database MLflow's SQL store serves, or whose driver this
    interpreter cannot import, naming the URI and what is expected (before any server starts).
    """
    shown = masked_uri(uri)
    scheme, separator, rest = uri.partition("://")
    if not separator or not rest:
        raise ValueError(
            f"backend URI {shown!r} is not a database URI: expected "
            "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE, mysql://..., or sqlite:///PATH"
        )
    if scheme not in (*DATABASE_DRIVERS, "postgresql"):
        known = ", ".join(f"{name}://" for name in ("postgresql", *DATABASE_DRIVERS))
        hint = " (SQLAlchemy spells PostgreSQL postgresql://)" if scheme == "postgres" else ""
        raise ValueError(
            f"backend URI {shown!r}: unknown database scheme {scheme!r}{hint}; one of {known}"
        )
    candidates = POSTGRESQL_DRIVERS if scheme == "postgresql" else (scheme,)
    if not any(_importable(candidate) for candidate in candidates):
        modules = " or ".join(repr(DATABASE_DRIVERS[c][0]) for c in candidates)
        raise ValueError(
            f"backend URI {shown!r} needs the database driver {modules}, which this Python "
            f"({sys.executable}) cannot import: {DATABASE_DRIVERS[candidates[0]][1]}"
        )


@dataclass(frozen=True)
class ServerSettings:
    """Where a server keeps its data and where it listens.

    ``store``: a folder on shared storage holding ``mlflow.db`` (unless ``backend_uri``, e.g.
    ``postgresql://user:pw@host/db``, names another backend), ``artifacts/`` and ``server.log``;
    made absolute, since the URIs derived from it are handed to another process. ``host``:
    ``0.0.0.0`` to serve the cluster's nodes. ``workers``: uvicorn worker processes.
    """

    store: Path
    backend_uri: str | None = None
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = 1

    def __post_init__(self) -> None:
        store = Path(self.store).expanduser().resolve()
        if store.exists() and not store.is_dir():
            raise ValueError(f"MLflow store {str(store)!r} exists and is not a directory")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port {self.port!r} is outside 1..65535")
        if self.workers < 1:
            raise ValueError(f"workers {self.workers!r} must be at least 1")
        if self.backend_uri is not None:
            check_backend_uri(self.backend_uri)
        object.__setattr__(self, "store", store)

    @property
    def backend(self) -> str:
        """The backend store URI: ``backend_uri``, else the SQLite file in the store."""
        return self.backend_uri or f"sqlite:///{self.store / 'mlflow.db'}"

    @property
    def artifacts(self) -> Path:
        """The folder the server writes artifacts to."""
        return self.store / "artifacts"

    @property
    def tracking_uri(self) -> str:
        """The URI clients use; for a wildcard host, this machine's hostname (what nodes reach)."""
        name = _client_host(self)
        return f"http://[{name}]:{self.port}" if ":" in name else f"http://{name}:{self.port}"


def _client_host(settings: ServerSettings) -> str:
    """The name clients reach the server by."""
    return socket.gethostname() if settings.host in WILDCARD_HOSTS else settings.host


def _allowed_hosts(settings: ServerSettings) -> list[str]:
    """The Host headers the server must accept beyond MLflow's default (localhost, private IPs).

    MLflow 3.17's DNS-rebinding protection answers 403 to API requests whose Host header is not
    allowed, while ``/health`` stays exempt: a server bound to 0.0.0.0 and reached as
    ``http://<hostname>:<port>`` looks healthy but refuses every client. Empty for loopback.
    """
    if settings.host in LOOPBACK_HOSTS:
        return []
    from mlflow.server.security_utils import get_default_allowed_hosts

    names = {_client_host(settings)}
    if settings.host in WILDCARD_HOSTS:
        names.add(socket.getfqdn())
    extra = [pattern for name in sorted(names) for pattern in (name, f"{name}:*")]
    return get_default_allowed_hosts() + extra


def server_command(settings: ServerSettings) -> list[str]:
    """The argv of ``mlflow server`` for these settings, run by this interpreter's MLflow."""
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        server_backend_uri(settings.backend),
        "--artifacts-destination",
        str(settings.artifacts),
        "--serve-artifacts",
        "--host",
        settings.host,
        "--port",
        str(settings.port),
        "--workers",
        str(settings.workers),
    ]
    allowed = _allowed_hosts(settings)
    if allowed:
        command += ["--allowed-hosts", ",".join(allowed)]
    return command


def server_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The server's environment: ``base`` (default ``os.environ``) without the job runner."""
    environment = dict(os.environ if base is None else base)
    environment["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    return environment


SQL_POOL_DEFAULTS = {
    "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": "8",
    "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": "40",
}
"""The database connections of each server worker, kept / at most beyond those. A worker runs
requests on up to 40 threads (anyio's default), but MLflow's SQLAlchemy pool holds 5 + 10: with
64 jobs logging at once, requests waited 30 s for a connection and failed with a 400 (MLflow
reports SQLAlchemy's pool timeout as BAD_REQUEST, which clients do not retry), losing 35 of 64
cells on PostgreSQL and 12 on SQLite here. 48 per worker fits PostgreSQL's default
``max_connections`` of 100 for two workers."""


def database_pool_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """:data:`SQL_POOL_DEFAULTS` where ``base`` (default ``os.environ``) does not set them."""
    given = os.environ if base is None else base
    return {name: given.get(name, value) for name, value in SQL_POOL_DEFAULTS.items()}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _check_port_free(host: str, port: int) -> None:
    """Fail before starting rather than let the server die on a port that another one holds.

    SO_REUSEADDR as the server sets it, so a port left in TIME_WAIT by a restart counts as free.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise RuntimeError(
                f"cannot start an MLflow server on {host}:{port}: port {port} is in use "
                f"({error.strerror})"
            ) from error


class ServerProcess(subprocess.Popen):
    """A started server: a ``Popen`` that also knows the file its output goes to."""

    def __init__(self, args: list[str], log_path: Path, **kwargs) -> None:
        self.log_path = log_path
        super().__init__(args, **kwargs)


def start_server(settings: ServerSettings, log_path: Path | None = None) -> subprocess.Popen:
    """Start a server in the background and return its process (not waiting until it answers).

    Output is appended to ``log_path`` (default ``<store>/server.log``). The server runs in its
    own session: a terminal's Ctrl-C does not reach it and :func:`stop_server` can signal its
    whole process group. Its working directory is the store, so anything it writes lands there.
    Its database pool holds a connection for each request thread
    (:func:`database_pool_environment`).
    """
    settings.store.mkdir(parents=True, exist_ok=True)
    _check_port_free(settings.host, settings.port)
    log_path = settings.store / "server.log" if log_path is None else Path(log_path)
    with open(log_path, "ab") as log:
        return ServerProcess(
            server_command(settings),
            log_path,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=settings.store,
            env={**server_environment(), **database_pool_environment()},
            start_new_session=True,
        )


def _log_tail(process: subprocess.Popen | None, lines: int = 20) -> str:
    path = getattr(process, "log_path", None)
    if path is None:
        return ""
    try:
        with open(path, "rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - 8192))
            text = log.read().decode(errors="replace")
    except OSError:
        return ""
    tail = "\n".join(text.splitlines()[-lines:])
    return f"\nlast lines of {path}:\n{tail}"


def wait_until_ready(
    tracking_uri: str, timeout: float = 60.0, process: subprocess.Popen | None = None
) -> None:
    """Poll ``<tracking_uri>/health`` until it answers 200.

    Raises RuntimeError after ``timeout`` seconds, or as soon as ``process`` (if given) exits;
    the message then carries its exit code and the end of its log.
    """
    url = f"{tracking_uri.rstrip('/')}/health"
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"MLflow server for {tracking_uri} exited with code {process.returncode} "
                f"before answering {url} (timeout {timeout:g} s){_log_tail(process)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (OSError, http.client.HTTPException):
            pass
        if time.monotonic() >= deadline:
            running = "" if process is None else f"; server pid {process.pid} still running"
            raise RuntimeError(
                f"MLflow server at {tracking_uri} not ready: no answer from {url} within "
                f"{timeout:g} s{running}{_log_tail(process)}"
            )
        time.sleep(0.2)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] == "Z"


def _exited(pid: int) -> bool:
    """Whether ``pid`` no longer runs: gone, or a zombie not yet reaped by its parent.

    A child of ours is checked without reaping it, so its ``Popen`` still gets the exit code.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # the pid now belongs to another user's process
        return True
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return _is_zombie(pid)


def _send(pid: int, sig: signal.Signals, group: bool) -> bool:
    """Signal the process (or its process group); False if there is nothing left to signal."""
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def stop_server(pid: int, timeout: float = 20.0) -> None:
    """Stop the server ``pid``: SIGTERM, then SIGKILL if it still runs after ``timeout`` seconds.

    The signals go to the process group when ``pid`` leads one (as :func:`start_server` makes
    it), so uvicorn workers and any job runner go with it; a pid that leads no group is
    signalled alone rather than risking the caller's own group. Whatever of the group outlives
    the leader is killed. Nothing happens if the process is already gone.
    """
    try:
        group = os.getpgid(pid) == pid
    except ProcessLookupError:
        return
    if not _send(pid, signal.SIGTERM, group):
        return
    deadline = time.monotonic() + timeout
    while not _exited(pid):
        if time.monotonic() >= deadline:
            _send(pid, signal.SIGKILL, group)
            deadline = time.monotonic() + 5.0
            while not _exited(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            break
        time.sleep(0.1)
    if group:
        _send(pid, signal.SIGKILL, group)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve(settings: ServerSettings, pid_file: Path | None = None) -> int:
    """Run a server in the foreground until it exits or this process gets Ctrl-C or SIGTERM.

    For the CLI (call from the main thread): starts the server, waits until it answers, writes
    its pid to ``pid_file`` (if given; removed again at the end) and prints the URI jobs need.
    Returns the server's exit code (0 after a graceful stop; negative: killed by that signal).
    """
    process = start_server(settings)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        wait_until_ready(settings.tracking_uri, process=process)
        if pid_file is not None:
            partial = pid_file.with_name(f"{pid_file.name}.tmp")
            partial.write_text(f"{process.pid}\n")
            partial.replace(pid_file)
        print(
            f"MLflow server for {settings.store} at {settings.tracking_uri} (pid {process.pid}); "
            f"export MLFLOW_TRACKING_URI={settings.tracking_uri}",
            flush=True,
        )
        process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the stop
        stop_server(process.pid)
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    return process.wait()
