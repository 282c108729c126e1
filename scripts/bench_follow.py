#!/usr/bin/env python3
"""The ``follow`` benchmark: a live sensor's conn.log written at a fixed rate while
``zeekwatch follow`` runs; latency from a planted scan's write to its finding in SQLite, and
the follower's RSS over time.

    python scripts/bench_follow.py [--seconds 180] [--rate 20000] [--lookback 90] [--json OUT]

(also run as the ``follow`` suite of scripts/bench.py). The writer appends Zeek TSV conn lines
(and the DNS lookups that resolve their destinations to dns.log) into a directory that
``zeekwatch follow DIR`` watches, in slices every 50 ms, with timestamps of the wall clock
(most rows 0-2 s old, as Zeek writes a connection when it ends; 0.5 % 60-120 s late).
Every ``--plant-every`` seconds a new internal host sweeps 25 addresses on tcp/23 within one
slice (a horizontal scan above the 20-host threshold). A reader thread polls the findings
table every 50 ms: latency = the moment the finding is visible in SQLite minus the moment
its last line was written (flushed). RSS of the follow process is sampled every second. When
the writing stops, the follower gets up to 30 s to commit every line (``catch_up_seconds``)
before it is stopped with SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

CLIENTS = [f"10.1.{i // 250}.{i % 250 + 1}" for i in range(2000)]
SERVERS = [f"10.0.1.{i + 1}" for i in range(20)] + [f"198.51.100.{i + 1}" for i in range(200)]
DNS_SERVER = "10.0.0.53"
CONFIG = f"""[networks]
internal = ["10.0.0.0/8"]
dns_servers = ["{DNS_SERVER}"]
"""
CONN_HEADER = (
    "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n"
    "#open\t2024-01-01-00-00-00\n"
    "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\t"
    "orig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\t"
    "orig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents\n"
    "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\t"
    "bool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]\n")
DNS_HEADER = (
    "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tdns\n"
    "#open\t2024-01-01-00-00-00\n"
    "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\ttrans_id\tquery\t"
    "qtype_name\trcode_name\tanswers\n"
    "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tcount\tstring\tstring\tstring\tvector[string]\n")


class Writer:
    """Appends background conn lines at ``rate``/s, DNS that resolves them, and planted scans."""

    def __init__(self, folder: Path, rate: int, plant_every: float, seed: int = 1):
        self.rng = random.Random(seed)
        self.rate, self.plant_every = rate, plant_every
        self.conn = open(folder / "conn.log", "a", buffering=1 << 20)
        self.dns = open(folder / "dns.log", "a", buffering=1 << 16)
        self.conn.write(CONN_HEADER)
        self.dns.write(DNS_HEADER)
        # each client talks to 3 servers (resolved by DNS): never 20 distinct hosts on a port
        self.peers = {c: self.rng.sample(SERVERS, 3) for c in CLIENTS}
        self.suffixes = [self._suffix() for _ in range(50_000)]
        self.n = 0
        self.planted: dict[str, float] = {}  # scanner host -> wall time its lines were flushed
        self.resolve_all(time.time() - 5)

    def _suffix(self) -> str:
        client = self.rng.choice(CLIENTS)
        server = self.rng.choice(self.peers[client])
        port = self.rng.choice((443, 443, 443, 80))
        return (f"{client}\t{self.rng.randint(1024, 65000)}\t{server}\t{port}\ttcp\t"
                f"{'ssl' if port == 443 else 'http'}\t{self.rng.uniform(0.01, 2):.6f}\t"
                f"{self.rng.randint(200, 5000)}\t{self.rng.randint(500, 90000)}\tSF\tT\tF\t0\t"
                f"ShADadFf\t12\t1200\t14\t9000\t-")

    def resolve_all(self, ts: float) -> None:
        """Every client resolves its servers (repeated each minute, like a DNS TTL)."""
        lines = []
        for c, servers in self.peers.items():
            for s in servers:
                self.n += 1
                lines.append(f"{ts:.6f}\tD{self.n:x}\t{c}\t{self.rng.randint(1024, 65000)}\t{DNS_SERVER}\t53\t"
                             f"udp\t{self.n % 65536}\th{s.replace('.', '-')}.example\tA\tNOERROR\t{s}\n")
        self.dns.write("".join(lines))
        self.dns.flush()

    def slice(self, now: float, count: int) -> None:
        rng, out = self.rng, []
        for _ in range(count):
            self.n += 1
            late = rng.uniform(60, 120) if rng.random() < 0.005 else rng.uniform(0, 2)
            out.append(f"{now - late:.6f}\tC{self.n:x}\t{rng.choice(self.suffixes)}\n")
        self.conn.write("".join(out))

    def plant(self, now: float, k: int) -> str:
        host = f"10.9.{k // 250}.{k % 250 + 1}"
        lines = []
        for i in range(25):
            self.n += 1
            lines.append(f"{now:.6f}\tC{self.n:x}\t{host}\t{40000 + i}\t203.0.113.{i + 1}\t23\ttcp\t-\t-\t-\t-\t"
                         f"S0\tT\tF\t0\tS\t1\t60\t0\t0\t-\n")
        self.conn.write("".join(lines))
        return host

    def flush(self) -> None:
        self.conn.flush()


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Watcher(threading.Thread):
    """Polls the findings table for the planted hosts; samples the follower's RSS."""

    def __init__(self, db: Path, pid: int, planted: dict[str, float]):
        super().__init__(daemon=True)
        self.db, self.pid, self.planted = db, pid, planted
        self.found: dict[str, float] = {}
        self.rss: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        start, next_rss = time.time(), 0.0
        con = None
        while not self.stop.is_set():
            now = time.time()
            if now >= next_rss:
                r = rss_mb(self.pid)
                if r is not None:
                    self.rss.append((now - start, r))
                next_rss = now + 1.0
            if con is None and self.db.exists():
                con = sqlite3.connect(str(self.db), timeout=5)
            if con is not None:
                try:
                    hosts = [h for (h,) in con.execute(
                        "SELECT DISTINCT host FROM findings WHERE detector = 'horizontal_scan'")]
                except sqlite3.Error:
                    hosts = []
                seen = time.time()
                for h in hosts:
                    if h in self.planted and h not in self.found:
                        self.found[h] = seen
            time.sleep(0.05)


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100 * (len(s) - 1)))))
    return s[k]


def zeekwatch_argv() -> list[str]:
    exe = Path(sys.executable).parent / "zeekwatch"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "zeekwatch.cli.main"]


def run(workdir: Path, seconds: float, rate: int, lookback: float, plant_every: float = 3.0,
        interval: float = 1.0) -> dict:
    """Run the writer and the follower for ``seconds``; return the measurements."""
    folder, db = workdir / "current", workdir / "follow.db"
    folder.mkdir(parents=True, exist_ok=True)
    (workdir / "zeekwatch.toml").write_text(CONFIG)
    writer = Writer(folder, rate, plant_every)
    writer.flush()
    err = open(workdir / "follow.stderr", "w")
    proc = subprocess.Popen(zeekwatch_argv() + ["--config", str(workdir / "zeekwatch.toml"), "follow",
                            str(folder), "--db", str(db), "--interval", str(interval),
                            "--lookback", str(lookback), "-q", "-v"], stdout=subprocess.DEVNULL, stderr=err)
    watcher = Watcher(db, proc.pid, writer.planted)
    watcher.start()
    t0 = time.time()
    tick, k, next_plant, next_dns, written = 0.05, 0, t0 + 2.0, t0 + 60, 0
    try:
        while time.time() - t0 < seconds and proc.poll() is None:
            now = time.time()
            due = int((now - t0) * rate) - written
            if due > 0:
                writer.slice(now, due)
                written += due
            if now >= next_plant:
                host = writer.plant(now, k)
                k += 1
                next_plant += plant_every
                writer.flush()
                writer.planted[host] = time.time()
            writer.flush()
            if now >= next_dns:
                writer.resolve_all(now)
                next_dns += 60
            time.sleep(max(0.0, tick - (time.time() - now)))
        writer.flush()
        total, stopped = written + 25 * len(writer.planted), time.time()
        while time.time() - stopped < 30 and (len(watcher.found) < len(writer.planted)
                                              or committed(db) < total):
            time.sleep(0.1)
        catch_up = time.time() - stopped
    finally:
        watcher.stop.set()
        watcher.join(5)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        err.close()
    res = summarize(db, writer, watcher, proc.returncode, seconds, written, lookback, workdir)
    res["catch_up_seconds"] = round(catch_up, 2)
    return res


def committed(db: Path) -> int:
    try:
        con = sqlite3.connect(str(db), timeout=5)
        try:
            return con.execute("SELECT coalesce(sum(conn_records), 0) FROM runs").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return -1


def summarize(db, writer, watcher, code, seconds, written, lookback, workdir) -> dict:
    lat = [watcher.found[h] - t for h, t in writer.planted.items() if h in watcher.found]
    con = sqlite3.connect(str(db), timeout=5)
    committed = con.execute("SELECT coalesce(sum(conn_records), 0) FROM runs").fetchone()[0]
    findings = con.execute("SELECT detector, count(*) FROM findings GROUP BY detector").fetchall()
    con.close()
    warm = [(t, r) for t, r in watcher.rss if t >= lookback + 10]
    third = max(1, len(warm) // 3)
    first = statistics.median(r for _, r in warm[:third]) if warm else None
    last = statistics.median(r for _, r in warm[-third:]) if warm else None
    return {
        "rows": written + 25 * len(writer.planted), "seconds": seconds, "exit_code": code,
        "rate": round(written / seconds), "conn_records": committed,
        "planted": len(writer.planted), "found": len(lat),
        "latency_p50": percentile(lat, 50), "latency_p95": percentile(lat, 95),
        "latency_max": max(lat) if lat else None,
        "rss_mb_max": max((r for _, r in watcher.rss), default=None),
        "rss_mb_warm_first": first, "rss_mb_warm_last": last,
        "rss_judged": bool(warm) and len(warm) >= 6,
        "rss_series": [[round(t), round(r)] for t, r in watcher.rss[::5]],
        "findings": dict(findings),
        **batch_stats((workdir / "follow.stderr").read_text(errors="replace")),
    }


def batch_stats(stderr: str) -> dict:
    """Seconds per batch and per phase from ``follow -v`` lines."""
    secs, phases = [], {}
    for m in re.finditer(r"^batch \d+ at [\d.]+: \d+ rows, ([\d.]+) s \(([^)]*)\)", stderr, re.M):
        secs.append(float(m.group(1)))
        for k, v in re.findall(r"(\w+)=([\d.]+)", m.group(2)):
            phases.setdefault(k, []).append(float(v))
    other = "\n".join(line for line in stderr.splitlines() if not line.startswith("batch "))
    return {"batches": len(secs), "batch_p50": percentile(secs, 50), "batch_p95": percentile(secs, 95),
            "batch_max": max(secs, default=None),
            "phase_p50": {k: percentile(v, 50) for k, v in phases.items()},
            "stderr_tail": other[-500:]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--rate", type=int, default=20_000)
    ap.add_argument("--lookback", type=float, default=90)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--plant-every", type=float, default=3.0)
    ap.add_argument("--dir", help="work directory (default: a temporary one)")
    ap.add_argument("--json", metavar="OUT")
    a = ap.parse_args(argv)
    import tempfile
    with tempfile.TemporaryDirectory(prefix="zeekwatch-follow-bench-") as tmp:
        res = run(Path(a.dir or tmp), a.seconds, a.rate, a.lookback, a.plant_every, a.interval)
    text = json.dumps(res, indent=1)
    if a.json:
        Path(a.json).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
