"""The lean paths' lock of a pair and its open alarms, on plain rows (``quiet_reports``, ``role_claims``).

``FOR NO KEY UPDATE`` with no joins (see ``queries._lock_pair_row``), and no row at all for a
webhook-id the device has sent before (``queries.unanswered``): a repeat takes no lock, and the
full path answers it from its first row.
"""
from __future__ import annotations

from sqlalchemy import bindparam, or_, select

from service.models import Alarm, HaPair
from service.queries import unanswered

PAIRS = _pairs = HaPair.__table__
_alarms = Alarm.__table__

# Built once: SQLAlchemy then finds its compiled form in its cache. Parameters: device_id, webhook_id.
LOCK = (
    select(_pairs)
    .where(_pairs.c.status != "dissolved",
           or_(_pairs.c.primary_device_id == bindparam("device_id"),
               _pairs.c.secondary_device_id == bindparam("device_id")),
           unanswered(bindparam("device_id"), bindparam("webhook_id")))
    .with_for_update(key_share=True)
)
# With each node, whether the pair has any open alarm: nearly always none, and then their kinds
# need no statement of their own (OPEN_ALARMS). Parameter: pair_id.
ANY_OPEN_ALARM = (
    select(_alarms.c.id).where(_alarms.c.pair_id == bindparam("pair_id"), _alarms.c.closed_at.is_(None))
    .exists().label("any_open_alarm")
)
OPEN_ALARMS = select(_alarms.c.kind).where(_alarms.c.pair_id == bindparam("pair_id"), _alarms.c.closed_at.is_(None))
