"""What the JSON readers (Zeek JSON, Suricata EVE) share: line blocks, bad-line policy, timestamps.

``iter_blocks`` cuts a (decompressed) file into bounded blocks of whole lines and tells each
block's first physical line number; ``parse_lines`` turns a block into JSON objects with
orjson, recording every line that does not parse as a reject (``log.reject``) so that its
neighbours are kept; ``parse_ts`` turns a column of epoch numbers or ISO-8601 strings into
UTC microsecond timestamps, vectorised.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import BinaryIO, Iterator

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from zeekwatch.readers.base import RAW_LIMIT, IngestLog, file_size
from zeekwatch.schema import TS, TS_MAX_SECONDS, TS_MIN_SECONDS

BLOCK_SIZE = 8 << 20  # bytes of whole lines handed to a parser at a time
MAX_LINE = 32 << 20  # a longer line is rejected unread (follow's read bound is the same)
SMALL_FILE = 1 << 20  # smaller files skip DuckDB: its connection and plan cost ~25 ms, their parse ~1 ms
GLOB_CHARS = set("*?[")  # DuckDB would expand these in a file name

# ISO-8601 strings that carry a zone: "...Z", "...+0000", "...-05:00", "...+01"


def blocks_only(path: str) -> bool:
    """Whether a JSON-lines file is read as blocks of lines from the start, without DuckDB's
    ``read_json`` (Zeek JSON and EVE alike): it is small, or its name holds characters DuckDB
    would expand as a glob."""
    return bool(set(path) & GLOB_CHARS) or file_size(path) < SMALL_FILE


_ZONE_RE = r"(Z|z|[+-]\d\d(:?\d\d)?)$"
_NUMBER_RE = r"^\s*-?\d+(\.\d*)?([eE][-+]?\d+)?\s*$"
_SPACE_LINE = re.compile(rb"\n[ \t\r]+\n")


@dataclass
class Block:
    data: bytes  # whole lines; ends with b"\n" unless it is the end of a file without one
    first_line: int  # 1-based physical line number of the first line in ``data``
    at_eof: bool  # the last line of ``data`` is the file's last line


def iter_blocks(f: BinaryIO, block_size: int | None = None, path: str | None = None,
                log: IngestLog | None = None, max_line: int | None = None) -> Iterator[Block]:
    """Whole-line blocks of about ``block_size`` bytes; a longer line makes a longer block.

    A line longer than ``max_line`` bytes (``MAX_LINE``: a record no sensor writes, e.g. a
    decompression bomb with no newline) is not held: it is rejected (``log``) and skipped up
    to its newline, so memory stays bounded by ``block_size + max_line``."""
    block_size = block_size or BLOCK_SIZE
    max_line = max_line or MAX_LINE
    line = 1
    tail = b""
    skipping = False
    while True:
        data = f.read(block_size)
        if not data:
            if tail and not skipping:
                yield Block(tail, line, True)
            return
        if skipping:
            nl = data.find(b"\n")
            if nl < 0:
                continue
            data, skipping, line = data[nl + 1:], False, line + 1
        data = tail + data
        cut = data.rfind(b"\n")
        if cut < 0:
            tail = data
            if len(tail) > max_line:
                if log is not None:
                    log.reject(path, line, f"line longer than {max_line} bytes; skipped", tail[:RAW_LIMIT])
                tail, skipping = b"", True
            continue
        tail = data[cut + 1:]
        block = data[:cut + 1]
        yield Block(block, line, False)
        line += block.count(b"\n")
        if len(tail) > max_line:  # a long line after the last newline: same as above
            if log is not None:
                log.reject(path, line, f"line longer than {max_line} bytes; skipped", tail[:RAW_LIMIT])
            tail, skipping = b"", True


def reject_reason(exc: Exception, is_last_unterminated: bool) -> str:
    msg = str(exc).split("\n", 1)[0]
    if is_last_unterminated:
        return f"truncated last line (no newline at end of file): {msg}"
    return f"malformed JSON: {msg}"


def parse_lines(block: Block, path: str, log: IngestLog) -> Iterator[tuple[int, bytes, dict]]:
    """(line number, raw line, object) for every line of ``block`` that is a JSON object.

    Blank lines are ignored; a line that is not JSON, or JSON that is not an object, is
    recorded with ``log.reject`` and skipped. A last line without a newline at the end of the
    file that does not parse is reported as truncated, not as malformed.
    """
    lines = block.data.split(b"\n")
    unterminated = block.at_eof and not block.data.endswith(b"\n")
    if not unterminated:
        lines.pop()  # the empty string after the final newline
    last = len(lines) - 1
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            log.reject(path, block.first_line + i, reject_reason(exc, unterminated and i == last), raw)
            continue
        if not isinstance(obj, dict):
            log.reject(path, block.first_line + i, f"not a JSON object (a {type(obj).__name__})", raw)
            continue
        yield block.first_line + i, raw, obj


def skip_records(block: Block, count: int) -> tuple[Block | None, int]:
    """Drop the first ``count`` non-blank lines of ``block``; return the rest and what is left to skip."""
    if count <= 0:
        return block, 0
    data = block.data
    terminated = data.endswith(b"\n")
    lines_in_block = data.count(b"\n") + (0 if terminated else 1)
    last_blank = not terminated and not data[data.rfind(b"\n") + 1:].strip()
    if lines_in_block <= count and not last_blank and not _has_blank_line(data):
        return None, count - lines_in_block  # the common case: skip the block whole
    lines = data.split(b"\n")
    for i, raw in enumerate(lines):
        if count == 0:
            rest = b"\n".join(lines[i:])
            return (Block(rest, block.first_line + i, block.at_eof) if rest else None), 0
        if raw.strip():
            count -= 1
    return None, count


def _has_blank_line(data: bytes) -> bool:
    first = data[:data.find(b"\n") + 1]
    return not first.strip() or b"\n\n" in data or _SPACE_LINE.search(data) is not None


# --- timestamps -------------------------------------------------------------------------

@dataclass
class TsStats:
    """What ``parse_ts`` saw, for the per-file notes."""

    no_zone: int = 0  # ISO strings without a zone, read as UTC
    bad: int = 0  # values that are not a timestamp (NULL)
    out_of_range: int = 0  # times before 1970 or after 2200 (NULL; readers reject them first)


_YEAR_RE = re.compile(r"^\s*([+-]?\d{4,})-")


def ts_problem(v) -> str | None:
    """Why a record's raw ``ts`` value cannot be a timestamp (out of range), or None.

    Cheap enough to run per record (a type test and a compare). Text that is not a number
    and does not start with a year is left to ``parse_ts`` (NULL and a note)."""
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        seconds = v
    elif isinstance(v, str):
        m = _YEAR_RE.match(v)
        if m:
            year = int(m.group(1))
            if 1970 <= year < 2200:
                return None
            return f"timestamp {v[:40]!r} out of range (years 1970 to 2199)"
        if not re.match(_NUMBER_RE, v):
            return None
        try:
            seconds = float(v)
        except ValueError:
            return None
    else:
        return None
    if TS_MIN_SECONDS <= seconds < TS_MAX_SECONDS:  # False for NaN
        return None
    return f"timestamp {str(v)[:40]!r} out of range (epoch seconds 0 to {TS_MAX_SECONDS})"


def _in_range_us(us: pa.Array, stats: TsStats) -> pa.Array:
    """int64 microseconds with values outside the range made NULL (counted)."""
    ok = pc.and_(pc.greater_equal(us, TS_MIN_SECONDS * 1_000_000),
                 pc.less(us, TS_MAX_SECONDS * 1_000_000))
    bad = (pc.sum(pc.invert(ok)).as_py() or 0)
    if bad:
        stats.out_of_range += bad
        us = pc.if_else(ok, us, pa.scalar(None, pa.int64()))
    return us


def _epoch_to_ts(arr: pa.Array, stats: TsStats | None = None) -> pa.Array:
    seconds = arr.cast(pa.float64())
    ok = pc.and_(pc.greater_equal(seconds, float(TS_MIN_SECONDS)),
                 pc.less(seconds, float(TS_MAX_SECONDS)))  # NaN: False
    bad = pc.sum(pc.invert(ok)).as_py() or 0
    if bad:
        if stats is not None:
            stats.out_of_range += bad
        seconds = pc.if_else(ok, seconds, pa.scalar(None, pa.float64()))
    us = pc.round(pc.multiply(seconds, 1e6))
    return us.cast(pa.int64()).cast(TS)


def _iso_to_ts(arr: pa.Array, stats: TsStats) -> tuple[pa.Array, int]:
    """(timestamps, how many had no zone); raises ArrowInvalid when a value is not ISO-8601.
    (A column whose every value has a zone was cast by ``parse_ts`` already.)"""
    naive = pc.invert(pc.match_substring_regex(arr, _ZONE_RE))
    as_utc = pc.if_else(naive, pc.binary_join_element_wise(arr, "Z", ""), arr)
    us = _in_range_us(as_utc.cast(TS).cast(pa.int64()), stats)
    return us.cast(TS), pc.sum(naive).as_py() or 0


def _slow_ts(values: list, stats: TsStats) -> pa.Array:
    out = []
    for v in values:
        out.append(_one_ts(v, stats))
    return pa.array(out, type=pa.int64()).cast(TS)


def _one_ts(v, stats: TsStats) -> int | None:
    if v is None:
        return None
    if ts_problem(v) is not None:
        stats.out_of_range += 1
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return round(v * 1e6)
    text = str(v).strip()
    if re.match(_NUMBER_RE, text):
        return round(float(text) * 1e6)
    try:
        t = dt.datetime.fromisoformat(text.replace("z", "Z"))
    except (ValueError, OverflowError):
        stats.bad += 1
        return None
    if t.tzinfo is None:
        stats.no_zone += 1
        t = t.replace(tzinfo=dt.timezone.utc)
    try:
        delta = t - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    except OverflowError:
        stats.out_of_range += 1
        return None
    us = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    if not TS_MIN_SECONDS * 1_000_000 <= us < TS_MAX_SECONDS * 1_000_000:
        stats.out_of_range += 1
        return None
    return us


def parse_ts(arr: pa.Array | pa.ChunkedArray, stats: TsStats) -> pa.Array:
    """Epoch seconds (number or numeric string) or ISO-8601 text → UTC timestamps (µs).

    ISO text without a zone is read as UTC and counted in ``stats.no_zone``; anything that is
    not a timestamp becomes NULL and is counted in ``stats.bad``.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_timestamp(arr.type):
        return _in_range_us(arr.cast(TS).cast(pa.int64()), stats).cast(TS)
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        return _epoch_to_ts(arr, stats)
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), TS)
    arr = arr.cast(pa.string())
    try:  # the common case first: Arrow casts only ISO-8601 text with a UTC offset (never a number)
        zoned = arr.cast(TS)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    else:
        return _in_range_us(zoned.cast(pa.int64()), stats).cast(TS)
    try:
        numeric = pc.match_substring_regex(arr, _NUMBER_RE)
        if pc.all(numeric).as_py() is not False:
            return _epoch_to_ts(arr.cast(pa.float64()), stats)
        if not pc.any(numeric).as_py():
            out, no_zone = _iso_to_ts(arr, stats)
            stats.no_zone += no_zone
            return out
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    return _slow_ts(arr.to_pylist(), stats)


def ts_notes(path: str, stats: TsStats) -> list[str]:
    notes = []
    if stats.no_zone:
        notes.append(f"{path}: {stats.no_zone} timestamps without a UTC offset, read as UTC")
    if stats.bad:
        notes.append(f"{path}: {stats.bad} timestamps that could not be parsed (NULL)")
    if stats.out_of_range:
        notes.append(f"{path}: {stats.out_of_range} timestamps out of range (before 1970 or "
                     f"after 2199; NULL)")
    return notes
