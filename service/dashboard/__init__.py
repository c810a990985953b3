"""The support dashboard: server-rendered pages over the same read and write sides as the API.

`GET /dashboard` lists the organization's HA pairs, the ones that need attention first;
`/dashboard/pairs/<id>` shows one pair. Sign-in takes an admin API token (the token itself is
never kept: the signed session cookie holds its id, organization and role, and every request
checks that it is not revoked). `support` reads; `admin` can also resolve a split brain and
request a resync. Every POST form carries a per-session CSRF token.
"""
from .views import blp

__all__ = ["blp"]
