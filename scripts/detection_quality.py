#!/usr/bin/env python3
"""Detection quality per detector: fired / expected / false alarms, on generated and real data.

    python scripts/detection_quality.py [--bench DIR] [--shared DIR] [--json OUT] [--only NAME]

Runs ``zeekwatch analyze`` (this checkout's, or with ``--code DIR`` another checkout's, e.g.
a worktree of main for the "before" figures) on:

- the generated bench data (scripts/gen_logs.py output with truth.json): a finding is right
  when an expected truth entry has its detector and host (``bench.score_truth``'s rule),
  a false alarm otherwise; "expected" counts the planted (non-secondary) entries;
- the shared real data (``../shared/data``): ``REAL`` lists per data set the findings that are
  right (``expect``) and those known to be wrong (``wrong``), each as (detector, host); a
  finding in neither list is counted as *unlabelled*.

Prints one table per data set and a total per detector (docs/detection-quality.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from bench import read_findings  # noqa: E402

# (name, paths under shared/data, config dict, expect [(detector, host)], wrong [(detector, host)])
REAL = [
    ("slips horizontal scan", ["slips/port-scans/horizontal"], {},
     [("horizontal_scan", "10.0.2.112")], []),
    ("slips vertical scan", ["slips/port-scans/vertical"], {},
     [("vertical_scan", "192.168.1.9")], []),
    ("slips test9 mixed", ["slips/test9-mixed-zeek-dir"], {}, [],
     # one 30 ms connection with 113 bytes and no service (the issue): not C2 evidence
     [("non_web_on_web_port:c2", "*")]),
    ("zeek irc baseline (masked ts)", ["zeek/baseline/irc.basic.conn.log"], {},
     [("c2_port", "10.0.0.7")], []),
    ("rita proxy clients", ["rita/proxy"], {}, [],
     [("horizontal_scan", "*"), ("vertical_scan", "*"), ("ping_sweep", "*")]),
    ("mixed captures", ["chrissanders-packets", "zeek/traces", "malcolm-pcap"], {},
     # nmap from 172.16.0.8 against scanme.nmap.org (64.13.134.52)
     [("vertical_scan", "172.16.0.8")],
     # ordinary SSH/DNS/HTTP/SMTP/FTP servers of unrelated captures (the issue)
     [("new_listener", "*")]),
    ("rita missing_host 72 h", ["perf"], {}, [],
     # 64.225.56.201 is a public server: nothing there is an infected internal host
     [("horizontal_scan", "*"), ("ping_sweep", "*")]),
]


def run(paths: list[str], cfg: dict, db: Path) -> list[dict]:
    """Analyse ``paths`` with the zeekwatch on sys.path; the stored findings."""
    from zeekwatch.app.analyze import analyze
    from zeekwatch.config import from_dict

    analyze(paths, from_dict(cfg), str(db))
    return read_findings(db)


def _key(f: dict) -> str:
    if f["detector"] == "non_web_on_web_port":
        return f"non_web_on_web_port:{f['threat']}"
    return f["detector"]


def score_real(found: list[dict], expect, wrong) -> dict[str, Counter]:
    per: dict[str, Counter] = defaultdict(Counter)
    for det, _ in expect:
        per[det]["expected"] += 1
    for det, host in expect:
        if any(f["detector"] == det and host in ("*", f["host"]) for f in found):
            per[det]["found"] += 1
    for f in found:
        per[f["detector"]]["fired"] += 1
        if any(f["detector"] == d and h in ("*", f["host"]) for d, h in expect):
            continue
        if any(_key(f) == d or f["detector"] == d and h in ("*", f["host"])
               for d, h in wrong):
            per[f["detector"]]["false"] += 1
        else:
            per[f["detector"]]["unlabelled"] += 1
    return per


def score_bench(found: list[dict], truth: list[dict]) -> dict[str, Counter]:
    def match(e, f):
        return e["detector"] == f["detector"] and e["host"] in ("*", f["host"])

    per: dict[str, Counter] = defaultdict(Counter)
    planted = [e for e in truth if e["expected"] and not e["secondary"]]
    good = [e for e in truth if e["expected"]]
    for e in planted:
        per[e["detector"]]["expected"] += 1
        if any(match(e, f) for f in found):
            per[e["detector"]]["found"] += 1
    for f in found:
        per[f["detector"]]["fired"] += 1
        if not any(match(e, f) for e in good):
            per[f["detector"]]["false"] += 1
    return per


def table(per: dict[str, Counter]) -> list[str]:
    rows = ["| detector | fired | found / expected | false alarms | unlabelled |",
            "|---|---:|---:|---:|---:|"]
    for det in sorted(per):
        c = per[det]
        rows.append(f"| {det} | {c['fired']} | {c['found']} / {c['expected']} | {c['false']} | "
                    f"{c['unlabelled']} |")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", action="append", help="a gen_logs.py data set (repeatable; default: "
                    "bench-data/c2000000-d500000-s1 and its -noisy twin where present)")
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--json", help="write the counts as JSON here")
    ap.add_argument("--only", help="only the data set with this name (a bench directory's name, "
                    "or a REAL name)")
    ap.add_argument("--code", help="import zeekwatch from this checkout instead (e.g. a worktree "
                    "of main, for the 'before' figures)")
    args = ap.parse_args()
    if args.code:
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
        sys.path.insert(0, str(Path(args.code).resolve()))
    out: dict[str, dict] = {}
    details: dict[str, list] = {}
    with tempfile.TemporaryDirectory() as tmp:
        default = [ROOT / "bench-data" / f"c2000000-d500000-s1{x}" for x in ("", "-noisy")]
        for bench in [Path(b) for b in args.bench or default]:
            if not (bench / "truth.json").exists() or args.only not in (None, bench.name):
                continue
            import tomllib

            cfg = tomllib.loads((bench / "zeekwatch.toml").read_text())
            found = run([str(bench / "conn.log"), str(bench / "dns.log")], cfg, Path(tmp) / f"{bench.name}.db")
            truth = json.loads((bench / "truth.json").read_text())["entries"]
            out[bench.name] = score_bench(found, truth)
            details[bench.name] = found
        for i, (name, rel, cfg, expect, wrong) in enumerate(REAL):
            if args.only not in (None, name):
                continue
            paths = [str(Path(args.shared) / r) for r in rel]
            if not all(Path(p).exists() for p in paths):
                print(f"skipped {name}: {args.shared} has no {rel}", file=sys.stderr)
                continue
            found = run(paths, cfg, Path(tmp) / f"r{i}.db")
            out[name] = score_real(found, expect, wrong)
            details[name] = found
    for name, per in out.items():
        print(f"\n### {name}\n")
        print("\n".join(table(per)))
        for f in details[name]:
            print(f"    {f['detector']:<20} {f['threat']:<10} {f['host']} {f.get('peer') or ''} "
                  f"{f.get('key') or ''} :: {f['summary'][:140]}")
    if args.json:
        Path(args.json).write_text(json.dumps({k: {d: dict(c) for d, c in v.items()}
                                               for k, v in out.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
