import pytest

from service.domain.epoch import FIRST_EPOCH, is_superseded, next_epoch, should_apply_upstream


def test_a_new_pair_starts_at_one():
    assert FIRST_EPOCH == 1


def test_next_epoch_counts_up_by_one():
    assert next_epoch(1) == 2
    assert next_epoch(0) == 1
    assert next_epoch(2**40) == 2**40 + 1


def test_next_epoch_refuses_a_negative_epoch():
    with pytest.raises(ValueError):
        next_epoch(-1)


def test_nothing_applied_yet_means_apply():
    assert should_apply_upstream(None, 1)


@pytest.mark.parametrize(
    "applied, desired, apply", [(1, 2, True), (1, 9, True), (2, 2, False), (3, 2, False), (9, 1, False)]
)
def test_an_older_or_equal_epoch_never_overwrites_upstream(applied, desired, apply):
    assert should_apply_upstream(applied, desired) is apply


def test_is_superseded():
    assert is_superseded(2, 3)
    assert not is_superseded(3, 3)
    assert not is_superseded(4, 3)
