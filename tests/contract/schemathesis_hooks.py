"""Schemathesis hooks of the contract run (tests/contract/test_openapi_contract.py).

Two rules of the API are stated in the OpenAPI document in words, because JSON Schema cannot
state them; the hooks teach the generator the same rules, and nothing else (a third, rules about
what is stored, is the check at the end):

- `format: event-url` (an event subscription's URL): https, a public host, no credentials or
  fragment (docs/events.md). Drawn here as https URLs of public-looking DNS names.
- Two MACs of one request name two nodes (a pair's Primary and Secondary; the failed and the new
  node of a replacement). A request naming one node twice is dropped from generation.
"""
from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from service.domain.mac import InvalidMac, normalize_mac

_LABEL = st.from_regex(r"\A[a-z][a-z0-9]{0,15}\Z")
_PATH = st.from_regex(r"\A[a-z0-9/_-]{0,30}\Z")
schemathesis.openapi.format("event-url", st.builds(
    lambda host, domain, path: f"https://{host}.{domain}.example/{path}", _LABEL, _LABEL, _PATH))

DISTINCT = (("primary_mac", "secondary_mac"), ("failed_mac", "new_mac"))


def _mac(value: Any) -> str | None:
    try:
        return normalize_mac(value)
    except InvalidMac:
        return None


@schemathesis.hook
def filter_body(ctx: Any, body: Any) -> bool:
    if not isinstance(body, dict):
        return True
    for first, second in DISTINCT:
        a, b = _mac(body.get(first)), _mac(body.get(second))
        if a is not None and a == b:
            return False
    return True


def _rule_violation(response: Any) -> bool:
    if response.status_code != 422:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and str(body.get("type", "")).endswith("/rule-violation")


@schemathesis.check
def positive_data_acceptance_beyond_stored_state(ctx: Any, response: Any, case: Any) -> bool | None:
    """Schemathesis's positive_data_acceptance, except for a `rule-violation` problem (422 with
    `violations`): the request was well formed, and a rule about what is stored refused it (the
    devices are not registered, a plan is missing, the URL's host is local). No document can state
    those; every refusal of the request's form must still be stated in the document."""
    if _rule_violation(response):
        return None
    return positive_data_acceptance(ctx, response, case)
