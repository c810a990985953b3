"""The one-search prefilter of `redact` changes no outcome: it only skips substitutions that would
have found nothing."""
from __future__ import annotations

import json
import logging
import sys

from hypothesis import given, settings, strategies as st

from service.observability import logging as obs_logging
from service.observability.logging import _TEXT_PATTERNS, redact

# Fragments that the patterns react to, glued with random text, so both branches are exercised.
FRAGMENTS = ["Bearer ", "basic ", "realm=", "v1,", "v1a,", "whsec_", "ucmalert_", "ucmha_", "/ucm-alerts/",
             "gAAAAA", "token=", "Secret: ", "\"password\": \"", "api-key=", "x_enc=", "x_hash:", "session=",
             "[REDACTED]", "<mac>", "\\\"", "&", " ", "/", "=",
             # Other spellings: the case-insensitive patterns must not be skipped for them.
             "BEARER ", "Basic\t", "V1,", "WHSEC_", "GAAAAA", "TOKEN=", "x-Api_Key: ", "AUTHORIZATION=", "Cookie: ",
             "X_ENC=", "Session=", "refresh_token\": \"", "PASSWD="]
PIECE = st.one_of(st.sampled_from(FRAGMENTS), st.text("abcXYZ0189+/=_-.:", min_size=0, max_size=50))


def redact_without_prefilter(text: str) -> str:
    for pattern, replacement in _TEXT_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


@settings(max_examples=400, deadline=None)
@given(st.lists(PIECE, max_size=8).map("".join))
def test_redact_is_the_substitutions_with_or_without_the_prefilter(text):
    assert redact(text) == redact_without_prefilter(text)


def test_a_secret_is_still_redacted_and_plain_text_left_alone():
    assert redact("Authorization: Bearer abc.def") == "Authorization: Bearer [REDACTED]"
    assert redact("POST /api/v1/webhooks/ucm/02:00:00:00:00:9A 202") == "POST /api/v1/webhooks/ucm/02:00:00:00:00:9A 202"


def _record(**extra):  # type: ignore[no-untyped-def]
    record = logging.LogRecord("ucmha.access", logging.INFO, __file__, 1, "GET %s", ("/x",), None)
    record.__dict__.update(extra)
    return record


def test_a_line_behind_the_filter_is_redacted_field_by_field_once(monkeypatch):
    """The handler's filter masks every field; the formatter then only runs the whole-line pass
    (each field was checked twice before, a fifth of an access line's cost)."""
    fields = {"request_id": "abc", "path": "/api/v1/webhooks/ucm/02:00:00:00:00:01", "route": "/r", "method": "POST"}
    seen: list[object] = []
    real = obs_logging.redact_value
    monkeypatch.setattr(obs_logging, "redact_value", lambda value, key=None, _depth=0: (seen.append(key), real(value, key, _depth))[1])
    record = _record(**fields)
    assert obs_logging.RedactFilter().filter(record)
    filtered = len(seen)
    line = json.loads(obs_logging.JsonFormatter().format(record))
    assert seen[filtered:] == []  # nothing redacted field by field a second time
    assert [k for k in seen[:filtered] if k in fields] == list(fields)
    assert {k: line[k] for k in fields} == fields


def test_the_formatter_alone_still_redacts_every_field():
    record = _record(api_token="plain-value", note="Bearer abcdef", exc_text=None)
    line = json.loads(obs_logging.JsonFormatter().format(record))
    assert line["api_token"] == "[REDACTED]" and line["note"] == "Bearer [REDACTED]"


def test_a_traceback_formatted_after_the_filter_is_redacted():
    try:
        raise RuntimeError("failed with token=supersecretvalue")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", None, sys.exc_info())
    assert obs_logging.RedactFilter().filter(record)
    line = json.loads(obs_logging.JsonFormatter().format(record))
    assert "supersecretvalue" not in json.dumps(line) and "token=[REDACTED]" in line["exc_info"]
