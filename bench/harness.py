"""Shared pieces of the benchmarks: settings, the simulator process, timing, tables."""

import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TOKEN = "bench-token"
# The API budget stays on in every scenario (its cost is measured) but never binds: the sync scenarios measure
# the sync, not Verifik's rate limit. bench/budget.py measures the budget itself at a binding rate.
UNBOUND_API_RATE = "100000"
BENCH_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/verifik_bench"


def configure():
    """Environment for a benchmark process, then Django; a separate database keeps test and demo data apart."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "verifik_admin.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark-only")
    os.environ.setdefault("DATABASE_URL", os.environ.get("BENCH_DATABASE_URL", BENCH_DATABASE_URL))
    os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")
    os.environ.setdefault("DJANGO_LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "false")  # the test client speaks plain HTTP
    os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "true")  # inline, unless a scenario starts workers
    os.environ["VERIFIK_API_TOKEN"] = TOKEN
    os.environ.setdefault("VERIFIK_API_RATE", UNBOUND_API_RATE)  # worker processes inherit it
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings

    # The admin renders without `collectstatic`: plain static storage, as in the test settings.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def owner_truncate(sql):
    """A TRUNCATE that reaches the audit trail (directly or by CASCADE), as the tables' owner, which the
    benchmark's role is: the trail's trigger refuses TRUNCATE to every session, so the owner disables it
    for this transaction only, and the hash chain starts again from genesis (its head row goes)."""
    from django.db import connection, transaction

    trigger = "ALTER TABLE registrations_auditevent {} TRIGGER registrations_auditevent_no_truncate"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(trigger.format("DISABLE"))
        cursor.execute(sql)
        cursor.execute("DELETE FROM registrations_auditchainhead")
        cursor.execute(trigger.format("ENABLE"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Simulator:
    """The project's simulator in its own process, so its JSON work does not share our GIL."""

    def __init__(self, count, latency=0.0, seed=1):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "manage.py", "verifik_simulator", "--port", str(self.port), "--count", str(count)]
        command += ["--token", TOKEN, "--seed", str(seed), "--latency", str(latency), "--cache-json"]
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while True:
            try:
                self.stats()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("the simulator did not start") from None
                time.sleep(0.2)

    def _call(self, path, method="GET"):
        request = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=600) as response:  # noqa: S310 (loopback only)
            return json.loads(response.read())

    def stats(self):
        return self._call("/_simulator/stats")

    def reset_stats(self):
        return self._call("/_simulator/reset-stats", "POST")

    def mutate(self, fraction, seed):
        return self._call(f"/_simulator/mutate?fraction={fraction}&seed={seed}", "POST")["changed"]

    def stop(self):
        self.process.terminate()
        self.process.wait(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


@contextmanager
def pointed_at(simulator):
    """Point the product's settings at a simulator."""
    from django.test import override_settings

    with override_settings(VERIFIK_API_BASE_URL=simulator.url, VERIFIK_API_TOKEN=TOKEN, VERIFIK_PAGE_SIZE=100):
        yield


def timed(func, *args, **kwargs):
    start = time.perf_counter()
    value = func(*args, **kwargs)
    return time.perf_counter() - start, value


class MachineCPU:
    """The machine's CPU use while inside (every process: workers, Postgres, the simulator), from /proc/stat."""

    def __init__(self):
        self.busy = self.total = 0

    @staticmethod
    def _read():
        with open("/proc/stat") as stat:
            jiffies = [int(x) for x in stat.readline().split()[1:]]
        idle = jiffies[3] + jiffies[4]  # idle, iowait
        return sum(jiffies) - idle, sum(jiffies)

    def __enter__(self):
        self.busy, self.total = self._read()
        return self

    def __exit__(self, *exc):
        busy, total = self._read()
        self.busy, self.total = busy - self.busy, total - self.total

    @property
    def seconds(self):
        """CPU seconds used, all cores together."""
        return self.busy / os.sysconf("SC_CLK_TCK")

    @property
    def busy_fraction(self):
        return self.busy / self.total if self.total else 0.0


def summary(samples):
    """Median and spread (min..max) of a list of seconds."""
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "n": len(samples),
    }


def print_table(title, headers, rows):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)] if rows else []
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


def truncate_mirror():
    owner_truncate(
        "TRUNCATE registrations_appregistration, registrations_statuschange, registrations_syncrun "
        "RESTART IDENTITY CASCADE"
    )


def table_writes():
    """Rows inserted + updated in the registrations table, by Postgres' own counters (flushed first)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT n_tup_ins, n_tup_upd FROM pg_stat_user_tables WHERE relname = 'registrations_appregistration'"
        )
        inserted, updated = cursor.fetchone()
    return inserted, updated
