"""After any change of a pair, in the same transaction: a running procedure (R11/R12) sees the pair
as it is now, then the outbox (pair_syncs) follows the pair, then the pair notes when its
time-based rules are next due (``rules_due``: when the periodic check must visit it).

Called explicitly by every command and task that changed a pair, so nothing is advanced as a
hidden side effect of planning a repoint. ``lifecycle`` drives procedures on top of ``sync``;
``sync`` knows nothing of procedures (no import cycle).
"""
from __future__ import annotations

from service.models import HaPair

from . import lifecycle, rules_due, sync
from .context import CommandContext


def settle(ctx: CommandContext, pair: HaPair, why: str) -> None:
    lifecycle.observe(ctx, pair)
    sync.plan_repoint(ctx, pair, why=why)
    rules_due.note(ctx, pair)
