"""Scenario 14: 20 anonymous clients looping on /health/ for 10 s, and the login page's median beside them.

gunicorn as the Procfile starts it (`--workers ${WEB_CONCURRENCY:-3}`), production settings (DEBUG off,
the collected static files), the benchmark's database and broker, on 127.0.0.1 only. No Celery worker
or beat runs, so every run of the checks waits the full ping timeout: the worst case for a caller that
would wait on it. The login page is timed from this process, one request after another, first with
nothing else running (idle), then while a second process runs the clients (a thread each, one new
connection per request, as a load balancer probes). Goal: the median under load within 2x the idle one.

The same clients then run against the smallest WSGI application (bench/floor_wsgi.py) on the same
gunicorn: the most requests a second this machine serves them at all. 20 clients that never pause keep
about 20 requests queued, so a login request waits about 20 / that rate behind them.
"""

import argparse
import http.client
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time

import redis

from .harness import ROOT, free_port

LOGIN = "/admin/login/"
IDLE_SAMPLES = 200
MAX_LOADED_SAMPLES = 5_000  # a bound on the loop beside the clients, besides their deadline


def get(port, path):
    """Seconds for one GET on a new connection, and its status."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    return time.perf_counter() - start, response.status


def clients(port, count, seconds):
    """The load process: `count` threads looping on /health/ until `seconds` have passed; prints a JSON summary."""
    deadline = time.monotonic() + seconds
    results = [[] for _ in range(count)]

    def loop(samples):
        while time.monotonic() < deadline:
            samples.append(get(port, "/health/"))

    threads = [threading.Thread(target=loop, args=(samples,)) for samples in results]
    print("started", flush=True)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    samples = [s for per_client in results for s in per_client]
    statuses = {}
    for _, status in samples:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    print(
        json.dumps(
            {
                "requests": len(samples),
                "per_second": len(samples) / seconds,
                "median_ms": statistics.median(s for s, _ in samples) * 1000,
                "statuses": statuses,
            }
        ),
        flush=True,
    )


def run_clients(port, clients_count, seconds):
    """The load process, started; returns it once its clients are about to start."""
    load = subprocess.Popen(
        [sys.executable, "-m", "bench.health_load", "--port", str(port), "--clients", str(clients_count)]
        + ["--seconds", str(seconds)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert load.stdout.readline().strip() == "started"
    return load


def floor(clients_count, seconds, workers):
    """The clients' summary against bench/floor_wsgi.py on gunicorn with `workers` workers."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "bench.floor_wsgi", "--bind", f"127.0.0.1:{port}"]
    process = subprocess.Popen(
        [*command, "--workers", str(workers)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                get(port, "/")
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.2)
        load = run_clients(port, clients_count, seconds)
        return json.loads(load.communicate(timeout=seconds + 60)[0])
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


def start_gunicorn(port, static_root, broker, root=ROOT):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "verifik_admin.settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SECURE_SSL_REDIRECT": "false",  # plain HTTP on the loopback
        "DJANGO_LOG_LEVEL": "INFO",  # production's: one request line each
        "DJANGO_STATIC_ROOT": str(static_root),
        "CELERY_BROKER_URL": broker,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "VERIFIK_WEBHOOK_SECRET": secrets.token_urlsafe(32),
    }
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"], cwd=root, env=env, check=True
    )
    workers = os.environ.get("WEB_CONCURRENCY", "3")
    command = [sys.executable, "-m", "gunicorn", "verifik_admin.wsgi", "--bind", f"127.0.0.1:{port}"]
    process = subprocess.Popen(
        [*command, "--workers", workers],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if get(port, LOGIN)[1] == 200:
                return process, int(workers)
        except OSError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("gunicorn did not start")
        time.sleep(0.2)


def health_under_load(clients_count=20, seconds=10, root=ROOT, static_root=ROOT / ".data" / "bench-static"):
    """The login page's median idle and beside `clients_count` anonymous /health/ clients, with gunicorn's workers.

    `root`: the checkout gunicorn serves (another one's, to compare); the clients are always this one's.
    """
    from .workers import BROKER  # here: the load process imports this module without Django

    redis.Redis.from_url(BROKER).flushdb()  # no stored report: the first request of the load starts one
    port = free_port()
    process, workers = start_gunicorn(port, static_root, BROKER, root)
    try:
        for _ in range(20):  # warm every worker
            get(port, LOGIN)
        idle = [get(port, LOGIN)[0] for _ in range(IDLE_SAMPLES)]
        load = run_clients(port, clients_count, seconds)
        deadline = time.monotonic() + seconds  # only requests sent while the clients send theirs
        loaded = []
        while time.monotonic() < deadline and len(loaded) < MAX_LOADED_SAMPLES:
            elapsed, status = get(port, LOGIN)
            assert status == 200, status
            loaded.append(elapsed)
        summary = json.loads(load.communicate(timeout=seconds + 60)[0])
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
    idle_ms = statistics.median(idle) * 1000
    loaded_ms = statistics.median(loaded) * 1000
    return {
        "workers": workers,
        "clients": clients_count,
        "seconds": seconds,
        "login_idle_ms": idle_ms,
        "login_loaded_ms": loaded_ms,
        "login_loaded_p90_ms": statistics.quantiles(loaded, n=10)[-1] * 1000 if len(loaded) > 1 else loaded[0] * 1000,
        "ratio": loaded_ms / idle_ms,
        "login_samples": {"idle": len(idle), "loaded": len(loaded)},
        "health": summary,
        "floor": floor(clients_count, seconds, workers),
    }


if __name__ == "__main__":  # the load process
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    clients(args.port, args.clients, args.seconds)
