"""Keeps each pair's search text (`domain.search`) in step with what the pair is found by.

Called by every command that changes a pair's custom domain or members, or a device's name or
site (the MAC of a device never changes). Bulk loaders that bypass the commands call it too.
"""
from __future__ import annotations

from typing import Iterable

from sqlalchemy import or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from service.domain.search import NodeText, pair_search_text
from service.models import Device, HaPair, PairSearch

# What a device is found by; a change to any other field leaves the search text as it is.
DEVICE_FIELDS = frozenset({"mac", "name", "site"})


def refresh(session: Session, pair_ids: Iterable[int]) -> None:
    """Recompose the search text of `pair_ids` from their rows as this transaction sees them.

    The pair rows are locked first (in id order, without joins) and read afterwards: a
    concurrent command changing the same pair's domain commits before this reads it, so the
    last writer always composes from the other's committed values. The text lives in
    `pair_search` (one row per pair, written only when it changes), never on the pair row.
    """
    ids = sorted(set(pair_ids))
    if not ids:
        return
    session.flush()
    session.execute(select(HaPair.id).where(HaPair.id.in_(ids)).order_by(HaPair.id)
                    .with_for_update(key_share=True)).all()
    primary, secondary = aliased(Device), aliased(Device)
    rows = session.execute(
        select(HaPair.id, HaPair.org_id, HaPair.custom_domain, PairSearch.search_text,
               primary.mac, primary.name, primary.site, secondary.mac, secondary.name, secondary.site)
        .join(primary, primary.id == HaPair.primary_device_id)
        .join(secondary, secondary.id == HaPair.secondary_device_id)
        .outerjoin(PairSearch, PairSearch.pair_id == HaPair.id)
        .where(HaPair.id.in_(ids))
    ).all()
    changed = []
    for pair_id, org_id, domain, current, p_mac, p_name, p_site, s_mac, s_name, s_site in rows:
        text = pair_search_text(domain, NodeText(p_mac, p_name, p_site), NodeText(s_mac, s_name, s_site))
        if text != current:
            changed.append({"pair_id": pair_id, "org_id": org_id, "search_text": text})
            loaded = session.identity_map.get(identity_key(PairSearch, pair_id))
            if loaded is not None:
                set_committed_value(loaded, "search_text", text)
    if changed:
        session.execute(_upsert(session.get_bind().dialect.name), changed)


def _upsert(dialect: str):  # type: ignore[no-untyped-def]
    """Insert the pair's row, or replace its text (the pair row lock makes the two exclusive)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(PairSearch.__table__)
    return stmt.on_conflict_do_update(index_elements=[PairSearch.__table__.c.pair_id],
                                      set_={"search_text": stmt.excluded.search_text})


def refresh_pairs_of(session: Session, device_id: int) -> None:
    """Refresh every pair the device is a member of, dissolved ones included (they are listed too)."""
    refresh(session, session.execute(select(HaPair.id).where(
        or_(HaPair.primary_device_id == device_id, HaPair.secondary_device_id == device_id))).scalars())
