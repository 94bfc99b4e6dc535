"""Personal data masked by permission: the rules (pure), every admin page an analyst reads, and reveal."""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client, override_settings
from django.urls import reverse

from registrations import privacy, reveals
from registrations.models import AppRegistration, AuditEvent
from registrations.sync import run_sync

from .support import staff

LIST = reverse("admin:registrations_appregistration_changelist")


def url(name, obj):
    return reverse(f"admin:registrations_appregistration_{name}", args=[obj.pk])


# --- the rules ---------------------------------------------------------------------------


def test_emails_keep_first_letters_and_top_level_domain():
    assert privacy.mask_email("john.doe@example.com") == "j***@e***.com"
    assert privacy.mask_email("A@b.co") == "A***@b***.co"
    assert privacy.mask_email("not-an-email") == "n***"
    assert privacy.mask_email("x@localhost") == "x***@l***"
    assert privacy.mask_email(None) is None and privacy.mask_email("") == ""


def test_phones_keep_country_code_and_last_four_digits():
    assert privacy.mask_phone("3001234567", "+57") == "+57 ******4567"
    assert privacy.mask_phone("(300) 123-4567") == "******4567"
    assert privacy.mask_phone("12345", "+1") == "+1 ***45"
    assert privacy.mask_phone("123", None) == "***"
    assert privacy.mask_phone(None, None) is None


def test_names_keep_the_first_letter_of_each_word():
    assert privacy.mask_name("John Doe") == "J*** D***"
    assert privacy.mask_name("  Émile   de la Tour ") == "É*** d*** l*** T***"
    assert privacy.mask_name("<script>alert(1)</script>") == "<***"
    assert privacy.mask_name("") == ""


def test_documents_keep_the_last_three_or_four_characters():
    assert privacy.mask_document("1234567890") == "******7890"
    assert privacy.mask_document("AB12345") == "****345"
    assert privacy.mask_document(12345) == "*****"
    assert privacy.mask_document(None) is None


def test_payloads_show_only_the_allow_list_and_are_left_untouched():
    payload = {
        "name": "Ana Gómez",
        "Email": "ana@example.co",
        "countryCode": "+57",
        "phone": "3001234567",
        "status": "ONGOING",
        "_id": "65f1c0ffee0000000000beef",
        "createdAt": "2025-01-01T00:00:00.000Z",
        "redFlags": 2,
        "documentValidation": {"OCRExtraction": {"documentNumber": 1023456789, "expirationDate": "2030-01-01"}},
        "people": [{"first_name": "Ana", "last-name": "Gómez"}, {"fullName": {"given": "Luis", "family": "Paz"}}],
        "notes": "Called Ana Gómez on 3001234567, wrote to ana@example.co and x.y@z.org",
        "flags": [True, None, 3],
        "biometricValidation": {"livenessScore": 0.93, "passed": False, "attemptsCount": 2},
        "failed": [{"reason": "Blurry image"}, {"reason": "Ana sent her cousin's ID"}],
    }
    original = repr(payload)
    known = [(privacy.NAME, payload["name"]), (privacy.PHONE, payload["phone"])]
    masked = privacy.mask_payload(payload, known)
    assert repr(payload) == original  # a copy: the stored payload is not changed
    assert masked["name"] == "A*** G***" and masked["Email"] == "a***@e***.co" and masked["phone"] == "******4567"
    # On the allow-list: ids, status, dates, counts, scores, booleans, reasons of the vocabulary.
    for key in ("countryCode", "status", "_id", "createdAt", "redFlags", "biometricValidation"):
        assert masked[key] == payload[key], key
    assert masked["failed"] == [{"reason": "Blurry image"}, {"reason": privacy.PERSONAL}]
    # Off it: free text, unknown keys (a number, a date under a key that is no timestamp's).
    assert masked["notes"] == privacy.PERSONAL and masked["flags"] == [True, None, privacy.PERSONAL]
    assert masked["documentValidation"]["OCRExtraction"] == {
        "documentNumber": "******6789",
        "expirationDate": privacy.PERSONAL,
    }
    assert masked["people"] == [
        {"first_name": "A***", "last-name": "G***"},
        {"fullName": {"given": "L***", "family": "P***"}},
    ]


def test_what_the_deny_list_let_through_is_masked():
    """address, dateOfBirth, givenName, familyName, nationality, ip, photoUrl, form answers, the project's
    data-protection officer's address, and a personal key nested under keys nobody listed."""
    payload = {
        "person": {
            "address": {"street": "Calle 12 # 34-56", "city": "Bogotá", "state": "Cundinamarca", "zip": 110111},
            "dateOfBirth": "1990-04-12",
            "givenName": "Ximena",
            "familyName": "Quiroga",
            "nationality": "Colombian",
            "ip": "181.52.10.4",
            "photoUrl": "https://cdn.example.com/faces/ximena.jpg",
        },
        "formSubmission": {"answers": [{"question": "Mother's maiden name", "answer": "Urrutia"}]},
        "project": {"dataProtection": {"name": "Data Officer", "email": "dpo@example.com", "address": "1 Main St"}},
        "vendorExtension": {"blob": {"deeper": [{"surname": "Valderrama", "note": "Lives at 9 Rue Verte"}]}},
        "ipCountryMismatch": {"expected": "CO", "detected": "RU", "score": 0.82},
    }
    shown = repr(privacy.mask_payload(payload))
    for value in (
        "Calle 12",
        "Cundinamarca",
        "110111",
        "1990-04-12",
        "Ximena",
        "Quiroga",
        "Colombian",
        "181.52.10.4",
        "ximena.jpg",
        "Mother's maiden",
        "Urrutia",
        "Data Officer",
        "dpo@example.com",
        "1 Main St",
        "Valderrama",
        "Rue Verte",
        "RU",
    ):
        assert value not in shown, value
    assert "0.82" in shown and "X***" in shown and "V***" in shown


def test_free_text_and_query_strings_are_masked_after_decoding():
    text = privacy.mask_text("Verifik: 409 email ximena.q@example.org already used; document 1023456789")
    assert "ximena.q@example.org" not in text and "1023456789" not in text and "x***@e***.org" in text
    query = privacy.mask_query("q=user492.951054%40example.io&status=FAILED&email__startswith=xim&o=-2")
    assert query == "q=u***@e***.io&status=FAILED&email__startswith=x***&o=-2"
    assert privacy.mask_query("q=Ximena+Quiroga") == "q=X*** Q***"
    assert privacy.mask_query("q=3001234567") == "q=******4567"
    assert privacy.mask_query("q=65f1c0ffee0000000000beef") == "q=65f1c0ffee0000000000beef"
    assert privacy.mask_query("ana%40example.org=1") == "a***@e***.org=1"  # a hostile key is masked too


def test_hostile_payloads_cost_a_marker():
    deep = {"email": "a@b.co"}
    for _ in range(5000):
        deep = {"x": [deep]}
    masked = privacy.mask_payload(deep)
    assert "a@b.co" not in repr(masked) and privacy.TOO_DEEP in repr(masked)
    deep_name = "Ana"
    for _ in range(5000):
        deep_name = [deep_name]
    assert privacy.TOO_DEEP in repr(privacy.mask_payload({"name": deep_name}))
    assert privacy.mask_payload({"name": 42, "phone": 3001234567, "email": True}) == {
        "name": "4***",
        "phone": "******4567",
        "email": True,
    }


def test_the_reveal_window_decides_who_sees_unmasked():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert privacy.can_see_pii(True, None, now, 15)
    assert not privacy.can_see_pii(False, None, now, 15)
    assert privacy.can_see_pii(False, now - timedelta(minutes=14, seconds=59), now, 15)
    assert not privacy.can_see_pii(False, now - timedelta(minutes=15), now, 15)
    assert not privacy.can_see_pii(False, now, now, 0)


def test_a_registration_names_itself_by_its_verifik_id():
    registration = AppRegistration(verifik_id="a" * 24, name="Ana Gómez", email="ana@example.co")
    assert str(registration) == "a" * 24


# --- the admin -----------------------------------------------------------------------------


@pytest.fixture
def account(verifik):
    account = verifik(count=30)
    run_sync(details=True)
    return account


def personal_values(account):
    """Every seeded email, phone, and plain name (a name of letters, as HTML would show it unescaped)."""
    values = set()
    for record in account.records:
        values.update([record["email"], record["phone"]])
        if record["name"].replace(" ", "").isalpha() and " " in record["name"]:
            values.add(record["name"])
    return values


def leaked(html, account):
    return sorted(value for value in personal_values(account) if value in html)


def login(username, group):
    client = Client()
    user = staff(username, group)
    client.force_login(user)
    return client, user


def pages(client, obj, search):
    """The HTML of every page that shows registrations."""
    out = {}
    for name, path in [
        ("list", LIST),
        ("list, all", LIST + "?all="),
        ("search", LIST + "?q=" + search),
        ("queue", LIST + "?queue=needs_review"),
        ("detail", url("change", obj)),
        ("timeline", url("history", obj)),
    ]:
        response = client.get(path)
        assert response.status_code == 200, (name, response.status_code)
        out[name] = response.content.decode()
    return out


def applicant_with_everything():
    """A registration whose name, email, phone and populated objects are all filled."""
    return (
        AppRegistration.objects.exclude(name__contains="<")
        .filter(email__isnull=False, phone__isnull=False)
        .filter(populated__has_key="documentValidation")
        .first()
    )


@pytest.mark.django_db
def test_an_analyst_sees_no_email_phone_or_name_on_any_page(account):
    client, _ = login("ann", "Registration analysts")
    obj = applicant_with_everything()
    obj_notes = AppRegistration.objects.filter(notes__isnull=False).first()
    # Search by the whole email (analysts match whole values only): the rows come back masked.
    needle = obj.email
    html = pages(client, obj, needle)
    html["notes detail"] = client.get(url("change", obj_notes)).content.decode()
    html["search"] = html["search"].replace(needle, "")  # the search box echoes what the analyst typed
    for name, page in html.items():
        assert leaked(page, account) == [], f"personal data on the analyst's {name} page"
    assert privacy.mask_email(obj.email) in html["search"] and privacy.mask_email(obj.email) in html["detail"]
    assert privacy.mask_phone(obj.phone, obj.country_code) in html["detail"]
    assert privacy.mask_name(obj.name) in html["detail"]
    number = str(obj.populated["documentValidation"]["OCRExtraction"]["documentNumber"])
    assert number not in html["detail"] and privacy.mask_document(number) in html["detail"]
    assert 'class="vf-json"' in html["detail"]
    assert obj.verifik_id in html["detail"] and "Reveal" in html["detail"]


@pytest.mark.django_db
def test_a_reviewer_sees_everything_unmasked(account):
    client, _ = login("rita", "Registration reviewers")
    obj = applicant_with_everything()
    html = pages(client, obj, obj.email)
    assert obj.email in html["search"] and obj.email in html["detail"] and obj.name in html["detail"]
    assert f"{obj.country_code} {obj.phone}" in html["detail"]
    listed = {r["email"] for r in account.records[-20:]}  # the default page: the newest first
    assert all(email in html["list"] for email in listed)
    assert 'action="' + url("reveal", obj) not in html["detail"]


@pytest.mark.django_db
def test_operators_and_superusers(account):
    """Operators (refresh) see masked like analysts; superusers hold every permission, view_pii included."""
    obj = applicant_with_everything()
    operator, _ = login("otto", "Registration operators")
    assert obj.email not in operator.get(url("change", obj)).content.decode()
    admin = Client()
    from django.contrib.auth.models import User

    admin.force_login(User.objects.create_superuser("root", password="pw"))
    assert obj.email in admin.get(url("change", obj)).content.decode()


@pytest.mark.django_db
def test_view_pii_alone_unmasks(account):
    client, user = login("vera", "Registration analysts")
    user.user_permissions.add(Permission.objects.get(codename="view_pii"))
    obj = applicant_with_everything()
    assert obj.email in client.get(url("change", obj)).content.decode()


# --- reveal --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_reveal_needs_a_reason_and_is_audited(account):
    client, user = login("ann", "Registration analysts")
    other, _ = login("abe", "Registration analysts")
    obj = applicant_with_everything()

    for reason in ("", "   "):
        response = client.post(url("reveal", obj), {"reason": reason}, follow=True)
        page = response.content.decode()
        assert "a reason is required" in page and obj.email not in page
    assert not AuditEvent.objects.filter(action="reveal").exists()

    response = client.post(url("reveal", obj), {"reason": "Applicant called about ticket 42"}, follow=True)
    page = response.content.decode()
    assert obj.email in page and obj.name in page and "revealed to you until" in page
    event = AuditEvent.objects.get(action="reveal")
    assert (event.actor, event.registration, event.details["reason"]) == (user, obj, "Applicant called about ticket 42")

    # Only that user, only that registration.
    assert obj.email not in other.get(url("change", obj)).content.decode()
    another = AppRegistration.objects.exclude(pk=obj.pk).exclude(email__isnull=True).first()
    assert another.email not in client.get(url("change", another)).content.decode()
    # The list shows it unmasked too, the other rows masked.
    listing = client.get(LIST + "?all=").content.decode()
    assert obj.email in listing and another.email not in listing


@pytest.mark.django_db
def test_a_reveal_ends_after_the_window(account):
    client, user = login("ann", "Registration analysts")
    obj = applicant_with_everything()
    client.post(url("reveal", obj), {"reason": "checking a complaint"})
    assert obj.email in client.get(url("change", obj)).content.decode()
    at = AuditEvent.objects.get(action="reveal").at
    # The window, computed at a later moment (the audit trail refuses to move the event back).
    assert reveals.lens_for(user, obj.pk, now=at + timedelta(minutes=14)).unmasked
    assert not reveals.lens_for(user, obj.pk, now=at + timedelta(minutes=15)).unmasked
    with override_settings(VERIFIK_REVEAL_MINUTES=0):
        assert obj.email not in client.get(url("change", obj)).content.decode()


@pytest.mark.django_db
def test_reveal_is_post_only_and_csrf_protected(account):
    obj = applicant_with_everything()
    client, _ = login("ann", "Registration analysts")
    assert client.get(url("reveal", obj)).status_code == 405
    guarded = Client(enforce_csrf_checks=True)
    guarded.force_login(staff("abe", "Registration analysts"))
    assert guarded.post(url("reveal", obj), {"reason": "x"}).status_code == 403
    assert not AuditEvent.objects.filter(action="reveal").exists()
    assert Client().post(url("reveal", obj), {"reason": "x"}).status_code == 302  # to the login page
    missing = reverse("admin:registrations_appregistration_reveal", args=[10**9])
    assert client.post(missing, {"reason": "x"}).status_code == 404


@pytest.mark.django_db
def test_free_text_on_the_timeline_is_masked_for_an_analyst(account):
    """A reviewer's comment and reason may repeat the person's email or phone; an analyst sees them masked."""
    from registrations import review

    obj = applicant_with_everything()
    _, rita = login("rita", "Registration reviewers")
    review.comment(obj, rita, f"Called {obj.phone}, wrote to {obj.email} and to other.person@example.org")
    review.decide(obj, rita, "escalated", f"{obj.name} sent a new document")
    client, _ = login("ann", "Registration analysts")
    for page in (client.get(url("change", obj)).content.decode(), client.get(url("history", obj)).content.decode()):
        assert obj.email not in page and obj.phone not in page and obj.name not in page
        assert "other.person@example.org" not in page and "o***@e***.org" in page
        assert f"Called {privacy.mask_phone(obj.phone)}" in page and f"{privacy.mask_name(obj.name)} sent" in page
    reviewer, _ = login("rex", "Registration reviewers")
    assert f"wrote to {obj.email}" in reviewer.get(url("history", obj)).content.decode()


def test_free_text_is_masked_whatever_the_case_and_a_name_word_by_word():
    known = [(privacy.NAME, "Ana Gomez"), (privacy.EMAIL, "ana.gomez@example.co"), (privacy.PHONE, "3001234567")]
    text = privacy.mask_text("ANA GOMEZ (gomez) wrote from ANA.GOMEZ@EXAMPLE.CO, call 3001234567", known)
    assert "ANA" not in text and "GOMEZ" not in text.upper() and "3001234567" not in text


# --- reveal, attacked ------------------------------------------------------------------------


def reveal_url(obj):
    return url("reveal", obj)


@pytest.mark.django_db
def test_only_analysts_may_reveal_operators_get_403(account):
    obj = applicant_with_everything()
    operator, otto = login("otto", "Registration operators")
    assert operator.post(reveal_url(obj), {"reason": "Checking the customer's complaint"}).status_code == 403
    assert not AuditEvent.objects.filter(action__startswith="reveal").exists()
    assert obj.email not in operator.get(url("change", obj)).content.decode()
    assert 'action="' + reveal_url(obj) not in operator.get(url("change", obj)).content.decode()
    # Another path: the service itself refuses without the permission.
    with pytest.raises(reveals.RevealError):
        reveals.reveal(obj, otto, "Checking the customer's complaint")
    assert not AuditEvent.objects.filter(action="reveal").exists()
    holders = Permission.objects.get(codename="reveal_pii").group_set.values_list("name", flat=True)
    assert list(holders) == ["Registration analysts"]


@pytest.mark.django_db
@pytest.mark.parametrize("reason", [".", "ok", "         .", "checking!", "a\n\t b   c"])
def test_a_reason_under_ten_characters_reveals_nothing(account, reason):
    client, _ = login("ann", "Registration analysts")
    obj = applicant_with_everything()
    page = client.post(reveal_url(obj), {"reason": reason}, follow=True).content.decode()
    assert "at least 10 characters" in page and obj.email not in page
    assert not AuditEvent.objects.filter(action="reveal").exists()


@pytest.mark.django_db
def test_a_replayed_reveal_does_not_extend_the_window(account):
    client, user = login("ann", "Registration analysts")
    obj = applicant_with_everything()
    first = client.post(reveal_url(obj), {"reason": "Ticket 5521: caller's identity"})
    assert first.status_code == 302
    [event] = AuditEvent.objects.filter(action="reveal")
    for _ in range(3):  # the same POST again, as a replay would send it
        page = client.post(reveal_url(obj), {"reason": "Ticket 5521: caller's identity"}, follow=True)
        assert "does not extend" in page.content.decode()
    assert list(AuditEvent.objects.filter(action="reveal")) == [event]
    later = event.at + timedelta(minutes=14, seconds=59)
    again = reveals.reveal(obj, user, "Ticket 5521: caller's identity", now=later)
    assert again.again and again.until == event.at + timedelta(minutes=15)
    assert not reveals.lens_for(user, obj.pk, now=event.at + timedelta(minutes=15)).unmasked


@pytest.mark.django_db
def test_the_21st_reveal_of_a_day_is_refused_audited_and_the_export_stays_masked(account):
    from registrations import export

    client, user = login("ann", "Registration analysts")
    rows = list(AppRegistration.objects.exclude(email=None).order_by("pk")[:21])
    for obj in rows[:20]:
        assert client.post(reveal_url(obj), {"reason": "Batch check for ticket 9001"}).status_code == 302
    page = client.post(reveal_url(rows[20]), {"reason": "Batch check for ticket 9001"}, follow=True)
    assert "Not revealed" in page.content.decode() and rows[20].email not in page.content.decode()
    assert AuditEvent.objects.filter(action="reveal", actor=user).count() == 20
    refused = AuditEvent.objects.get(action="reveal_refused")
    assert (refused.actor, refused.registration, refused.details["refused"]) == (user, rows[20], "daily limit")
    # Refusals do not open anything, and replaying a refused one is refused again (and audited again).
    client.post(reveal_url(rows[20]), {"reason": "Batch check for ticket 9001"})
    assert AuditEvent.objects.filter(action="reveal_refused").count() == 2
    response = client.post(reverse("admin:registrations_appregistration_export"))
    text = b"".join(response.streaming_content).decode()
    assert all(obj.email in text for obj in rows[:20]) and rows[20].email not in text
    assert privacy.mask_email(rows[20].email) in text
    assert (
        sum(1 for row in export.rows(AppRegistration.objects.all(), user) if "@" in row[4] and "*" not in row[4]) == 20
    )


def test_the_reveal_window_must_be_1_to_60_minutes_or_startup_fails():
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import json, os, runpy\n"
        "from django.core.exceptions import ImproperlyConfigured\n"
        "out = {}\n"
        "for value in ['0', '61', '-5', '1', '60']:\n"
        "    os.environ['VERIFIK_REVEAL_MINUTES'] = value\n"
        "    try:\n"
        "        runpy.run_path('verifik_admin/settings.py')\n"
        "        out[value] = 'ok'\n"
        "    except ImproperlyConfigured as error:\n"
        "        out[value] = str(error)\n"
        "print(json.dumps(out))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERIFIK_REVEAL")}
    env.update(DJANGO_DEBUG="true", DJANGO_SETTINGS_MODULE="verifik_admin.settings")
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["1"] == "ok" and out["60"] == "ok"
    for value in ("0", "61", "-5"):
        assert "VERIFIK_REVEAL_MINUTES must be between 1 and 60" in out[value], value
