"""Process logging for the API and the worker: one JSON object a line, or readable text.

``setup_logging(settings)`` is called once per process (``worker.py``, and the
API when uvicorn builds it); tests and embedders keep their own logging. With
``JIT_LOG_FORMAT=json`` (the default) every line is one JSON object::

    {"time": "2026-11-25T12:00:00.123Z", "level": "INFO", "logger": "jit.api.access",
     "message": "POST /v1/requests/{request_id}/approve 200 41.2ms",
     "request_id": "3f0c…", "workflow_id": "access-request-3f0c…", "actor": "bob", ...}

``time``, ``level``, ``logger`` and ``message`` are always there; ``request_id``,
``workflow_id`` and ``actor`` where known: from the per-request context the
API's middleware opens (:func:`log_context`, :func:`bind`), or from the
``temporal_activity`` / ``temporal_workflow`` details Temporal's activity and
workflow loggers attach. A call's own ``extra={...}`` fields are added too;
``exc`` holds a traceback. ``JIT_LOG_FORMAT=text`` (what ``make run`` uses) is
the same information on one readable line.

Never a secret: fields named like a credential (token, password, secret,
authorization, key, dsn) are replaced by ``[redacted]``, and anything shaped
like a JWT is cut out of messages, as a safety net behind the rule that
nothing logs a credential in the first place.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

from core.temporal import WORKFLOW_ID_PREFIX

CONTEXT_FIELDS = ("request_id", "workflow_id", "actor")
_REDACTED = "[redacted]"
_SECRET_NAME = re.compile(r"token|password|passwd|secret|authorization|cookie|private|(^|_)key$|dsn", re.I)
_JWT = re.compile(r"eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*")
# What every LogRecord carries: anything else on a record came from ``extra``.
# (uvicorn adds a "color_message" for terminals: not a field.)
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}
_TEMPORAL_EXTRAS = ("temporal_activity", "temporal_workflow")

# The current HTTP request's fields (a dict shared with whatever the request runs,
# so a dependency that learns the caller can add ``actor`` for the access log).
_context: ContextVar[dict[str, Any] | None] = ContextVar("jit_log_context", default=None)


@contextmanager
def log_context(**fields: Any) -> Iterator[dict[str, Any]]:
    """Open a context whose fields go on every line logged inside it (one per API request)."""
    values = {k: v for k, v in fields.items() if v is not None}
    token = _context.set(values)
    try:
        yield values
    finally:
        _context.reset(token)


def bind(**fields: Any) -> None:
    """Add fields to the current context, if one is open (else a no-op)."""
    values = _context.get()
    if values is not None:
        values.update({k: v for k, v in fields.items() if v is not None})


def context_fields(record: logging.LogRecord) -> dict[str, Any]:
    """request_id, workflow_id and actor for this record, where known."""
    found: dict[str, Any] = {}
    for name in _TEMPORAL_EXTRAS:
        details = getattr(record, name, None)
        if isinstance(details, dict) and details.get("workflow_id"):
            found["workflow_id"] = details["workflow_id"]
    found.update(_context.get() or {})
    for name in CONTEXT_FIELDS:
        value = getattr(record, name, None)
        if value is not None:
            found[name] = value
    workflow_id = found.get("workflow_id")
    if "request_id" not in found and isinstance(workflow_id, str) and workflow_id.startswith(WORKFLOW_ID_PREFIX):
        found["request_id"] = workflow_id.removeprefix(WORKFLOW_ID_PREFIX)
    if "workflow_id" not in found and found.get("request_id"):
        found["workflow_id"] = WORKFLOW_ID_PREFIX + str(found["request_id"])
    return {name: found[name] for name in CONTEXT_FIELDS if found.get(name) is not None}


def scrub(text: str) -> str:
    return _JWT.sub("[jwt redacted]", text)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    extras: dict[str, Any] = {}
    for name, value in record.__dict__.items():
        if name in _STANDARD or name in _TEMPORAL_EXTRAS or name in CONTEXT_FIELDS or name.startswith("_"):
            continue
        extras[name] = _REDACTED if _SECRET_NAME.search(name) else _json_safe(value)
    return extras


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): (_REDACTED if _SECRET_NAME.search(str(k)) else _json_safe(v)) for k, v in value.items()}
    return scrub(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, context fields, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        line.update(context_fields(record))
        for name, value in _extras(record).items():
            line.setdefault(name, value)
        if record.exc_info:
            line["exc"] = scrub(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exc"] = scrub(record.exc_text)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``12:00:00.123 INFO  jit.api.access: message  request_id=… actor=…`` for people."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s.%(msecs)03d %(levelname)-5s %(name)s: %(message)s", datefmt="%H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = scrub(record.message)
        text = super().formatMessage(record)
        fields = context_fields(record)
        fields.pop("workflow_id", None)  # the request id says the same, shorter
        shown = " ".join(f"{k}={v}" for k, v in fields.items() if f"{v}" not in record.message)
        return f"{text}  {shown}" if shown else text


def setup_logging(log_format: str = "json", level: str | int = "INFO", stream: IO[str] | None = None) -> None:
    """Make this process log ``log_format`` ("json" or "text") lines to ``stream`` (stderr)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # uvicorn's own loggers through ours; its access log is replaced by the API's
    # (api/metrics.py), which logs the route, the caller and never a query string.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP call otherwise
    # The workflow and activity details become fields (request_id, workflow_id): not
    # again as a dict at the end of each message.
    from temporalio import activity, workflow

    activity.logger.activity_info_on_message = False
    workflow.logger.workflow_info_on_message = False
