"""The DNS events of a DuckDB batch → rows of ``dns.EVENTS``, by column.

DuckDB reads the ``dns`` object with the type ``DUCKDB_TYPE``: every scalar as text. Text is
what the event-by-event code (``dns.event_values``) takes too, except that it takes a number
as its text only where any value becomes text (``rrname``, ``rrtype``, ``rcode``), never as
an answer, and takes no booleans, objects or arrays as text at all, while DuckDB writes
those as ``true`` or as JSON. So a value that could have been one of them where it matters —
``true``/``false``, text starting with ``{`` or ``[``, a number in an answer, a number with a
fraction or an exponent anywhere — raises ``Fallback``, and the batch is read by the
event-by-event path, which decides. Real DNS never looks like that: the check only costs a
pass over the columns.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from zeekwatch.readers.eve.dns import (
    _FIELD_SEP, _KEY_SEP, DNS_PORTS, EVENTS, QUESTION, REQUEST, REQUESTS, RESPONSE, RESPONSES)

_Q = 'STRUCT("rrname" VARCHAR, "rrtype" VARCHAR)'
DUCKDB_TYPE = ('STRUCT("type" VARCHAR, "id" VARCHAR, "version" VARCHAR, "rrname" VARCHAR, '
               '"rrtype" VARCHAR, "rcode" VARCHAR, "rdata" VARCHAR, '
               f'"queries" {_Q}[], "answers" STRUCT("rdata" VARCHAR)[], "grouped" MAP(VARCHAR, VARCHAR[]))')
_NOT_TEXT = r"^(true|false)$|^[\[{]"
_FLOAT = r"^-?\d+(\.\d+([eE][-+]?\d+)?|[eE][-+]?\d+)$"
_NUMBER = r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$"
_AS_TEXT = f"{_NOT_TEXT}|{_FLOAT}"  # values taken as text (numbers too, as Python writes them)
_TEXT_ONLY = f"{_NOT_TEXT}|{_NUMBER}"  # values taken only when they are JSON text


class Fallback(Exception):
    """These DNS events need the event-by-event path."""


def _check(arr: pa.Array, pattern: str) -> pa.Array:
    if len(arr) and pc.any(pc.fill_null(pc.match_substring_regex(arr, pattern), False)).as_py():
        raise Fallback("a DNS value that may not be text")
    return arr


def _int_text(arr: pa.Array) -> pa.Array:
    """Whole numbers as their plain text (``as_int``), NULL as "None"."""
    ok = pc.fill_null(pc.match_substring_regex(arr, r"^-?\d+$"), True)
    if not pc.all(ok).as_py():
        raise Fallback("a DNS id or version that is not a plain whole number")
    try:
        return pc.fill_null(pc.cast(pc.cast(arr, pa.int64()), pa.string()), "None")
    except (pa.ArrowInvalid, OverflowError) as exc:
        raise Fallback(str(exc)) from None


def _lists(parents: list[np.ndarray], values: list[pa.Array], n: int) -> pa.ListArray:
    """A list per row 0..n-1 from (row, value) pairs given in several parts; a row's values
    keep their order within and across parts."""
    rows = np.concatenate(parents) if parents else np.zeros(0, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    flat = pa.concat_arrays(values).take(pa.array(order))
    offsets = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), flat)


def _flat(lists: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """(row of each element, elements) of a list column, NULL elements left out."""
    values = pc.list_flatten(lists)
    parents = pc.list_parent_indices(lists).to_numpy()
    keep = pc.is_valid(values)
    return parents[keep.to_numpy(zero_copy_only=False)], values.filter(keep)


def _questions(d: pa.StructArray) -> pa.ListArray:
    queries = pc.struct_field(d, "queries")
    parents, q = _flat(queries)
    single = np.flatnonzero(pc.is_null(queries).to_numpy(zero_copy_only=False))
    rrname = pa.concat_arrays([pc.struct_field(q, "rrname"), pc.struct_field(d, "rrname").take(single)])
    rrtype = pa.concat_arrays([pc.struct_field(q, "rrtype"), pc.struct_field(d, "rrtype").take(single)])
    both = pa.StructArray.from_arrays([_check(rrname, _AS_TEXT), _check(rrtype, _AS_TEXT)],
                                      fields=list(QUESTION))
    return _lists([parents, single], [both], len(d))


def _answers(d: pa.StructArray) -> pa.ListArray:
    """``answers[].rdata``; where there are none, ``grouped``'s values; else ``rdata``."""
    n = len(d)
    parents, records = _flat(pc.struct_field(d, "answers"))
    rdata = pc.struct_field(records, "rdata")
    keep = pc.is_valid(rdata).to_numpy(zero_copy_only=False)
    parts, values = [parents[keep]], [_check(rdata.filter(pa.array(keep)), _TEXT_ONLY)]
    none = np.bincount(parts[0], minlength=n) == 0
    grouped = pc.struct_field(d, "grouped")
    rows = np.flatnonzero(none & pc.is_valid(grouped).to_numpy(zero_copy_only=False))
    if len(rows):
        picked = grouped.take(pa.array(rows))  # a map: its value lists, row by row
        lists = pa.ListArray.from_arrays(picked.offsets, picked.items, mask=picked.is_null())
        g_rows, entries = _flat(lists)
        v_rows, v = _flat(entries)
        parts.append(rows[g_rows[v_rows]])
        values.append(_check(v, _TEXT_ONLY))
        none[parts[-1]] = False
    top = pc.struct_field(d, "rdata")
    rows = np.flatnonzero(none & pc.is_valid(top).to_numpy(zero_copy_only=False))
    parts.append(rows)
    values.append(_check(top.take(pa.array(rows)), _TEXT_ONLY))
    return _lists(parts, values, n)


def _text(arr: pa.Array) -> pa.Array:
    return pc.fill_null(pc.cast(arr, pa.string()), "None")


def _key(c: dict, dns_id: pa.Array) -> pa.Array:
    """``dns.flow_key`` and the id: the endpoints are joined only for events without a flow id."""
    key = pc.binary_join_element_wise("f", c["uid"], _KEY_SEP, dns_id, "")
    missing = np.flatnonzero(pc.is_null(c["uid"]).to_numpy(zero_copy_only=False))
    if not len(missing):
        return key
    e = {k: c[k].take(pa.array(missing)) for k in ("src_ip", "src_port", "dest_ip", "dest_port")}
    a = pc.binary_join_element_wise(_text(e["src_ip"]), _text(e["src_port"]), _FIELD_SEP)
    b = pc.binary_join_element_wise(_text(e["dest_ip"]), _text(e["dest_port"]), _FIELD_SEP)
    first = pc.less_equal(a, b)
    ends = pc.binary_join_element_wise("e", pc.if_else(first, a, b), _FIELD_SEP, pc.if_else(first, b, a),
                                       _KEY_SEP, dns_id.take(pa.array(missing)), "")
    where = np.full(len(key), -1)
    where[missing] = np.arange(len(missing))
    return pc.if_else(pc.is_null(c["uid"]), ends.take(pa.array(where, mask=where < 0)), key)


def extract(dns: pa.Array, c: dict[str, pa.Array], numbers: np.ndarray) -> pa.Table:
    """Rows of ``EVENTS`` for DNS events: ``dns`` the objects as DuckDB read them, ``c`` the
    fields every event has (``columnar.Columns._common``), ``numbers`` the events' numbers
    in the file. Events that are neither request nor response are left out."""
    d = dns.combine_chunks() if isinstance(dns, pa.ChunkedArray) else dns
    typ = pc.struct_field(d, "type")
    kind = pc.if_else(pc.is_in(typ, value_set=pa.array(REQUESTS)), REQUEST,
                      pc.if_else(pc.is_in(typ, value_set=pa.array(RESPONSES)), RESPONSE, 0))
    sel = pc.fill_null(pc.not_equal(kind, 0), False)
    if not pc.any(sel).as_py():
        return EVENTS.empty_table()
    d, kind = d.filter(sel), kind.filter(sel).cast(pa.int8())
    c = {k: v.filter(sel) for k, v in c.items()}
    response = pc.equal(kind, RESPONSE)
    v3 = pc.fill_null(pc.equal(_int_text(pc.struct_field(d, "version")), "3"), False)
    ports = pa.array(DNS_PORTS, pa.int64())
    from_server = pc.and_(pc.is_in(pc.cast(c["src_port"], pa.int64()), value_set=ports),
                          pc.invert(pc.is_in(pc.cast(c["dest_port"], pa.int64()), value_set=ports)))
    swap = pc.and_(response, pc.or_(v3, pc.fill_null(from_server, False)))
    key = _key(c, _int_text(pc.struct_field(d, "id")))
    none = pa.nulls(len(d), pa.string())
    return pa.table({
        "e": pa.array(numbers[sel.to_numpy(zero_copy_only=False)], pa.int64()), "kind": kind, "key": key,
        "ts": c["ts"], "uid": c["uid"],
        "orig": pc.if_else(swap, c["dest_ip"], c["src_ip"]), "resp": pc.if_else(swap, c["src_ip"], c["dest_ip"]),
        "community_id": c["community_id"], "questions": _questions(d),
        "rcode": pc.if_else(response, _check(pc.struct_field(d, "rcode"), _AS_TEXT), none),
        "answers": _answers(d)}, schema=EVENTS)
