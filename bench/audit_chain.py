"""Scenario 13: `verify_audit_trail` over a chain of a million audit events.

The chain is `bench/generate.py`'s `generate_audit` (hashed in Python as the writer hashes,
written with COPY), plus whatever scenario 10's requests appended through `audit.record`,
so an intact verdict also proves the benchmark's own writes chained. Each run walks the
whole table in one snapshot from a server-side cursor.
"""

import time
from io import StringIO

from django.core.management import CommandError, call_command

from registrations.models import AuditEvent

from .generate import generate_audit
from .harness import summary


def verify_once():
    out = StringIO()
    start = time.perf_counter()
    call_command("verify_audit_trail", stdout=out)
    return time.perf_counter() - start, out.getvalue().strip()


def chain_at_scale(events, reps):
    generate_seconds = None
    if AuditEvent.objects.count() < events:
        generate_seconds = generate_audit(events)
    try:
        verify_once()  # warm: the table's pages in the cache, as after any recent write
    except CommandError:  # a trail from before the chain, or emptied by another scenario's truncate
        generate_seconds = generate_audit(events)
        verify_once()
    samples, said = [], ""
    for _ in range(reps):
        seconds, said = verify_once()
        samples.append(seconds)
    counted = AuditEvent.objects.count()
    return {
        "events": counted,
        "generate_seconds": generate_seconds,
        "verify": summary(samples),
        "events_per_second": counted / summary(samples)["median"],
        "said": said,
    }
