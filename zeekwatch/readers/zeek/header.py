"""Zeek TSV headers: the ``#`` directives, the column layout they imply, and headerless inference.

A Zeek ASCII log opens with a header block::

    #separator \\x09
    #set_separator	,
    #empty_field	(empty)
    #unset_field	-
    #path	conn
    #fields	ts	uid	id.orig_h	...
    #types	time	string	addr	...

``Header`` accumulates those directives (a new ``#separator`` starts a new block, so
concatenated logs work); ``compile_layout`` turns a header into a ``Layout``: which columns to
parse, as which Arrow types, and what they are called in the normalized table
(``schema.TABLES``). ``infer_conn_header`` recognises a headerless conn log by the shape of
its records. Nothing here reads files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pyarrow as pa

from zeekwatch import schema

# Zeek field -> normalized column, per table. Only columns that exist in the table's schema
# are used (``compile_layout``), so e.g. dns does not parse ports it does not keep.
_COMMON = {
    "ts": "ts", "uid": "uid", "id.orig_h": "orig_h", "id.orig_p": "orig_p",
    "id.resp_h": "resp_h", "id.resp_p": "resp_p", "community_id": "community_id",
    "_node_name": "sensor",
}
_PER_TABLE = {
    "conn": ["proto", "service", "duration", "orig_bytes", "resp_bytes", "conn_state",
             "history", "orig_pkts", "resp_pkts", "local_orig", "local_resp"],
    "dns": ["query", "qtype_name", "rcode_name", "answers"],
    "http": ["host", "uri", "user_agent", "method", ("status_code", "status")],
    "tls": ["server_name"],
    "smtp": ["helo", ("mailfrom", "mail_from"), ("rcptto", "rcpt_to")],
}

# Zeek types written as text that may hold ``(empty)`` for an empty value.
_EMPTY_CAPABLE = ("string", "set[", "vector[", "table[")

# What a field's values are parsed as, by the normalized column's type. Timestamps are parsed
# as float seconds and converted to microseconds afterwards; lists are split afterwards.
_PARSE_TYPE = {schema.TS: pa.float64(), schema.STRLIST: pa.string()}


def field_map(table: str) -> dict[str, str]:
    """Zeek field name -> normalized column name for ``table``."""
    names = schema.TABLES[table].names
    out = {f: c for f, c in _COMMON.items() if c in names}
    for item in _PER_TABLE[table]:
        zeek, col = item if isinstance(item, tuple) else (item, item)
        out[zeek] = col
    return out


def decode_escapes(text: str) -> str:
    r"""Turn Zeek's ``\xHH`` escapes (used in ``#separator \x09``) into characters."""
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), text)


@dataclass
class Header:
    """The directives seen so far in the current header block."""

    separator: str = "\t"
    set_separator: str = ","
    empty_field: str = "(empty)"
    unset_field: str = "-"
    path: str | None = None
    fields: list[str] | None = None
    types: list[str] | None = None
    fields_line: int | None = None  # physical line of ``#fields``, for messages
    inferred: str | None = None  # name of the inferred layout, for headerless logs

    def apply(self, line: str, line_no: int | None = None) -> bool:
        """Apply one ``#`` line; return True when it changed the layout of the data after it."""
        if line.startswith("#separator"):
            self.__init__()  # a new block starts: forget the previous one entirely
            self.separator = decode_escapes(line[len("#separator"):].lstrip(" \t"))
            return True
        name, value = self._split(line)
        if name == "#set_separator":
            self.set_separator = decode_escapes(value)
        elif name == "#empty_field":
            self.empty_field = value
        elif name == "#unset_field":
            self.unset_field = value
        elif name == "#path":
            self.path = value
        elif name == "#fields":
            self.fields, self.fields_line = value.split(self.separator), line_no
        elif name == "#types":
            self.types = value.split(self.separator)
        else:
            return False  # #open, #close, BTest banners and other comments change nothing
        return True

    def _split(self, line: str) -> tuple[str, str]:
        if self.separator and self.separator in line:
            name, _, value = line.partition(self.separator)
        else:  # BTest writes "#open XXXX-..." with a space
            name, _, value = line.partition(" ")
        return name, value


class Refused(Exception):
    """A header block that cannot be used; its data lines are rejected with this reason."""


@dataclass(frozen=True)
class Layout:
    """How to parse the data lines under one header block into one normalized table."""

    table: str
    names: list[str]  # every column of the file, in order
    include: list[str]  # the Zeek fields actually parsed
    parse_types: dict[str, pa.DataType]  # Zeek field -> Arrow type it is parsed as
    rename: dict[str, str]  # Zeek field -> normalized column
    empty_to_blank: list[str] = field(default_factory=list)  # columns where (empty) means ""
    lists: list[str] = field(default_factory=list)  # columns split on the set separator
    separator: str = "\t"
    set_separator: str = ","
    empty_field: str = "(empty)"
    unset_field: str = "-"


# Without ``#path`` the log type is recognised by fields only that log has.
_SIGNATURES = [
    ("conn", {"conn_state", "history"}), ("dns", {"query", "qtype_name"}),
    ("http", {"uri", "status_code"}), ("smtp", {"mailfrom", "rcptto"}),
]


def table_for(header: Header) -> str | None:
    """The normalized table of a header's ``#path`` (None: a Zeek log type we do not read).

    A header without ``#path`` is recognised by its ``#fields`` (conn, dns, http, smtp).
    """
    if header.path is not None:
        return schema.ZEEK_PATHS.get(header.path)
    for table, needed in _SIGNATURES:
        if needed <= set(header.fields or ()):
            return table
    return None


def compile_layout(header: Header, table: str) -> Layout:
    """Build the parse plan for ``table``; raise ``Refused`` when the header is unusable."""
    fields = header.fields
    if not fields:
        raise Refused("data line without a #fields header")
    if header.types is not None and len(header.types) != len(fields):
        raise Refused(
            f"#fields has {len(fields)} names but #types has {len(header.types)}; "
            f"header block refused")
    if len(set(fields)) != len(fields):
        raise Refused("#fields names a column twice; header block refused")
    if len(header.separator) != 1:
        raise Refused(f"unsupported #separator {header.separator!r} (one character expected)")
    types = dict(zip(fields, header.types or []))
    mapping = {f: c for f, c in field_map(table).items() if f in fields}
    if not mapping:
        raise Refused(f"#fields names none of the fields of a Zeek {table} log; header block refused")
    target = schema.TABLES[table]
    parse_types, blanks, lists = {}, [], []
    for zeek, col in mapping.items():
        typ = target.field(col).type
        parse_types[zeek] = _PARSE_TYPE.get(typ, typ)
        if typ == schema.STRLIST:
            lists.append(col)
        elif typ == schema.STR and types.get(zeek, "string").startswith(_EMPTY_CAPABLE):
            blanks.append(col)
    return Layout(
        table=table, names=list(fields), include=list(mapping), parse_types=parse_types,
        rename=mapping, empty_to_blank=blanks, lists=lists, separator=header.separator,
        set_separator=header.set_separator, empty_field=header.empty_field,
        unset_field=header.unset_field,
    )


# ---------------------------------------------------------------- headerless conn logs

_CONN_HEAD = "ts uid id.orig_h id.orig_p id.resp_h id.resp_p proto service duration " \
             "orig_bytes resp_bytes conn_state local_orig".split()
_CONN_TAIL = "missed_bytes history orig_pkts orig_ip_bytes resp_pkts resp_ip_bytes " \
             "tunnel_parents".split()
_TYPES = {
    "ts": "time", "id.orig_h": "addr", "id.resp_h": "addr", "id.orig_p": "port",
    "id.resp_p": "port", "proto": "enum", "duration": "interval", "local_orig": "bool",
    "local_resp": "bool", "tunnel_parents": "set[string]", "ip_proto": "count",
}
_COUNTS = {"orig_bytes", "resp_bytes", "missed_bytes", "orig_pkts", "orig_ip_bytes",
           "resp_pkts", "resp_ip_bytes"}

# Zeek's default conn.log field lists of the common versions (name, fields).
_BASE_LAYOUTS = [
    ("Bro 2.0-2.4", _CONN_HEAD + _CONN_TAIL),
    ("Bro 2.5-Zeek 7", _CONN_HEAD + ["local_resp"] + _CONN_TAIL),
    ("Zeek 8 (ip_proto)", _CONN_HEAD + ["local_resp"] + _CONN_TAIL + ["ip_proto"]),
    ("Bro 2.5-Zeek 7 with community_id", _CONN_HEAD + ["local_resp"] + _CONN_TAIL + ["community_id"]),
    ("Zeek 8 (ip_proto) with community_id",
     _CONN_HEAD + ["local_resp"] + _CONN_TAIL + ["ip_proto", "community_id"]),
]
CONN_LAYOUTS = _BASE_LAYOUTS + [
    (name + " with _node_name", ["_node_name"] + fields) for name, fields in _BASE_LAYOUTS
]

_FLOAT = re.compile(r"^(-?\d+(\.\d+)?|X+\.X+)$")
_SHAPES = {
    "ts": _FLOAT, "uid": re.compile(r"^C[0-9A-Za-z]{5,}$"),
    "id.orig_h": re.compile(r"^[0-9A-Fa-f.:]*[.:][0-9A-Fa-f.:]*(%\w+)?$"),
    "id.orig_p": re.compile(r"^\d{1,5}$"), "proto": re.compile(r"^(tcp|udp|icmp|unknown_transport)$"),
    "ip_proto": re.compile(r"^\d{1,3}$"), "community_id": re.compile(r"^(1:\S+|-)$"),
    "_node_name": re.compile(r"^[^\d\s][^\s]*$"),
}
_SHAPES["id.resp_h"], _SHAPES["id.resp_p"] = _SHAPES["id.orig_h"], _SHAPES["id.orig_p"]


def _matches(fields: list[str], values: list[str]) -> bool:
    if len(values) != len(fields):
        return False
    return all(_SHAPES[f].match(v) for f, v in zip(fields, values) if f in _SHAPES)


def infer_conn_header(lines: list[bytes]) -> Header | None:
    """A ``Header`` for headerless conn records, when nearly all sample lines fit one layout."""
    sample = [ln.decode("utf-8", "replace").split("\t") for ln in lines if ln.strip()]
    if not sample:
        return None
    best, best_hits = None, 0
    for name, fields in CONN_LAYOUTS:
        hits = sum(_matches(fields, values) for values in sample)
        if hits > best_hits:
            best, best_hits = (name, fields), hits
    if best is None or best_hits < 0.8 * len(sample):
        return None
    name, fields = best
    types = [_TYPES.get(f, "count" if f in _COUNTS else "string") for f in fields]
    return Header(path="conn", fields=list(fields), types=types, inferred=name)
