"""Log context and redaction shared by every log line, whatever its format.

`bind(run_id=..., task_id=...)` attaches fields to every record emitted in
its block (contextvars: per thread and per task); `ContextFilter` copies them
onto the record, and `RedactSecretsFilter` replaces configured secrets in the
final message, so neither the webhook secret (in request paths) nor the API
token can reach a log line.
"""

import contextvars
import logging
from contextlib import contextmanager

_context = contextvars.ContextVar("verifik_log_context", default=None)
REDACTED = "***"


@contextmanager
def bind(**fields):
    """Add `fields` (None values dropped) to every log record emitted inside the block."""
    token = _context.set({**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def current():
    return dict(_context.get() or {})


class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record (as attributes a formatter can name)."""

    def filter(self, record):
        for key, value in (_context.get() or {}).items():
            setattr(record, key, value)
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
