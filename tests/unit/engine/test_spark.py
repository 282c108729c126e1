"""The Spark engine gives the DuckDB engine's findings (same ids) on every real-data case.

Every Spark run costs a fixed minute or more (each detector query is several small Spark
jobs), so the real-data cases are analysed together in ONE run per engine: the shared Zeek
TSV (gzip, several header blocks, masked times), Zeek JSON and EVE logs, the pcaps/
scenarios and real captures (read by the pcap reader in the executors), the generated
bench data and a log with malformed lines, under one configuration that names every
case's networks. The DuckDB run and the Spark run go to two fresh databases, which must
hold the same findings (id, host, peer, key, first/last seen, observed), app usage and
rejects; a DuckDB run into the Spark run's database then adds nothing (same ids).
"""

from __future__ import annotations

import gzip
import sqlite3
import subprocess
import sys
from dataclasses import replace

import pytest
from conftest import PCAPS, ROOT, SHARED

from zeekwatch.app.analyze import analyze
from zeekwatch.config import Config, load
from zeekwatch.finding import Finding
from zeekwatch.store.db import finding_id

pyspark = pytest.importorskip("pyspark")
pytestmark = [pytest.mark.spark, pytest.mark.xdist_group("spark"), pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def spark():
    from zeekwatch.engine.spark import session

    s = session.start("local[2]", {"spark.sql.shuffle.partitions": "2"})
    yield s
    s.stop()


def with_engine(cfg: Config, kind: str) -> Config:
    return replace(cfg, engine=replace(cfg.engine, kind=kind, spark_master="local[2]"))


def facts(findings: list[Finding]) -> list[tuple]:
    out = []
    for f in findings:
        fid = finding_id(f.detector, f.host, f.peer, f.key, f.first_seen)
        out.append((fid, f.detector, f.host, f.peer or "", f.key or "",
                    f.first_seen, f.last_seen, round(f.observed or 0, 6)))
    return sorted(out)


def table(db: str, sql: str) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return sorted(con.execute(sql).fetchall(), key=repr)
    finally:
        con.close()


USAGE = "SELECT host, app, source, evidence, first_seen, last_seen, count FROM app_usage"
REJECTS = "SELECT path, line, reason, raw FROM rejects"

SHARED_LOGS = [
    "slips/port-scans/horizontal/conn.log", "slips/port-scans/vertical/conn.log",
    "rita/proxy/conn.log", "rita/proxy/dns.log", "zeek/baseline/irc.basic.conn.log",
    "rita/json_with_all_fields/conn.log", "rita/json_with_all_fields/open_conn.log",
    "rita/truncated/conn_json.log",
    "zed-sample-data/zeek-json/dns.json.gz", "zed-sample-data/zeek-default/dns.log.gz",
    "slips/test9-mixed-zeek-dir/conn.log", "slips/test9-mixed-zeek-dir/smtp.log",
    "frank-suricata/wrccdc-2018/alerts-only.eve.ndjson",
    "frank-suricata/honeypot-2018/alerts-only.json",
    "perf/rita_missing_host_conn_72h.multi.log.gz", "perf/rita_missing_host_dns_72h.multi.log.gz",
]
SHARED_PCAPS = [
    "zeek/traces/irc-basic.pcap", "chrissanders-packets/synscan.pcapng",
    "ndpi/pcap/bittorrent.pcap", "ndpi/pcap/skype-conference-call.pcap",
    "malcolm-pcap/plugins/bro-simple-scan/port_scan.pcap",
    "malcolm-pcap/plugins/bro-simple-scan/scan_with_zero_windows.pcap",
]
# the pcaps/ scenarios' networks and the generated data's (10.20.0.0/16, VPN, Berlin time)
CONFIG = """
[networks]
internal = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]
mail_servers = ["10.2.0.25", "10.20.1.25"]
dns_servers = ["10.1.0.53", "10.2.0.53", "10.20.1.10", "10.20.1.11"]
vpn = ["10.20.200.0/24"]
vpn_gateways = ["203.0.113.10"]
[time]
timezone = "Europe/Berlin"
"""


def malformed_log(path) -> str:
    """A gzip Zeek log with two header blocks and broken lines (a bad time, a short row)."""
    head = ("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n"
            "#path\tconn\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\n"
            "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\n")
    body = ("1700000000.000001\tC1\t10.0.0.1\t1234\t8.8.8.8\t53\tudp\n"
            "not-a-time\tC2\t10.0.0.1\t1235\t8.8.8.8\t53\tudp\n"
            "1700000001.5\tC3\t10.0.0.1\n")
    with gzip.open(path, "wt") as f:
        f.write(head + body + head + body.replace("C", "D"))
    return str(path)


def inputs(tmp_path) -> list[str]:
    gen = tmp_path / "gen"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_logs.py"), str(gen), "--small",
                    "-q"], check=True)
    paths = sorted(str(p) for p in PCAPS.glob("*.pcap"))
    paths += [str(gen / "conn.log"), str(gen / "dns.log"), malformed_log(tmp_path / "bad.log.gz")]
    # the shared real data when it is there (the other cases still run without it)
    paths += [str(SHARED / p) for p in SHARED_LOGS + SHARED_PCAPS if (SHARED / p).exists()]
    return paths


@pytest.mark.slow
def test_every_case_gives_the_duckdb_findings(spark, tmp_path):
    (tmp_path / "zeekwatch.toml").write_text(CONFIG)
    cfg = load(str(tmp_path / "zeekwatch.toml"))
    paths = inputs(tmp_path)
    duck_db, spark_db = str(tmp_path / "duck.db"), str(tmp_path / "spark.db")
    duck = analyze(paths, with_engine(cfg, "duckdb"), duck_db)
    sprk = analyze(paths, with_engine(cfg, "spark"), spark_db)

    assert facts(sprk.findings) == facts(duck.findings)
    assert dict(sprk.log.records) == dict(duck.log.records)
    assert sprk.log.reject_count == duck.log.reject_count >= 4
    assert table(spark_db, REJECTS) == table(duck_db, REJECTS)
    bad = [r for r in table(spark_db, REJECTS) if r[0].endswith("bad.log.gz")]
    assert len(bad) >= 4 and all(line and reason and raw for _p, line, reason, raw in bad)
    assert table(spark_db, USAGE) == table(duck_db, USAGE) != []
    suppressed = lambda r: sorted(f.id for f in r.findings if f.suppressed_reason)  # noqa: E731
    assert suppressed(sprk) == suppressed(duck) != []
    detectors = {f.detector for f in duck.findings}
    # (beacon fires on the generated data alone; its coverage term spans the whole input,
    # which here reaches from 2018 to 2024, so it is not asserted in this mix)
    assert detectors >= {"horizontal_scan", "vertical_scan", "c2_port", "mass_mailer"}
    if SHARED.is_dir():
        assert "ids_alert" in detectors
    # the same ids: the DuckDB engine finds nothing new in the Spark run's database
    again = analyze(paths, with_engine(cfg, "duckdb"), spark_db)
    assert again.new == 0 and facts(again.findings) == facts(duck.findings)


WORD, LETTERS = r"\bEXAMPLE\.com\b", r"^\w\.\w$"  # backslashes reach the regex as written


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
          sum(CASE WHEN {d.regex_icase('h', WORD)} THEN 1 ELSE 0 END),
          sum(CASE WHEN {d.regex_icase('h', LETTERS)} THEN 1 ELSE 0 END),
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
