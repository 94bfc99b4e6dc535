"""Verifik payload -> AppRegistration field values.

Pure functions: no I/O, no settings, no models. The sync service is the only
caller that writes what these return.

`raw` keeps the payload as received with populated objects collapsed to
their ids; the objects themselves live in `populated`, so a big populated
object is stored once, not twice.
"""

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

OBJECT_ID = re.compile(r"[0-9a-fA-F]{24}")
BIGINT = range(-(2**63), 2**63)  # what an integer column holds
# Dates a column holds and every time zone can display (a day of margin at both ends of Python's range).
EARLIEST, LATEST = datetime(1, 1, 2, tzinfo=UTC), datetime(9999, 12, 30, tzinfo=UTC)
# Registrations still moving (Verifik's vocabulary, so it lives here): the active sync lists only these.
ACTIVE_STATUSES = ("STARTED", "ONGOING", "NEEDS_MANUAL_VERIFICATION")

# API key -> model field, for every reference to another Verifik object.
REFERENCES = {
    "client": "client_id",
    "project": "project_id",
    "projectFlow": "project_flow_id",
    "smartLink": "smart_link_id",
    "informationValidation": "information_validation_id",
    "emailValidation": "email_validation_id",
    "phoneValidation": "phone_validation_id",
    "biometricValidation": "biometric_validation_id",
    "person": "person_id",
    "assignedCollection": "assigned_collection_id",
    "documentValidation": "document_validation_id",
    "face": "face_id",
    "documentFace": "document_face_id",
    "compareFaceVerification": "compare_face_verification_id",
    "cryptoValidation": "crypto_validation_id",
    "formSubmission": "form_submission_id",
    "signature": "signature_id",
    "accessControlLog": "access_control_log_id",
}
TEXT = {
    "status": "status",
    "email": "email",
    "countryCode": "country_code",
    "phone": "phone",
    "name": "name",
    "currentStep": "current_step",
    "language": "language",
    "notes": "notes",
}
# The kinds of failed validation Verifik lists, each as `failed<Kind>Validations`.
FAILED_VALIDATION_KINDS = ("email", "phone", "biometric", "document")
FAILED_LISTS = {f"failed{kind.title()}Validations": f"failed_{kind}_validations" for kind in FAILED_VALIDATION_KINDS}
# failed list field -> the count column the sync keeps beside it
FAILED_COUNTS = {field: field.replace("_validations", "_count") for field in FAILED_LISTS.values()}
TIMESTAMPS = {"createdAt": "created_at", "updatedAt": "updated_at"}

# Every column the mapping fills; the sync writes exactly these.
MAPPED_FIELDS = (
    ["verifik_id", "version", "red_flags", "red_flags_details", "deleted", "failed_validations_count"]
    + list(REFERENCES.values())
    + list(TEXT.values())
    + list(FAILED_LISTS.values())
    + list(FAILED_COUNTS.values())
    + list(TIMESTAMPS.values())
)


class MappingError(ValueError):
    """A payload that cannot be stored; the message says which key and why."""


@dataclass(frozen=True)
class MappedRegistration:
    verifik_id: str
    fields: dict
    raw: dict
    populated: dict


def is_object_id(value) -> bool:
    return isinstance(value, str) and OBJECT_ID.fullmatch(value) is not None


def parse_timestamp(value):
    """Verifik's ISO 8601 timestamps, with or without milliseconds, as aware UTC datetimes."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise MappingError(f"expected an ISO 8601 timestamp, got {type(value).__name__}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise MappingError(f"not an ISO 8601 timestamp: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError:
        raise MappingError(f"date out of range: {value[:40]!r}") from None
    if not EARLIEST <= parsed <= LATEST:
        raise MappingError(f"date out of range: {value[:40]!r}")
    return parsed


def _text(value):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise MappingError(f"expected text, got {type(value).__name__}")


def _integer(value):
    if value is None:
        return None
    if isinstance(value, bool):
        raise MappingError("expected an integer, got a boolean")
    whole_float = isinstance(value, float) and value.is_integer()
    if whole_float or (isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,30}\s*", value)):
        value = int(value)
    if not isinstance(value, int):
        raise MappingError(f"expected an integer, got {value!r:.40}")
    if value not in BIGINT:
        raise MappingError(f"integer outside the 64-bit range ({value.bit_length()} bits)")
    return value


def _boolean(value):
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if value in (0, 1):
        return bool(value)
    raise MappingError(f"expected true or false, got {value!r:.40}")


def _list(value):
    if value is None or isinstance(value, list):
        return value
    raise MappingError(f"expected a list, got {type(value).__name__}")


def _reference(value):
    """A reference arrives as an id string or a populated object; returns (id, object or None)."""
    if value is None:
        return None, None
    if isinstance(value, dict):
        ref_id = value.get("_id")
        return (ref_id if is_object_id(ref_id) else None), value
    if is_object_id(value):
        return value, None
    # Anything else (a malformed id, a number) is kept in `raw` only.
    return None, None


def collapse(payload: dict):
    """Split a payload into (raw with references as ids, populated objects by name)."""
    raw, populated = {}, {}
    for key, value in payload.items():
        if key in REFERENCES and isinstance(value, dict):
            ref_id, obj = _reference(value)
            raw[key] = ref_id
            populated[key] = obj
        else:
            raw[key] = value
    return raw, populated


def merge(stored_raw: dict, stored_populated: dict, payload: dict):
    """Lay a payload over what is stored: absent keys keep their stored value.

    A stored populated object survives only while the reference still points
    at it, so a changed reference never shows a stale object.
    """
    incoming_raw, incoming_populated = collapse(payload)
    raw = {**(stored_raw or {}), **incoming_raw}
    populated = dict(stored_populated or {})
    for key in REFERENCES:
        if key in incoming_populated:
            populated[key] = incoming_populated[key]
        elif key in incoming_raw:
            kept = populated.get(key)
            still_points_at_it = (
                isinstance(kept, dict) and incoming_raw[key] is not None and kept.get("_id") == incoming_raw[key]
            )
            if not still_points_at_it:
                populated.pop(key, None)
    return raw, populated


def map_registration(payload) -> MappedRegistration:
    """Map one payload, whole, to field values; raises MappingError naming the bad key."""
    if not isinstance(payload, dict):
        raise MappingError(f"expected an object, got {type(payload).__name__}")
    verifik_id = payload.get("_id")
    if not is_object_id(verifik_id):
        raise MappingError(f"_id: not a 24-hex-character id: {verifik_id!r:.40}")
    raw, populated = collapse(payload)
    get = payload.get
    fields = {"verifik_id": verifik_id.lower(), "red_flags_details": get("redFlagsDetails")}
    key = None
    try:
        for key, field in REFERENCES.items():
            value = get(key)
            fields[field] = (
                value if value is None or (type(value) is str and OBJECT_ID.fullmatch(value)) else _reference(value)[0]
            )
        for key, field in TEXT.items():
            value = get(key)
            fields[field] = value if value is None or type(value) is str else _text(value)
        for key, field in FAILED_LISTS.items():
            fields[field] = _list(get(key))
        for key, field in TIMESTAMPS.items():
            fields[field] = parse_timestamp(get(key))
        key = "__v"
        fields["version"] = _integer(get(key))
        key = "redFlags"
        fields["red_flags"] = _integer(get(key))
        key = "deleted"
        fields["deleted"] = _boolean(get(key))
    except MappingError as exc:
        raise MappingError(f"{key}: {exc}") from None
    for list_field, count_field in FAILED_COUNTS.items():
        fields[count_field] = len(fields[list_field] or ())
    fields["failed_validations_count"] = sum(fields[count] for count in FAILED_COUNTS.values())
    return MappedRegistration(verifik_id=fields["verifik_id"], fields=fields, raw=raw, populated=populated)


def canonical(payload) -> str:
    """The payload's JSON as fingerprinted (and pre-checked for cleaning), escaped to ASCII."""
    return json.dumps(payload, separators=(",", ":"), default=str)


def jsonb_text(value) -> str:
    """JSON text for a jsonb column, and for sizing a part: msgspec's (UTF-8, several times faster than
    the stdlib's), or the stdlib's for what msgspec refuses (a lone surrogate, a type JSON lacks)."""
    try:
        return msgspec.json.encode(value, enc_hook=_refuse).decode()
    except (TypeError, UnicodeError, msgspec.EncodeError):
        return json.dumps(value, separators=(",", ":"), default=str)


def _refuse(value):
    raise TypeError(type(value).__name__)


def fingerprint(data: str | bytes) -> str:
    """A payload's fingerprint: of its canonical JSON, or of its JSON as received (verifik.Page.item_bytes)."""
    return hashlib.blake2b(data.encode() if isinstance(data, str) else data, digest_size=16).hexdigest()


def payload_hash(payload) -> str:
    """A fingerprint of a payload, to tell an unchanged listing item without reading its row.

    Keys are not sorted: Verifik serialises a stored document the same way
    each time, and a reordering would only cost one redundant write.
    """
    return fingerprint(canonical(payload))


def _without(value, redact):
    if isinstance(value, dict):
        return {k: _without(v, redact) for k, v in value.items() if k not in redact}
    if isinstance(value, list):
        return [_without(v, redact) for v in value]
    return value


def sanitize(raw, populated, redact=(), max_part_bytes=None):
    """What may be stored of a payload: `redact` keys dropped at any depth, oversized parts replaced.

    A part is one top-level value of `raw` or one populated object; a part whose
    JSON exceeds `max_part_bytes` becomes a marker saying what was left out.
    Returns (raw, populated, number of parts replaced).
    """
    redact = frozenset(redact)
    if redact:
        raw, populated = _without(raw, redact), _without(populated, redact)
    if not max_part_bytes or len(jsonb_text([raw, populated])) <= max_part_bytes:
        return raw, populated, 0  # no part can be larger than the whole
    oversized = 0

    def capped(value):
        nonlocal oversized
        if isinstance(value, str | int | float | bool) or value is None:
            size = len(value) if isinstance(value, str) else 0
        else:
            size = len(jsonb_text(value))
        if size <= max_part_bytes:
            return value
        oversized += 1
        return {"_omitted": "larger than VERIFIK_RAW_MAX_PART_BYTES", "bytes": size}

    raw = {k: capped(v) for k, v in raw.items()}
    populated = {k: capped(v) for k, v in populated.items()}
    return raw, populated, oversized
