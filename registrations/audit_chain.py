"""The audit trail's hash chain: every event carries an HMAC over the previous event's and its own fields.

An event's `chain_hash` is HMAC-SHA256, keyed with `AUDIT_CHAIN_KEY`, over the previous
event's `chain_hash` (32 zero bytes before the first event) and the event's canonical
fields: id, time in microseconds, actor id, action, registration id, address and details
as Postgres prints them back (jsonb's text, `host(inet)`), so the writer and the verifier
hash the same bytes whatever the JSON encoder did. The chain runs in id order; writers
take ids and append under a lock on the chain's head row (`AuditChainHead`), so concurrent
writers never fork it, and the head's own HMAC binds the count and the last id and hash.

The database owner can change rows with the trigger disabled, but without the key cannot
compute the hashes that would hide it: `verify()` names the first event whose hash does
not follow. What the key does not stop (a cut tail with an old head put back, a whole
wipe) is in docs/DESIGN.md.
"""

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction

from .models import AuditChainHead, AuditEvent

GENESIS = bytes(32)
SEPARATOR = "\x1f"  # unit separator: in no id, number, action or address; details come last
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HEAD_ID = 1
VERIFY_BATCH = 20_000
TABLE = AuditEvent._meta.db_table
HEAD_TABLE = AuditChainHead._meta.db_table

# One event's canonical text as Postgres computes it: the verifier reads this, the writer builds the same.
MESSAGE_SQL = (
    "id::text || E'\\x1f' || ((extract(epoch FROM at) * 1000000)::bigint)::text || E'\\x1f' || "
    "coalesce(actor_id::text, '') || E'\\x1f' || action || E'\\x1f' || "
    "coalesce(registration_id::text, '') || E'\\x1f' || coalesce(host(ip), '') || E'\\x1f' || details::text"
)


def key():
    return settings.AUDIT_CHAIN_KEY.encode()


def link(secret, previous, message):
    """The chain hash of an event whose canonical text is `message`, after an event hashed `previous`."""
    return hmac.digest(secret, previous + message.encode(), hashlib.sha256)


def head_mac(secret, events, last_id, last_hash):
    fields = f"head\x1f{events}\x1f{last_id or ''}\x1f".encode()
    return hmac.digest(secret, fields + last_hash, hashlib.sha256)


def message(pk, at, actor_id, action, registration_id, ip, details_text):
    micros = (at - EPOCH) // timedelta(microseconds=1)
    fields = (pk, micros, actor_id if actor_id is not None else "", action, registration_id or "", ip or "")
    return SEPARATOR.join(map(str, fields)) + SEPARATOR + details_text


def append(events):
    """Insert unsaved AuditEvents at the chain's end, in the caller's transaction (or one of their own in
    autocommit: the head's lock must last until the events commit). Returns them, saved.

    Two round trips: registrations_audit_reserve() (migration 0017) locks the head, takes the ids and
    returns the details and addresses as Postgres prints them; then one statement inserts the events
    and moves the head.
    """
    if not events:
        return events
    secret = key()
    details = [DjangoJSONEncoder().encode(e.details) for e in events]
    ips = [e.ip for e in events]
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        count, previous, ids, texts, hosts = _reserve(cursor, len(events), details, ips)
        hashes = []
        for event, pk, text, host in zip(events, ids, texts, hosts, strict=True):
            text = message(pk, event.at, event.actor_id, event.action, event.registration_id, host, text)
            previous = link(secret, previous, text)
            hashes.append(previous)
        count += len(events)
        cursor.execute(
            f"WITH head AS (UPDATE {HEAD_TABLE} SET events = %s, last_event_id = %s, last_hash = %s, mac = %s "  # noqa: S608
            "WHERE id = %s) "
            f"INSERT INTO {TABLE} (id, actor_id, action, registration_id, at, ip, details, chain_hash) "
            "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::bigint[], %s::timestamptz[], "
            "%s::inet[], %s::jsonb[], %s::bytea[])",
            [
                count, ids[-1], previous, head_mac(secret, count, ids[-1], previous), HEAD_ID,
                ids, [e.actor_id for e in events], [str(e.action) for e in events],
                [e.registration_id for e in events], [e.at for e in events], hosts, texts, hashes,
            ],
        )  # fmt: skip
    for event, pk, chain_hash in zip(events, ids, hashes, strict=True):
        event.pk, event.chain_hash = pk, chain_hash
        event._state.adding, event._state.db = False, connection.alias
    return events


def _reserve(cursor, n, details, ips):
    """(head's count, last hash, ids, details texts, hosts), the head locked until the transaction ends;
    the head is created at genesis first when missing (a new database, the tests' flush)."""
    reserve = "SELECT * FROM registrations_audit_reserve(%s, %s::text[], %s::text[])"
    cursor.execute(reserve, [n, details, ips])
    count, previous, ids, texts, hosts = cursor.fetchone()
    if count is None:
        cursor.execute(
            f"INSERT INTO {HEAD_TABLE} (id, events, last_hash, mac) VALUES (%s, 0, %s, %s) ON CONFLICT DO NOTHING",  # noqa: S608
            [HEAD_ID, GENESIS, head_mac(key(), 0, None, GENESIS)],
        )
        cursor.execute(reserve, [n, details, ips])
        count, previous, ids, texts, hosts = cursor.fetchone()
    return count, bytes(previous), ids, texts, hosts


@dataclass
class Verdict:
    events: int
    head: bytes
    first_bad: int | None = None  # the id of the first event that does not follow, when one does not
    bad_events: int = 0
    problem: str = ""

    @property
    def intact(self):
        return not self.problem


def verify():
    """Walk the whole trail in id order in one snapshot, streamed from a server-side cursor."""
    secret = key()
    previous, count, first_bad, bad, problem, last_pk = GENESIS, 0, None, 0, "", None
    outermost = not connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        if outermost:  # one snapshot for the head and the events: writers may append meanwhile
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursor.execute(f"SELECT events, last_event_id, last_hash, mac FROM {HEAD_TABLE} WHERE id = %s", [HEAD_ID])  # noqa: S608
        head = cursor.fetchone()
        raw = connection.connection
        with raw.cursor(name="verify_audit_trail") as rows:
            rows.itersize = VERIFY_BATCH
            rows.execute(f"SELECT id, chain_hash, {MESSAGE_SQL} FROM {TABLE} ORDER BY id")  # noqa: S608
            digest, sha256 = hmac.digest, hashlib.sha256
            for pk, stored, text in rows:
                count += 1
                if stored is None:  # written past the chain's writer: not a link, the next is judged on ours
                    bad += 1
                    first_bad = first_bad or pk
                    continue
                if digest(secret, previous + text.encode(), sha256) != stored:
                    bad += 1
                    first_bad = first_bad or pk
                previous = stored  # the next event is judged on its own link
                last_pk = pk
    if first_bad is not None:
        problem = (
            f"event {first_bad} does not follow the event before it (changed, moved, inserted, or the one "
            f"before it was removed); {bad} event(s) in all break the chain"
        )
    elif head is None:
        if count:
            problem = "the chain's head is missing"
    else:
        events, last_id, last_hash, mac = head[0], head[1], bytes(head[2]), bytes(head[3])
        if not hmac.compare_digest(mac, head_mac(secret, events, last_id, last_hash)):
            problem = "the chain's head was changed"
        elif (events, last_id, last_hash) != (count, last_pk, previous):
            missing = f"event {last_id} is missing: " if last_id != last_pk else ""
            problem = (
                f"{missing}the trail has {count} events and ends at event {last_pk}, but the chain's head counts "
                f"{events} ending at event {last_id}: events were removed from, or added to, its end"
            )
    return Verdict(events=count, head=previous, first_bad=first_bad, bad_events=bad, problem=problem)
