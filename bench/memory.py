"""Scenario 4 helper: one cold sync in a fresh process; prints its peak RSS in kB."""

import resource
import sys

from .harness import configure

if __name__ == "__main__":
    configure()
    from django.test import override_settings

    from .harness import TOKEN, truncate_mirror
    from .sync_scenarios import product

    truncate_mirror()
    with override_settings(VERIFIK_API_BASE_URL=sys.argv[1], VERIFIK_API_TOKEN=TOKEN):
        product()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
