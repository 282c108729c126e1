"""Zeek TSV data lines -> Arrow, columnar: a fast path and a checked path.

``parse_fast`` hands a range of data lines to pyarrow's CSV reader with the layout's column
types (multi-threaded, C++ all the way) and returns None at the first problem of any kind.
``parse_checked`` is the fallback for such ranges only: it reads the selected columns as
text, single-threaded so pyarrow reports physical line numbers, validates every column with
vectorised regular expressions, reports the bad lines and casts the rest (lines with invalid
UTF-8 are found first, with a loop over that damaged range only). ``finish`` turns a parsed
table into the normalized schema. No Python loop runs per good row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from zeekwatch import schema
from zeekwatch.readers.zeek.header import Layout

# pyarrow's unit of parallel work, and the size of the chunks the tables are made of: a
# 32 MB piece parses as 4 blocks on 2 cores, and DuckDB scans 4 chunks of ~64 k rows as fast
# as one (1 MB blocks made 32 chunks of ~8 k rows: twice as slow to scan, so they were copied
# into one; 8 MB blocks need no copy: 0.1 CPU-s less per 2 M conn rows)
BLOCK_SIZE = 8 << 20
THREADS_FROM = 1 << 20  # bytes: smaller ranges parse in the calling thread
TS_LIMIT = float(schema.TS_MAX_SECONDS)  # a later "timestamp" is not one (schema)

_ZEEK_NAMES = {pa.float64(): "number", pa.int64(): "count", pa.int32(): "port", pa.bool_(): "bool"}
_PATTERNS = {
    "ts": r"^\d{1,10}(\.\d*)?$",  # not negative; the upper bound is checked as a number
    pa.float64(): r"^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d{1,3})?$",
    pa.int64(): r"^-?\d{1,18}$",
    pa.int32(): r"^\d{1,9}$",
    pa.bool_(): r"^[TF]$",
}
_MASKED = r"^X+\.X+$"  # BTest baselines mask timestamps as XXXXXXXXXX.XXXXXX


def _parse_options(layout: Layout, handler=None) -> pacsv.ParseOptions:
    return pacsv.ParseOptions(
        delimiter=layout.separator, quote_char=False, escape_char=False,
        ignore_empty_lines=False, invalid_row_handler=handler)


def _convert_options(layout: Layout, types: dict) -> pacsv.ConvertOptions:
    return pacsv.ConvertOptions(
        column_types=types, include_columns=layout.include, null_values=[layout.unset_field],
        strings_can_be_null=True, quoted_strings_can_be_null=False,
        true_values=["T"], false_values=["F"])  # Zeek's bool (local_orig, local_resp)


def parse_fast(data, layout: Layout) -> pa.Table | None:
    """Parse data lines with the layout's types; None when any line is not perfect.

    Blank lines are not ignored, so they fail the timestamp conversion: when this returns a
    table, its row count is exactly the number of physical lines in ``data``.
    """
    if "ts" not in layout.include:
        return None
    try:
        table = pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(column_names=layout.names, block_size=BLOCK_SIZE,
                                           # threads cost ~3 ms to start: not for a few lines
                                           use_threads=len(data) > THREADS_FROM),
            parse_options=_parse_options(layout),
            convert_options=_convert_options(layout, layout.parse_types))
    except pa.ArrowInvalid:
        return None
    ts = table.column("ts")
    if pc.all(pc.and_(pc.less(ts, TS_LIMIT), pc.greater_equal(ts, 0.0))).as_py() is False:
        return None
    return table


@dataclass
class Checked:
    """What ``parse_checked`` found: good rows, bad lines (1-based within the range)."""

    table: pa.Table
    lines: int
    rejects: list[tuple[int | None, str, bytes]] = field(default_factory=list)
    masked: int = 0


def _line_spans(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    newlines = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
    starts = np.concatenate([[0], newlines + 1])
    ends = np.concatenate([newlines, [len(data)]])
    if len(data) == 0 or data[-1:] == b"\n":
        starts, ends = starts[:-1], ends[:-1]
    return starts, ends


def _empty(layout: Layout) -> pa.Table:
    return pa.schema([(f, layout.parse_types[f]) for f in layout.include]).empty_table()


def _count_reason(got: int, layout: Layout, last_cut: bool) -> str:
    if last_cut:
        return f"truncated record at end of data (no newline): {got} of {len(layout.names)} fields"
    return f"wrong number of fields: {got}, expected {len(layout.names)}"


def _clean_utf8(data: bytes, layout: Layout, at_eof: bool, rejects: list) -> bytes:
    """Reject the lines holding invalid UTF-8 where it matters and blank them (line numbers stay).

    pyarrow decodes the text of invalid rows as UTF-8, and string columns must be valid, so
    this runs before parsing; a Python loop, but only over a range known to be damaged.
    """
    try:
        data.decode("utf-8")
        return data
    except UnicodeDecodeError:
        pass
    sep, wanted = layout.separator.encode(), set(layout.include)
    lines = data.split(b"\n")
    for i, line in enumerate(lines):
        try:
            line.decode("utf-8")
            continue
        except UnicodeDecodeError as exc:
            field_no = line.count(sep, 0, exc.start)
        got = line.count(sep) + 1
        name = layout.names[field_no] if field_no < len(layout.names) else None
        if got != len(layout.names):
            reason = _count_reason(got, layout, at_eof and i == len(lines) - 1 and line != b"")
        elif name in wanted:
            reason = f"invalid UTF-8 in field '{name}'"
        else:  # in a column we do not keep: the record is fine
            lines[i] = line.decode("utf-8", "replace").encode()
            continue
        rejects.append((i + 1, reason, line))
        lines[i] = b""
    return b"\n".join(lines)


def parse_checked(data: bytes, layout: Layout, at_eof: bool = False) -> Checked:
    """Parse ``data`` by the line rules, but columnar: bad lines are reported, not fatal."""
    rejects: list = []
    data = _clean_utf8(data, layout, at_eof, rejects)
    if not data.strip(b"\n"):  # blank lines only (pyarrow calls that an empty CSV file)
        return Checked(_empty(layout), data.count(b"\n") + (data[-1:] != b"\n"), rejects)
    invalid = []

    def handler(row):
        invalid.append((row.number, row.actual_columns, row.text))
        return "skip"

    table = pacsv.read_csv(
        pa.py_buffer(data),
        read_options=pacsv.ReadOptions(
            column_names=layout.names, use_threads=False, block_size=max(len(data) + 1, BLOCK_SIZE)),
        parse_options=_parse_options(layout, handler),
        convert_options=_convert_options(layout, {f: pa.string() for f in layout.include}))
    starts, ends = _line_spans(data)
    out = Checked(table, len(starts), rejects)
    cut = at_eof and data[-1:] != b"\n"
    for number, got, text in invalid:
        reason = _count_reason(got, layout, cut and number == out.lines)
        out.rejects.append((number, reason, text.encode()))
    numbers = np.setdiff1d(np.arange(1, out.lines + 1), [n for n, _, _ in invalid])
    if len(numbers) == table.num_rows:
        blank = (ends - starts)[numbers - 1] == 0
    else:  # cannot happen with '\n' line ends; stay safe anyway
        numbers, blank = np.full(table.num_rows, -1), np.zeros(table.num_rows, bool)
    _validate(out, layout, numbers, blank, data, starts, ends)
    return out


def _validate(out: Checked, layout: Layout, numbers, blank, data, starts, ends) -> None:
    """Reject rows whose values do not parse as their column's type; cast the rest."""
    table = out.table
    bad = np.zeros(table.num_rows, bool)
    first_bad: dict[int, str] = {}
    masked = None
    for name in table.column_names:
        col = table.column(name)
        ok = _valid(col, layout.parse_types[name], name)
        if name == "ts":
            masked = _true(pc.match_substring_regex(col, _MASKED))
            ok |= masked
        col_bad = ~ok & ~blank
        for i in np.flatnonzero(col_bad & ~bad):
            first_bad[int(i)] = name
        bad |= col_bad
    for i in np.flatnonzero(bad):
        name = first_bad[int(i)]
        value = table.column(name)[int(i)].as_py()
        line = int(numbers[i])
        raw = data[starts[line - 1]:ends[line - 1]] if line > 0 else value
        out.rejects.append((line if line > 0 else None, _reason(name, layout, value), raw))
    out.rejects.sort(key=lambda r: r[0] or 0)
    keep = ~(bad | blank)
    if masked is not None:
        masked = masked[keep]
        out.masked = int(np.count_nonzero(masked))
    out.table = _cast(table.filter(pa.array(keep)), layout, masked)


def _true(mask) -> np.ndarray:
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), bool)


def _valid(col, target: pa.DataType, name: str) -> np.ndarray:
    """True where the text value is NULL or parses as ``target`` (vectorised)."""
    if target == pa.string():
        return np.ones(len(col), bool)
    pattern = _PATTERNS["ts"] if name == "ts" else _PATTERNS[target]
    ok = pc.match_substring_regex(col, pattern)
    if name == "ts":  # digits only by now: in range as a number too
        number = pc.if_else(ok, col, pa.scalar(None, pa.string())).cast(pa.float64())
        ok = pc.and_kleene(ok, pc.less(number, TS_LIMIT))
    return _true(pc.or_kleene(ok, pc.is_null(col)))


def _reason(name: str, layout: Layout, value: str) -> str:
    kind = "time" if name == "ts" else _ZEEK_NAMES[layout.parse_types[name]]
    reason = f"bad {kind} value {value[:80]!r} in field '{name}'"
    if name == "ts" and (value[:1].isdigit() or value[:1] == "-"):
        reason += f" (times are 0 to {schema.TS_MAX_SECONDS} epoch seconds: 1970 to 2199)"
    return reason


def _cast(table: pa.Table, layout: Layout, masked) -> pa.Table:
    cols = []
    for name in table.column_names:
        col = table.column(name)
        if name == "ts" and masked is not None and masked.any():
            col = pc.if_else(pa.array(masked), pa.scalar(None, pa.string()), col)
        target = layout.parse_types[name]
        if target == pa.bool_():
            cols.append(pc.equal(col, "T"))  # Zeek writes T / F
            continue
        cols.append(col if target == pa.string() else col.cast(target))
    return pa.Table.from_arrays(cols, names=table.column_names)


# ---------------------------------------------------------------- to the normalized schema

def _timestamps(col) -> pa.ChunkedArray:
    micros = pc.round(pc.multiply(col, 1e6))
    return micros.cast(pa.int64()).cast(schema.TS)


def _lists(col, layout: Layout):
    lists = pc.split_pattern(col, pattern=layout.set_separator)
    empty = pc.equal(col, layout.empty_field)
    if pc.any(empty).as_py():
        lists = pc.if_else(empty, pa.scalar([], schema.STRLIST), lists)
    return lists


def _blank_empty(col, layout: Layout):
    empty = pc.equal(col, layout.empty_field)
    if pc.any(empty).as_py():
        col = pc.if_else(empty, "", col)
    return col


def finish(table: pa.Table, layout: Layout, source: str) -> pa.Table:
    """Rename, convert (ts, lists, ``(empty)``) and conform a parsed table."""
    cols, names = [], []
    for zeek in table.column_names:
        name = layout.rename[zeek]
        col = table.column(zeek)
        if name == "ts":
            col = _timestamps(col)
        elif name in layout.lists:
            col = _lists(col, layout)
        elif name in layout.empty_to_blank:
            col = _blank_empty(col, layout)
        cols.append(col)
        names.append(name)
    cols.append(schema.source_column(source, table.num_rows))
    names.append("source")
    return schema.conform(layout.table, pa.Table.from_arrays(cols, names=names))
