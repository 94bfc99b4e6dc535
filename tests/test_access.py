"""Access control: two-factor login, enrolment, backup codes, lockout, the client's address, sessions, CSP."""

import io
import json
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
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from access import devices

from .support import database_url, staff, totp_code

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
LOGIN = reverse("admin:login")
INDEX = reverse("admin:index")
ENROL = reverse("access:enrol")
BACKUP_CODES = reverse("access:backup_codes")
LIST = reverse("admin:registrations_appregistration_changelist")


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


def test_login_without_a_code_is_refused(client):
    enrolled("alice")
    response = log_in(client, "alice")
    assert response.status_code == 200 and not logged_in(client)
    assert "Enter the code from your authenticator app" in response.content.decode()


def test_login_with_a_valid_totp_code_is_accepted_and_verifies_the_session(client):
    _, device = enrolled("alice")
    response = log_in(client, "alice", code(device))
    assert response.status_code == 302 and response.url == INDEX and logged_in(client)
    assert client.get(INDEX).status_code == 200
    # A session that passed the second factor may manage it (a password-only one may not: below).
    assert client.get(ENROL).status_code == 200


def test_a_wrong_code_is_refused_and_counts_as_a_failed_login(client):
    _, device = enrolled("alice")
    wrong = f"{(int(code(device)) + 1) % 1_000_000:06d}"
    response = log_in(client, "alice", wrong)
    assert response.status_code == 200 and not logged_in(client)
    assert "That code is not valid" in response.content.decode()
    assert AccessAttempt.objects.get(username="alice").failures_since_start == 1


def test_a_code_is_good_for_one_login_only(client):
    _, device = enrolled("alice")
    token = code(device)
    assert log_in(client, "alice", token).status_code == 302
    other = Client()
    assert log_in(other, "alice", token).status_code == 200 and not logged_in(other)


def test_a_user_without_an_authenticator_is_refused_with_how_to_enrol(client):
    staff("bob")
    response = log_in(client, "bob", "123456")
    html = response.content.decode()
    assert response.status_code == 200 and not logged_in(client)
    assert "no authenticator app" in html and "python manage.py enrol_totp bob" in html


def test_a_wrong_password_never_reaches_the_second_factor(client):
    enrolled("alice")
    response = log_in(client, "alice", "123456", password="wrong")
    html = response.content.decode()
    assert not logged_in(client) and "enrol_totp" not in html and "code is not valid" not in html


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


def test_a_huge_code_is_refused_without_counting(client):
    enrolled("alice")
    response = log_in(client, "alice", "9" * 100_000)
    assert response.status_code == 200 and not logged_in(client) and not AccessAttempt.objects.exists()


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


def test_the_enrolment_page_shows_a_qr_code_and_confirms_with_one_code(client):
    user = staff("carol")
    client.force_login(user)
    response = client.get(ENROL)
    html = response.content.decode()
    assert response.status_code == 200
    assert re.search(r'<img class="vf-qr" src="data:image/svg\+xml', html)
    assert response["Cache-Control"].startswith("max-age=0") and "no-store" in response["Cache-Control"]
    pending = TOTPDevice.objects.get(user=user, confirmed=False)
    assert devices.secret_text(pending) in html
    assert client.get(ENROL).status_code == 200 and TOTPDevice.objects.filter(user=user).count() == 1  # same one

    wrong = f"{(int(code(pending)) + 1) % 1_000_000:06d}"
    response = client.post(ENROL, {"otp_token": wrong})
    assert response.status_code == 200 and "That code is not valid" in response.content.decode()
    assert not TOTPDevice.objects.filter(user=user, confirmed=True).exists()

    response = client.post(ENROL, {"otp_token": code(pending)}, follow=True)
    assert "Your authenticator app is confirmed" in response.content.decode()
    assert list(TOTPDevice.objects.filter(user=user).values_list("pk", "confirmed")) == [(pending.pk, True)]
    # ... and the new device logs in.
    assert log_in(Client(), "carol", code(pending, offset=30)).status_code == 302


def test_a_session_without_the_second_factor_cannot_replace_an_authenticator(client):
    user, device = enrolled("alice")
    client.force_login(user)  # a password-only session (or a stolen one): not verified
    response = client.get(ENROL)
    assert response.status_code == 403 and "log in again with a code" in response.content.decode()
    assert client.post(ENROL, {"otp_token": "123456"}).status_code == 403
    assert client.post(BACKUP_CODES).status_code == 403
    assert list(TOTPDevice.objects.filter(user=user)) == [device]
    assert not StaticToken.objects.exists()


def test_a_confirmed_new_authenticator_replaces_the_old_one(client):
    user, old = enrolled("alice")
    log_in(client, "alice", code(old))
    assert "vf-qr" not in client.get(ENROL).content.decode()  # no new secret made for a look at the page
    assert not TOTPDevice.objects.filter(user=user, confirmed=False).exists()
    assert "vf-qr" in client.get(ENROL + "?new=1").content.decode()
    new = TOTPDevice.objects.get(user=user, confirmed=False)
    client.post(ENROL, {"otp_token": code(new)})
    assert list(TOTPDevice.objects.filter(user=user)) == [new]


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


def test_backup_codes_need_an_authenticator_first(client):
    user = staff("carol")
    client.force_login(user)
    response = client.post(BACKUP_CODES, follow=True)
    assert "Confirm an authenticator app first" in response.content.decode() and not StaticToken.objects.exists()


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
    assert new.pk != old.pk and "no longer works" in out.getvalue()
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


@pytest.mark.parametrize("path", [LOGIN, INDEX, LIST, ENROL, "/admin/registrations/dashboard/"])
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
