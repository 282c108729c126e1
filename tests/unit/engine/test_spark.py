"""The Spark engine gives the DuckDB engine's findings (same ids) on every real-data case.

One local[2] SparkSession serves the module (``analyze`` reuses the running session). Each
case runs ``app.analyze`` with DuckDB into a fresh database, then with Spark into the same
one: the Spark run must produce the same findings (id, host, peer, key, first/last seen,
observed) and add nothing (``new == 0``); app usage and rejects must match too.
"""

from __future__ import annotations

import gzip
import sqlite3
import subprocess
import sys
from dataclasses import replace

import pytest
from conftest import PCAPS, ROOT, shared_file

from zeekwatch.app.analyze import analyze
from zeekwatch.config import Config, load
from zeekwatch.store.db import finding_id

pyspark = pytest.importorskip("pyspark")
pytestmark = [pytest.mark.spark, pytest.mark.xdist_group("spark"), pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def spark():
    from zeekwatch.engine.spark import session

    s = session.start("local[2]", {"spark.sql.shuffle.partitions": "4"})
    yield s
    s.stop()


def with_engine(cfg: Config, kind: str) -> Config:
    return replace(cfg, engine=replace(cfg.engine, kind=kind, spark_master="local[2]"))


def facts(findings: list) -> list[tuple]:
    out = []
    for f in findings:
        fid = finding_id(f.detector, f.host, f.peer, f.key, f.first_seen)
        out.append((fid, f.detector, f.host, f.peer or "", f.key or "",
                    f.first_seen, f.last_seen, round(f.observed or 0, 6)))
    return sorted(out)


def both(tmp_path, paths: list[str], cfg: Config | None = None):
    """DuckDB run, then Spark run into the same database: (duck result, spark result, db)."""
    cfg = cfg or Config()
    db = str(tmp_path / "f.db")
    duck = analyze(paths, with_engine(cfg, "duckdb"), db)
    sprk = analyze(paths, with_engine(cfg, "spark"), db)
    assert facts(sprk.findings) == facts(duck.findings)
    assert sprk.new == 0, "the Spark run stored findings the DuckDB run had not"
    assert dict(sprk.log.records) == dict(duck.log.records)
    assert sprk.log.reject_count == duck.log.reject_count
    return duck, sprk, db


def app_usage(db: str) -> dict[int, list[tuple]]:
    con = sqlite3.connect(db)
    rows = con.execute("SELECT run_id, host, app, source, evidence, first_seen, last_seen, count "
                       "FROM app_usage ORDER BY 1, 2, 3, 4, 5, 6").fetchall()
    out: dict[int, list[tuple]] = {}
    for r in rows:
        out.setdefault(r[0], []).append(r[1:])
    return out


SHARED_LOGS = [
    "slips/port-scans/horizontal/conn.log", "slips/port-scans/vertical/conn.log",
    "rita/proxy/conn.log", "rita/proxy/dns.log", "zeek/baseline/irc.basic.conn.log",
    "rita/json_with_all_fields/conn.log", "rita/json_with_all_fields/open_conn.log",
    "rita/truncated/conn_json.log",
    "zed-sample-data/zeek-json/dns.json.gz", "zed-sample-data/zeek-default/dns.log.gz",
    "slips/test9-mixed-zeek-dir/conn.log", "slips/test9-mixed-zeek-dir/smtp.log",
    "frank-suricata/wrccdc-2018/alerts-only.eve.ndjson",
    "frank-suricata/honeypot-2018/alerts-only.json", "rita/missing_host",
    "perf/rita_missing_host_conn_72h.multi.log.gz", "perf/rita_missing_host_dns_72h.multi.log.gz",
]


@pytest.mark.slow
def test_shared_zeek_and_eve_logs(spark, tmp_path):
    """Zeek TSV (gzip, several header blocks, masked times), Zeek JSON and EVE, in one run."""
    duck, sprk, _ = both(tmp_path, [shared_file(p) for p in SHARED_LOGS])
    assert {f.detector for f in duck.findings} >= {"horizontal_scan", "vertical_scan",
                                                   "ids_alert", "c2_port"}


SHARED_PCAPS = [
    "zeek/traces/irc-basic.pcap", "chrissanders-packets/synscan.pcapng",
    "ndpi/pcap/bittorrent.pcap", "ndpi/pcap/skype-conference-call.pcap",
    "malcolm-pcap/plugins/bro-simple-scan/port_scan.pcap",
    "malcolm-pcap/plugins/bro-simple-scan/scan_with_zero_windows.pcap",
]


@pytest.mark.slow
def test_pcap_scenarios_and_app_usage(spark, tmp_path):
    """The pcaps/ scenarios (and real captures), read by the pcap reader in the executors;
    app usage (look-alikes) computed in Spark equals DuckDB's."""
    caps = sorted(str(p) for p in PCAPS.glob("*.pcap")) + [shared_file(p) for p in SHARED_PCAPS]
    duck, sprk, db = both(tmp_path, caps, load(str(PCAPS / "zeekwatch.toml")))
    usage = app_usage(db)
    assert usage[duck.run_id] and usage[sprk.run_id] == usage[duck.run_id]
    suppressed = lambda r: sorted(f.id for f in r.findings if f.suppressed_reason)  # noqa: E731
    assert suppressed(sprk) == suppressed(duck) != []


@pytest.mark.slow
def test_generated_bench_data(spark, tmp_path):
    out = tmp_path / "gen"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_logs.py"), str(out), "--small",
                    "-q"], check=True)
    cfg = load(str(out / "zeekwatch.toml"))
    duck, _, _ = both(tmp_path, [str(out / "conn.log"), str(out / "dns.log")], cfg)
    assert len(duck.findings) >= 5


def test_malformed_lines_are_rejects(spark, tmp_path):
    """A gzip Zeek log with two header blocks and broken lines: counted, sampled with file,
    line, reason and raw text in ``rejects``, as the DuckDB engine records them."""
    head = ("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n"
            "#path\tconn\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\n"
            "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\n")
    body = ("1700000000.000001\tC1\t10.0.0.1\t1234\t8.8.8.8\t53\tudp\n"
            "not-a-time\tC2\t10.0.0.1\t1235\t8.8.8.8\t53\tudp\n"
            "1700000001.5\tC3\t10.0.0.1\n")
    path = tmp_path / "conn.log.gz"
    with gzip.open(path, "wt") as f:
        f.write(head + body + head + body.replace("C", "D"))
    db = str(tmp_path / "f.db")
    duck = analyze([str(path)], Config(), db)
    sprk = analyze([str(path)], with_engine(Config(), "spark"), db)
    assert sprk.log.reject_count == duck.log.reject_count >= 4
    assert dict(sprk.log.records) == dict(duck.log.records)
    con = sqlite3.connect(db)
    rows = con.execute("SELECT run_id, path, line, reason, raw FROM rejects ORDER BY run_id, line").fetchall()
    by_run = {}
    for run, *rest in rows:
        by_run.setdefault(run, []).append(tuple(rest))
    assert by_run[sprk.run_id] == by_run[duck.run_id]
    assert all(r[0] == str(path) and r[1] and r[2] and r[3] for r in by_run[sprk.run_id])


def test_dialect_hooks_agree_with_duckdb(spark):
    """Each hook evaluated by both engines over the same rows gives the same values."""
    import datetime as dt

    import duckdb
    import pyarrow as pa

    from zeekwatch.detectors.base import Dialect
    from zeekwatch.engine.spark.dialect import SparkDialect

    utc = dt.timezone.utc
    v = pa.table({
        "s": ["b", "a", "a", None], "n": pa.array([2, 1, 3, 4], pa.int32()),
        "t": [1700000000.25, 1711846800.5, None, 1.0],
        "ts": pa.array([dt.datetime(2024, 3, 31, 0, 59, 59, 123456, tzinfo=utc), None,
                        dt.datetime(2023, 10, 29, 1, 0, tzinfo=utc), dt.datetime(1970, 1, 1, tzinfo=utc)],
                       pa.timestamp("us", tz="UTC")),
        "h": ["www.Example.COM.", "x.y", "z", None]})

    def query(d: Dialect) -> list[str]:
        split = d.split_text("h", ".")
        return [f"""SELECT {d.distinct_list('s', 5)}, {d.first_list('s', 2)},
          {d.ordered_list("s || CAST(n AS VARCHAR)", 'n, s', 3)},
          max({d.utc_offset('t', 'Europe/Berlin')}), min({d.utc_offset('t', 'America/New_York')}),
          max({d.date_text('floor(t / 86400)')}), max({d.list_len(split)}),
          max({d.list_join_from(split, '2', '.')}), max({d.list_item(split, '1')}),
          sum(CASE WHEN {d.regex_icase('h', '^www[.]example')} THEN 1 ELSE 0 END),
          sum({d.epoch('ts')}), max({d.iso_utc('ts')}), min({d.iso_utc('ts')}) FROM v""",
                f"SELECT sum(i) FROM (SELECT {d.unnest_range('1', 'n')} AS i FROM v) x",
                f"SELECT sum(x) FROM (SELECT {d.unnest('n', 'n * 10')} AS x FROM v) y",
                f"SELECT count(*) FROM (SELECT {d.unnest_list(d.split_text('h', '.'))} AS x FROM v) y",
                f"SELECT max({d.iso_epoch('t')}), min({d.iso_epoch('t')}) FROM v",
                f"SELECT {d.record({'x': 'n', 'y': 's'})}.x FROM v ORDER BY n",
                f"""SELECT {d.quantile('t', 0.5)}, {d.quantile('n', 0.25)},
                    {d.item(d.quantiles('n', (0.25, 0.5, 0.75)), 3)} FROM v"""]

    con = duckdb.connect()
    con.register("v", v)
    con.execute("SET TimeZone = 'UTC'")
    duck = [[list(r) for r in con.execute(q).fetchall()] for q in query(Dialect())]
    spark.createDataFrame(v).createOrReplaceTempView("v")
    d = SparkDialect()
    sprk = [[list(r) for r in spark.sql(d.translate(q)).collect()] for q in query(d)]
    assert sprk == duck
