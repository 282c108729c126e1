"""The normalized tables: the contract between readers and detectors (docs/architecture.md).

Every reader produces Arrow tables with exactly these schemas (``conform`` fills missing
columns with NULL and casts). Names follow Zeek without the ``id.`` prefix. Unset values are
NULL, never 0; sets and vectors are lists; timestamps are UTC microseconds.
"""

from __future__ import annotations

import pyarrow as pa

from zeekwatch.text import path_text

TS = pa.timestamp("us", tz="UTC")
# The timestamps a record may carry: 1970-01-01 (Zeek's relative times start at 0) up to
# 2200-01-01 UTC. Anything else is not a time (1e300, -1e12, year 9999): the readers reject
# the record, and every later step (epoch seconds as float64, Python datetimes) stays exact.
TS_MIN_SECONDS = 0
TS_MAX_SECONDS = 7_258_118_400  # 2200-01-01T00:00:00Z
STR = pa.string()
PORT = pa.int32()
COUNT = pa.int64()
STRLIST = pa.list_(pa.string())
# the file a row came from: one value per file, so dictionary-encoded (as plain text it was
# a fifth of conn's memory: 86 MB of 2 M rows repeating one path)
SOURCE = pa.dictionary(pa.int32(), pa.string())


def source_column(path: str, n: int) -> pa.DictionaryArray:
    """The ``source`` column of ``n`` rows read from ``path``."""
    return pa.DictionaryArray.from_arrays(pa.repeat(pa.scalar(0, pa.int32()), n),
                                          pa.array([path_text(path)], pa.string()))

CONN = pa.schema([
    ("ts", TS), ("uid", STR), ("orig_h", STR), ("orig_p", PORT), ("resp_h", STR),
    ("resp_p", PORT), ("proto", STR), ("service", STR), ("duration", pa.float64()),
    ("orig_bytes", COUNT), ("resp_bytes", COUNT), ("conn_state", STR), ("history", STR),
    ("orig_pkts", COUNT), ("resp_pkts", COUNT), ("community_id", STR), ("sensor", STR),
    ("source", SOURCE),
    # Zeek's Site::is_local_addr of each end (NULL when the log does not say): what
    # ``networks.internal = "auto"`` learns from
    ("local_orig", pa.bool_()), ("local_resp", pa.bool_()),
])

DNS = pa.schema([
    ("ts", TS), ("uid", STR), ("orig_h", STR), ("resp_h", STR), ("query", STR),
    ("qtype_name", STR), ("rcode_name", STR), ("answers", STRLIST), ("community_id", STR),
    ("source", SOURCE),
])

ALERT = pa.schema([
    ("ts", TS), ("orig_h", STR), ("orig_p", PORT), ("resp_h", STR), ("resp_p", PORT),
    ("proto", STR), ("gid", COUNT), ("sid", COUNT), ("rev", COUNT), ("signature", STR),
    ("category", STR), ("severity", COUNT), ("action", STR), ("app_proto", STR),
    ("flow_id", COUNT), ("community_id", STR), ("source", SOURCE),
])

_FLOW_KEYS = [("ts", TS), ("uid", STR), ("orig_h", STR), ("resp_h", STR), ("resp_p", PORT)]

HTTP = pa.schema(_FLOW_KEYS + [
    ("host", STR), ("uri", STR), ("user_agent", STR), ("method", STR), ("status", COUNT),
    ("source", SOURCE),
])

TLS = pa.schema(_FLOW_KEYS + [("server_name", STR), ("source", SOURCE)])

SMTP = pa.schema(_FLOW_KEYS + [
    ("helo", STR), ("mail_from", STR), ("rcpt_to", STRLIST), ("source", SOURCE),
])

TABLES: dict[str, pa.Schema] = {
    "conn": CONN, "dns": DNS, "alert": ALERT, "http": HTTP, "tls": TLS, "smtp": SMTP,
}

# Zeek ``#path`` / ``_path`` values mapped to a normalized table. Anything else is skipped
# (counted in the run record), never guessed.
ZEEK_PATHS = {
    "conn": "conn", "open_conn": "conn", "conn_long": "conn",
    "dns": "dns", "http": "http", "ssl": "tls", "smtp": "smtp",
}


def empty(table: str) -> pa.Table:
    return TABLES[table].empty_table()


def conform(table: str, data: pa.Table) -> pa.Table:
    """Return ``data`` with exactly the schema of ``table``: missing columns NULL, extra dropped."""
    schema = TABLES[table]
    n = data.num_rows
    cols = []
    for field in schema:
        if field.name in data.column_names:
            col = data.column(field.name)
            if col.type != field.type:
                col = col.cast(field.type)
            cols.append(col)
        else:
            cols.append(pa.nulls(n, field.type))
    return pa.Table.from_arrays(cols, schema=schema)
