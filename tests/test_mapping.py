import json
from datetime import UTC, datetime

import pytest

from registrations.cleaning import needs_cleaning
from registrations.mapping import (
    MappingError,
    jsonb_text,
    map_registration,
    merge,
    parse_timestamp,
    payload_hash,
)

ID = "507f1f77bcf86cd799439011"
PROJECT = "507f1f77bcf86cd799439013"


def payload(**extra):
    return {"_id": ID, **extra}


def test_documented_example_maps_every_key_to_its_field():
    mapped = map_registration(
        payload(
            __v=0,
            client="507f1f77bcf86cd799439012",
            project=PROJECT,
            projectFlow="507f1f77bcf86cd799439014",
            status="STARTED",
            email="john@example.com",
            countryCode="+1",
            phone="1234567890",
            name="John Doe",
            currentStep="Document Verification",
            redFlags=0,
            redFlagsDetails={},
            language="en",
            failedEmailValidations=[],
            notes="Additional verification required.",
            createdAt="2025-01-01T00:00:00.000Z",
            updatedAt="2025-01-01T00:00:00.000Z",
        )
    )
    f = mapped.fields
    assert f["verifik_id"] == ID and f["version"] == 0
    assert f["client_id"] == "507f1f77bcf86cd799439012" and f["project_flow_id"] == "507f1f77bcf86cd799439014"
    assert (f["status"], f["country_code"], f["current_step"], f["language"]) == (
        "STARTED",
        "+1",
        "Document Verification",
        "en",
    )
    assert f["created_at"] == datetime(2025, 1, 1, tzinfo=UTC)
    assert f["failed_email_validations"] == [] and f["red_flags_details"] == {}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2025-01-01T00:00:00.000Z", datetime(2025, 1, 1, tzinfo=UTC)),
        ("2025-01-01T00:00:00Z", datetime(2025, 1, 1, tzinfo=UTC)),
        ("2025-01-01T05:30:00.123+05:30", datetime(2025, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)),
        ("2025-01-01T00:00:00", datetime(2025, 1, 1, tzinfo=UTC)),
        (None, None),
    ],
)
def test_timestamps_with_or_without_milliseconds_are_aware_utc(text, expected):
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed is None or parsed.tzinfo is not None


def test_awkward_text_is_kept_whole():
    name, notes = "Zoë 李小龙 😀 " + "x" * 290, "line one\nline two\n" + "n" * 20_000
    f = map_registration(payload(name=name, notes=notes, phone="0012345", email="ñ@例え.jp")).fields
    assert f["name"] == name and len(f["name"]) == 300
    assert f["notes"] == notes
    assert f["phone"] == "0012345"


def test_a_phone_sent_as_a_number_becomes_text():
    assert map_registration(payload(phone=3001234567)).fields["phone"] == "3001234567"


def test_absent_keys_are_not_sent_and_null_is_stored_as_null():
    f = map_registration(payload(notes=None, redFlags=None)).fields
    assert f["notes"] is None and f["red_flags"] is None
    assert map_registration(payload()).raw == {"_id": ID}


def test_a_reference_may_be_an_id_or_a_populated_object():
    as_object = map_registration(payload(project={"_id": PROJECT, "name": "Acme"}))
    as_id = map_registration(payload(project=PROJECT))
    assert as_object.fields["project_id"] == as_id.fields["project_id"] == PROJECT
    assert as_object.populated == {"project": {"_id": PROJECT, "name": "Acme"}}
    assert as_object.raw["project"] == PROJECT, "raw keeps the id; the object lives in populated"
    assert as_id.populated == {}


def test_a_malformed_reference_is_kept_in_raw_only():
    mapped = map_registration(payload(project="not-an-id"))
    assert mapped.fields["project_id"] is None and mapped.raw["project"] == "not-an-id"


def test_unknown_status_and_extra_keys_survive():
    mapped = map_registration(payload(status="ON_HOLD", brandNewKey={"a": 1}))
    assert mapped.fields["status"] == "ON_HOLD" and mapped.raw["brandNewKey"] == {"a": 1}


def test_red_flags_as_a_numeric_string_is_a_number():
    assert map_registration(payload(redFlags="3")).fields["red_flags"] == 3


def test_failed_validations_are_kept_as_sent_and_counted():
    f = map_registration(
        payload(
            failedEmailValidations=["a" * 24],
            failedDocumentValidations=[{"_id": "b" * 24, "reason": "blurry"}],
            failedPhoneValidations=None,
        )
    ).fields
    assert f["failed_document_validations"] == [{"_id": "b" * 24, "reason": "blurry"}]
    assert f["failed_phone_validations"] is None
    assert f["failed_validations_count"] == 2


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"_id": "123"}, "_id"),
        ({}, "_id"),
        (payload(redFlags="many"), "redFlags"),
        (payload(createdAt="yesterday"), "createdAt"),
        (payload(failedEmailValidations="x"), "failedEmailValidations"),
        (payload(name={"first": "a"}), "name"),
    ],
)
def test_a_record_that_cannot_be_mapped_names_the_key(bad, key):
    with pytest.raises(MappingError, match=key):
        map_registration(bad)


def test_merge_keeps_absent_keys_and_drops_objects_of_changed_references():
    stored_raw = {"_id": ID, "notes": "keep me", "project": PROJECT, "person": "c" * 24}
    stored_populated = {"project": {"_id": PROJECT, "name": "Acme"}, "person": {"_id": "c" * 24}}
    raw, populated = merge(
        stored_raw, stored_populated, {"_id": ID, "status": "ONGOING", "project": PROJECT, "person": "d" * 24}
    )
    assert raw["notes"] == "keep me" and raw["status"] == "ONGOING" and raw["person"] == "d" * 24
    assert populated == {"project": {"_id": PROJECT, "name": "Acme"}}


def test_payload_hash_is_stable_and_sees_every_value():
    assert payload_hash({"a": 1, "b": [1, 2]}) == payload_hash({"a": 1, "b": [1, 2]})
    assert payload_hash({"a": 1, "b": [1, 2]}) != payload_hash({"a": 1, "b": [1, 3]})
    assert payload_hash({"a": {"n": None}}) != payload_hash({"a": {}})


def test_jsonb_text_is_json_postgres_reads_back_as_the_same_value():
    value = {"a": [1, 2.5, None, True], "é": "naïve / 😀", "big": 10**30, "nul": "a\x00b"}
    assert json.loads(jsonb_text(value)) == value


def test_jsonb_text_falls_back_to_the_standard_library_for_what_msgspec_refuses():
    assert jsonb_text({"lone": "\ud800"}) == '{"lone":"\\ud800"}'


@pytest.mark.parametrize(
    "text, suspect",
    [
        ('{"a":"plain","b":[1,2]}', False),
        ('{"a":"\\u0000"}', True),
        ('{"a":NaN}', True),
        ('{"a":-Infinity}', True),
        ('{"a":"\\ud800"}', True),
        ('{"a":"\\ud55c"}', False),  # a Hangul syllable, escaped: not a surrogate
        ("[" * 65 + "]" * 65, True),
    ],
)
def test_needs_cleaning_reads_canonical_json(text, suspect):
    assert needs_cleaning(text) is suspect


@pytest.mark.parametrize(
    "received, suspect",
    [(b'{"a":"plain \xc3\xa9"}', False), (b'{"a":"\\u0000"}', True), (b"[" * 65 + b"]" * 65, True)],
)
def test_needs_cleaning_reads_received_bytes_for_what_msgspec_lets_through(received, suspect):
    assert needs_cleaning(received) is suspect
