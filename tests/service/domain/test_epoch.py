import pytest

from service.domain.epoch import FIRST_EPOCH, next_epoch


def test_a_new_pair_starts_at_one():
    assert FIRST_EPOCH == 1


def test_next_epoch_counts_up_by_one():
    assert next_epoch(1) == 2
    assert next_epoch(0) == 1
    assert next_epoch(2**40) == 2**40 + 1


def test_next_epoch_refuses_a_negative_epoch():
    with pytest.raises(ValueError):
        next_epoch(-1)
