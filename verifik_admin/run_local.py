"""`make run`: the production process layout on one machine, from a fresh clone.

Checks the ports first (a taken one is a one-line error, nothing started),
starts what the environment does not name (the embedded Postgres through the
settings, with its two roles, an embedded Valkey as the broker), migrates as the
schema's owner, creates the demo user as the application's role,
then runs the processes of Procfile.dev with honcho: the web server, one worker,
beat and, without VERIFIK_API_TOKEN, the Verifik simulator. The first sync is
queued for the worker. Ctrl-C (or SIGTERM, SIGHUP) stops every process, then
the embedded servers.
"""

import argparse
import contextlib
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".data"
DEMO_TOKEN = "demo-token"


class Refused(Exception):
    """A reason not to start, said in one line."""


class TolerantStream:
    """stdout or stderr that may lose its reader (`make run | tee log`, and Ctrl-C ends tee first):
    writes are then dropped instead of raising, so stopping every process still happens."""

    def __init__(self, stream):
        self.stream = stream
        self.broken = False

    def write(self, text):
        self._try(self.stream.write, text)
        return len(text)

    def flush(self):
        self._try(self.stream.flush)

    def _try(self, call, *args):
        if not self.broken:
            try:
                call(*args)
            except OSError:
                self.broken = True

    def __getattr__(self, name):
        return getattr(self.stream, name)


def check_port_free(port, variable):
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers themselves bind
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise Refused(
                f"port {port} ({variable}) is already in use: stop what holds it, or pick another, "
                f"e.g. make run {variable}={port + 1}"
            ) from None


def answers(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise Refused(f"{what} did not come up within {timeout:.0f} s")
        time.sleep(0.2)


def procfile_commands(path):
    from honcho.environ import parse_procfile

    return dict(parse_procfile(path.read_text()).processes)


def after_start(args, use_simulator, manager_failed):
    """Once the processes run: queue the first sync for the worker, then say where the admin is."""
    from django.core.management import CommandError, call_command

    from registrations.mapping import ACTIVE_STATUSES

    try:
        if use_simulator:
            wait_for(lambda: answers(args.sim_port), 30, "the Verifik simulator")
        call_command("sync_registrations", queue=True)  # waits in the broker until the worker is ready
        # The active lane's first sync too (beat's comes an interval later): it runs beside the full sync.
        call_command("sync_registrations", queue=True, statuses=list(ACTIVE_STATUSES))
        wait_for(lambda: answers(args.port), 60, "the web server")
    except (Refused, CommandError) as exc:
        manager_failed(str(exc))
        return
    print(
        f"\n  Admin: http://127.0.0.1:{args.port}/admin/  (demo / demo on a new database)"
        f"\n  Health: http://127.0.0.1:{args.port}/health/   Ctrl-C stops everything.\n",
        flush=True,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8000, help="the admin's port (make: RUN_PORT)")
    parser.add_argument("--sim-port", type=int, default=8765, help="the simulator's port (make: SIM_PORT)")
    parser.add_argument("--sim-count", type=int, default=500, help="registrations the simulator serves")
    parser.add_argument("--data-dir", type=Path, default=DATA, help="the embedded Valkey's and beat's files")
    args = parser.parse_args(argv)
    # A `make run &` from a script starts with SIGINT ignored; Ctrl-C must still stop everything.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.stdout, sys.stderr = TolerantStream(sys.stdout), TolerantStream(sys.stderr)
    try:
        return run(args)
    except Refused as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def run(args):
    check_port_free(args.port, "RUN_PORT")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "verifik_admin.settings")
    import django

    django.setup()  # with no DATABASE_URL, the settings start (or share) the embedded Postgres
    from django.conf import settings
    from django.core.management import call_command

    from .celery import app
    from .embedded import EmbeddedValkey

    use_simulator = not settings.VERIFIK_API_TOKEN
    if use_simulator:
        check_port_free(args.sim_port, "SIM_PORT")

    args.data_dir = args.data_dir.resolve()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "DATABASE_URL": settings.DATABASE_URL,
        "RUN_PORT": str(args.port),
        "SIM_PORT": str(args.sim_port),
        "SIM_COUNT": str(args.sim_count),
        "DATA_DIR": str(args.data_dir),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
    }
    valkey = None
    if not settings.CELERY_BROKER_URL:
        valkey = EmbeddedValkey(args.data_dir / "valkey").start()
        env["CELERY_BROKER_URL"] = settings.CELERY_BROKER_URL = app.conf.broker_url = valkey.url(0)
        print(f"No CELERY_BROKER_URL: embedded Valkey on 127.0.0.1:{valkey.port}", flush=True)
    if getattr(settings, "EMBEDDED_POSTGRES", None):
        print(
            f"No DATABASE_URL: embedded Postgres on 127.0.0.1:{settings.EMBEDDED_POSTGRES.port}, "
            f"the processes as {settings.DATABASE_APP_ROLE}, migrations as its owner",
            flush=True,
        )
    if use_simulator:
        env["VERIFIK_API_BASE_URL"] = settings.VERIFIK_API_BASE_URL = f"http://127.0.0.1:{args.sim_port}"
        env["VERIFIK_API_TOKEN"] = settings.VERIFIK_API_TOKEN = DEMO_TOKEN
        print(f"No VERIFIK_API_TOKEN: the Verifik simulator stands in, on 127.0.0.1:{args.sim_port}", flush=True)
    os.environ.update(env)

    call_command(
        "migrate", interactive=False, verbosity=1
    )  # as the owner (registrations/management/commands/migrate.py)
    call_command("create_demo_user")
    try:
        return serve(args, use_simulator)
    finally:
        if valkey:
            valkey.stop()
        if getattr(settings, "EMBEDDED_POSTGRES", None):
            settings.EMBEDDED_POSTGRES.stop()


def serve(args, use_simulator):
    from honcho.manager import Manager

    # Beat starts from a fresh schedule: one saved by an earlier run would send every overdue
    # sync at once, next to the first full sync, which the single-flight lock would then skip.
    for old_schedule in args.data_dir.glob("celerybeat-schedule*"):
        old_schedule.unlink()
    commands = procfile_commands(ROOT / "Procfile.dev")
    names = ["web", "worker", "beat"] + (["simulator"] if use_simulator else [])
    manager = Manager()
    for name in names:
        manager.add_process(name, commands[name], env=dict(os.environ), cwd=str(ROOT))

    def failed(reason):
        print(f"make run: {reason}; stopping.", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)  # honcho's handler stops every process

    # A closed terminal (SIGHUP) stops everything as Ctrl-C does; honcho handles SIGINT and SIGTERM.
    signal.signal(signal.SIGHUP, lambda *_: os.kill(os.getpid(), signal.SIGTERM))
    threading.Thread(target=after_start, args=(args, use_simulator, failed), daemon=True).start()
    try:
        manager.loop()
    finally:
        with contextlib.suppress(KeyError):  # a process that never started has no pid
            manager.kill()  # only what an exception in the loop left running
    return manager.returncode or 0


if __name__ == "__main__":
    sys.exit(main())
