"""Log formatting: plain lines for humans, one JSON object per line for machines, with the
request ids on every line and secrets redacted as a safety net (infra.redact, the same
redaction the failure layer applies to upstream texts).

Chosen by LOG_FORMAT (plain | json) in settings. The JSON formatter is ~30 lines on orjson
(already a dependency, and fast) rather than python-json-logger: we need a fixed set of
fields plus `extra=`, nothing else that library offers.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

from infra.redact import redact
from observability.requestid import client_request_id_get, request_id_get


class RedactSecretsFilter(logging.Filter):
    """Rewrites the record's message (and traceback) with secrets masked.

    Attached to the handler, so it sees every record that is written, from any logger. The
    message is rendered once here (msg % args) and the args dropped, which is what the
    formatter would do anyway; the traceback text is cached on the record the same way
    logging.Formatter caches it, so the formatter prints the redacted one."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let the formatter report it as usual
            return True
        cleaned = redact(message)
        if cleaned is not message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class RequestIdFilter(logging.Filter):
    """Adds `request_id` / `client_request_id` (from the contextvars) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_get() or "-"
        record.client_request_id = client_request_id_get()
        return True


# Attributes every LogRecord has; anything else came from `extra=` and is emitted too.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
    "client_request_id",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, request_id[, client_request_id,
    exc, extra fields]."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", "-")
        if rid and rid != "-":
            out["request_id"] = rid
        crid = getattr(record, "client_request_id", "")
        if crid:
            out["client_request_id"] = crid
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_"):
                out[name] = redact(value) if isinstance(value, str) else value
        # default=str: an odd `extra` value must not lose the whole line.
        return orjson.dumps(out, default=str).decode()
