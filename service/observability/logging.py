"""Structured JSON logs for the API and the workers, with the log context and secret redaction.

`configure_logging(settings)` is the one setup: called by `create_app` and by the Celery worker and
beat (signal `setup_logging`, see workers/observability.py), and by gunicorn's master through
`gunicorn.conf.py` (`make_handler` in its `logconfig_dict`). It puts one handler on the root logger:

- `ContextFilter` adds the fields of the log context (request_id, org_id, pair_id, event_id, task_id,
  ...; see `service.observability.context`) to every record that does not carry them already;
- `RedactFilter` masks secrets in the message, its arguments and every extra field;
- `JsonFormatter` writes one JSON object per line (`time`, `level`, `logger`, `message`, extras) and
  runs the redaction once more over the finished line, which also covers tracebacks and objects the
  JSON encoder turned into text.

Secrets are never logged: bearer/basic credentials, `whsec_...` webhook secrets, `ucmha_...` API
tokens, `ucmalert_...` alert tokens (also as the last segment of an alert URL), the value of any
`...token=`, `...secret=`, `password=`, `signature=` parameter, and the value of any field whose name
says it is a secret (authorization, cookie, *_token, *_secret, *password, *signature).
"""
from __future__ import annotations

import functools
import logging
import re
import sys
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

from service.observability.context import current as current_context

REDACTED = "[REDACTED]"
_MARKER = "_ucmha_handler"
# Set on a record once RedactFilter has masked its message and every extra field (an underscore
# name: never written out as a field).
_REDACTED_MARK = "_ucmha_redacted"
# What the formatter adds to a record's fields besides the record's own (see JsonFormatter.add_fields).
_FORMATTED_TEXT = ("exc_info", "stack_info")

# Value patterns, applied to any text. Order matters: the more specific ones first.
_TEXT_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization header values, wherever they show up.
    (re.compile(r"(?i)\b(bearer|basic)(\s+)(?!\[REDACTED\]|realm=)[A-Za-z0-9._~+/=-]+"), r"\1\2" + REDACTED),
    # Standard Webhooks signatures ("v1,<base64>", several may be listed).
    (re.compile(r"\b(v1a?,)[A-Za-z0-9+/]{16,}={0,2}"), r"\1" + REDACTED),
    # Webhook secrets (base64 after the prefix).
    (re.compile(r"whsec_[A-Za-z0-9+/=_-]+"), "whsec_" + REDACTED),
    # API and alert tokens (token_urlsafe(32) after the prefix: 43 characters). Shorter runs are left
    # alone so names such as metric names stay readable; 24 characters of a token would not help
    # anyone to guess the other 19.
    (re.compile(r"\bucmalert_[A-Za-z0-9_-]{24,}"), "ucmalert_" + REDACTED),
    (re.compile(r"\bucmha_[A-Za-z0-9_-]{24,}"), "ucmha_" + REDACTED),
    # The alert token is the last path segment of the native alert URL, whatever it looks like.
    (re.compile(r"(/ucm-alerts/)(?!\[REDACTED\]|<)[^/\s\"'?#&\\]+"), r"\1" + REDACTED),
    # Sealed secrets (Fernet tokens) wherever they appear, e.g. in a database error's parameters.
    (re.compile(r"\bgAAAAA[A-Za-z0-9_-]{40,}={0,2}"), REDACTED),
    # key=value and "key": "value" / key: value, for any key that names a secret, a sealed secret
    # (*_enc) or a hash (*_hash).
    (re.compile(
        r"(?i)(\b(?:[a-z0-9_.-]*(?:token|secret|password|passwd|signature|api[_-]?key|authorization|cookie)"
        r"(?:_enc|_hash)?|[a-z0-9_.-]*_(?:enc|hash))"
        r"(?:\\?[\"'])?\s*[=:]\s*(?:\\?[\"'])?)(?![^\s\"'&}\]\\]*\s?\[REDACTED\])([^\s\"'&}\]\\]+)"),
     r"\1" + REDACTED),
    # Session cookies (the dashboard's signed cookie is a credential).
    (re.compile(r"(?i)\b(session=)(?!\[REDACTED\])[^;\s\"'\\]+"), r"\1" + REDACTED),
)

_SENSITIVE_KEY = re.compile(
    # *token* and *secret* (but not the id of a token), sealed (*_enc) and hashed (*_hash) values.
    r"(?i)(token|secret)(?!_id$)|_enc$|_hash$"
    r"|(^|[_.-])(authorization|cookie|set-cookie|password|passwd|signature|api[_-]?key|credentials?)$"
)

# LogRecord attributes that are not extras (python-json-logger's list plus what Python adds).
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))) | {
    "message", "asctime", "taskName",
}


# Every pattern above needs one of these (lowercase) in the text: a quick look for them first, since
# nearly every string logged holds none. Each line is redacted field by field (the filter) and once more
# whole; a literal scan for these is far cheaper than the patterns' own searches (and than one
# search over all the patterns joined: the alternation defeats the engine's literal scans).
# tests/service/observability/test_redact_prefilter.py checks it changes no outcome.
_NEEDLES = ("bearer", "basic", "v1,", "v1a,", "whsec_", "ucmalert_", "ucmha_", "/ucm-alerts/", "gaaaaa",
            "token", "secret", "passw", "signature", "apikey", "api_key", "api-key", "authorization", "cookie",
            "_enc", "_hash", "session=")


def _may_hold_secret(text: str) -> bool:
    lowered = text.lower()
    for needle in _NEEDLES:  # a plain loop: `any()` over a generator costs more than the scans
        if needle in lowered:
            return True
    return False


def redact(text: str) -> str:
    """`text` with every secret we know how to recognise replaced by [REDACTED]."""
    if not _may_hold_secret(text):
        return text
    for pattern, replacement in _TEXT_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def is_sensitive_key(key: object) -> bool:
    return isinstance(key, str) and _sensitive_name(key)


@functools.lru_cache(maxsize=1024)
def _sensitive_name(key: str) -> bool:
    # Field names repeat (every access line has the same dozen): one search per name, not per line.
    return bool(_SENSITIVE_KEY.search(key))


def redact_value(value: Any, key: object = None, _depth: int = 0) -> Any:
    """Redact a structured value: whole values under sensitive keys, patterns in every string."""
    if key is not None and is_sensitive_key(key) and value not in (None, "", True, False):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if _depth > 8:
        return value
    if isinstance(value, dict):
        return {k: redact_value(v, k, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(v, None, _depth + 1) for v in value)
    return value


class ContextFilter(logging.Filter):
    """Adds the log context's fields to the record (explicit `extra=` values win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in current_context().items():
            if key not in record.__dict__:
                record.__dict__[key] = value
        return True


class RedactFilter(logging.Filter):
    """Masks secrets in the message, its arguments and every extra field of the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, dict):
            record.msg = redact_value(record.msg)
        else:
            try:
                message = record.getMessage()
            except Exception:  # a broken format string must not lose the line
                message = f"{record.msg!r} % {record.args!r}"
            record.msg, record.args = redact(message), None
        for key, value in list(record.__dict__.items()):
            if key in _RECORD_ATTRS or key.startswith("_"):
                continue
            record.__dict__[key] = redact_value(value, key)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        record.__dict__[_REDACTED_MARK] = True
        return True


class JsonFormatter(_BaseJsonFormatter):
    """One JSON object per line: time, level, logger, message, then context and extras."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", "time")
        kwargs.setdefault("reserved_attrs", sorted(_RECORD_ATTRS - {"message"}))
        super().__init__("{levelname}{name}{message}", style="{", **kwargs)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        if record.__dict__.get(_REDACTED_MARK):
            # RedactFilter has masked the message and every extra already: only the tracebacks
            # formatted since are new text. Masking every field again would double the
            # field-by-field work of every line (the access line is written for every request).
            for key in _FORMATTED_TEXT:
                if key in log_data:
                    log_data[key] = redact_value(log_data[key], key)
        else:  # a formatter used without the filter redacts every field itself
            for key, value in log_data.items():
                log_data[key] = redact_value(value, key)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        ordered = {"time": log_data.pop("time")} if "time" in log_data else {}
        ordered.update(log_data)
        return ordered

    def serialize_log_record(self, log_data: dict[str, Any]) -> str:
        # Last line of defence: tracebacks and objects the encoder turned into text.
        return redact(super().serialize_log_record(log_data))


def make_handler(stream: IO[str] | None = None, level: int | str = logging.NOTSET) -> logging.Handler:
    """The JSON handler with the context and redaction filters (also a dictConfig `()` factory)."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactFilter())
    setattr(handler, _MARKER, True)
    return handler


def _level(value: int | str) -> int:
    if isinstance(value, int):
        return value
    level = logging.getLevelName(value.strip().upper())
    if not isinstance(level, int):
        raise ValueError(f"unknown log level {value!r}")
    return level


def configure_logging(settings: Any, *, stream: IO[str] | None = None, level: int | str | None = None) -> logging.Handler:
    """Route every log record through one JSON handler on the root logger; idempotent.

    `settings.log_level` sets the root level unless `level` is given. Only our own handler is
    replaced on a second call, so handlers others added (pytest's caplog, say) stay.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _MARKER, False):
            root.removeHandler(handler)
    handler = make_handler(stream)
    root.addHandler(handler)
    root.setLevel(_level(level if level is not None else getattr(settings, "log_level", "INFO")))
    logging.captureWarnings(True)
    return handler
