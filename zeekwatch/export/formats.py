"""Writing export records: JSON lines (zeekwatch's own record, ECS or OCSF) or CSV."""

from __future__ import annotations

import csv
import json
from typing import Iterable, TextIO

from zeekwatch.export import ecs, ocsf
from zeekwatch.export.record import CSV_COLUMNS, flat

FORMATS = ("jsonl", "csv", "ecs", "ocsf")
CSV_DANGEROUS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """A CSV cell that a spreadsheet will not run as a formula: text starting with
    = + - @ TAB or CR gets a leading single quote. Numbers stay numbers."""
    if isinstance(value, str) and value.startswith(CSV_DANGEROUS):
        return "'" + value
    return value


def document(rec: dict, fmt: str, change: str | None = None) -> dict:
    """The JSON document of a record in ``fmt`` (jsonl, ecs or ocsf); ``change`` is follow's
    "new" or "updated"."""
    if fmt == "ecs":
        doc = ecs.document(rec)
        if change:
            doc.setdefault("zeekwatch", {})["change"] = change
        return doc
    if fmt == "ocsf":
        return ocsf.event(rec, change)
    if change:
        rec = dict(rec, change=change)
    return rec


def line(rec: dict, fmt: str, change: str | None = None) -> str:
    """One JSON line (no newline) of a record."""
    return json.dumps(document(rec, fmt, change), default=str, ensure_ascii=False)


def write(recs: Iterable[dict], fmt: str, fh: TextIO) -> int:
    """Write the records to ``fh`` in ``fmt``; returns how many."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (known: {', '.join(FORMATS)})")
    n = 0
    if fmt == "csv":
        w = csv.writer(fh)  # RFC 4180: CRLF, so a CR inside a cell is quoted
        w.writerow(CSV_COLUMNS)
        for rec in recs:
            row = flat(rec)
            w.writerow([csv_cell(row.get(k)) for k in CSV_COLUMNS])
            n += 1
        return n
    for rec in recs:
        fh.write(line(rec, fmt) + "\n")
        n += 1
    return n
