from datetime import datetime, timedelta, timezone

from service.domain.timeutil import as_utc, latest

CEST = timezone(timedelta(hours=2))


def test_naive_is_taken_as_utc():
    assert as_utc(datetime(2023, 7, 7, 15, 6, 3)) == datetime(2023, 7, 7, 15, 6, 3, tzinfo=timezone.utc)
    assert as_utc(datetime(2023, 7, 7, 15, 6, 3)).tzinfo is timezone.utc


def test_aware_is_converted_to_utc():
    moment = as_utc(datetime(2023, 7, 7, 17, 6, 3, tzinfo=CEST))
    assert moment == datetime(2023, 7, 7, 15, 6, 3, tzinfo=timezone.utc)
    assert moment.utcoffset() == timedelta(0)
    assert moment.hour == 15


def test_naive_and_aware_become_comparable():
    assert as_utc(datetime(2023, 7, 7, 15, 0)) < as_utc(datetime(2023, 7, 7, 17, 1, tzinfo=CEST))


def test_latest_ignores_none_and_mixes_naive_and_aware():
    early = datetime(2023, 7, 7, 15, 0)
    late = datetime(2023, 7, 7, 17, 30, tzinfo=CEST)  # 15:30 UTC
    assert latest(None, early, late, None) == datetime(2023, 7, 7, 15, 30, tzinfo=timezone.utc)
    assert latest(None, None) is None
    assert latest() is None
