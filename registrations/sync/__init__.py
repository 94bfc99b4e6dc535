"""The sync service: the only code that writes mirrored registrations, one job a module.

upsert   COPY + guarded upsert: the only SQL writer of registrations and their status history
listing  the walk, completeness, the status filter, removed-upstream marking; run_sync
partitions  a full sync split across workers: planning, one partition's walk, closing the family
seen     the ids a walk has seen, in an unlogged scratch table (memory stays flat)
writer   write-behind: a walk's pages written on a second connection while it prepares the next
refresh  single registrations and the trailing debounce of requests for them
details  the detail backlog: queued once, paced, backing off
runs     SyncRun bookkeeping, the single-flight lock, deadlines, pruning
erase    erasing personal data: the retention purge and data-subject requests (audited)
"""

from .details import claim_backlog, fetch_details_for
from .erase import erase, purge_removed
from .listing import run_sync
from .partitions import run_partition
from .refresh import claim as claim_refresh
from .refresh import fetch_and_store, refresh
from .refresh import release as release_refresh
from .runs import SYNC_LOCK_KEY, SyncFailed, build_client, prune_history
from .upsert import Rejected, mark_removed, store_detail, store_page

__all__ = [
    "SYNC_LOCK_KEY",
    "Rejected",
    "SyncFailed",
    "build_client",
    "claim_backlog",
    "claim_refresh",
    "erase",
    "fetch_and_store",
    "fetch_details_for",
    "mark_removed",
    "prune_history",
    "purge_removed",
    "refresh",
    "release_refresh",
    "run_partition",
    "run_sync",
    "store_detail",
    "store_page",
]
