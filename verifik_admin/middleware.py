import logging
import re
import time
import uuid

from django.conf import settings
from django.contrib import admin
from django.db import DatabaseError, OperationalError, connection
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from psycopg import errors

from .logs import bind

request_log = logging.getLogger("verifik_admin.requests")
timeout_log = logging.getLogger("verifik_admin.statement_timeout")
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


class StatementTimeoutMiddleware:
    """Every statement of a web request stops after DJANGO_DB_STATEMENT_TIMEOUT; the user is then asked to narrow
    the filter (503), not shown a 500.

    Only web requests pass here, so workers and beat keep their own timeouts (the sync's is
    VERIFIK_SYNC_STATEMENT_TIMEOUT). The timeout is set on the request's connection just before its
    first statement (a request that queries nothing, like an anonymous /health/, opens no connection)
    and reset when the view has answered: a streamed export runs its queries without it, and a
    connection kept open for the next request starts clean.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not settings.DJANGO_DB_STATEMENT_TIMEOUT:
            return self.get_response(request)
        timeout = WebStatementTimeout(settings.DJANGO_DB_STATEMENT_TIMEOUT)
        with connection.execute_wrapper(timeout):
            response = self.get_response(request)
        timeout.reset()
        return response

    def process_exception(self, request, exception):
        if not (isinstance(exception, OperationalError) and isinstance(exception.__cause__, errors.QueryCanceled)):
            return None
        seconds = settings.DJANGO_DB_STATEMENT_TIMEOUT
        timeout_log.warning(
            "%s %s: a statement ran past %g s and was cancelled",
            request.method,
            request.path,  # never the query string: it may hold a search for personal data
            seconds,
            extra={"method": request.method, "path": request.path, "statement_timeout": seconds},
        )
        if not (request.path.startswith("/admin/") and request.user.is_active and request.user.is_staff):
            return HttpResponse(
                f"The request took longer than {seconds:g} seconds and was stopped.\n",
                status=503,
                content_type="text/plain",
            )
        context = {
            **admin.site.each_context(request),
            "title": "This page took too long",
            "seconds": seconds,
            "back": request.path,
        }
        return render(request, "admin/statement_timeout.html", context, status=503)


class WebStatementTimeout:
    """An execute wrapper: sets statement_timeout on the connection before its first statement, once per connection."""

    def __init__(self, seconds):
        self.milliseconds = f"{round(seconds * 1000)}ms"
        self.applied_to = None  # the psycopg connection it was set on

    def __call__(self, execute, sql, params, many, context):
        db = context["connection"]
        if db.connection is not self.applied_to:  # the first statement, or a connection reopened since
            with db.wrap_database_errors:
                db.connection.execute("SELECT set_config('statement_timeout', %s, false)", [self.milliseconds])
            self.applied_to = db.connection
        return execute(sql, params, many, context)

    def reset(self):
        if self.applied_to is None or connection.connection is not self.applied_to:
            return  # never set, or that connection is gone and its settings with it
        try:
            with connection.wrap_database_errors:  # on the driver's connection, like the SET: no query of the page's
                self.applied_to.execute("RESET statement_timeout")
        except DatabaseError:
            pass  # a broken connection: Django closes it at the end of the request
