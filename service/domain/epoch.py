"""Epochs fence the pair's Active against reordering.

Every change of the Active (and every admin ruling) raises the pair's epoch by one. A
repoint carries the epoch it was decided in, the upstream refuses lower epochs, and the
service never overwrites a newer state with an older one, so a slow worker holding an old
decision cannot undo a newer one.
"""

from __future__ import annotations

FIRST_EPOCH = 1  # a new pair starts at epoch 1 (api.md)


def next_epoch(epoch: int) -> int:
    if epoch < 0:
        raise ValueError(f"an epoch is never negative, got {epoch}")
    return epoch + 1


def should_apply_upstream(applied_epoch: int | None, desired_epoch: int) -> bool:
    """Whether the desired state of ``desired_epoch`` still has to go upstream.

    Only a newer epoch is pushed: an equal one is already there (sending it again is a
    harmless success upstream, which is what an explicit resync relies on, but it is not
    needed), and an older one must never overwrite a newer one.
    """
    return applied_epoch is None or desired_epoch > applied_epoch


def is_superseded(epoch: int, current_epoch: int) -> bool:
    """Whether work decided in ``epoch`` is outdated by the pair's ``current_epoch``."""
    return epoch < current_epoch
