"""Log context and redaction shared by every log line, whatever its format.

`bind(run_id=..., task_id=...)` attaches fields to every record emitted in
its block (contextvars: per thread and per task); `ContextFilter` copies them
onto the record, and `RedactSecretsFilter` replaces configured secrets in the
final message, so neither the webhook secret (in request paths) nor the API
token can reach a log line. The two formatters (DJANGO_LOG_FORMAT: plain or
json) show the bound fields and redact the whole rendered line once more, which
covers what the filter cannot see: extra fields, tracebacks.
"""

import contextvars
import json
import logging
from contextlib import contextmanager
from datetime import UTC, datetime

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as BaseJsonFormatter

_context = contextvars.ContextVar("verifik_log_context", default=None)
REDACTED = "***"


@contextmanager
def bind(**fields):
    """Add `fields` (None values dropped) to every log record emitted inside the block."""
    token = push(**fields)
    try:
        yield
    finally:
        pop(token)


def push(**fields):
    """`bind` for code that enters and leaves in two calls (Celery's task_prerun / task_postrun)."""
    return _context.set({**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}})


def pop(token):
    _context.reset(token)


def current():
    return dict(_context.get() or {})


class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record (as attributes a formatter can name).

    Django logs a 4xx or 5xx response after the middleware has returned, outside
    the request's `bind`; such records carry the request, and its id is taken from it.
    """

    def filter(self, record):
        fields = dict(_context.get() or {})
        request_id = getattr(getattr(record, "request", None), "request_id", None)
        if request_id and "request_id" not in fields:
            fields["request_id"] = request_id
        for key, value in fields.items():
            setattr(record, key, value)
        record.context_fields = tuple(fields)
        return True


class RedactSecretsFilter(logging.Filter):
    """Replaces every configured secret in the rendered message (and its args) with ***."""

    def __init__(self, secrets=()):
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record):
        if not self.secrets:
            return True
        message = record.getMessage()
        if any(secret in message for secret in self.secrets):
            for secret in self.secrets:
                message = message.replace(secret, REDACTED)
            record.msg, record.args = message, None
        return True


def redact(text, secrets):
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


class PlainFormatter(logging.Formatter):
    """`time LEVEL logger: message [run_id=.. task_id=..]`, for a terminal."""

    def __init__(self, secrets=(), fmt="%(asctime)s %(levelname)s %(name)s: %(message)s", **kwargs):
        super().__init__(fmt, **kwargs)
        self.secrets = [s for s in secrets if s]

    def format(self, record):
        line = super().format(record)
        fields = " ".join(f"{key}={getattr(record, key)}" for key in getattr(record, "context_fields", ()))
        if fields:
            head, newline, rest = line.partition("\n")
            line = f"{head} [{fields}]{newline}{rest}"
        return redact(line, self.secrets)


class JsonFormatter(BaseJsonFormatter):
    """One JSON object a line: time, level, logger, message, the bound fields and any extra fields."""

    # Objects Django attaches to records: the HttpRequest (or runserver's socket) is no log field.
    HIDDEN = ("request", "context_fields")

    def __init__(self, secrets=(), **kwargs):
        kwargs.setdefault("fmt", ["asctime", "levelname", "name", "message"])
        kwargs.setdefault("rename_fields", {"asctime": "time", "levelname": "level", "name": "logger"})
        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, *self.HIDDEN])
        super().__init__(**kwargs)
        self.secrets = [s for s in secrets if s]
        # A secret as it appears inside a JSON string, for the rare one with characters JSON escapes.
        self.secrets += [json.dumps(s)[1:-1] for s in self.secrets if json.dumps(s)[1:-1] != s]

    def formatTime(self, record, datefmt=None):  # noqa: N802 (logging's name)
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")

    def jsonify_log_record(self, log_data):
        return redact(super().jsonify_log_record(log_data), self.secrets)
