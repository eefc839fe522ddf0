"""A real PostgreSQL for tests: private data directory and port, started and stopped by pid.

The tests of the tracking server on PostgreSQL (``tests/test_tracking_postgres.py``) need a
database server they own: :class:`PostgresServer` runs Debian's ``initdb`` and ``postgres``
(``/usr/lib/postgresql/<version>/bin``, the ``postgresql`` package; ``.ci/run`` installs it)
on a data directory of its own under ``/tmp`` and a free port on 127.0.0.1, with no Unix
socket and trust authentication for its one superuser. PostgreSQL refuses to run as root, so
under root it runs as the ``postgres`` system user (``nobody`` where that is absent), which
owns the data directory. Stopping sends SIGINT to the postmaster's pid (PostgreSQL's *fast*
shutdown: open sessions are cut, everything committed is on disk), SIGKILL if it is still up
after a deadline; :meth:`PostgresServer.restart` starts it again on the same data and port.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmark.mlflow_server import free_port

SUPERUSER = "asvp"
READY_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0
INSTALL_HINT = "apt-get install postgresql (Debian), or put initdb and postgres on PATH"


def postgres_bin() -> Path | None:
    """The folder of ``initdb`` and ``postgres``: on PATH, else Debian's newest version."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else 0,
    )
    return versions[-1].parent if versions else None


def missing_requirements() -> str | None:
    """Why a PostgreSQL cannot be started here (None: it can)."""
    if postgres_bin() is None:
        return f"PostgreSQL is not installed: {INSTALL_HINT}"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 is not installed: pip install psycopg2-binary (the `test` extra)"
    return None


def _service_user() -> pwd.struct_passwd | None:
    """The unprivileged user PostgreSQL runs as when this process is root; None otherwise."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root, but neither a 'postgres' nor a 'nobody' user exists")


class PostgresServer:
    """One PostgreSQL cluster in ``data`` (made by :meth:`start` if empty), serving ``port``."""

    def __init__(self, data: Path, port: int | None = None, database: str = "mlflow") -> None:
        self.data = Path(data)
        self.port = free_port() if port is None else port
        self.database = database
        self.log_path = self.data.parent / f"{self.data.name}.log"
        self.process: subprocess.Popen | None = None
        self._user = _service_user()
        bin_dir = postgres_bin()
        if bin_dir is None:
            raise RuntimeError(f"PostgreSQL is not installed: {INSTALL_HINT}")
        self._bin = bin_dir

    @property
    def uri(self) -> str:
        """The SQLAlchemy URI of the database (what ``--backend-store-uri`` takes)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{self.database}"

    @property
    def pid(self) -> int:
        """The postmaster's pid (what :meth:`stop` signals)."""
        if self.process is None:
            raise RuntimeError(f"PostgreSQL on port {self.port} is not running")
        return self.process.pid

    def _run_as_owner(self, argv: list[str], **kwargs) -> subprocess.Popen:
        if self._user is not None:
            kwargs.update(user=self._user.pw_uid, group=self._user.pw_gid, extra_groups=[])
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, **kwargs)

    def _initdb(self) -> None:
        self.data.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._user is not None:
            os.chown(self.data, self._user.pw_uid, self._user.pw_gid)
        argv = [str(self._bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER]
        argv += ["--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"]
        with open(self.log_path, "ab") as log:
            code = self._run_as_owner(argv, stdout=log, stderr=subprocess.STDOUT).wait()
        if code != 0:
            raise RuntimeError(f"initdb -D {self.data} failed with code {code}{self._log_tail()}")

    def start(self) -> None:
        """Start the postmaster (after ``initdb`` if ``data`` holds no cluster yet), wait until
        it accepts connections and make sure the database exists."""
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        argv = [str(self._bin / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        argv += ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="]
        argv += ["-c", "max_connections=200"]
        with open(self.log_path, "ab") as log:
            self.process = self._run_as_owner(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._wait_until_ready()
        self._create_database()

    def _connect(self, database: str = "postgres"):
        import psycopg2

        return psycopg2.connect(
            host="127.0.0.1", port=self.port, user=SUPERUSER, dbname=database, connect_timeout=5
        )

    def _wait_until_ready(self) -> None:
        import psycopg2

        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"PostgreSQL on port {self.port} exited with code {self.process.returncode} "
                    f"before accepting connections{self._log_tail()}"
                )
            try:
                self._connect().close()
                return
            except psycopg2.OperationalError:
                pass
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"PostgreSQL on port {self.port} (pid {self.pid}) accepted no connection "
                    f"within {READY_TIMEOUT:g} s{self._log_tail()}"
                )
            time.sleep(0.2)

    def _create_database(self) -> None:
        connection = self._connect()
        try:
            connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            connection.close()

    def stop(self) -> None:
        """Fast shutdown by pid (SIGINT), SIGKILL after :data:`STOP_TIMEOUT` s; then reaped."""
        if self.process is None:
            return
        process, self.process = self.process, None
        if process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)

    def restart(self) -> None:
        """Stop and start again on the same data directory and port."""
        self.stop()
        self.start()

    def query(self, sql: str, parameters: tuple = ()) -> list[tuple]:
        """The rows a query returns from the database, read directly (not through MLflow)."""
        connection = self._connect(self.database)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, parameters)
                return cursor.fetchall()
        finally:
            connection.close()

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return f"\nlast lines of {self.log_path}:\n" + "\n".join(text.splitlines()[-lines:])


@contextmanager
def running_postgres(database: str = "mlflow") -> Iterator[PostgresServer]:
    """A started :class:`PostgresServer` in a fresh folder under ``/tmp`` (not pytest's
    ``tmp_path``, whose parents are private to root), stopped and removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="asvp-postgres-"))
    folder.chmod(0o755)  # the service user must reach its data directory inside
    server = PostgresServer(folder / "data", database=database)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
