"""The upstream's protocol: retCode values of its envelope `{"retCode", "msg", "data"}`.

Owned by the upstream client (`workers.upstream`); the simulator imports it from here, so both
sides agree on what a code means and production code never imports the simulator. When the real
upstream publishes its codes, only this table changes.
"""

from __future__ import annotations

SUCCESS = 0

# Authentication and request integrity (40001-40099).
TOKEN_INVALID = 40001  # access token unknown or expired: fetch a new one and retry
BAD_SIGNATURE = 40002
TIMESTAMP_SKEW = 40003  # `timestamp` more than the allowed skew from the server clock
BAD_CREDENTIALS = 40004  # username/password or client_id/client_secret rejected
REFRESH_TOKEN_INVALID = 40005  # fall back to the password grant

NOT_FOUND = 40400  # unknown domain, binding or endpoint
STALE_EPOCH = 40900  # epoch lower than the stored one; nothing changed
CONFLICT = 40901  # domain bound to another MAC, or same epoch with another MAC
BAD_REQUEST = 42200  # body or form fields malformed
INTERNAL_ERROR = 50000  # default code of an injected business_error fault

NAMES: dict[int, str] = {
    SUCCESS: "success",
    TOKEN_INVALID: "token_invalid",
    BAD_SIGNATURE: "bad_signature",
    TIMESTAMP_SKEW: "timestamp_skew",
    BAD_CREDENTIALS: "bad_credentials",
    REFRESH_TOKEN_INVALID: "refresh_token_invalid",
    NOT_FOUND: "not_found",
    STALE_EPOCH: "stale_epoch",
    CONFLICT: "conflict",
    BAD_REQUEST: "bad_request",
    INTERNAL_ERROR: "internal_error",
}


def name(ret_code: int) -> str:
    """A stable label for counters and logs, also for codes not in the table."""
    return NAMES.get(ret_code, f"ret_code_{ret_code}")
