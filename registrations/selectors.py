"""Read-side queries for the back office, written to stay fast at a million registrations."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import BooleanField, ExpressionWrapper, Q, Subquery
from django.utils import timezone

from .models import LISTING_KINDS, AppRegistration, SyncRun

STALE_AFTER = timedelta(hours=24)


def without_jit(serial=False):
    """Turn Postgres' JIT off for this connection: the admin's reads are bounded (a page, a count
    capped at `COUNT_CAP` + 1 rows), yet their plans cost enough to be compiled, which took
    100-450 ms of a 1M-row queue count. A session setting, so the sync's connections keep theirs.

    `serial`: no parallel workers either, for the review desk (queue views, dashboard): its counts
    read a few thousand index entries, and starting workers on a shared 2-CPU machine cost more
    than they saved (overdue 140-155 -> 121-140 ms, dashboard 250-265 -> 190-210 ms at load 2).
    Every other list resets it, in the same statement, as the connection may be reused."""
    parallel = "SET max_parallel_workers_per_gather = 0" if serial else "RESET max_parallel_workers_per_gather"
    with connection.cursor() as cursor:
        cursor.execute(f"SET jit = off; {parallel}")


def distinct_values(*field_names, limit=200):
    """Distinct non-null values of indexed columns, by loose index scans, in one query.

    `SELECT DISTINCT` reads every row; each recursive CTE hops from one value
    to the next through the column's index, one lookup per distinct value.
    Returns {field name: [values]}.
    """
    quote = connection.ops.quote_name
    table = quote(AppRegistration._meta.db_table)
    ctes, selects = [], []
    for n, name in enumerate(field_names):
        column = quote(AppRegistration._meta.get_field(name).column)
        first, after = f"SELECT MIN({column}) FROM {table}", f"{column} > v{n}.val"
        ctes.append(
            f"v{n}(val) AS ({first} UNION ALL SELECT ({first} WHERE {after}) FROM v{n} WHERE v{n}.val IS NOT NULL)"
        )
        selects.append(f"SELECT * FROM (SELECT {n}, val FROM v{n} WHERE val IS NOT NULL LIMIT {int(limit)}) AS s{n}")
    sql = "WITH RECURSIVE " + ", ".join(ctes) + " " + " UNION ALL ".join(selects)
    values = {name: [] for name in field_names}
    with connection.cursor() as cursor:
        cursor.execute(sql)
        for n, value in cursor.fetchall():
            values[field_names[n]].append(value)
    return values


@dataclass(frozen=True)
class SyncHealth:
    last_run: SyncRun | None  # the latest listing sync, whatever its outcome
    last_full_success: SyncRun | None
    last_active_success: SyncRun | None = None  # the active lane's (statuses reviewers work on)

    @property
    def covered_at(self) -> datetime | None:
        """Every registration still upstream was confirmed current when the last full sync finished."""
        return self.last_full_success.finished_at if self.last_full_success else None

    @property
    def last_failed(self):
        return self.last_run is not None and self.last_run.outcome == SyncRun.Outcome.FAILED


def sync_health():
    """The latest listing sync and the latest successful full and active syncs, in one query."""
    listing = SyncRun.objects.filter(kind__in=LISTING_KINDS)
    last_run = listing.exclude(outcome=SyncRun.Outcome.SKIPPED).order_by("-started_at", "-id")
    last_full = listing.filter(kind=SyncRun.Kind.FULL, outcome=SyncRun.Outcome.SUCCEEDED).order_by("-finished_at")
    last_active = listing.filter(kind=SyncRun.Kind.ACTIVE, outcome=SyncRun.Outcome.SUCCEEDED).order_by("-finished_at")
    is_last_run = Q(pk=Subquery(last_run.values("pk")[:1]))
    is_last_full = Q(pk=Subquery(last_full.values("pk")[:1]))
    is_last_active = Q(pk=Subquery(last_active.values("pk")[:1]))
    runs = list(
        SyncRun.objects.filter(is_last_run | is_last_full | is_last_active).annotate(
            is_last_run=ExpressionWrapper(is_last_run, output_field=BooleanField()),
            is_last_full=ExpressionWrapper(is_last_full, output_field=BooleanField()),
            is_last_active=ExpressionWrapper(is_last_active, output_field=BooleanField()),
        )
    )
    return SyncHealth(
        last_run=next((run for run in runs if run.is_last_run), None),
        last_full_success=next((run for run in runs if run.is_last_full), None),
        last_active_success=next((run for run in runs if run.is_last_active), None),
    )


def last_confirmed(registration, covered_at):
    """When this registration was last known current: its own last write, or the last full sync that saw it."""
    candidates = [registration.last_synced_at]
    if covered_at is not None and registration.removed_upstream_at is None:
        candidates.append(covered_at)
    return max((c for c in candidates if c is not None), default=None)


def is_stale(confirmed, now=None):
    """Whether a `last_confirmed` time is too old to trust; never confirmed counts as stale."""
    return confirmed is None or confirmed < (now or timezone.now()) - STALE_AFTER


def stale_q(covered_at, now=None):
    """The rows `is_stale` would flag, as a filter the database can run."""
    cutoff = (now or timezone.now()) - STALE_AFTER
    old = Q(last_synced_at__lt=cutoff) | Q(last_synced_at__isnull=True)
    if covered_at is not None and covered_at >= cutoff:
        return old & Q(removed_upstream_at__isnull=False)
    return old


def estimated_total(model=AppRegistration):
    """Postgres' own row estimate for a model's table (the registrations'); None before the first ANALYZE."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [model._meta.db_table])
        row = cursor.fetchone()
    return row[0] if row and row[0] >= 0 else None


# Lists count their rows up to here and page through no further (docs/DESIGN.md, "Counts and deep pages").
COUNT_CAP = 10_000


@dataclass(frozen=True)
class Count:
    """How many rows a list has, as far as it was worth counting.

    `exact`: `value` rows. Otherwise `value` is a floor ("more than 10,000") or, for the
    unfiltered table, Postgres' own estimate ("about 1,000,000"): never a planner guess
    presented as a count.
    """

    value: int
    exact: bool = True
    about: bool = False

    @property
    def label(self):
        if self.about:
            return f"about {self.value:,}"
        return f"{self.value:,}" if self.exact else f"more than {self.value:,}"

    @property
    def short(self):
        """For a figure in a tile: "10,000+", "≈ 1,000,000"."""
        if self.about:
            return f"≈ {self.value:,}"
        return f"{self.value:,}" if self.exact else f"{self.value:,}+"

    def __str__(self):
        return self.label


def capped_count(queryset, cap=None):
    """Count the rows of `queryset`, but stop at `cap` + 1: exact up to `cap`, "more than `cap`" past it.

    Costs at most `cap` + 1 rows read whatever the planner believes about the filter,
    unlike an exact count (all matching rows) or an estimate (as wrong as the statistics).
    """
    cap = COUNT_CAP if cap is None else cap
    if queryset._fields is None and not queryset.query.combinator:  # rows: their keys, without select_related
        queryset = queryset.select_related(None).values("pk")
    if not queryset.query.combinator:  # a UNION is counted as it is
        queryset = queryset.order_by()
    counted = queryset[: cap + 1].count()
    return Count(cap, exact=False) if counted > cap else Count(counted)


def total_count():
    """The unfiltered table: its estimate when above the cap, labelled "about"; else counted."""
    estimate = estimated_total()
    if estimate is not None and estimate > COUNT_CAP:
        return Count(estimate, exact=False, about=True)
    return capped_count(AppRegistration.objects.all())


def recent_runs_for(verifik_id, limit=10):
    return list(SyncRun.objects.filter(verifik_id=verifik_id).select_related("user").order_by("-started_at")[:limit])


def project_names(project_ids, sample=20):
    """{project id: name} from the populated project of a few of its registrations, one query.

    Each project is looked up through the project index and only its first `sample`
    rows are read; a project none of them carries populated is left out. The lookup is
    written as a range ordered by the index (`>= id AND <= id ORDER BY project_id`): with
    `= id` and a few large projects the planner prefers a sequential scan "until 20 rows
    match", which reads the whole table for a project whose rows are rare.
    """
    if not project_ids:
        return {}
    table = connection.ops.quote_name(AppRegistration._meta.db_table)
    sql = (
        "SELECT p.id, (SELECT MAX(s.name) FROM (SELECT populated -> 'project' ->> 'name' AS name "
        f"FROM {table} WHERE project_id >= p.id AND project_id <= p.id ORDER BY project_id LIMIT %s) AS s) "
        "FROM unnest(%s::text[]) AS p(id)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [sample, list(project_ids)])
        return {project_id: name for project_id, name in cursor.fetchall() if name}
