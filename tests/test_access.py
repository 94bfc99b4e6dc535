"""Access control: two-factor login, enrolment, backup codes, lockout, the client's address, sessions, CSP."""

import html
import io
import json
import logging
import os
import re
import subprocess
import sys
from base64 import b32decode
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import Group, User
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from access import devices, enrolment_links
from access.forms import FAILED_LOGIN

from .support import database_url, password_only_login, staff, totp_code

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
LOGIN = reverse("admin:login")
INDEX = reverse("admin:index")
ENROL = reverse("access:enrol")
BACKUP_CODES = reverse("access:backup_codes")
ENROL_LINK = reverse("access:enrol_link")
LIST = reverse("admin:registrations_appregistration_changelist")
PASSWORD_CHANGE = reverse("admin:password_change")


code = totp_code


def enrolled(username):
    user = staff(username)
    return user, devices.enrol_confirmed(user)


def log_in(client, username, otp_token=None, password="pw", **extra):
    data = {"username": username, "password": password, "next": INDEX}
    if otp_token is not None:
        data["otp_token"] = otp_token
    return client.post(LOGIN, data, **extra)


def logged_in(client):
    return "_auth_user_id" in client.session


# --- Two-factor login ------------------------------------------------------------------------


def test_the_login_page_asks_for_the_code(client):
    html = client.get(LOGIN).content.decode()
    assert 'name="otp_token"' in html and "authenticator app" in html


def errors(response):
    """The error notes of a page, as text."""
    return [
        re.sub(r"\s+", " ", note).strip()
        for note in re.findall(r'<p class="errornote">(.*?)</p>', response.content.decode(), re.S)
    ]


FAILED = [html.escape(FAILED_LOGIN)]


def test_a_right_password_without_a_code_counts_as_a_failure_with_the_same_message(client):
    _, device = enrolled("alice")
    response = log_in(client, "alice")
    assert response.status_code == 200 and not logged_in(client)
    assert errors(response) == FAILED == errors(log_in(Client(), "alice", code(device), password="wrong"))
    assert AccessAttempt.objects.get(username="alice").failures_since_start == 2


@pytest.mark.parametrize(
    ("what", "username", "password", "otp_token"),
    [
        ("a wrong password", "alice", "wrong", "right"),
        ("a wrong password and no code", "alice", "wrong", None),
        ("no code", "alice", "pw", None),
        ("an empty code", "alice", "pw", ""),
        ("a wrong code", "alice", "pw", "wrong"),
        ("a wrong backup code", "alice", "pw", "abcdefgh"),
        ("no authenticator", "bob", "pw", "123456"),
        ("not staff", "walter", "pw", "right"),
    ],
)
def test_every_failed_login_counts_and_gets_one_message(client, what, username, password, otp_token):
    _, device = enrolled("alice")
    staff("bob")
    walter = User.objects.create_user("walter", password="pw")
    walter_device = devices.enrol_confirmed(walter)
    right = code(device if username == "alice" else walter_device)
    token = {"right": right, "wrong": f"{(int(right) + 1) % 1_000_000:06d}"}.get(otp_token, otp_token)
    response = log_in(client, username, token, password=password)
    assert response.status_code == 200 and not logged_in(client), what
    assert errors(response) == FAILED, what
    assert AccessAttempt.objects.get(username=username).failures_since_start == 1, what


def test_the_limit_counts_right_passwords_without_a_code(client):
    _, device = enrolled("alice")
    assert [log_in(client, "alice").status_code for _ in range(5)] == [200] * 4 + [429]
    assert log_in(client, "alice", code(device)).status_code == 429 and not logged_in(client)


def test_login_with_a_valid_totp_code_is_accepted_and_verifies_the_session(client):
    _, device = enrolled("alice")
    response = log_in(client, "alice", code(device))
    assert response.status_code == 302 and response.url == INDEX and logged_in(client)
    assert client.get(INDEX).status_code == 200
    assert client.get(ENROL).status_code == 200  # a session that passed the second factor may manage it


def test_a_code_is_good_for_one_login_only(client):
    _, device = enrolled("alice")
    token = code(device)
    assert log_in(client, "alice", token).status_code == 302
    other = Client()
    assert log_in(other, "alice", token).status_code == 200 and not logged_in(other)


def test_a_device_chosen_by_django_otp_flow_is_honoured(client):
    _, device = enrolled("alice")
    response = client.post(
        LOGIN,
        {"username": "alice", "password": "pw", "otp_device": device.persistent_id, "otp_token": code(device)},
    )
    assert response.status_code == 302 and logged_in(client)


def test_another_users_device_cannot_be_chosen(client):
    enrolled("alice")
    _, mallory_device = enrolled("mallory")
    response = client.post(
        LOGIN,
        {
            "username": "alice",
            "password": "pw",
            "otp_device": mallory_device.persistent_id,
            "otp_token": code(mallory_device),
        },
    )
    assert response.status_code == 200 and not logged_in(client)


@pytest.mark.parametrize(
    "otp_device", ["auth.user/1", "otp_totp.totpdevice/99999999999999999999999", "nonsense", "a.b.c/x", "\u00e9/1"]
)
def test_a_hostile_device_choice_is_refused_without_a_500(client, otp_device):
    _, device = enrolled("alice")
    data = {"username": "alice", "password": "pw", "otp_device": otp_device, "otp_token": code(device)}
    response = client.post(LOGIN, data)
    assert response.status_code == 200 and not logged_in(client)


def test_a_huge_code_is_refused_without_counting_or_checking_the_password(client):
    enrolled("alice")
    right, wrong = log_in(client, "alice", "9" * 100_000), log_in(client, "alice", "9" * 100_000, password="wrong")
    assert right.status_code == wrong.status_code == 200 and not logged_in(client)
    assert not AccessAttempt.objects.exists()
    assert errors(right) == errors(wrong) and "at most 64 characters" in right.content.decode()


@override_settings(DJANGO_REQUIRE_2FA=False)
def test_with_2fa_off_the_password_alone_logs_in(client):
    staff("demo")
    assert 'name="otp_token"' not in client.get(LOGIN).content.decode()
    assert log_in(client, "demo").status_code == 302 and logged_in(client)


def test_a_backup_code_logs_in_once(client):
    user, _ = enrolled("alice")
    first, *_ = devices.issue_backup_codes(user)
    assert log_in(client, "alice", first.upper()).status_code == 302 and logged_in(client)
    assert client.get(ENROL).status_code == 200  # a backup code verifies the session too
    again = Client()
    assert log_in(again, "alice", first).status_code == 200 and not logged_in(again)
    assert StaticToken.objects.filter(device__user=user).count() == devices.BACKUP_CODE_COUNT - 1


# --- Enrolment ----------------------------------------------------------------------------


def secret_on(response):
    """The key a page shows, if any (base32 in groups of four)."""
    found = re.search(r"<p><code>([A-Z2-7 ]{16,})</code>", response.content.decode())
    return found.group(1) if found else None


def wrong(device):
    return f"{(int(code(device)) + 1) % 1_000_000:06d}"


def test_the_enrolment_page_shows_a_new_key_each_visit_and_confirms_with_one_code(client):
    user, old = enrolled("alice")
    log_in(client, "alice", code(old))
    response = client.get(ENROL + "?new=1")
    html = response.content.decode()
    assert response.status_code == 200
    assert re.search(r'<img class="vf-qr" src="data:image/svg\+xml', html)
    assert response["Cache-Control"].startswith("max-age=0") and "no-store" in response["Cache-Control"]
    pending = TOTPDevice.objects.get(user=user, confirmed=False)
    assert secret_on(response) == devices.secret_text(pending)

    response = client.post(ENROL, {"otp_token": wrong(pending)})
    assert response.status_code == 200 and "That code is not valid" in response.content.decode()
    assert secret_on(response) is None and "vf-qr" not in response.content.decode()  # a key is shown once
    assert list(TOTPDevice.objects.filter(user=user, confirmed=True)) == [old]

    response = client.post(ENROL, {"otp_token": code(pending)}, follow=True)
    assert "Your authenticator app is confirmed" in response.content.decode()
    assert list(TOTPDevice.objects.filter(user=user).values_list("pk", "confirmed")) == [(pending.pk, True)]
    assert log_in(Client(), "alice", code(pending, offset=30)).status_code == 302  # the new device logs in


def test_a_pending_key_seen_once_is_never_the_one_confirmed(client):
    """A key read from the page (by a thief with the session, over a shoulder) is replaced by the next visit."""
    user, old = enrolled("rita")
    log_in(client, "rita", code(old))
    seen = client.get(ENROL + "?new=1")
    thiefs = TOTPDevice.objects.get(user=user, confirmed=False)
    rita_visit = client.get(ENROL + "?new=1")
    assert secret_on(rita_visit) and secret_on(rita_visit) != secret_on(seen)
    assert not TOTPDevice.objects.filter(pk=thiefs.pk).exists()
    # The code of the key seen first confirms nothing, from this session or another of rita's.
    assert "That code is not valid" in client.post(ENROL, {"otp_token": code(thiefs)}).content.decode()
    other = Client()
    log_in(other, "rita", code(old, offset=30))
    assert other.post(ENROL, {"otp_token": code(thiefs)}).status_code == 200
    assert list(TOTPDevice.objects.filter(user=user, confirmed=True)) == [old]


def test_a_pending_key_is_confirmed_only_from_the_session_it_was_shown_to(client):
    user, old = enrolled("rita")
    log_in(client, "rita", code(old))
    client.get(ENROL + "?new=1")
    pending = TOTPDevice.objects.get(user=user, confirmed=False)
    other = Client()
    log_in(other, "rita", code(old, offset=30))
    assert "That code is not valid" in other.post(ENROL, {"otp_token": code(pending)}).content.decode()
    assert not TOTPDevice.objects.get(pk=pending.pk).confirmed


def test_a_session_without_the_second_factor_is_logged_out_before_any_admin_page(client):
    user, device = enrolled("alice")
    password_only_login(client, user)  # a session made without the code (or one whose code was revoked)
    for url in (ENROL, LIST, INDEX, PASSWORD_CHANGE, "/admin/jsi18n/", "/admin/auth/user/"):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith(LOGIN), url
        password_only_login(client, user)
    for url in (ENROL, BACKUP_CODES):
        assert client.post(url, {"otp_token": code(device)}).status_code == 302
        password_only_login(client, user)
    assert list(TOTPDevice.objects.filter(user=user)) == [device] and not StaticToken.objects.exists()
    # The login and logout pages work, for a session logged out there.
    response = client.get(LOGIN)
    assert (
        response.status_code == 200
        and not logged_in(client)
        and "You are authenticated" not in response.content.decode()
    )
    password_only_login(client, user)
    response = client.post(reverse("admin:logout"))  # the admin sends a logged-out visitor to the index
    assert response.status_code == 302 and response.url == INDEX and not logged_in(client)


@override_settings(DJANGO_REQUIRE_2FA=False)
def test_with_2fa_off_a_password_session_works_and_may_enrol(client):
    user = staff("carol", group="Registration reviewers")
    password_only_login(client, user)
    assert client.get(LIST).status_code == 200
    response = client.post(BACKUP_CODES, follow=True)
    assert "Confirm an authenticator app first" in response.content.decode() and not StaticToken.objects.exists()
    assert secret_on(client.get(ENROL))
    pending = TOTPDevice.objects.get(user=user, confirmed=False)
    client.post(ENROL, {"otp_token": code(pending)})
    assert TOTPDevice.objects.get(user=user).confirmed


def test_a_confirmed_new_authenticator_replaces_the_old_one(client):
    user, old = enrolled("alice")
    log_in(client, "alice", code(old))
    assert "vf-qr" not in client.get(ENROL).content.decode()  # no new secret made for a look at the page
    assert not TOTPDevice.objects.filter(user=user, confirmed=False).exists()
    assert "vf-qr" in client.get(ENROL + "?new=1").content.decode()
    new = TOTPDevice.objects.get(user=user, confirmed=False)
    client.post(ENROL, {"otp_token": code(new)})
    assert list(TOTPDevice.objects.filter(user=user)) == [new]
    assert client.get(INDEX).status_code == 200  # the session is now verified by the new device


def test_backup_codes_are_shown_once_and_replace_earlier_ones(client):
    user, device = enrolled("alice")
    log_in(client, "alice", code(device))
    html = client.get(ENROL).content.decode()
    assert "You have none." in html
    first = client.post(BACKUP_CODES)
    codes = re.findall(r"<li><code>([a-z2-7]{8})</code></li>", first.content.decode())
    assert len(codes) == devices.BACKUP_CODE_COUNT == StaticToken.objects.filter(device__user=user).count()
    assert first["Cache-Control"].startswith("max-age=0")
    assert "10 unused codes left" in client.get(ENROL).content.decode()
    assert codes[0] not in client.get(ENROL).content.decode()
    second = re.findall(r"<li><code>([a-z2-7]{8})</code></li>", client.post(BACKUP_CODES).content.decode())
    assert set(StaticToken.objects.values_list("token", flat=True)) == set(second) and not set(codes) & set(second)
    assert client.get(BACKUP_CODES).status_code == 405


def test_the_pages_need_a_staff_login(client):
    assert client.get(ENROL).status_code == 302 and client.get(ENROL).url.startswith(LOGIN)
    assert client.post(BACKUP_CODES).status_code == 302


def test_the_user_links_lead_to_the_two_factor_page(client):
    client.force_login(staff("carol"))
    assert f'href="{ENROL}"' in client.get(INDEX).content.decode()


def test_the_devices_admin_never_shows_a_key_or_backup_code(admin_client):
    user, device = enrolled("alice")
    backup = devices.issue_backup_codes(user)
    pages = [
        reverse("admin:otp_totp_totpdevice_changelist"),
        reverse("admin:otp_totp_totpdevice_change", args=[device.pk]),
        reverse("admin:otp_static_staticdevice_change", args=[devices.backup_device(user).pk]),
    ]
    html = "".join(admin_client.get(url).content.decode() for url in pages)
    assert "alice" in html and device.key not in html and devices.secret_text(device) not in html
    assert not [code for code in backup if code in html]
    assert admin_client.get(reverse("admin:otp_totp_totpdevice_config", args=[device.pk])).status_code == 403


# --- A thief with rita's session -----------------------------------------------------------------
# rita logs in with her password and a code; the thief has the session's cookie (the test client).


def rita_logged_in(client):
    rita, device = enrolled("rita")
    rita.groups.add(Group.objects.get(name="Registration reviewers"))
    assert log_in(client, "rita", code(device)).status_code == 302 and client.get(LIST).status_code == 200
    return rita, device


def superuser_deletes(model, pk):
    """A superuser deleting a device in the admin (a verified session, the admin's delete page)."""
    root = Client()
    root.force_login(User.objects.create_superuser("root", password="pw"))
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_delete", args=[pk])
    assert root.post(url, {"post": "yes"}).status_code == 302
    assert not model.objects.filter(pk=pk).exists()


def test_a_session_is_sent_to_the_login_page_once_its_authenticator_is_deleted(client):
    rita, device = rita_logged_in(client)
    superuser_deletes(TOTPDevice, device.pk)
    response = client.get(LIST)
    assert response.status_code == 302 and response.url.startswith(LOGIN)
    assert not logged_in(client) and client.get(LIST).status_code == 302


def test_a_session_whose_authenticator_was_deleted_cannot_confirm_a_device_of_its_own(client):
    rita, device = rita_logged_in(client)
    superuser_deletes(TOTPDevice, device.pk)
    client.get(ENROL)  # the thief asks for a key to scan...
    pending = TOTPDevice.objects.filter(user=rita, confirmed=False).first()
    # ... and sends the code of whatever key the page made (none: the session is logged out).
    response = client.post(ENROL, {"otp_token": code(pending) if pending else "000000"})
    assert response.status_code == 302 and response.url.startswith(LOGIN)
    assert not TOTPDevice.objects.filter(user=rita).exists()


def test_a_session_whose_authenticator_was_deleted_cannot_generate_backup_codes(client):
    rita, device = rita_logged_in(client)
    superuser_deletes(TOTPDevice, device.pk)
    client.get(ENROL)
    pending = TOTPDevice.objects.filter(user=rita, confirmed=False).first()
    client.post(ENROL, {"otp_token": code(pending) if pending else "000000"})
    response = client.post(BACKUP_CODES)
    assert response.status_code == 302 and response.url.startswith(LOGIN)
    assert not StaticToken.objects.filter(device__user=rita).exists()


def test_a_session_verified_by_a_backup_code_ends_when_the_authenticator_is_deleted(client):
    """The thief made backup codes with rita's session and logged in with one: revoking her phone
    revokes the codes, and the session they verified, too."""
    rita, device = rita_logged_in(client)
    codes = re.findall(r"<li><code>([a-z2-7]{8})</code></li>", client.post(BACKUP_CODES).content.decode())
    thief = Client()
    assert log_in(thief, "rita", codes[0]).status_code == 302 and thief.get(LIST).status_code == 200
    superuser_deletes(TOTPDevice, device.pk)
    assert not StaticToken.objects.filter(device__user=rita).exists()
    response = thief.get(ENROL)
    assert response.status_code == 302 and response.url.startswith(LOGIN) and not logged_in(thief)


def test_enrol_totp_deletes_the_thiefs_backup_codes_and_ends_the_sessions(client):
    rita, device = rita_logged_in(client)
    codes = re.findall(r"<li><code>([a-z2-7]{8})</code></li>", client.post(BACKUP_CODES).content.decode())
    elsewhere = Client()
    assert log_in(elsewhere, "rita", code(device, offset=30)).status_code == 302
    out = io.StringIO()
    call_command("enrol_totp", "rita", stdout=out)
    assert "Sessions ended: 2." in out.getvalue()
    assert not Session.objects.exists()
    assert client.get(LIST).status_code == 302 and elsewhere.get(LIST).status_code == 302
    thief = Client()
    assert log_in(thief, "rita", codes[1]).status_code == 200 and not logged_in(thief)
    assert not StaticToken.objects.filter(device__user=rita).exists()
    assert list(TOTPDevice.objects.filter(user=rita).values_list("confirmed", flat=True)) == [True]


# --- Password change --------------------------------------------------------------------------


def change_password(client, old, new="a-new-long-passphrase"):
    return client.post(PASSWORD_CHANGE, {"old_password": old, "new_password1": new, "new_password2": new})


def test_password_change_needs_the_second_factor(client):
    user, _ = enrolled("alice")
    password_only_login(client, user)
    response = client.get(PASSWORD_CHANGE)
    assert response.status_code == 302 and response.url.startswith(LOGIN)
    password_only_login(client, user)
    assert change_password(client, "pw").status_code == 302 and not logged_in(client)
    user.refresh_from_db()
    assert user.check_password("pw")


def test_password_change_is_no_unthrottled_oracle_for_the_old_password(client, settings):
    rita, device = rita_logged_in(client)
    assert client.get(PASSWORD_CHANGE).status_code == 200
    limit = settings.DJANGO_LOGIN_FAILURE_LIMIT
    statuses = [change_password(client, f"guess-{n}").status_code for n in range(limit)]
    assert statuses == [200] * (limit - 1) + [429]
    assert AccessAttempt.objects.get(username="rita").failures_since_start == limit
    # Locked like the login: the right old password is refused, and so is the login form.
    response = change_password(client, "pw")
    assert response.status_code == 429 and "Login locked" in response.content.decode()
    rita.refresh_from_db()
    assert rita.check_password("pw")
    assert log_in(Client(), "rita", code(device, offset=30)).status_code == 429


def test_wrong_old_passwords_and_failed_logins_share_one_count(client):
    rita, device = rita_logged_in(client)
    for _ in range(3):
        log_in(Client(), "rita", "000000", password="wrong")
    assert change_password(client, "guess").status_code == 200
    assert change_password(client, "guess again").status_code == 429


def test_password_change_with_the_right_old_password_keeps_the_session(client):
    rita, _ = rita_logged_in(client)
    response = change_password(client, "pw")
    assert response.status_code == 302 and response.url == reverse("admin:password_change_done")
    rita.refresh_from_db()
    assert rita.check_password("a-new-long-passphrase")
    assert client.get(LIST).status_code == 200 and not AccessAttempt.objects.exists()


# --- The enrolment link --------------------------------------------------------------------------


def enrolment_link(username, *args):
    out = io.StringIO()
    call_command("enrol_totp", username, *args, stdout=out)
    return re.search(r"^\s+(\S*/admin/two-factor/enrol/\?token=\S+)$", out.getvalue(), re.M).group(1)


def test_enrol_totp_prints_a_one_time_link_that_enrols_the_users_own_phone(client):
    carol = staff("carol", group="Registration reviewers")
    link = enrolment_link("carol")
    assert link.startswith("/admin/two-factor/enrol/?token=")
    page = client.get(link)
    assert page.status_code == 200 and 'name="password"' in page.content.decode() and secret_on(page) is None

    wrong_password = client.post(link, {"password": "wrong"})
    assert wrong_password.status_code == 200 and secret_on(wrong_password) is None
    assert AccessAttempt.objects.get(username="carol").failures_since_start == 1  # the lockout counts it

    shown = client.post(link, {"password": "pw"})
    pending = TOTPDevice.objects.get(user=carol, confirmed=False)
    assert secret_on(shown) == devices.secret_text(pending)
    retry = client.post(link, {"otp_token": wrong(pending)})
    assert "That code is not valid" in retry.content.decode() and secret_on(retry) is None  # shown once
    response = client.post(link, {"otp_token": code(pending)})
    assert response.status_code == 302 and response.url == INDEX
    assert client.get(LIST).status_code == 200  # logged in, verified by the new device
    assert list(TOTPDevice.objects.filter(user=carol).values_list("pk", "confirmed")) == [(pending.pk, True)]

    # Spent: the link no longer opens, for anyone.
    again = Client()
    assert again.get(link).status_code == 404 and again.post(link, {"password": "pw"}).status_code == 404
    assert log_in(Client(), "carol", code(pending, offset=30)).status_code == 302


def test_an_enrolment_link_shows_a_new_key_each_visit(client):
    carol = staff("carol")
    link = enrolment_link("carol")
    first = client.post(link, {"password": "pw"})
    seen = TOTPDevice.objects.get(user=carol, confirmed=False)
    second = Client().post(link, {"password": "pw"})
    assert secret_on(first) and secret_on(second) and secret_on(first) != secret_on(second)
    assert not TOTPDevice.objects.filter(pk=seen.pk).exists()
    assert client.post(link, {"otp_token": code(seen)}).status_code == 200
    assert not TOTPDevice.objects.filter(user=carol, confirmed=False, pk=seen.pk).exists()


def test_an_enrolment_link_needs_the_password_and_a_code_from_the_key_it_showed(client):
    carol = staff("carol")
    link = enrolment_link("carol")
    terminal = TOTPDevice.objects.get(user=carol, confirmed=True)  # the command's own device
    # Without the password step no key exists for this session: a code of the command's device is refused.
    assert client.post(link, {"otp_token": code(terminal)}).status_code == 200
    assert list(TOTPDevice.objects.filter(user=carol)) == [terminal]


def test_a_tampered_expired_or_superseded_enrolment_link_is_refused(client, monkeypatch):
    staff("carol")
    link = enrolment_link("carol")
    token = parse_qs(urlsplit(link).query)["token"][0]
    for bad in (token[:-2] + ("AA" if not token.endswith("AA") else "BB"), "nonsense", "a" * 5000, ""):
        assert client.get(ENROL_LINK, {"token": bad}).status_code == 404
    assert client.get(ENROL_LINK).status_code == 404
    newer = enrolment_link("carol")
    assert client.get(link).status_code == 404 and client.get(newer).status_code == 200
    monkeypatch.setattr(enrolment_links, "ENROLMENT_LINK_MAX_AGE", timedelta(seconds=-1))
    assert client.get(newer).status_code == 404


def test_an_enrolment_links_token_stays_out_of_the_logs_and_the_attempts(client, caplog):
    staff("carol")
    link = enrolment_link("carol")
    token = parse_qs(urlsplit(link).query)["token"][0]
    with caplog.at_level(logging.INFO):
        client.get(link)
        client.post(link, {"password": "wrong"})
    assert "/admin/two-factor/enrol/" in caplog.text and token not in caplog.text
    attempt = AccessAttempt.objects.get(username="carol")
    assert token not in attempt.get_data + attempt.post_data + attempt.path_info


# --- The command ----------------------------------------------------------------------------


def test_enrol_totp_prints_the_otpauth_url_and_a_qr_code(client):
    user = staff("root")
    out = io.StringIO()
    call_command("enrol_totp", "root", stdout=out)
    text = out.getvalue()
    url = re.search(r"otpauth://totp/\S+", text).group(0)
    assert url.startswith("otpauth://totp/verifik-admin%3Aroot?") and "issuer=verifik-admin" in url
    assert sum(line.count("█") + line.count("▀") + line.count("▄") for line in text.splitlines()) > 200  # the QR
    device = TOTPDevice.objects.get(user=user, confirmed=True)
    secret = parse_qs(urlsplit(url).query)["secret"][0]
    assert b32decode(secret) == device.bin_key
    assert log_in(client, "root", code(device)).status_code == 302


def test_enrol_totp_replaces_the_device_and_can_print_backup_codes():
    user, old = enrolled("root")
    out = io.StringIO()
    call_command("enrol_totp", "root", "--backup-codes", stdout=out)
    new = TOTPDevice.objects.get(user=user)
    assert new.pk != old.pk and "no longer work" in out.getvalue()
    tokens = set(StaticToken.objects.filter(device__user=user).values_list("token", flat=True))
    assert len(tokens) == devices.BACKUP_CODE_COUNT and all(t in out.getvalue() for t in tokens)


def test_enrol_totp_for_an_unknown_user_fails_clearly():
    result = subprocess.run(
        [sys.executable, "manage.py", "enrol_totp", "nobody"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url()},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "No user named 'nobody'" in result.stderr and "Traceback" not in result.stderr


# --- Lockout ----------------------------------------------------------------------------------


def fail(client, username, times, **extra):
    return [log_in(client, username, "000000", password="wrong", **extra) for _ in range(times)]


def test_after_the_limit_the_right_password_is_refused_until_the_lockout_ends(client, settings):
    _, device = enrolled("alice")
    limit = settings.DJANGO_LOGIN_FAILURE_LIMIT
    assert limit == 5
    responses = fail(client, "alice", limit)
    assert [r.status_code for r in responses] == [200] * (limit - 1) + [429]

    response = log_in(client, "alice", code(device))
    html = response.content.decode()
    assert response.status_code == 429 and not logged_in(client)
    assert "Login locked" in html and "even with the right password" in html
    last = AccessAttempt.objects.get(username="alice").attempt_time
    ends = timezone.localtime(last + timedelta(minutes=settings.DJANGO_LOGIN_LOCKOUT_MINUTES))
    assert f'<time datetime="{ends.isoformat()}">' in html
    assert AccessAttempt.objects.get(username="alice").attempt_time == last  # refusals do not push the end

    # The window passes (moved in the database, no waiting): the right password and code log in.
    window = timedelta(minutes=settings.DJANGO_LOGIN_LOCKOUT_MINUTES)
    AccessAttempt.objects.update(attempt_time=last - window - timedelta(seconds=1))
    response = log_in(client, "alice", code(device))
    assert response.status_code == 302 and logged_in(client)
    assert not AccessAttempt.objects.filter(username="alice").exists()  # a full login clears the count


def test_wrong_codes_lock_out_too(client):
    _, device = enrolled("alice")
    for _ in range(5):
        response = log_in(client, "alice", "999999" if code(device) != "999999" else "888888")
        # django-otp throttles the device after a wrong code; move its clock instead of waiting.
        TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_timestamp=None)
    assert response.status_code == 429
    assert log_in(client, "alice", code(device)).status_code == 429


def test_the_lockout_is_per_user(client):
    enrolled("alice")
    _, bob_device = enrolled("bob")
    fail(client, "alice", 5)
    assert log_in(client, "bob", code(bob_device)).status_code == 302


@override_settings(DJANGO_LOGIN_FAILURE_LIMIT=2, DJANGO_LOGIN_LOCKOUT_MINUTES=0.01)
def test_the_limit_and_the_window_are_read_from_the_settings(client):
    _, device = enrolled("alice")
    assert [r.status_code for r in fail(client, "alice", 2)] == [200, 429]
    assert "After 2 failed logins" in log_in(client, "alice", code(device)).content.decode()
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(seconds=1))  # 0.6 s window passed
    assert log_in(client, "alice", code(device, offset=30)).status_code == 302


def test_attempts_show_in_the_admin_without_secrets(client, admin_client):
    enrolled("alice")
    fail(client, "alice", 2)
    attempt = AccessAttempt.objects.get(username="alice")
    assert attempt.failures_since_start == 2
    assert "wrong" not in attempt.post_data and "000000" not in attempt.post_data
    html = admin_client.get(reverse("admin:axes_accessattempt_changelist")).content.decode()
    assert "alice" in html
    index = admin_client.get(INDEX).content.decode()
    assert "Login attempts" in index and "Two-factor: authenticator apps" in index


# --- The client's address ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("behind_proxy", "proxies", "forwarded", "recorded"),
    [
        (False, 1, "203.0.113.7", "127.0.0.1"),
        (True, 1, "203.0.113.7", "203.0.113.7"),
        (True, 1, "198.51.100.66, 203.0.113.7", "203.0.113.7"),  # what the client sent is left of its address
        (True, 1, "203.0.113.7, 10.0.0.2", "10.0.0.2"),  # one proxy: only its own entry counts, internal or not
        (True, 2, "203.0.113.7, 10.0.0.2", "203.0.113.7"),  # two proxies: the outer one's entry
        (True, 2, "198.51.100.66, 203.0.113.7, 10.0.0.2", "203.0.113.7"),
        (True, 3, "203.0.113.7, 10.0.0.2", "203.0.113.7"),  # fewer entries than proxies: the left-most
        (True, 1, "10.1.2.3", "10.1.2.3"),  # a client inside the network
        (True, 1, "not-an-address", "127.0.0.1"),
        (True, 1, "not-an-address, 203.0.113.7", "203.0.113.7"),  # the client's part is never read
        (True, 1, "203.0.113.7, 203.0.113.8; DROP TABLE", "127.0.0.1"),
        (True, 1, "", "127.0.0.1"),
        (True, 1, "2001:db8::1", "2001:db8::1"),
        (True, 2, "2001:db8::1, fd00::5", "2001:db8::1"),
        (True, 1, "fe80::1%eth0", "127.0.0.1"),  # a zone cannot be stored
    ],
)
def test_x_forwarded_for_is_used_only_behind_the_proxy(client, behind_proxy, proxies, forwarded, recorded):
    enrolled("alice")
    with override_settings(DJANGO_BEHIND_PROXY=behind_proxy, DJANGO_TRUSTED_PROXY_COUNT=proxies):
        response = fail(client, "alice", 1, HTTP_X_FORWARDED_FOR=forwarded)[0]
    assert response.status_code == 200
    assert AccessAttempt.objects.get(username="alice").ip_address == recorded


# --- Sessions ---------------------------------------------------------------------------------


def test_an_idle_session_is_logged_out(client, settings):
    client.force_login(staff("carol", group="Registration reviewers"))
    assert client.get(LIST).status_code == 200
    session = Session.objects.get()
    assert abs(session.expire_date - timezone.now() - timedelta(seconds=settings.SESSION_COOKIE_AGE)) < timedelta(
        minutes=1
    )
    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))
    response = client.get(LIST)
    assert response.status_code == 302 and response.url.startswith(LOGIN)


def test_every_request_pushes_the_expiry_and_the_cookie_ends_with_the_browser(client, settings):
    settings.SESSION_COOKIE_AGE = 120
    client.force_login(staff("carol", group="Registration reviewers"))
    Session.objects.update(expire_date=timezone.now() + timedelta(seconds=5))
    response = client.get(LIST)
    assert response.status_code == 200
    left = Session.objects.get().expire_date - timezone.now()
    assert timedelta(seconds=60) < left <= timedelta(seconds=120)
    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["max-age"] == "" and cookie["expires"] == ""  # a browser-session cookie


def settings_from_env(**env):
    """The production settings as a process with this environment reads them."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "VERIFIK_"))}
    script = (
        "import json, django; django.setup(); from django.conf import settings as s; print(json.dumps(["
        "s.DJANGO_REQUIRE_2FA, s.SESSION_COOKIE_AGE, s.SESSION_SAVE_EVERY_REQUEST, s.SESSION_EXPIRE_AT_BROWSER_CLOSE,"
        " s.DJANGO_LOGIN_FAILURE_LIMIT, s.DJANGO_LOGIN_LOCKOUT_MINUTES]))"
    )
    env = {
        **base,
        "DJANGO_SETTINGS_MODULE": "verifik_admin.settings",
        "DATABASE_URL": database_url(),
        "CELERY_TASK_ALWAYS_EAGER": "true",
        "DJANGO_SECRET_KEY": "x" * 60,
        **env,
    }
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_environment_sets_2fa_lockout_and_idle_timeout():
    assert settings_from_env(DJANGO_DEBUG="false") == [True, 1800, True, True, 5, 15]
    assert settings_from_env(DJANGO_DEBUG="true")[0] is False  # `make run`: the demo login stays one step
    assert settings_from_env(
        DJANGO_DEBUG="true",
        DJANGO_REQUIRE_2FA="true",
        DJANGO_SESSION_IDLE_MINUTES="7",
        DJANGO_LOGIN_FAILURE_LIMIT="3",
        DJANGO_LOGIN_LOCKOUT_MINUTES="2.5",
    ) == [True, 420, True, True, 3, 2.5]


# --- Content-Security-Policy --------------------------------------------------------------------


@pytest.mark.parametrize("path", [LOGIN, INDEX, LIST, ENROL, PASSWORD_CHANGE, "/admin/registrations/dashboard/"])
def test_admin_pages_carry_the_content_security_policy(admin_client, path):
    response = admin_client.get(path)
    policy = {
        directive.split()[0]: directive.split()[1:] for directive in response["Content-Security-Policy"].split("; ")
    }
    assert policy["default-src"] == ["'self'"] and policy["frame-ancestors"] == ["'none'"]
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
    assert policy["img-src"] == ["'self'", "data:"]


def test_no_template_has_inline_script_or_style():
    templates = [*(ROOT / "templates").rglob("*.html"), *ROOT.glob("*/templates/**/*.html")]
    assert len(templates) > 5
    offenders = []
    for path in templates:
        html = path.read_text()
        for pattern in (r"<script(?![^>]*\bsrc=)[^>]*>", r"\son[a-z]+\s*=", r"\sstyle\s*=", r"<style", r"javascript:"):
            if re.search(pattern, html, re.IGNORECASE):
                offenders.append(f"{path.relative_to(ROOT)}: {pattern}")
    assert not offenders
