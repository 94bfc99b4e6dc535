"""The benchmark scripts keep working: a quick run of the sync and admin scenarios on a scratch database.

Speed is not asserted here (docs/BENCHMARKS.md records it); only that every
scenario runs and reports the figures the targets are judged on.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from .support import database_url

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(600)
def test_the_quick_benchmark_runs_and_reports_every_figure(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VERIFIK_", "DATABASE_URL"))}
    # Named after the test database, so checkouts testing side by side never share one.
    env["BENCH_DATABASE_URL"] = database_url(f"{connection.settings_dict['NAME']}_bench_smoke")
    env["BENCH_BROKER_URL"] = os.environ["CELERY_TEST_BROKER_URL"]  # the suite's own Redis database
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--quick",
            "--only",
            "sync",
            "resync",
            "split",
            "admin",
            "--output",
            str(tmp_path / "out.json"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "out.json").read_text())
    sync = report["sync"]
    assert sync["resync"]["rows_inserted"] == 0 and sync["resync"]["rows_updated"] == 0
    assert sync["changed"]["details_off"]["distinct_rows_written"] == sync["changed"]["details_off"]["changed_upstream"]
    assert sync["changed"]["details_on"]["detail_requests"] == sync["changed"]["details_on"]["changed_upstream"]
    assert {"product", "naive", "floor"} <= set(sync)
    assert report["resync"]["speedup_over_cold"] > 0 and report["resync"]["count"] == 1_000
    split = report["split"]
    assert [(r["workers"], r["partitions"] > 0) for r in split["runs"]] == [(1, False), (4, True)]
    assert {"cold", "noop"} <= set(split["speedup"])
    views = {v["view"]: v for v in report["admin"]["views"]}
    assert len(views) == 10 and all(v["queries"] <= 12 for v in views.values())
    review = {v["view"]: v for v in report["review"]["views"]}
    assert set(review) == {
        "needs review queue",
        "queue=overdue",
        "decision=changed_since",
        "detail with review history",
        "dashboard",
    }
    assert all(v["queries"] <= 12 for v in review.values())
    assert (
        "1. Cold full sync" in result.stdout
        and "8. Full sync of" in result.stdout
        and "6. Admin at" in result.stdout
        and "7. Review desk" in result.stdout
    )
