import pytest
import requests
import responses

from registrations.verifik import (
    AuthRejected,
    BadRequest,
    BadResponse,
    InvalidRegistrationId,
    NotFound,
    RateLimited,
    Unavailable,
    VerifikClient,
)

BASE = "https://verifik.test"
LIST = f"{BASE}/v2/app-registrations"
ID = "507f1f77bcf86cd799439011"
TOKEN = "sentinel-token-0xdeadbeef"


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def client(sleeps):
    return VerifikClient(BASE, TOKEN, max_retries=3, backoff=0.1, retry_after_cap=30, sleep=sleeps.append)


def page_body(items, page=1, pages=1):
    return {"data": items, "total": len(items), "limit": 100, "page": page, "pages": pages}


@responses.activate
def test_list_page_sends_the_token_and_the_filters(client):
    responses.get(LIST, json=page_body([{"_id": ID}], page=2, pages=2))
    page = client.list_page(2, 50, statuses=["STARTED", "ONGOING"], project="p" * 24, populates=["project"])
    request = responses.calls[0].request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Accept"] == "application/json"
    assert "page=2" in request.url and "limit=50" in request.url
    assert "in_status=STARTED%2CONGOING" in request.url and "populates%5B%5D=project" in request.url
    assert page.items == [{"_id": ID}]


@responses.activate
def test_single_status_uses_where_status(client):
    responses.get(LIST, json=page_body([]))
    client.list_page(1, 10, statuses=["FAILED"])
    assert "where_status=FAILED" in responses.calls[0].request.url


@responses.activate
def test_iter_pages_walks_until_the_last_page(client):
    for n in (1, 2, 3):
        responses.get(LIST, json=page_body([{"_id": f"{n:024x}"}], page=n, pages=3))
    assert [p.page for p in client.iter_pages(limit=1)] == [1, 2, 3]


@responses.activate
def test_5xx_and_timeouts_are_retried_with_growing_backoff(client, sleeps):
    responses.get(LIST, status=503, body="<html>down</html>")
    responses.get(LIST, body=requests.ConnectionError("reset"))
    responses.get(LIST, json=page_body([]))
    client.list_page()
    assert len(responses.calls) == 3
    assert len(sleeps) == 2 and 0.05 <= sleeps[0] <= 0.1 and 0.1 <= sleeps[1] <= 0.2


@responses.activate
def test_429_honours_retry_after(client, sleeps):
    responses.get(LIST, status=429, headers={"Retry-After": "7"}, json={"code": "TooManyRequests"})
    responses.get(LIST, json=page_body([]))
    client.list_page()
    assert sleeps == [7.0]


@responses.activate
def test_retry_after_is_capped(client, sleeps):
    responses.get(LIST, status=429, headers={"Retry-After": "3600"})
    responses.get(LIST, json=page_body([]))
    client.list_page()
    assert sleeps == [30]


@responses.activate
def test_gives_up_after_the_retry_budget_with_a_typed_error(client):
    responses.get(LIST, status=429, headers={"Retry-After": "1"})
    with pytest.raises(RateLimited, match="gave up after 4 attempts"):
        client.list_page()
    assert len(responses.calls) == 4


@responses.activate
def test_401_is_not_retried_and_points_at_the_setting(client, sleeps):
    responses.get(LIST, status=401, json={"code": "Unauthorized", "message": "401:Unauthorized"})
    with pytest.raises(AuthRejected, match="VERIFIK_API_TOKEN") as excinfo:
        client.list_page()
    assert len(responses.calls) == 1 and sleeps == []
    assert "/v2/app-registrations" in str(excinfo.value)


@responses.activate
def test_404_is_not_found_and_carries_the_server_code(client):
    responses.get(
        f"{LIST}/{ID}",
        status=404,
        json={"code": "AppRegistration_not_found", "message": "404:AppRegistration_not_found"},
    )
    with pytest.raises(NotFound, match="AppRegistration_not_found"):
        client.get(ID)
    assert len(responses.calls) == 1


@responses.activate
def test_409_parameter_errors_are_bad_requests(client):
    responses.get(LIST, status=409, json={"code": "MissingParameter", "message": "limit must be between 1 and 100"})
    with pytest.raises(BadRequest, match="limit must be between"):
        client.list_page()


@responses.activate
def test_truncated_json_is_retried_then_reported(client):
    responses.get(LIST, body='{"data": [{"_id": "507f')
    with pytest.raises(BadResponse, match="truncated JSON"):
        client.list_page()
    assert len(responses.calls) == 4


@responses.activate
def test_an_html_page_with_200_is_a_bad_response(client):
    responses.get(LIST, body="<html>proxy login</html>", status=200)
    with pytest.raises(BadResponse, match="non-JSON"):
        client.list_page()


@pytest.mark.parametrize(
    "body, reason",
    [
        ({"data": {"not": "a list"}, "total": 1, "pages": 1}, "no list under 'data'"),
        ({"data": []}, "lacks a numeric 'total' and 'pages'"),
        ({"data": [], "total": "many", "pages": 1}, "lacks a numeric 'total' and 'pages'"),
        ({"data": [], "total": 5, "pages": True}, "lacks a numeric 'total' and 'pages'"),
        ({"data": [], "total": 5, "pages": 1, "page": 3}, "answered page 3 when page 1 was asked for"),
    ],
)
@responses.activate
def test_a_listing_answer_that_cannot_be_believed_is_retried_then_refused(client, body, reason):
    responses.get(LIST, json=body)
    with pytest.raises(BadResponse, match=reason) as excinfo:
        client.list_page()
    assert len(responses.calls) == 4 and "gave up after 4 attempts" in str(excinfo.value)


@responses.activate
def test_a_listing_answer_that_heals_on_retry_is_used(client):
    responses.get(LIST, json={"data": []})
    responses.get(LIST, json={"data": [{"_id": ID}], "total": "1", "pages": "1", "page": "1"})
    page = client.list_page()
    assert (page.items, page.total, page.pages, len(responses.calls)) == ([{"_id": ID}], 1, 1, 2)


@responses.activate
def test_get_returns_the_registration_with_populates(client):
    responses.get(f"{LIST}/{ID}", json={"data": {"_id": ID}})
    assert client.get(ID.upper(), populates=["project", "person"]) == {"_id": ID}
    assert responses.calls[0].request.url.count("populates%5B%5D=") == 2


@pytest.mark.parametrize("bad", ["", "abc", "z" * 24, ID + "0", "../../admin", None])
@responses.activate
def test_malformed_ids_are_refused_before_any_request(client, bad):
    with pytest.raises(InvalidRegistrationId):
        client.get(bad)
    assert len(responses.calls) == 0


@responses.activate
def test_the_token_never_appears_in_errors(client):
    responses.get(LIST, status=403, json={"message": f"token {TOKEN} has no access"})
    with pytest.raises(AuthRejected) as excinfo:
        client.list_page()
    assert TOKEN not in str(excinfo.value) and TOKEN not in repr(client)


@responses.activate
def test_unavailable_after_retries_names_the_path(client):
    responses.get(f"{LIST}/{ID}", status=502, body="bad gateway")
    with pytest.raises(Unavailable, match=f"/v2/app-registrations/{ID}: HTTP 502"):
        client.get(ID)


def test_limit_outside_the_api_range_is_refused_locally(client):
    with pytest.raises(ValueError, match="limit"):
        client.list_page(limit=101)


@responses.activate
def test_a_listing_carries_each_item_as_received_for_fingerprinting(client):
    body = b'{"data": [ {"_id": "507f1f77bcf86cd799439011", "name": "Ana"} , {"_id": "507f1f77bcf86cd799439012"}],'
    body += b' "total": 2, "limit": 100, "page": 1, "pages": 1}'
    responses.get(LIST, body=body, content_type="application/json")
    page = client.list_page(1, 100)
    assert page.items == [{"_id": ID, "name": "Ana"}, {"_id": "507f1f77bcf86cd799439012"}]
    assert page.item_bytes == [
        b'{"_id": "507f1f77bcf86cd799439011", "name": "Ana"}',
        b'{"_id": "507f1f77bcf86cd799439012"}',
    ]


@responses.activate
def test_json_msgspec_refuses_is_read_by_the_standard_library_and_not_split(client):
    """NaN is not JSON, but Verifik's payloads are stored as sent (cleaned later): the stdlib reads it."""
    body = b'{"data": [{"_id": "507f1f77bcf86cd799439011", "score": NaN}],'
    body += b' "total": 1, "limit": 100, "page": 1, "pages": 1}'
    responses.get(LIST, body=body, content_type="application/json")
    page = client.list_page(1, 100)
    assert page.items[0]["_id"] == ID and page.items[0]["score"] != page.items[0]["score"]  # NaN
    assert page.item_bytes is None
