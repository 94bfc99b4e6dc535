"""A reviewer's day in a real browser: Debian's Chromium driven by Playwright against a live server."""

import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from playwright.sync_api import expect, sync_playwright

from registrations.models import AppRegistration, SyncRun
from registrations.sync import run_sync

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
        yield page
        browser.close()


@pytest.fixture
def operator():
    user = User.objects.create_user("olga", password="a-long-pass-phrase", is_staff=True)
    codenames = ["view_appregistration", "view_syncrun", "refresh_appregistration"]
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="registrations", codename__in=codenames)
    )
    return user


def test_a_reviewer_filters_opens_and_refreshes_a_registration(live_server, verifik, operator, page):
    account = verifik(count=120)
    run_sync(details=True)
    ARTIFACTS.mkdir(exist_ok=True)

    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "olga")
    page.fill("#id_password", "a-long-pass-phrase")
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

    rows.first.locator("th a").click()
    expect(page.get_by_role("heading", name="View registration")).to_be_visible()
    verifik_id = page.locator(".field-verifik_id .readonly").inner_text().strip()
    account.update(verifik_id, notes="Reviewed again at Verifik")

    page.get_by_role("button", name="Refresh now").click()
    expect(page.locator(".messagelist .success")).to_contain_text("Refresh succeeded")
    expect(page.locator(".field-notes_text")).to_contain_text("Reviewed again at Verifik")
    page.screenshot(path=str(ARTIFACTS / "registration-detail.png"), full_page=True)

    run = SyncRun.objects.get(kind=SyncRun.Kind.SINGLE, verifik_id=verifik_id)
    assert run.outcome == "succeeded" and run.user == operator
