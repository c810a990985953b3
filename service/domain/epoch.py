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
