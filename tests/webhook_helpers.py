"""Moved to `harness.webhooks` (shared with the benchmarks); kept so older imports still work."""
from harness.webhooks import notification, role_changed, signed_headers, status  # noqa: F401
