"""scripts/gen_logs.py: deterministic output, Zeek's format, and the planted behaviours present.

Runs the real script (``--small``) once per session into a temporary directory; the checks read
the files with plain Python, independently of zeekwatch's readers.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zoneinfo
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import pytest

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "setup.cfg").exists())
GEN = ROOT / "scripts" / "gen_logs.py"
FILES = ("conn.log", "conn.json", "dns.log", "truth.json", "zeekwatch.toml")


def generate(out: Path, *extra: str) -> Path:
    subprocess.run([sys.executable, str(GEN), str(out), "--small", "-q", *extra], check=True)
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("gen") / "a")


def rows(path: Path) -> tuple[list[str], list[dict]]:
    lines = path.read_text().splitlines()
    fields = next(x for x in lines if x.startswith("#fields")).split("\t")[1:]
    return fields, [dict(zip(fields, x.split("\t"))) for x in lines if not x.startswith("#")]


@pytest.fixture(scope="module")
def conn(data):
    return rows(data / "conn.log")[1]


@pytest.fixture(scope="module")
def dns(data):
    return rows(data / "dns.log")[1]


@pytest.fixture(scope="module")
def truth(data):
    return json.loads((data / "truth.json").read_text())


def digest(d: Path) -> dict:
    return {f: hashlib.sha256((d / f).read_bytes()).hexdigest() for f in FILES}


def test_same_arguments_same_bytes(data, tmp_path):
    assert digest(generate(tmp_path / "b")) == digest(data)


def test_another_seed_other_background_same_plants(data, tmp_path):
    other = generate(tmp_path / "c", "--seed", "2")
    assert (other / "conn.log").read_bytes() != (data / "conn.log").read_bytes()
    assert json.loads((other / "truth.json").read_text())["entries"] == json.loads((data / "truth.json").read_text())["entries"]


def test_zeek_tsv_header_and_counts(data, conn, dns):
    head = (data / "conn.log").read_text().splitlines()[:8]
    assert head[0] == "#separator \\x09"
    assert head[1:5] == ["#set_separator\t,", "#empty_field\t(empty)", "#unset_field\t-", "#path\tconn"]
    fields, _ = rows(data / "conn.log")
    for col in ("local_orig", "local_resp", "missed_bytes", "orig_ip_bytes", "resp_ip_bytes", "tunnel_parents"):
        assert col in fields
    assert (data / "conn.log").read_text().splitlines()[-1].startswith("#close\t")
    assert len(conn) == 20_000 and len(dns) == 5_000
    assert all(len(r) == 21 and None not in r.values() for r in conn)
    s0 = [r for r in conn if r["conn_state"] == "S0" and r["orig_pkts"] == "1"]
    assert s0 and all(r["duration"] == "-" and r["orig_bytes"] == "-" for r in s0)
    assert {r["service"] for r in s0} == {"-", "dns"}  # Zeek names dns from the request alone


def test_json_twin_is_the_same_records(data, conn):
    recs = [json.loads(x) for x in (data / "conn.json").read_text().splitlines()]
    assert [r["uid"] for r in recs] == [r["uid"] for r in conn]
    for j, t in zip(recs, conn):
        assert j["id.orig_h"] == t["id.orig_h"] and j["id.resp_p"] == int(t["id.resp_p"])
        assert abs(j["ts"] - float(t["ts"])) < 1e-6
        assert ("duration" in j) == (t["duration"] != "-") and ("service" in j) == (t["service"] != "-")
        assert "tunnel_parents" not in j and j["local_orig"] == (t["local_orig"] == "T")


def test_dns_records_belong_to_udp53_conns(conn, dns):
    by_uid = {r["uid"]: r for r in conn}
    for d in dns:
        c = by_uid[d["uid"]]
        assert (c["proto"], c["id.resp_p"], c["id.orig_h"]) == ("udp", "53", d["id.orig_h"])


def test_clients_contact_only_what_they_resolved(conn, dns, truth):
    resolved = defaultdict(set)
    for d in dns:
        if d["answers"] != "-":
            resolved[d["id.orig_h"]].update(d["answers"].split(","))
    odd = {(c["id.orig_h"], c["id.resp_h"]) for c in conn
           if c["id.orig_h"].startswith("10.20.") and not c["id.resp_h"].startswith("10.20.")
           and c["id.resp_h"] not in resolved[c["id.orig_h"]]}
    planted = {e["host"] for e in truth["entries"] if e["expected"]}
    assert {h for h, _ in odd} <= planted | {"10.20.2.10"}  # 10.20.2.10: the backscatter decoy


def test_nights_are_quiet(conn, truth):
    tz = zoneinfo.ZoneInfo(truth["meta"]["timezone"])
    night = {c["id.orig_h"] for c in conn if c["id.orig_h"].startswith("10.20.")
             and not 6 <= datetime.fromtimestamp(float(c["ts"]), tz).hour < 22}
    assert night <= {"10.20.22.210"} | {h for h in night if h.startswith("10.20.200.")}
    assert "10.20.22.210" in night


def max_distinct(events, window=60.0) -> int:
    """Most distinct values among (t, value) events in any window of `window` seconds."""
    events = sorted(events)
    best = 0
    for i, (t, _) in enumerate(events):
        best = max(best, len({v for u, v in events[i:] if u - t <= window}))
    return best


def conns_of(conn, host, **where):
    return [c for c in conn if c["id.orig_h"] == host and all(c[k] == v for k, v in where.items())]


def test_planted_behaviours_present(conn, dns, truth):
    entries = {(e["detector"], e["host"]): e for e in truth["entries"] if e["expected"] and not e["secondary"]}
    assert {d for d, _ in entries} == {"mass_mailer", "mx_burst", "horizontal_scan", "vertical_scan", "ping_sweep",
                                       "outbound_ping", "c2_port", "non_web_on_web_port", "long_connection",
                                       "off_hours", "rare_destination", "beacon"}
    smtp = conns_of(conn, "10.20.18.77", **{"id.resp_p": "25"})
    assert max_distinct([(float(c["ts"]), c["id.resp_h"]) for c in smtp]) >= 30
    minutes = defaultdict(set)
    for c in smtp:
        minutes[int(float(c["ts"]) // 60)].add(c["id.resp_h"])
    assert max(len(v) for v in minutes.values()) < 20  # only a sliding window sees the burst
    mx = [d for d in dns if d["id.orig_h"] == "10.20.18.77" and d["qtype_name"] == "MX"]
    assert max_distinct([(float(d["ts"]), d["query"]) for d in mx]) >= 30
    worm = conns_of(conn, "10.20.19.5", **{"id.resp_p": "445"})
    assert max_distinct([(float(c["ts"]), c["id.resp_h"]) for c in worm if c["conn_state"] in ("S0", "REJ")]) >= 40
    vscan = conns_of(conn, "10.20.20.200", **{"id.resp_h": "10.20.1.50", "conn_state": "REJ"})
    assert len({c["id.resp_p"] for c in vscan}) >= 97
    sweep = conns_of(conn, "10.20.22.31", proto="icmp", **{"id.orig_p": "8", "id.resp_p": "0"})
    assert max_distinct([(float(c["ts"]), c["id.resp_h"]) for c in sweep]) >= 20
    assert {c["id.resp_p"] for c in conns_of(conn, "10.20.17.180")} >= {"6667"}
    assert {c["id.resp_p"] for c in conns_of(conn, "10.20.23.66")} >= {"6697"}
    assert any(float(c["duration"]) >= 3 * 3600 for c in conns_of(conn, "10.20.19.150", proto="tcp") if c["duration"] != "-")
    assert conns_of(conn, "10.20.18.12", service="-", conn_state="SF", **{"id.resp_p": "443"})
    assert conns_of(conn, "10.20.21.9", service="ssh", **{"id.resp_p": "80"})


def test_decoys_present(conn, truth):
    decoys = {(e["detector"], e["host"]) for e in truth["entries"] if not e["expected"]}
    assert ("mass_mailer", "10.20.1.25") in decoys and ("long_connection", "10.20.21.33") in decoys
    mail = conns_of(conn, "10.20.1.25", **{"id.resp_p": "25"})
    assert max_distinct([(float(c["ts"]), c["id.resp_h"]) for c in mail]) >= 50
    for host, most in (("10.20.20.77", 19), ("10.20.20.78", 15)):
        ssh = conns_of(conn, host, **{"id.resp_p": "22"})
        assert max_distinct([(float(c["ts"]), c["id.resp_h"]) for c in ssh]) == most
    back = [c for c in conn if c["id.orig_h"] == "10.20.2.10" and c["history"].startswith("^")]
    assert len(back) == 70 and all("S" not in c["history"] for c in back)
    ftp = conns_of(conn, "10.20.1.21", service="ftp-data")
    assert len({c["id.resp_p"] for c in ftp}) == 60


def test_beacon_plants_and_look_alikes(conn, dns, truth):
    """The jittered beacon sleeps 200-350 s (missed check-ins make longer gaps) on the 3
    rotating addresses of its name; the NTP decoy polls every 64-1024 s on udp/123."""
    ips = {a for d in dns if d["query"] == "cdn-sync.velmora.net" for a in d["answers"].split(",")}
    beacon = sorted(float(c["ts"]) for c in conns_of(conn, "10.20.17.23") if c["id.resp_h"] in ips)
    gaps = [b - a for a, b in zip(beacon, beacon[1:])]
    assert len(ips) == 3 and len(beacon) > 150
    assert min(gaps) >= 200 and sorted(gaps)[len(gaps) // 2] < 350
    ntp = sorted(float(c["ts"]) for c in conns_of(conn, "10.20.19.88", proto="udp", **{"id.resp_p": "123"}))
    ntp_gaps = [b - a for a, b in zip(ntp, ntp[1:])]
    assert 120 <= ntp_gaps[0] <= 135 and 990 <= ntp_gaps[-1] <= 1060 == max(ntp_gaps + [1060])
    decoys = {e["host"] for e in truth["entries"] if e["detector"] == "beacon" and not e["expected"]}
    assert decoys == {"10.20.19.88", "10.20.20.15", "10.20.18.33"}


def test_config_loads(data):
    from zeekwatch import config

    cfg = config.load(str(data / "zeekwatch.toml"))
    assert cfg.networks.mail_servers == ["10.20.1.25"] and cfg.time.timezone == "Europe/Berlin"


def test_zat_parses_it(data):
    zat = pytest.importorskip("zat.log_to_dataframe")
    assert len(zat.LogToDataFrame().create_dataframe(str(data / "conn.log"))) == 20_000
    assert len(zat.LogToDataFrame().create_dataframe(str(data / "dns.log"))) == 5_000
