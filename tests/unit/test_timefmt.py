"""timefmt.iso: the store's time text, the same whichever way it is made."""

import datetime as dt

from hypothesis import given, strategies as st

from zeekwatch.timefmt import iso, parse_iso

FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # the text the store has always written


@given(st.floats(min_value=-62_000_000_000, max_value=253_402_300_799, allow_nan=False))
def test_epoch_seconds_as_strftime_wrote_them(ts):
    # years before 1000 included: strftime writes them unpadded, and iso keeps doing so
    assert iso(ts) == dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime(FORMAT)


def test_known_values_and_round_trip():
    assert iso(0) == "1970-01-01T00:00:00.000000Z"
    assert iso(1_700_000_000.25) == "2023-11-14T22:13:20.250000Z"
    assert iso(None) is None
    t = dt.datetime(2024, 3, 12, 23, 4, 55, 123456, tzinfo=dt.timezone.utc)
    assert parse_iso(iso(t.timestamp())) == t
    assert iso(dt.datetime(2024, 3, 12, 23, 4, 55)) == "2024-03-12T23:04:55.000000Z"  # naive is UTC


@given(st.datetimes(timezones=st.sampled_from([None, dt.timezone.utc,
                                               dt.timezone(dt.timedelta(hours=-5, minutes=-30))])))
def test_datetimes_as_strftime_wrote_them(t):
    utc = (t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t).astimezone(dt.timezone.utc)
    assert iso(t) == utc.strftime(FORMAT)
