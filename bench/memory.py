"""Scenario 4 helper: one cold sync in a fresh process; prints its peak RSS in kB.

The peak is VmHWM from /proc: `ru_maxrss` would report the parent's size at
fork time, which Linux carries across exec.
"""

import sys
from pathlib import Path

from .harness import configure

if __name__ == "__main__":
    configure()
    from django.test import override_settings

    from .harness import TOKEN, truncate_mirror
    from .sync_scenarios import product

    truncate_mirror()
    with override_settings(VERIFIK_API_BASE_URL=sys.argv[1], VERIFIK_API_TOKEN=TOKEN):
        product()
    status = Path("/proc/self/status").read_text()
    print(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
