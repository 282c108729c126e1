"""Zeek JSON logs (one object per line) → normalized tables.

Handles what Zeek's JSON writer and its exporters produce: epoch-number ``ts`` and ISO-8601
string ``ts`` ("2018-03-24T17:15:20.865716Z"), ``id.orig_h``-style keys, ``_path`` /
``_write_ts`` / ``_node_name`` extras, ``": "`` spacing, gzip (multi-member too) and relative
timestamps (kept as they are, with a note).

The log type of each record comes from ``_path`` (``schema.ZEEK_PATHS``) or, when absent, from
the record's shape — never from the file name:

- ``conn_state`` → conn
- ``query`` / ``qtype_name`` → dns
- ``server_name`` / ``cipher`` / ``resumed`` → tls (Zeek's ssl.log)
- ``method`` / ``uri`` / ``status_code`` → http
- ``mailfrom`` / ``rcptto`` / ``helo`` → smtp
- ``proto`` + ``uid`` with a conn field (``duration``, ``history``, ``orig_pkts``,
  ``orig_bytes``) → conn. (``proto`` + ``uid`` alone is not enough: notice.log has both.)

Records of other types are counted: a file with nothing usable lands in ``log.skipped``; a
file that mixes usable and unusable records gets one note.

Speed: a file of 1 MB or more goes through DuckDB's ``read_json`` (smaller ones take the
robust path at once: a DuckDB connection costs more than their parse; that connection may
read only the one file: ``allowed_paths``, external access off) with an explicit column list, two
threads (about 1.3 M rows per CPU-second; the main thread normalizes and inserts the previous
batches meanwhile), streamed in Arrow batches in file order. DuckDB stops at the first line it
cannot read; the rows it delivered before that are kept and the rest of the file is read by
the robust path (with two threads DuckDB may stop before delivering the ~16 MB ahead of the
bad line, which the robust path then reads too): bounded blocks of whole lines through
``pyarrow.json`` with an explicit schema, and only a block that fails goes line by line
through orjson to find and reject the bad lines (``log.reject`` with the physical line number; a cut last line is "truncated").
A batch or block holding a ``ts`` outside 1970..2199 (``schema.TS_MAX_SECONDS``) also takes the
line-by-line path, so those records are rejects with their line numbers. A truncated gzip keeps
what it decoded (a reject names the byte offset); a line over 32 MB is rejected unread.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterator

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from zeekwatch import schema
from zeekwatch.readers.base import (
    Chunk,
    IngestLog,
    duckdb_reader,
    file_size,
    head,
    is_gzip,
    open_binary,
)
from zeekwatch.readers.jsonlines import (
    Block,
    blocks_only,
    TsStats,
    iter_blocks,
    parse_lines,
    parse_ts,
    skip_records,
    ts_notes,
    ts_problem,
)
from zeekwatch.readers.readahead import read_ahead

S, I32, I64, F64, B = pa.string(), pa.int32(), pa.int64(), pa.float64(), pa.bool_()
SL = pa.list_(pa.string())

# Every JSON key any supported log needs (plus the ones that decide a record's type).
FIELDS: dict[str, pa.DataType] = {
    "_path": S, "_node_name": S, "uid": S, "id.orig_h": S, "id.orig_p": I32,
    "id.resp_h": S, "id.resp_p": I32, "proto": S, "service": S, "duration": F64,
    "orig_bytes": I64, "resp_bytes": I64, "conn_state": S, "history": S, "orig_pkts": I64,
    "resp_pkts": I64, "community_id": S, "query": S, "qtype_name": S, "rcode_name": S,
    "answers": SL, "host": S, "uri": S, "user_agent": S, "method": S, "status_code": I64,
    "server_name": S, "cipher": S, "resumed": B, "local_orig": B, "local_resp": B, "helo": S, "mailfrom": S, "rcptto": SL,
}
RENAME = {
    "id.orig_h": "orig_h", "id.orig_p": "orig_p", "id.resp_h": "resp_h", "id.resp_p": "resp_p",
    "_node_name": "sensor", "status_code": "status", "mailfrom": "mail_from", "rcptto": "rcpt_to",
}
SHAPES = [  # (table, keys any of which decides it), in order of precedence
    ("conn", ("conn_state",)),
    ("dns", ("query", "qtype_name")),
    ("tls", ("server_name", "cipher", "resumed")),
    ("http", ("method", "uri", "status_code")),
    ("smtp", ("mailfrom", "rcptto", "helo")),
]
CONN_HINTS = ("duration", "history", "orig_pkts", "orig_bytes")
_DUCK_TYPES = {S: "VARCHAR", I32: "INTEGER", I64: "BIGINT", F64: "DOUBLE", B: "BOOLEAN", SL: "VARCHAR[]"}
RELATIVE_BEFORE = 946684800  # 2000-01-01: earlier epoch times are offsets from a capture start
BATCH_ROWS = 122_880
READ_OPTIONS = pj.ReadOptions(use_threads=True, block_size=1 << 20)  # 1 MB: blocks in parallel
SMALL_READ_OPTIONS = pj.ReadOptions(use_threads=False)  # threads cost ~3 ms to start


def _ts_type(path: str) -> pa.DataType:
    """float64 when the first record's ``ts`` is a number, else string (ISO-8601)."""
    for raw in head(path).split(b"\n")[:50]:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            ts = obj.get("ts")
            return F64 if isinstance(ts, (int, float)) and not isinstance(ts, bool) else S
    return S


class _Normalizer:
    """Turns raw batches (JSON keys as columns) into normalized chunks, per record type."""

    def __init__(self, path: str, log: IngestLog):
        self.path = path
        self.log = log
        self.ts = TsStats()
        self.unused: Counter = Counter()
        self.used = 0
        self.earliest = None

    def chunks(self, raw: pa.Table) -> Iterator[Chunk]:
        path = raw.column("_path")
        if 0 < path.null_count < raw.num_rows:  # some records name their type, some do not
            named = pc.is_valid(path)
            yield from self.chunks(raw.filter(named))
            yield from self.chunks(raw.filter(pc.invert(named)))
            return
        kinds = self._by_shape(raw) if path.null_count else self._by_path(path)
        for table, mask in kinds:
            part = raw if mask is None else raw.filter(mask)
            self.used += part.num_rows
            yield table, self._normalize(table, part)

    def _by_path(self, path: pa.ChunkedArray) -> list[tuple[str, pa.Array | None]]:
        """(table, mask) per supported ``_path`` value; mask None means every row."""
        tables: dict[str, list[str]] = {}
        counts = pc.value_counts(path).to_pylist()
        for item in counts:
            table = schema.ZEEK_PATHS.get(item["values"])
            if table is None:
                self.unused[item["values"]] += item["counts"]
            else:
                tables.setdefault(table, []).append(item["values"])
        if len(tables) == 1 and len(counts) == len(next(iter(tables.values()))):
            return [(next(iter(tables)), None)]
        return [(t, pc.fill_null(pc.is_in(path, value_set=pa.array(ps)), False))
                for t, ps in tables.items()]

    def _by_shape(self, raw: pa.Table) -> list[tuple[str, pa.Array | None]]:
        """(table, mask) per record shape (``SHAPES``, in order); others counted as unused."""
        taken = pa.repeat(False, raw.num_rows)
        out = []
        for table, keys in SHAPES + [("conn", None)]:
            mask = self._conn_hint(raw) if keys is None else _any_valid(raw, keys)
            mask = pc.and_(mask, pc.invert(taken))
            taken = pc.or_(taken, mask)
            count = pc.sum(mask).as_py() or 0
            if count == raw.num_rows:
                return [(table, None)]
            if count:
                out.append((table, mask))
        rest = raw.num_rows - (pc.sum(taken).as_py() or 0)
        if rest:
            self.unused["unknown shape"] += rest
        return out

    @staticmethod
    def _conn_hint(raw: pa.Table) -> pa.Array:
        base = pc.and_(pc.is_valid(raw.column("proto")), pc.is_valid(raw.column("uid")))
        return pc.and_(base, _any_valid(raw, CONN_HINTS))

    def _normalize(self, table: str, part: pa.Table) -> pa.Table:
        names = [RENAME.get(n, n) for n in part.column_names]
        part = part.rename_columns(names)
        ts = parse_ts(part.column("ts"), self.ts)
        low = pc.min(ts).as_py()
        if low is not None and (self.earliest is None or low < self.earliest):
            self.earliest = low
        part = part.set_column(names.index("ts"), "ts", ts)
        part = part.append_column("source", schema.source_column(self.path, part.num_rows))
        return schema.conform(table, part)

    def finish(self) -> None:
        for note in ts_notes(self.path, self.ts):
            self.log.note(note)
        if self.earliest is not None and self.earliest.timestamp() < RELATIVE_BEFORE:
            self.log.note(f"{self.path}: timestamps start at {self.earliest.isoformat()} "
                          f"(relative to a capture start?); kept as they are")
        if not self.unused:
            return
        kinds = ", ".join(f"{k} ({n})" for k, n in sorted(self.unused.items()))
        if self.used:
            self.log.note(f"{self.path}: {sum(self.unused.values())} records not used: {kinds}")
        else:
            self.log.skipped.append((self.path, f"Zeek JSON log of a type zeekwatch does not use: {kinds}"))


def _any_valid(raw: pa.Table, keys) -> pa.Array:
    mask = pc.is_valid(raw.column(keys[0]))
    for k in keys[1:]:
        mask = pc.or_(mask, pc.is_valid(raw.column(k)))
    return mask


def read(path: str, log: IngestLog) -> Iterator[Chunk]:
    """Yield normalized chunks from a Zeek JSON log; bad lines go to ``log.reject``."""
    path = str(path)
    norm = _Normalizer(path, log)
    ts_type = _ts_type(path)
    if blocks_only(path):
        yield from _robust(path, log, norm, ts_type, skip=0)
    else:
        yield from _fast(path, log, norm, ts_type)
    norm.finish()


def _fast(path: str, log: IngestLog, norm: _Normalizer, ts_type) -> Iterator[Chunk]:
    """DuckDB; at the first line it cannot read, the robust path resumes after the rows delivered."""
    batches = read_ahead(_duckdb_batches(path, ts_type), depth=2)  # parsed while the last is used
    delivered = 0
    while True:
        try:
            raw = next(batches, None)
        except (duckdb.Error, OSError, pa.ArrowException):  # DuckDB errors surface via Arrow too
            yield from _robust(path, log, norm, ts_type, skip=delivered)
            return
        if raw is None:
            log.advance(file_size(path))
            return
        if _bad_ts(raw):  # the robust path rejects those records with their line numbers
            batches.close()
            yield from _robust(path, log, norm, ts_type, skip=delivered)
            return
        delivered += raw.num_rows
        yield from norm.chunks(raw)


def _bad_ts(raw: pa.Table) -> bool:
    """True when some record's ``ts`` lies outside the range of timestamps (``schema``)."""
    stats = TsStats()
    parse_ts(raw.column("ts"), stats)
    return stats.out_of_range > 0


def _schema(ts_type: pa.DataType) -> pa.Schema:
    return pa.schema([("ts", ts_type)] + list(FIELDS.items()))


def _duckdb_batches(path: str, ts_type: pa.DataType) -> Iterator[pa.Table]:
    cols = ", ".join(f"'{f.name}': '{_DUCK_TYPES[f.type]}'" for f in _schema(ts_type))
    con = duckdb_reader()
    try:
        # this connection reads the one file and nothing else
        con.execute("SET allowed_paths = $paths", {"paths": [path]})
        con.execute("SET enable_external_access = false")
        query = (f"SELECT * FROM read_json($path, format='newline_delimited', records=true, "
                 f"compression=$comp, columns={{{cols}}})")
        params = {"path": path, "comp": "gzip" if is_gzip(path) else "none"}
        reader = con.sql(query, params=params).to_arrow_reader(BATCH_ROWS)
        for batch in reader:  # two threads: batches of ~40 k rows rather than BATCH_ROWS
            yield pa.Table.from_batches([batch])
    finally:
        con.close()


def _robust(path, log, norm, ts_type, skip: int) -> Iterator[Chunk]:
    """Blocks of whole lines through pyarrow.json; a failing block line by line (orjson)."""
    options = pj.ParseOptions(explicit_schema=_schema(ts_type), unexpected_field_behavior="ignore")
    with open_binary(path, log, tolerant=True) as f:
        for block in iter_blocks(f, path=path, log=log):
            block, skip = skip_records(block, skip)
            if block is None:
                continue
            try:
                raw = pj.read_json(pa.BufferReader(block.data), parse_options=options,
                                   read_options=READ_OPTIONS if len(block.data) > (1 << 20)
                                   else SMALL_READ_OPTIONS)
            except pa.ArrowInvalid:
                raw = None
            if raw is None or _bad_ts(raw):
                raw = _line_by_line(block, path, log, options)
            yield from norm.chunks(raw)


def _line_by_line(block: Block, path: str, log: IngestLog, options) -> pa.Table:
    """Reject the lines that are not JSON objects or whose ``ts`` is out of range; read the
    rest leniently."""
    good = []
    for line, raw, obj in parse_lines(block, path, log):
        problem = ts_problem(obj.get("ts"))
        if problem is None:
            good.append((line, raw, obj))
        else:
            log.reject(path, line, problem, raw)
    try:
        return pj.read_json(pa.BufferReader(b"\n".join(raw for _, raw, _ in good) + b"\n"),
                            parse_options=options)
    except pa.ArrowInvalid:
        return _from_objects([obj for _, _, obj in good], options.explicit_schema)


def _from_objects(objs: list[dict], sch: pa.Schema) -> pa.Table:
    """Columns from parsed objects; a value of the wrong type becomes NULL."""
    cols = []
    for field in sch:
        values = [o.get(field.name) for o in objs]
        if field.name == "ts":
            cols.append(pa.array([None if v is None else str(v) for v in values], type=S))
            continue
        try:
            cols.append(pa.array(values, type=field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            cols.append(pa.array([_coerce(v, field.type) for v in values], type=field.type))
    return pa.Table.from_arrays(cols, names=[f.name for f in sch])


def _coerce(value, typ: pa.DataType):
    try:
        return pa.scalar(value, type=typ).as_py()
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
        pass
    if isinstance(value, str) and (pa.types.is_integer(typ) or pa.types.is_floating(typ)):
        try:
            number = float(value)
            return int(number) if pa.types.is_integer(typ) and number.is_integer() else (
                number if pa.types.is_floating(typ) else None)
        except ValueError:
            return None
    return None
