"""Freshness: the health check names the lane that is late and its age; the list and the index say how current."""

from datetime import timedelta

import pytest
from django.utils import timezone

from registrations.models import SyncRun
from registrations.sync import run_sync

pytestmark = pytest.mark.django_db(transaction=True)  # the checks run in threads of their own


def succeeded(kind, minutes_ago):
    at = timezone.now() - timedelta(minutes=minutes_ago)
    run = SyncRun.objects.create(kind=kind, trigger="schedule", outcome="succeeded", finished_at=at)
    SyncRun.objects.filter(pk=run.pk).update(started_at=at - timedelta(minutes=1))
    return run


HEALTH_TOKEN = "health-token-for-the-freshness-tests"


def freshness(client):
    """The fresh report (the token's): anonymous callers get the stored one, computed at most every 10 s."""
    response = client.get("/health/", headers={"Authorization": f"Bearer {HEALTH_TOKEN}"})
    return response.status_code, response.json()["checks"]["freshness"]


@pytest.fixture
def intervals(settings):
    settings.CELERY_BROKER_URL = ""  # no broker: those checks fail fast; this one is read alone
    settings.HEALTH_TOKEN = HEALTH_TOKEN
    settings.HEALTH_ACTIVE_SYNC_MAX_AGE = timedelta(minutes=15)  # 3 x VERIFIK_ACTIVE_SYNC_MINUTES (5)
    settings.HEALTH_FULL_SYNC_MAX_AGE = timedelta(hours=48)  # 2 x VERIFIK_FULL_SYNC_HOURS (24)


def test_both_lanes_recent_pass(client, intervals):
    succeeded("active", 4)
    succeeded("full", 60 * 20)
    assert freshness(client)[1] == "OK"


def test_an_active_lane_older_than_three_intervals_fails_naming_the_lane_and_its_age(client, intervals):
    succeeded("active", 16)
    succeeded("full", 30)  # a recent full sync does not stand in for the active lane's own schedule
    status, message = freshness(client)
    assert status == 503
    assert message == "Unavailable: active lane: the last successful active sync is 16 min old (limit 15 min)"


def test_a_full_lane_older_than_two_intervals_fails_naming_the_lane_and_its_age(client, intervals):
    succeeded("active", 1)
    succeeded("full", 49 * 60)
    assert freshness(client)[1] == "Unavailable: full lane: the last successful full sync is 49 h old (limit 48 h)"


def test_failed_skipped_and_running_syncs_do_not_count_as_fresh(client, intervals):
    succeeded("active", 20)
    succeeded("full", 60)
    for outcome in ("failed", "skipped", "running"):
        SyncRun.objects.create(kind="active", trigger="schedule", outcome=outcome, finished_at=timezone.now())
    assert "active lane: the last successful active sync is 20 min old" in freshness(client)[1]


def test_no_success_yet_fails_for_each_lane(client, intervals):
    message = freshness(client)[1]
    assert "active lane: no active sync has succeeded yet" in message
    assert "full lane: no full sync has succeeded yet" in message


def test_the_list_and_the_index_say_how_current_each_lane_is(admin_client, verifik, intervals):
    verifik(count=12)
    index = admin_client.get("/admin/").content.decode()
    assert "No active sync has succeeded yet." in index and "No full sync has succeeded yet." in index
    full = run_sync(details=False)
    active = run_sync(statuses=["STARTED"], details=False)
    for page in (admin_client.get("/admin/"), admin_client.get("/admin/registrations/appregistration/")):
        html = page.content.decode()
        assert page.status_code == 200
        assert f"Active statuses current as of {localized(active.started_at)}." in html
        assert f"Everything current as of {localized(full.started_at)}." in html


def localized(moment):
    from django.utils import dateformat, formats

    return dateformat.format(timezone.localtime(moment), formats.get_format("DATETIME_FORMAT"))
