"""Test helpers: run detectors on small record sets given as dicts.

Records use the normalized column names (schema.py); ``ts`` may be epoch seconds.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from zeekwatch import schema
from zeekwatch.config import Config, from_dict
from zeekwatch.engine.core import Engine


def _ts(v):
    if isinstance(v, (int, float)):
        return dt.datetime.fromtimestamp(v, dt.timezone.utc)
    return v


def table(name: str, rows) -> pa.Table:
    rows = [dict(r, ts=_ts(r.get("ts"))) for r in rows]
    if not rows:
        return schema.empty(name)
    fields = schema.TABLES[name]
    cols = {f.name: [r.get(f.name) for r in rows] for f in fields}
    return pa.Table.from_pydict(cols, schema=fields)


def engine_with(config: Config | None = None, **tables) -> Engine:
    eng = Engine(config or Config())
    for name, rows in tables.items():
        eng.load(name, table(name, rows))
    return eng


def detect(detector: str | list[str], config: Config | dict | None = None,
           known_services=None, **tables) -> list[dict]:
    """Run one (or several) detectors on the given records; return candidate findings."""
    if isinstance(config, dict):
        config = from_dict(config)
    only = [detector] if isinstance(detector, str) else list(detector)
    eng = engine_with(config, **tables)
    try:
        return eng.detect(only=only, known_services=known_services)
    finally:
        eng.close()


def detect_files(paths, only=None, config: Config | dict | None = None, log=None) -> list[dict]:
    """Read real files through the readers (plan + ingest) and run detectors on them, with
    the tables in memory (as Arrow chunks) and in the scratch database file: both must find
    the same; returns those findings.

    ``log`` (an IngestLog) lets the caller look at rejects and notes afterwards."""
    from zeekwatch.readers import plan
    from zeekwatch.readers.base import IngestLog

    if isinstance(config, dict):
        config = from_dict(config)
    found = []
    for i, storage in enumerate(({"table_bytes": 0}, {})):
        run_log = log if log is not None and i == 0 else IngestLog()
        eng = Engine(config or Config(), **storage)
        try:
            eng.ingest(plan([str(p) for p in paths], run_log), run_log)
            found.append(eng.detect(only=[only] if isinstance(only, str) else only))
        finally:
            eng.close()
    assert found[0] == found[1], "in-memory and scratch-file storage found different things"
    return found[0]


def conn(ts, orig_h, resp_h, resp_p, proto="tcp", conn_state="SF", history=None, orig_p=40000,
         uid=None, **kw):
    """One conn record with sensible defaults (history follows conn_state for TCP)."""
    if history is None and proto == "tcp":
        history = {"S0": "S", "REJ": "Sr", "SF": "ShADadFf", "S1": "ShAD", "RSTO": "ShADR",
                   "SH": "SF", "OTH": "D", "RSTOS0": "SR"}.get(conn_state)
    row = dict(ts=ts, uid=uid or f"C{abs(hash((ts, orig_h, resp_h, resp_p, orig_p))) % 10**12}",
               orig_h=orig_h, orig_p=orig_p, resp_h=resp_h, resp_p=resp_p, proto=proto,
               conn_state=conn_state, history=history)
    row.update(kw)
    return row


CONN_FIELDS = [("ts", "time"), ("uid", "string"), ("id.orig_h", "addr"), ("id.orig_p", "port"),
               ("id.resp_h", "addr"), ("id.resp_p", "port"), ("proto", "enum"),
               ("service", "string"), ("duration", "interval"), ("orig_bytes", "count"),
               ("resp_bytes", "count"), ("conn_state", "string"), ("local_orig", "bool"),
               ("local_resp", "bool"), ("missed_bytes", "count"), ("history", "string"),
               ("orig_pkts", "count"), ("orig_ip_bytes", "count"), ("resp_pkts", "count"),
               ("resp_ip_bytes", "count"), ("tunnel_parents", "set[string]")]
DNS_FIELDS = [("ts", "time"), ("uid", "string"), ("id.orig_h", "addr"), ("id.orig_p", "port"),
              ("id.resp_h", "addr"), ("id.resp_p", "port"), ("proto", "enum"),
              ("trans_id", "count"), ("query", "string"), ("qtype_name", "string"),
              ("rcode_name", "string"), ("answers", "vector[string]")]


def zeek_tsv(path, log_path: str, rows: list[dict], fields=None) -> str:
    """Write ``rows`` (normalized names; ``ts`` epoch) as a Zeek TSV log the way Zeek does."""
    fields = fields or {"conn": CONN_FIELDS, "dns": DNS_FIELDS}[log_path]

    def cell(name, typ, row):
        key = name[3:] if name.startswith("id.") else name
        v = row.get(key)
        if v is None:
            return "(empty)" if typ.startswith(("set", "vector")) and key in row else "-"
        if typ.startswith(("set", "vector")):
            return ",".join(v) if v else "(empty)"
        if typ == "time":
            return f"{v:.6f}"
        return str(v)

    lines = ["#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)", "#unset_field\t-",
             f"#path\t{log_path}", "#open\t2024-01-01-00-00-00",
             "#fields\t" + "\t".join(n for n, _ in fields),
             "#types\t" + "\t".join(t for _, t in fields)]
    for r in rows:
        lines.append("\t".join(cell(n, t, r) for n, t in fields))
    lines.append("#close\t2024-01-01-01-00-00")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)
