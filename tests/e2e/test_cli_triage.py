"""Triage CLI through click's CliRunner: exact output of the queue, show, status changes,
suppress, assets, export (CSV injection) and tune suricata (parsed back with the grammar)."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from triage_helpers import T0, analyze_tables, sweep

from zeekwatch.cli import triage as cli_triage
from zeekwatch.cli.main import cli
from zeekwatch.config import Config
from zeekwatch.detectors import REGISTRY
from zeekwatch.export import record as export_record
from zeekwatch.finding import Finding
from zeekwatch.store import triage as triage_store
from zeekwatch.store.db import Store, iso
from zeekwatch.triage.score import Scorer

NOW = "2024-06-01T09:00:00.000000Z"
ROOT = next(p for p in Path(__file__).resolve().parents if (p / "setup.cfg").exists())


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch):
    monkeypatch.setattr(triage_store, "now_iso", lambda: NOW)
    monkeypatch.setattr(cli_triage, "now_iso", lambda: NOW)


def put(db, **kw):
    """Store one finding the way the pipeline does (scored), with explicit fields."""
    kw.setdefault("last_seen", kw["first_seen"])
    c = Finding(**{"detector": "ids_alert", "threat": "ids", "title": "Suricata alert",
                   "peer": None, "observed": 3.0, "threshold": 1.0, "distinct_total": 1,
                   "evidence_total": 3, "uids": ["C1a", "C2b"], **kw})
    Scorer(Config()).score_all([c])
    s = Store(db)
    run = s.start_run(["test"], "analyze", "test")
    s.upsert_findings([c], run, 300)
    s.close()
    return c.id


def ids_finding(db, host="10.0.0.7", sid=2010935, sig="ET POLICY Suspicious inbound to MSSQL port 1433",
                severity=2, role="src", at=T0 + 60):
    return put(db, host=host, peer="198.51.100.20", key=f"sid:{sid}", first_seen=iso(at),
               last_seen=iso(at + 30), summary=f'{host}: 3 alerts "{sig}"',
               details={"sid": sid, "gid": 1, "signature": sig, "severity": severity,
                        "category": "Potentially Bad Traffic", "host_role": role},
               values=["198.51.100.20"])


@pytest.fixture
def db(tmp_path):
    path = str(tmp_path / "f.db")
    bt = [dict(ts=T0 + 100 + i, uid=f"B{i}", orig_h="10.0.0.6", orig_p=6881, resp_h=f"192.0.2.{i}",
               resp_p=51413, proto="tcp", service="bittorrent", conn_state="SF") for i in range(12)]
    analyze_tables(path, only=["horizontal_scan"], conn=sweep("10.0.0.5") + sweep("10.0.0.6") + bt)
    ids_finding(path)
    return path


def run(*args, user="alice"):
    return CliRunner(env={"USER": user}).invoke(cli, list(args), catch_exceptions=False)


def ids_of(db):
    s = Store(db)
    try:
        return {(f["detector"], f["host"]): f["id"] for f in s.findings()}
    finally:
        s.close()


HEADER = ("ID               URG TIER  DUE (UTC)         STATUS         DETECTOR           "
          "HOST            SUMMARY")


def test_queue_lists_open_findings_by_urgency_then_due(db):
    ids = ids_of(db)
    h = ids[("horizontal_scan", "10.0.0.5")]
    i = ids[("ids_alert", "10.0.0.7")]
    r = run("findings", "--db", db)
    assert r.exit_code == 0
    assert r.output == (
        f"{HEADER}\n"
        f"{h}   6    2  2023-11-15 06:13  new            horizontal_scan    10.0.0.5        "
        "10.0.0.5 tried 25 distinct hosts on tcp/445 within 60 s (failed or never-resolved; threshold 20)\n"
        f"{i}   5    2  2023-11-15 06:14  new            ids_alert          10.0.0.7        "
        '10.0.0.7: 3 alerts "ET POLICY Suspicious inbound to MSSQL port 1433"\n'
        "2 findings\n")


@pytest.mark.parametrize("args, keys", [
    (["--status", "suppressed"], [("horizontal_scan", "10.0.0.6")]),
    # equal urgency, due time and first_seen: by id
    (["--status", "all"], [("horizontal_scan", "10.0.0.6"), ("horizontal_scan", "10.0.0.5"),
                           ("ids_alert", "10.0.0.7")]),
    (["--detector", "ids_alert"], [("ids_alert", "10.0.0.7")]),
    (["--tier", "1"], []),
    (["--tier", "2", "--host", "10.0.0.5"], [("horizontal_scan", "10.0.0.5")]),
    (["--status", "all", "--host", "10.0.0.4/31"], [("horizontal_scan", "10.0.0.5")]),
    (["--since", "2023-11-14T22:14:00"], [("ids_alert", "10.0.0.7")]),
    (["--since", "1d"], []),
])
def test_queue_filters(db, args, keys):
    ids = ids_of(db)
    r = run("findings", "--db", db, *args)
    assert r.exit_code == 0
    if not keys:
        assert r.output == "No findings match.\n"
        return
    listed = [line.split()[0] for line in r.output.splitlines()[1:-1]]
    assert listed == [ids[k] for k in keys]


def test_show_explains_score_evidence_details_and_history(db):
    i = ids_of(db)[("ids_alert", "10.0.0.7")]
    assert run("findings", "set-status", i[:6], "investigating", "--note", "ticket 4711",
               "--db", db).exit_code == 0
    r = run("findings", "show", i, "--db", db)
    assert r.exit_code == 0
    assert r.output == f"""{i}  Suricata alert
status      investigating
detector    ids_alert (threat ids)
att&ck      T1190 Exploit Public-Facing Application, T1046 Network Service Discovery, T1071 Application Layer Protocol
host        10.0.0.7 (asset class client, from default)
peer        198.51.100.20
key         sid:2010935
seen        2023-11-14 22:14:20Z → 2023-11-14 22:14:50Z
observed    3 (threshold 1)
summary     10.0.0.7: 3 alerts "ET POLICY Suspicious inbound to MSSQL port 1433"

score
  matrix[ids][client]    5
  = urgency 5 → tier 2 "act now", owner security team, due 2023-11-15 06:14:20Z (first_seen + 8 h)

evidence (3 events)
  uid    C1a, C2b
  value  198.51.100.20

details
  category = "Potentially Bad Traffic"
  gid = 1
  host_role = "src"
  severity = 2
  sid = 2010935
  signature = "ET POLICY Suspicious inbound to MSSQL port 1433"

history
  2024-06-01 09:00:00Z  alice  new → investigating  set-status: ticket 4711
"""


def test_show_names_the_suppression_and_each_score_term(db, tmp_path):
    s = ids_of(db)[("horizontal_scan", "10.0.0.6")]
    out = run("findings", "show", s, "--db", db).output.splitlines()
    assert out[1:3] == ["status      suppressed",
                        "reason      app usage: bittorrent (conn service bittorrent, 12 flows, 22:15–22:15 UTC)"]
    assert out[-1] == ("  2024-06-01 09:00:00Z  zeekwatch  new → suppressed  suppress (app): app usage: "
                       "bittorrent (conn service bittorrent, 12 flows, 22:15–22:15 UTC)")
    sev1 = ids_finding(db, host="10.0.0.8", sid=2001219, sig="ET SCAN Potential SSH Scan", severity=1)
    lines = run("findings", "show", sev1, "--db", db).output.splitlines()
    start = lines.index("score")
    assert lines[start + 1:start + 4] == [
        "  matrix[ids][client]    5",
        "  Suricata severity 1   +1",
        '  = urgency 6 → tier 2 "act now", owner security team, due 2023-11-15 06:14:20Z (first_seen + 8 h)']


def test_set_status_writes_the_audit_trail(db):
    i = ids_of(db)[("ids_alert", "10.0.0.7")]
    steps = [("investigating", "ticket 4711", "alice"), ("contained", "switch port shut", "bob"),
             ("resolved", "reimaged", "bob")]
    for status, note, who in steps:
        r = run("findings", "set-status", i, status, "--note", note, "--who", who, "--db", db, user="root")
        assert r.exit_code == 0, r.output
    assert r.output == f"{i}: contained → resolved (bob)\n"
    s = Store(db)
    audit = [(a["at"], a["who"], a["action"], a["old_status"], a["new_status"], a["note"])
             for a in s.db["audit"].rows_where("finding_id = ?", [i], order_by="id")]
    s.close()
    assert audit == [
        (NOW, "alice", "set-status", "new", "investigating", "ticket 4711"),
        (NOW, "bob", "set-status", "investigating", "contained", "switch port shut"),
        (NOW, "bob", "set-status", "contained", "resolved", "reimaged"),
    ]


@pytest.mark.parametrize("args, code, message", [
    (["findings", "set-status", "Fnope", "investigating", "--note", "x"], 2, "Error: no finding 'Fnope'\n"),
    (["findings", "set-status", "{ids}", "contained", "--note", "x", "--suppress", "host"], 2,
     "Error: --suppress goes with false_positive\n"),
    (["findings", "set-status", "{ids}", "investigating", "--note", " "], 2,
     "Error: a status change needs a note (--note)\n"),
    (["findings", "show", "F"], 2, "Error: finding id prefix 'F' is ambiguous"),
    (["suppress", "remove", "99"], 2, "Error: no suppression 99\n"),
    (["suppress", "add", "--owner", "a", "--reason", "b"], 2,
     "Error: a suppression needs at least one of --cidr, --peer, --domain, --port, --detector, --sid\n"),
])
def test_errors_are_messages_with_exit_codes(db, args, code, message):
    ids = ids_of(db)
    args = [a.format(ids=ids[("ids_alert", "10.0.0.7")]) for a in args]
    r = CliRunner().invoke(cli, args + ["--db", db])
    assert r.exit_code == code
    assert r.output.startswith(message)


def test_status_flow_is_enforced(db):
    i = ids_of(db)[("ids_alert", "10.0.0.7")]
    run("findings", "set-status", i, "resolved", "--note", "done", "--db", db)
    r = CliRunner().invoke(cli, ["findings", "set-status", i, "contained", "--note", "x", "--db", db])
    assert r.exit_code == 2
    assert r.output == f"Error: {i} is resolved: it can move to investigating, not contained\n"


def test_missing_database_is_a_store_error(tmp_path):
    r = CliRunner().invoke(cli, ["findings", "--db", str(tmp_path / "none.db")])
    assert r.exit_code == 5
    assert "none.db: no such database" in r.output


def test_suppress_add_list_remove(db):
    ids = ids_of(db)
    h = ids[("horizontal_scan", "10.0.0.5")]
    r = run("suppress", "add", "--cidr", "10.0.0.0/24", "--detector", "horizontal_scan", "--owner", "bob",
            "--reason", "red team exercise", "--expires", "2030-01-01", "--db", db)
    assert r.output == ("suppression 1 added: cidr 10.0.0.0/24, detector horizontal_scan\n"
                        "suppressed 1 stored finding\n")
    assert run("suppress", "list", "--db", db).output == (
        "  ID  STATE    EXPIRES           HITS  OWNER        MATCH — REASON\n"
        "   1  active   2030-01-01 00:00     1  bob          cidr 10.0.0.0/24, detector horizontal_scan"
        " — red team exercise\n")
    assert run("findings", "--db", db, "--detector", "horizontal_scan").output == "No findings match.\n"
    r = run("suppress", "remove", "1", "--db", db)
    assert r.output == "suppression 1 removed; restored 1 finding to its previous status\n"
    assert run("suppress", "list", "--db", db).output == "No suppressions.\n"
    assert "removed " in run("suppress", "list", "--all", "--db", db).output
    assert run("findings", "--db", db, "--detector", "horizontal_scan").output.splitlines()[1].startswith(h)


def test_assets_import_changes_the_next_analysis(db, tmp_path):
    p = tmp_path / "inventory.csv"
    p.write_text("address,class,name,owner\n10.0.0.5,core_server,erp,finance\n10.1.0.0/16,vip,board,\n")
    r = run("assets", "import", str(p), "--db", db)
    # the stored open finding of the fixture is rescored at once (docs/incidents.md "Rescoring")
    assert r.output == ("imported 2 assets (2 new, 0 replaced)\n"
                        "rescored: 1 finding(s) and 0 incident(s) changed\n")
    assert run("assets", "list", "--db", db).output == (
        "ADDRESS              CLASS                NAME                 OWNER\n"
        "10.0.0.5             core_server          erp                  finance\n"
        "10.1.0.0/16          vip_client           board                -\n")
    analyze_tables(db, only=["horizontal_scan"], conn=sweep("10.0.0.5", start=T0 + 7200))
    first = run("findings", "--db", db).output.splitlines()[1]
    assert first.split()[1:4] == ["9", "3", "2023-11-15"]  # core server: worm 9, tier 3
    bad = tmp_path / "bad.csv"
    bad.write_text("address,class\n10.0.0.300,server\n")
    r = CliRunner().invoke(cli, ["assets", "import", str(bad), "--db", db])
    assert r.exit_code == 3 and "bad.csv:2:" in r.output


# -- export -----------------------------------------------------------------------------------
def test_csv_export_is_safe_against_formula_injection(db):
    put(db, host="10.0.0.66", key="+cmd|' /C calc'!A0", peer="@SUM(1+1)", first_seen=iso(T0),
        summary='=HYPERLINK("http://evil.example/","click")', title="-2+3",
        details={"signature": "\tTAB"})
    put(db, host="10.0.0.67", key="\rCR", first_seen=iso(T0), summary="plain, with comma")
    r = run("findings", "export", "--format", "csv", "--host", "10.0.0.66/31", "--db", db)
    rows = sorted(csv.DictReader(io.StringIO(r.output, newline="")), key=lambda x: x["host"])
    assert [(x["key"], x["peer"], x["summary"], x["title"]) for x in rows] == [
        ("'+cmd|' /C calc'!A0", "'@SUM(1+1)", "'=HYPERLINK(\"http://evil.example/\",\"click\")", "'-2+3"),
        ("'\rCR", "", "plain, with comma", "Suricata alert"),
    ]
    assert rows[0]["urgency"] == "5" and rows[0]["details"] == '{"signature": "\\tTAB"}'
    for row in list(csv.reader(io.StringIO(r.output, newline="")))[1:]:
        assert not any(cell.startswith(cli_triage.CSV_DANGEROUS) for cell in row)


@pytest.mark.parametrize("value, expected", [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@a", "'@a"), ("\tx", "'\tx"), ("\rx", "'\rx"),
    ("a=1", "a=1"), ("", ""), (-1, -1), (None, None), (2.5, 2.5),
])
def test_csv_cell(value, expected):
    assert cli_triage.csv_cell(value) == expected


def test_jsonl_export(db, tmp_path):
    out = tmp_path / "f.jsonl"
    r = run("findings", "export", "--status", "suppressed", "-o", str(out), "--db", db)
    assert r.exit_code == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(x["host"], x["status"], x["suppressed_reason"][:24]) for x in recs] == [
        ("10.0.0.6", "suppressed", "app usage: bittorrent (c")]
    assert recs[0]["score_terms"]["terms"][0] == {"term": "matrix[worm][client]", "value": 6}
    assert list(recs[0]) == list(export_record.COLUMNS) + [
        "attack", "evidence", "details", "score_terms", "incident"]
    assert [t["id"] for t in recs[0]["attack"]] == list(REGISTRY[recs[0]["detector"]].attack)


# -- tune suricata ----------------------------------------------------------------------------
# Suricata threshold.config: suppress gen_id <gid>, sig_id <sid>[, track <by_src|by_dst|by_either>, ip <ip|cidr>]
SUPPRESS_LINE = re.compile(
    r"^suppress gen_id (?P<gid>[0-9]+), sig_id (?P<sid>[0-9]+)"
    r"(?:, track (?P<track>by_src|by_dst|by_either), ip (?P<ip>[0-9A-Fa-f:.]+(?:/[0-9]{1,3})?))?$")


def parse_threshold_config(text: str) -> list[dict]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = SUPPRESS_LINE.match(line)
        assert m, f"line {n} is not valid threshold.config: {line!r}"
        out.append({k: v for k, v in m.groupdict().items() if v is not None})
    return out


def test_tune_suricata_from_false_positives_and_rules(db):
    i = ids_of(db)[("ids_alert", "10.0.0.7")]
    dst = ids_finding(db, host="10.0.0.9", sid=2001219, sig="ET SCAN Potential SSH Scan", role="dst")
    both = ids_finding(db, host="fd00::9", sid=2002024, sig="ET CHAT IRC NICK command", role=None)
    sig = ids_finding(db, host="10.0.0.10", sid=2100498, sig="GPL ATTACK_RESPONSE id check returned root")
    run("findings", "set-status", i, "false_positive", "--note", "DBA's own scanner\nsuppress gen_id 1, sig_id 1",
        "--suppress", "host", "--db", db)
    run("findings", "set-status", dst, "false_positive", "--note", "backup job", "--db", db)
    run("findings", "set-status", both, "false_positive", "--note", "lab", "--db", db)
    run("findings", "set-status", sig, "false_positive", "--note", "noisy rule", "--suppress", "signature",
        "--db", db)
    run("suppress", "add", "--sid", "2013028", "--peer", "198.51.100.0/24", "--owner", "bob",
        "--reason", "cdn", "--db", db)
    r = run("tune", "suricata", "--db", db)
    assert r.exit_code == 0
    assert parse_threshold_config(r.output) == [
        {"gid": "1", "sid": "2010935", "track": "by_src", "ip": "10.0.0.7"},
        {"gid": "1", "sid": "2001219", "track": "by_dst", "ip": "10.0.0.9"},
        {"gid": "1", "sid": "2002024", "track": "by_either", "ip": "fd00::9"},
        {"gid": "1", "sid": "2100498"},  # --suppress signature: the whole rule
    ]
    comments = [line for line in r.output.splitlines() if line.startswith("#")]
    assert comments[1] == (f"# {i} \"ET POLICY Suspicious inbound to MSSQL port 1433\" 10.0.0.7: "
                           "false_positive by alice (2024-06-01): DBA's own scanner suppress gen_id 1, sig_id 1")
    assert "# rule 3 (sid 2013028) not expressible in threshold.config (peer condition); skipped" in comments


def test_tune_with_nothing_to_do(db):
    assert run("tune", "suricata", "--db", db).output == (
        "# zeekwatch tune suricata: add to threshold.config (suppress lines)\n"
        "# nothing to suppress: no ids_alert finding is marked false_positive\n")


# -- every command has help and is documented ---------------------------------------------------
def test_every_triage_command_has_help_and_is_documented():
    doc = (ROOT / "docs" / "triage.md").read_text()
    groups = [cli_triage.findings, cli_triage.suppress_group, cli_triage.assets_group, cli_triage.tune_group]
    for group in groups:
        assert group.help
        for name, cmd in list(getattr(group, "commands", {}).items()):
            assert cmd.help, name
            assert f"zeekwatch {group.name} {name}" in doc, name
        assert f"zeekwatch {group.name}" in doc


def test_the_documented_config_block_is_valid():
    import tomllib

    from zeekwatch.config import from_dict
    from zeekwatch.triage.stage import TriageStage

    doc = (ROOT / "docs" / "triage.md").read_text()
    block = re.search(r"## Configuration\n\n```toml\n(.*?)```", doc, re.S).group(1)
    stage = TriageStage(from_dict(tomllib.loads(block)))
    assert stage.scorer.asset_class("10.0.1.5") == ("core_server", "scoring.assets")
    assert ("exact", "slack.example-proxy.net", "slack.example-proxy.net", "slack") in stage.settings.rules.domains


@pytest.mark.shared
def test_end_to_end_real_suricata_alerts_to_threshold_config(tmp_path):
    import importlib.util

    from conftest import shared_file

    from zeekwatch.detectors import REGISTRY

    if importlib.util.find_spec("zeekwatch.readers.eve.reader") is None or "ids_alert" not in REGISTRY:
        pytest.skip("the EVE reader or the ids_alert detector is not there yet")
    eve = shared_file("frank-suricata/wrccdc-2018/alerts-only.eve.ndjson")
    db = str(tmp_path / "f.db")
    r = run("analyze", eve, "--db", db, "--json")
    assert r.exit_code == 0, r.output
    queue = run("findings", "--db", db, "--detector", "ids_alert", "--host", "10.47.1.10").output
    fid = queue.splitlines()[1].split()[0]
    assert "ETERNALBLUE MS17-010 Echo Response" in queue
    run("findings", "set-status", fid, "false_positive", "--note", "lab replay", "--db", db)
    # app usage of the IRC clients is stored, and explains nothing by itself
    s = Store(db)
    assert {(u["host"], u["app"]) for u in s.db["app_usage"].rows} == {
        ("10.128.0.215", "irc"), ("10.47.7.152", "irc")}
    s.close()
    lines = parse_threshold_config(run("tune", "suricata", "--db", db).output)
    assert lines == [{"gid": "1", "sid": "2024218", "track": "by_src", "ip": "10.47.1.10"}]
