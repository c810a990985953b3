"""The one-search prefilter of `redact` changes no outcome: it only skips substitutions that would
have found nothing."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

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
