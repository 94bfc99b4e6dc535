"""Write-behind: a walk's pages are written on a second connection while the walk prepares the next.

Preparing a page (comparing, mapping, building rows) is Python work; writing it (COPY, the
upsert, the status history, the commit) is Postgres work. One after the other, each waits
for the other. Here they overlap, as they do in a single streaming COPY: one write is in
flight while the walk prepares; pages prepared meanwhile queue (up to BATCH_PAGES) and go
together in the next write, one transaction, so a database slower than the walk gets
fewer, larger statements (upsert.write_pages). Writes keep walk order. A registration
repeated on two pages never reaches two writes: the walk records a page's ids as seen, on
its own connection, before the page is handed over.

Inside a caller's transaction (an atomic block: a test, a shell) a second connection would
not see that transaction's rows, so pages are then written inline on the caller's connection.
"""

import contextvars
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import connection

from . import runs
from .upsert import write_pages

BATCH_PAGES = 5  # pages queued behind a write in flight before the walk waits; they go in one transaction
CONNECTION_NAME = "verifik-sync-writer"  # its application_name in pg_stat_activity


class PageWriter:
    """Writes prepared pages behind the walk; `on_written(page, refused)` counts each in the walk's thread.

    Pages with rows are counted in walk order once written; an unchanged page (no rows) at once.
    """

    def __init__(self, on_written):
        self.on_written = on_written
        self.inline = connection.in_atomic_block
        self._pool = None
        self._in_flight = None  # (pages, future)
        self._queued = []

    def __enter__(self):
        return self

    def submit(self, page):
        """Hand over a page; raises what an earlier write raised."""
        if self.inline or not page.rows:  # nothing to write (an unchanged page): no thread hop, no connection
            self.on_written(page, write_pages([page]) if page.rows else {})
            return
        if self._queued and (self._queued[-1].kind, self._queued[-1].run_id) != (page.kind, page.run_id):
            self._send()  # one write holds pages of one kind
        self._queued.append(page)
        if self._in_flight is None or self._in_flight[1].done() or len(self._queued) >= BATCH_PAGES:
            self._send()

    def poll(self):
        """Count the write in flight if it is done (without waiting): the walk's committed page moves on."""
        if self._in_flight is not None and self._in_flight[1].done():
            self._wait()

    def _send(self):
        """Wait for the write in flight, then start one of every queued page."""
        self._wait()
        if not self._queued:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verifik-writer")
            # The walk's settings (statement timeout, commits that do not wait for disk), and a name.
            self._pool.submit(
                runs.configure_session, settings.VERIFIK_SYNC_STATEMENT_TIMEOUT, name=CONNECTION_NAME
            ).result()
        pages, self._queued = self._queued, []
        self._in_flight = (pages, self._pool.submit(contextvars.copy_context().run, write_pages, pages))

    def _wait(self):
        if self._in_flight is not None:
            pages, future = self._in_flight
            self._in_flight = None
            refused = future.result()
            for page in pages:
                self.on_written(page, refused)

    def __exit__(self, exc_type, exc, traceback):
        try:
            if exc_type is None:
                self._send()
                self._wait()
            elif self._in_flight is not None:
                # The walk failed: the write in flight still commits or rolls back whole; it is not counted.
                self._in_flight[1].exception()
                self._in_flight = None
        finally:
            if self._pool is not None:
                self._pool.submit(_close).result()
                self._pool.shutdown()


def _close():
    connection.close()
