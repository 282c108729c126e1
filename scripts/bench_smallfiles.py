"""Many small files (``scripts/bench.py smallfiles``): one-line files per format.

A site that ships each rotated log or each sensor's minute of EVE as its own file hands
zeekwatch thousands of tiny inputs; the cost that matters there is per file (opening, sniffing
the format, the reader's set-up), not per row. ``make(folder, fmt, n)`` writes ``n`` files of
one conn record each, in Zeek TSV (with its header block), Zeek JSON or Suricata EVE (a
``flow`` event), from distinct internal hosts to one web server, in working hours: no detector
fires, so the time is the readers' and the store's.
"""

from __future__ import annotations

import json
from pathlib import Path

FORMATS = ("tsv", "json", "eve")
NAMES = {"tsv": "conn.{:05d}.log", "json": "conn.{:05d}.log", "eve": "eve.{:05d}.json"}
TSV_HEADER = (
    "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n"
    "#open\t2024-01-01-09-00-00\n"
    "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration"
    "\torig_bytes\tresp_bytes\tconn_state\n"
    "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\n")
START = 1704099600  # 2024-01-01 09:00 UTC


def record(fmt: str, i: int) -> str:
    ts, host, uid = START + i, f"10.{i // 62500 % 250}.{i // 250 % 250}.{i % 250 + 1}", f"C{i:017d}"
    if fmt == "tsv":
        return (TSV_HEADER + f"{ts}.0\t{uid}\t{host}\t40000\t93.184.216.34\t443\ttcp\tssl\t1.5"
                "\t100\t200\tSF\n#close\t2024-01-01-10-00-00\n")
    if fmt == "json":
        return json.dumps({"ts": ts, "uid": uid, "id.orig_h": host, "id.orig_p": 40000,
                           "id.resp_h": "93.184.216.34", "id.resp_p": 443, "proto": "tcp",
                           "service": "ssl", "duration": 1.5, "orig_bytes": 100, "resp_bytes": 200,
                           "conn_state": "SF"}) + "\n"
    stamp = f"2024-01-01T{9 + i // 3600 % 8:02d}:{i // 60 % 60:02d}:{i % 60:02d}.000000+0000"
    return json.dumps({"timestamp": stamp, "flow_id": 1000 + i, "event_type": "flow",
                       "src_ip": host, "src_port": 40000, "dest_ip": "93.184.216.34",
                       "dest_port": 443, "proto": "TCP", "app_proto": "tls",
                       "flow": {"pkts_toserver": 5, "pkts_toclient": 5, "bytes_toserver": 500,
                                "bytes_toclient": 900, "start": stamp, "end": stamp, "age": 1,
                                "state": "closed", "reason": "timeout"}}) + "\n"


def make(folder: Path, fmt: str, n: int) -> Path:
    """``folder/fmt`` holding ``n`` one-record files (kept between runs once complete)."""
    out = folder / fmt
    done = out / ".done"
    if done.exists() and done.read_text() == str(n):
        return out
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        old.unlink()
    for i in range(n):
        (out / NAMES[fmt].format(i)).write_text(record(fmt, i))
    done.write_text(str(n))
    return out
