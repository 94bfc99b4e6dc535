"""A reviewer's day in a real browser: Debian's Chromium driven by Playwright against a live server.

Every login goes through the real form with a TOTP code, and every page visited is watched for
Content-Security-Policy violations (the `page` fixture fails the test on any).
"""

import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from playwright.sync_api import expect, sync_playwright

from access import devices
from registrations.models import AppRegistration, ReviewDecision, SyncRun
from registrations.sync import run_sync

from .support import totp_code

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Reports every CSP violation of every document (and frame) to the console, where the fixture collects it.
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.documentURI}`);
});
"""


def csp_violation(message):
    return "Content Security Policy" in message.text or message.text.startswith("CSP violation")


@pytest.fixture
def page(monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the ORM calls made
    # by the test itself between browser steps are still plain synchronous calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: `make test` installs it (apt-get install chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(15_000)
        page.csp_violations = []
        page.add_init_script(REPORT_CSP_VIOLATIONS)
        page.on("console", lambda m: page.csp_violations.append(f"{page.url}: {m.text}") if csp_violation(m) else None)
        yield page
        browser.close()
    assert page.csp_violations == [], "the pages broke their Content-Security-Policy"


@pytest.fixture
def operator():
    user = User.objects.create_user("olga", password="a-long-pass-phrase", is_staff=True)
    codenames = ["view_appregistration", "view_syncrun", "refresh_appregistration"]
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="registrations", codename__in=codenames)
    )
    devices.enrol_confirmed(user)
    return user


def test_a_reviewer_filters_opens_and_refreshes_a_registration(live_server, verifik, operator, page):
    account = verifik(count=120)
    run_sync(details=True)
    ARTIFACTS.mkdir(exist_ok=True)

    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "olga")
    page.fill("#id_password", "a-long-pass-phrase")
    page.fill("#id_otp_token", totp_code(devices.confirmed_authenticator(operator)))
    page.click("input[type=submit]")
    page.locator("#content-main a[href$='/registrations/appregistration/']").first.click()
    expect(page.locator("#result_list")).to_be_visible()

    page.locator('details[data-filter-title="status"]').get_by_role("link", name="Failed", exact=True).click()
    page.locator('details[data-filter-title="red flags"]').get_by_role("link", name="1 or more").click()
    expect(page).to_have_url(re.compile(r"status=FAILED.*red_flags=1|red_flags=1.*status=FAILED"))
    rows = page.locator("#result_list tbody tr")
    expected = AppRegistration.objects.filter(status="FAILED", red_flags__gte=1).count()
    assert expected > 0
    expect(rows).to_have_count(expected)
    expect(rows.first.locator(".vf-badge").first).to_have_text("Failed")
    page.screenshot(path=str(ARTIFACTS / "registrations-list.png"), full_page=True)

    rows.first.locator(".field-applicant a").click()
    expect(page.get_by_role("heading", name="View registration")).to_be_visible()
    verifik_id = page.locator(".field-verifik_id .readonly").inner_text().strip()
    account.update(verifik_id, notes="Reviewed again at Verifik")

    page.get_by_role("button", name="Refresh now").click()
    expect(page.locator(".messagelist .success")).to_contain_text("Refresh succeeded")
    expect(page.locator(".field-notes_text")).to_contain_text("Reviewed again at Verifik")
    page.screenshot(path=str(ARTIFACTS / "registration-detail.png"), full_page=True)

    run = SyncRun.objects.get(kind=SyncRun.Kind.SINGLE, verifik_id=verifik_id)
    assert run.outcome == "succeeded" and run.user == operator


def login(page, base, username, offset=0):
    """Through the real form: password and the current code of the user's authenticator app."""
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "a-long-pass-phrase")
    device = devices.confirmed_authenticator(User.objects.get(username=username))
    page.fill("#id_otp_token", totp_code(device, offset))
    page.click("input[type=submit]")
    expect(page.locator("#user-tools")).to_contain_text("Two-factor authentication")


def fits(page):
    """No horizontal scrollbar: the document is no wider than the viewport."""
    return page.evaluate("document.documentElement.scrollWidth <= Math.min(1280, document.documentElement.clientWidth)")


def reviewer(username):
    # Transactional tests flush the groups the migrations made; the reviewers' permissions, directly.
    user = User.objects.create_user(username, password="a-long-pass-phrase", is_staff=True)
    codenames = ["view_appregistration", "view_syncrun", "decide_appregistration"]
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="registrations", codename__in=codenames)
    )
    devices.enrol_confirmed(user)
    return user


def test_a_reviewer_works_the_queue_and_a_second_reviewer_confirms(live_server, verifik, page):
    verifik(count=80)
    run_sync(details=True)
    rita, bob = reviewer("rita"), reviewer("bob")
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 900})

    login(page, live_server.url, "rita")
    page.get_by_role("link", name="Needs review").first.click()
    expect(page).to_have_url(re.compile(r"queue=needs_review"))
    rows = page.locator("#result_list tbody tr")
    expect(rows.first).to_be_visible()
    assert fits(page), "the queue fits 1280 px"
    assert page.evaluate("(r => r.scrollWidth <= r.clientWidth)(document.querySelector('#changelist .results'))"), (
        "the queue's table fits beside the filters, with no scrollbar of its own"
    )
    page.screenshot(path=str(ARTIFACTS / "review-queue.png"), full_page=True)

    first_link = rows.first.locator(".field-applicant a")
    href = first_link.get_attribute("href")
    first_link.click()
    expect(page.get_by_role("heading", name="Review", exact=True)).to_be_visible()
    page.get_by_role("button", name="Assign to me").click()
    expect(page.locator(".messagelist")).to_contain_text("Assigned to you")
    page.fill("#vf-comment", "Called the applicant; the document photo is a screen capture.")
    page.get_by_role("button", name="Add comment").click()
    expect(page.locator(".messagelist")).to_contain_text("Comment added")
    page.fill("#vf-reason", "Document photo is a picture of a screen")
    page.get_by_role("button", name="Reject").click()
    expect(page.locator(".messagelist .success")).to_contain_text("Rejected")
    expect(page.locator(".vf-timeline")).to_contain_text("Document photo is a picture of a screen")
    expect(page.locator(".vf-timeline")).to_contain_text("Assigned to rita")
    assert fits(page), "the registration's page fits 1280 px"
    page.screenshot(path=str(ARTIFACTS / "review-detail.png"), full_page=True)

    page.get_by_role("link", name="Needs review").first.click()
    expect(page.locator("#result_list")).to_be_visible()
    expect(page.locator(f'#result_list a[href="{href}"]')).to_have_count(0)
    pk = int(re.search(r"/(\d+)/change/", href).group(1))
    decision = ReviewDecision.objects.get(registration_id=pk)
    assert (decision.outcome, decision.reviewer) == ("rejected", rita)

    flagged = (
        AppRegistration.objects.filter(red_flags__gte=3, deleted=False, removed_upstream_at=None)
        .exclude(status="EXPIRED")
        .exclude(pk=pk)
        .first()
    )
    page.goto(f"{live_server.url}/admin/registrations/appregistration/{flagged.pk}/change/")
    page.get_by_role("button", name="Approve").click()
    expect(page.locator(".messagelist")).to_contain_text("second reviewer")

    page.context.clear_cookies()
    login(page, live_server.url, "bob")
    page.goto(f"{live_server.url}/admin/registrations/appregistration/?queue=awaiting_second")
    page.locator("#result_list tbody tr .field-applicant a").first.click()
    page.get_by_role("button", name="Confirm approval").click()
    expect(page.locator(".messagelist .success")).to_contain_text("Approval confirmed")
    approval = ReviewDecision.objects.get(registration=flagged)
    assert approval.reviewer == rita and approval.confirmed_by == bob

    page.goto(f"{live_server.url}/admin/registrations/dashboard/")
    expect(page.locator("svg.vf-chart")).to_have_count(3)
    assert fits(page), "the dashboard fits 1280 px"
    page.screenshot(path=str(ARTIFACTS / "review-dashboard.png"), full_page=True)

    page.emulate_media(color_scheme="dark")
    for name, path in (
        ("review-queue-dark.png", "/admin/registrations/appregistration/?queue=needs_review"),
        ("review-detail-dark.png", href),
        ("review-dashboard-dark.png", "/admin/registrations/dashboard/"),
    ):
        page.goto(live_server.url + path)
        assert fits(page), path
        page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_a_staff_member_logs_in_with_a_code_moves_to_a_new_phone_and_uses_a_backup_code(live_server, page):
    tess = User.objects.create_user("tess", password="a-long-pass-phrase", is_staff=True)
    devices.enrol_confirmed(tess)
    User.objects.create_user("ivan", password="a-long-pass-phrase", is_staff=True)
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    base = live_server.url

    page.goto(f"{base}/admin/login/")
    expect(page.locator("#id_otp_token")).to_be_visible()
    # The watch over CSP violations is live: a blocked inline style reaches it (then it starts afresh).
    with page.expect_console_message(lambda m: m.text.startswith("CSP violation: style-src-attr")):
        page.evaluate("document.body.setAttribute('style', 'outline: 1px solid red')")
    page.reload()  # the browser's own report of it has arrived by the time the new page has loaded
    assert any("style-src-attr" in v for v in page.csp_violations)
    page.csp_violations.clear()
    page.screenshot(path=str(ARTIFACTS / "login.png"), full_page=True)
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=str(ARTIFACTS / "login-dark.png"), full_page=True)
    page.emulate_media(color_scheme="light")

    # Without an authenticator: refused like any failed login, with the command an administrator runs.
    page.fill("#id_username", "ivan")
    page.fill("#id_password", "a-long-pass-phrase")
    page.fill("#id_otp_token", "123456")
    page.click("input[type=submit]")
    expect(page.locator(".errornote")).to_contain_text("python manage.py enrol_totp USERNAME")

    login(page, base, "tess")
    page.get_by_role("link", name="Two-factor authentication").click()
    expect(page.locator("#content-main")).to_contain_text("This account has an authenticator app")
    page.get_by_role("link", name="Move to a new phone").click()
    expect(page.locator("img.vf-qr")).to_be_visible()
    assert page.evaluate("document.querySelector('img.vf-qr').naturalWidth") > 100, "the QR code renders"
    page.screenshot(path=str(ARTIFACTS / "two-factor-enrol.png"), full_page=True)
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=str(ARTIFACTS / "two-factor-enrol-dark.png"), full_page=True)
    page.emulate_media(color_scheme="light")
    pending = tess.totpdevice_set.get(confirmed=False)
    page.fill("#id_otp_token", totp_code(pending))
    page.get_by_role("button", name="Confirm").click()
    expect(page.locator(".messagelist .success")).to_contain_text("Your authenticator app is confirmed")
    assert list(tess.totpdevice_set.values_list("pk", flat=True)) == [pending.pk]

    page.get_by_role("button", name="Generate new backup codes").click()
    codes = page.locator(".vf-backup-codes code")
    expect(codes).to_have_count(devices.BACKUP_CODE_COUNT)
    backup = codes.first.inner_text()
    page.screenshot(path=str(ARTIFACTS / "two-factor-backup-codes.png"), full_page=True)

    # A lost phone: the backup code stands in for the app's code, once.
    page.context.clear_cookies()
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", "tess")
    page.fill("#id_password", "a-long-pass-phrase")
    page.fill("#id_otp_token", backup)
    page.click("input[type=submit]")
    expect(page.locator("#user-tools")).to_contain_text("Two-factor authentication")

    # Five wrong passwords: the lockout page says until when.
    page.context.clear_cookies()
    for _ in range(5):
        page.goto(f"{base}/admin/login/")
        page.fill("#id_username", "tess")
        page.fill("#id_password", "not-the-password")
        page.fill("#id_otp_token", "000000")
        page.click("input[type=submit]")
    expect(page.locator("#content-main")).to_contain_text("Login locked")
    expect(page.locator("#content-main time")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "login-locked.png"), full_page=True)
