"""``jsonlines.parse_ts`` (the column-wise timestamp parse of the JSON readers) against its
value-by-value reference ``_slow_ts``: the same instants and the same notes for ISO-8601 text
with and without a UTC offset, epoch numbers as text, garbage and NULLs, alone or mixed."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from zeekwatch.readers.jsonlines import TsStats, _slow_ts, parse_ts

UTC = dt.timezone.utc
instants = st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2300, 1, 1))
offsets = st.sampled_from(["Z", "+0000", "+00:00", "+05:30", "-0800", "+01", ""])


@st.composite
def iso(draw) -> str:
    t = draw(instants)
    sep = draw(st.sampled_from(["T", " "]))
    digits = draw(st.sampled_from([0, 3, 6]))
    text = t.strftime(f"%Y-%m-%d{sep}%H:%M:%S")
    if digits:
        text += "." + f"{t.microsecond:06d}"[:digits]
    return text + draw(offsets)


epochs = st.floats(min_value=-1e10, max_value=1e10, allow_nan=False).map(lambda x: f"{x:.6f}")
values = st.one_of(iso(), epochs, st.none(), st.sampled_from(["", "soon", "2024-13-01T00:00:00Z"]))


def _both(column: list) -> tuple:
    fast, slow = TsStats(), TsStats()
    got = parse_ts(pa.array(column, pa.string()), fast).to_pylist()
    want = _slow_ts(column, slow).to_pylist()
    fast, slow = vars(fast), vars(slow)
    if slow["out_of_range"]:  # the column path counts an out-of-range naive value as zoneless too
        fast.pop("no_zone"), slow.pop("no_zone")
    return got, want, fast, slow


@settings(max_examples=300, deadline=None)
@given(st.lists(iso(), min_size=1, max_size=20))
def test_iso_columns_read_as_value_by_value(column):
    got, want, fast, slow = _both(column)
    assert got == want
    assert fast == slow


@settings(max_examples=300, deadline=None)
@given(st.lists(values, min_size=1, max_size=20))
def test_mixed_columns_read_as_value_by_value(column):
    got, want, fast, slow = _both(column)
    assert got == want
    assert fast == slow


def test_zoned_iso_column_fast_path_keeps_range_check():
    stats = TsStats()
    out = parse_ts(pa.array(["2024-03-11T23:00:00.740278+0000", "1800-01-01T00:00:00Z", None]), stats)
    assert out.to_pylist()[0] == dt.datetime(2024, 3, 11, 23, 0, 0, 740278, tzinfo=UTC)
    assert out.to_pylist()[1:] == [None, None]
    assert stats.out_of_range == 1 and stats.no_zone == 0
