"""Scenario 11 helper: one CSV export over the admin view in a fresh process; prints JSON with its peak RSS.

The peak is VmHWM from /proc (see bench/memory.py); the RSS just before the export is
printed too, so the export's own share is visible. The response is consumed and dropped
chunk by chunk, as a WSGI server sends it.
"""

import json
import sys
import time
from pathlib import Path

from .harness import configure


def status(field):
    lines = Path("/proc/self/status").read_text().splitlines()
    return int(next(line.split()[1] for line in lines if line.startswith(field + ":")))


if __name__ == "__main__":
    configure()
    from django.contrib.auth.models import User
    from django.test import override_settings

    from bench.admin_scenarios import logged_in

    client = logged_in(User.objects.get(username="bench-reviewer"))
    with override_settings(ROOT_URLCONF="bench.urls", DEBUG=False):
        client.get("/admin/registrations/appregistration/")  # everything imported, connections open
        before = status("VmRSS")
        start = time.perf_counter()
        response = client.post("/admin/registrations/appregistration/export/" + sys.argv[1])
        assert response.status_code == 200 and response.streaming, response.status_code
        lines = size = 0
        for chunk in response.streaming_content:
            size += len(chunk)
            lines += chunk.count(b"\r\n")  # csv's line ends; a note's own line breaks are bare \n
        seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "rows": lines - 1,
                "megabytes": round(size / 2**20, 1),
                "seconds": round(seconds, 2),
                "rss_before_kb": before,
                "peak_rss_kb": status("VmHWM"),
            }
        )
    )
