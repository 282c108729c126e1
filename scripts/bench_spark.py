#!/usr/bin/env python3
"""Spark engine benchmark (``scripts/bench.py spark`` runs this): DuckDB vs Spark, side by side.

    python scripts/bench_spark.py [--data DIR] [--large DIR] [--repeat 1] [--json OUT]

Steps, each a fresh ``zeekwatch analyze`` process (driver), in alternating order per repeat:

    duckdb         the DuckDB engine on the dataset (conn.log + dns.log)
    spark-local2   --engine spark --spark-master local[2] on the same rows, laid out as Zeek
                   rotates them (``split``: the logs cut into parts of --part-rows rows, each
                   with its header), because a file is the Spark reader's unit of parallelism
    spark-local1   the same on local[1] (the parallel speed-up is local2 vs local1)
    spark-startup  --engine spark local[2] on a one-row log: the fixed cost (JVM, session,
                   the detectors' query planning and job scheduling)

Reported per step: wall seconds (median), peak RSS of the Python driver (``os.wait4``), peak
RSS of the Spark JVM (VmHWM; in local mode it is the executor too) and the findings' digest
(ids, hosts, peers, keys, times, observed: must be equal across engines). With --large DIR
(a 10x dataset) the Spark local[2]/[1] and DuckDB steps run on it too, for linear growth,
driver RSS and the speed-up targets.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ZW = [sys.executable, "-m", "zeekwatch.cli.main"]
DRIVER_RSS_MB = 1024
SPEEDUP = 1.6
LINEAR = 1.2


def split(src: Path, out: Path, part_rows: int) -> list[Path]:
    """``src`` (Zeek TSV) cut into files of ``part_rows`` rows, each with the header block."""
    out.mkdir(parents=True, exist_ok=True)
    done = out / f"{src.name}.done"
    if done.exists():
        return sorted(out.glob(f"{src.stem}.part*.log"))
    header, parts, rows, f = [], [], 0, None
    with open(src, "rb") as fh:
        for line in fh:
            if line.startswith(b"#"):
                if not line.startswith(b"#close"):
                    header.append(line) if f is None else None
                continue
            if f is None or rows >= part_rows:
                if f:
                    f.close()
                parts.append(out / f"{src.stem}.part{len(parts):04d}.log")
                f = open(parts[-1], "wb")
                f.writelines(header)
                rows = 0
            f.write(line)
            rows += 1
    if f:
        f.close()
    done.touch()
    return parts


def driver(argv: list[str]) -> int:
    """Child: run one analyze in this process; print seconds and the JVM's peak RSS."""
    engine, master, db, config, *paths = argv
    from zeekwatch.app.analyze import analyze
    from zeekwatch.config import load

    cfg = load(config)
    cfg.engine.kind, cfg.engine.spark_master = engine, master
    jvm = {}
    if engine == "spark":
        from zeekwatch.engine.spark import engine as spark_engine

        close = spark_engine.SparkEngine.close

        def close_and_measure(self):  # the JVM's peak, read before the session stops
            pid = self.spark.sparkContext._gateway.proc.pid
            with open(f"/proc/{pid}/status") as f:
                jvm.update(l.split(":")[0:2] for l in f if l.startswith("VmHWM"))
            close(self)
        spark_engine.SparkEngine.close = close_and_measure
    t0 = time.perf_counter()
    res = analyze(paths, cfg, db)
    secs = time.perf_counter() - t0
    print(json.dumps({"seconds": secs, "jvm_kb": int(jvm.get("VmHWM", "0 kB").split()[0]),
                      "rows": sum(res.log.records.values()), "findings": len(res.findings)}))
    return 0


def digest(db: Path) -> str:
    rows = sqlite3.connect(db).execute(
        "SELECT id, detector, host, peer, key, first_seen, last_seen, round(observed, 6) "
        "FROM findings ORDER BY id").fetchall()
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:12]


def run_measured(step, engine, master, paths, config, tmp) -> dict:
    """``run`` with the driver's own peak RSS from wait4 (the JVM is measured inside)."""
    db = tmp / f"{step}.db"
    for s in ("", "-wal", "-shm"):
        Path(f"{db}{s}").unlink(missing_ok=True)
    argv = [sys.executable, __file__, "--driver", engine, master, str(db), str(config), *map(str, paths)]
    with open(tmp / f"{step}.out", "wb") as out, open(tmp / f"{step}.err", "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status):
        return {"error": (tmp / f"{step}.err").read_text(errors="replace")[-1500:]}
    res = json.loads((tmp / f"{step}.out").read_text().strip().splitlines()[-1])
    res.update(wall=wall, driver_mb=usage.ru_maxrss / 1024, jvm_mb=res["jvm_kb"] / 1024,
               digest=digest(db))
    return res


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--driver"]:
        return driver(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT / "bench-data" / "c2000000-d500000-s1"))
    ap.add_argument("--large", help="a 10x dataset directory (gen_logs.py output)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--part-rows", type=int, default=250_000)
    ap.add_argument("--json", metavar="OUT")
    a = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="zw-bench-spark-"))
    sets = {"base": Path(a.data)} | ({"large": Path(a.large)} if a.large else {})
    tiny = tmp / "tiny" / "conn.log"
    tiny.parent.mkdir()
    with open(sets["base"] / "conn.log") as f:  # the header block and one row
        head = [line for _, line in zip(range(20), f)]
    first = next(i for i, line in enumerate(head) if not line.startswith("#"))
    tiny.write_text("".join(head[:first + 1]))
    steps = []
    for name, data in sets.items():
        parts = split(data / "conn.log", data / "parts", a.part_rows) + \
            split(data / "dns.log", data / "parts", a.part_rows)
        config = data / "zeekwatch.toml"
        steps += [(f"{name}/duckdb", "duckdb", "local[2]", [data / "conn.log", data / "dns.log"], config),
                  (f"{name}/spark-local2", "spark", "local[2]", parts, config),
                  (f"{name}/spark-local1", "spark", "local[1]", parts, config)]
    steps.append(("spark-startup", "spark", "local[2]", [tiny], sets["base"] / "zeekwatch.toml"))
    results: dict[str, list[dict]] = {s[0]: [] for s in steps}
    for i in range(a.repeat):
        order = steps if i % 2 == 0 else list(reversed(steps))
        for step, engine, master, paths, config in order:
            r = run_measured(step.replace("/", "-"), engine, master, paths, config, tmp)
            print(f"{step}: {json.dumps(r)[:300]}", file=sys.stderr, flush=True)
            results[step].append(r)
    print(report(results, os.getloadavg()))
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


def med(rs: list[dict], key: str) -> float:
    vals = [r[key] for r in rs if key in r]
    return statistics.median(vals) if vals else float("nan")


def report(results: dict[str, list[dict]], load: tuple) -> str:
    lines = [f"load average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} "
             f"on {os.cpu_count()} CPUs (the machine is shared: times are noisy)", "",
             f"{'step':24} {'seconds':>9} {'driver MB':>10} {'JVM MB':>8} {'rows':>10}  findings digest"]
    for step, rs in results.items():
        errs = [r["error"] for r in rs if "error" in r]
        if errs:
            lines.append(f"{step:24} FAILED: {errs[0].splitlines()[-1][:120] if errs[0] else '?'}")
            continue
        lines.append(f"{step:24} {med(rs, 'wall'):9.1f} {med(rs, 'driver_mb'):10.0f} "
                     f"{med(rs, 'jvm_mb'):8.0f} {int(med(rs, 'rows')):>10,}  {rs[0]['digest']}")
    lines.append("")
    for name in ("base", "large"):
        d, s2, s1 = (results.get(f"{name}/{k}") for k in ("duckdb", "spark-local2", "spark-local1"))
        if not d or any("error" in r for r in d + s2 + s1):
            continue
        same = {r["digest"] for r in d + s2 + s1}
        lines.append(f"{name}: same findings on both engines: {'yes' if len(same) == 1 else 'NO'}; "
                     f"local[2] vs local[1]: {med(s1, 'wall') / med(s2, 'wall'):.2f}x "
                     f"(target >= {SPEEDUP}x at 20 M rows); Spark local[2] / DuckDB: "
                     f"{med(s2, 'wall') / med(d, 'wall'):.1f}x; driver peak {med(s2, 'driver_mb'):.0f} MB "
                     f"(target < {DRIVER_RSS_MB} MB)")
    b, l = results.get("base/spark-local2"), results.get("large/spark-local2")
    if b and l and not any("error" in r for r in b + l):
        rows = med(l, "rows") / med(b, "rows")
        lines.append(f"growth: {med(l, 'wall') / med(b, 'wall'):.1f}x time for {rows:.1f}x rows "
                     f"(linear: <= {LINEAR * rows:.1f}x)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
