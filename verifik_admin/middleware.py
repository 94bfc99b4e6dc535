import logging
import re
import time
import uuid

from django.http import HttpResponseBadRequest

from .logs import bind

request_log = logging.getLogger("verifik_admin.requests")
# A caller's id (a proxy or load balancer usually sets one) is kept when it is short and plain.
SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class RequestIdMiddleware:
    """Gives every request an id, on each log line it causes and in the X-Request-ID response header,
    and logs one line per request (method, path without the query string, status, duration)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        given = request.headers.get("X-Request-ID", "")
        request.request_id = given if SAFE_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        started = time.monotonic()
        with bind(request_id=request.request_id):
            response = self.get_response(request)
            duration_ms = round((time.monotonic() - started) * 1000, 1)
            request_log.info(
                "%s %s %s %.1fms",
                request.method,
                request.path,
                response.status_code,
                duration_ms,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": duration_ms,
                },
            )
        response["X-Request-ID"] = request.request_id
        return response


class RejectNulBytesMiddleware:
    """A NUL byte in a query or form value can never match anything, and Postgres refuses it in
    a string literal: answer 400 here rather than a 500 from deep inside a filter or search."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        for values in (request.GET, request.POST if request.content_type != "application/json" else {}):
            if any("\x00" in key or any("\x00" in v for v in values.getlist(key)) for key in values):
                return HttpResponseBadRequest("NUL bytes are not allowed in parameters.")
        return self.get_response(request)
