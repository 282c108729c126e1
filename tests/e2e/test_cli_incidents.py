"""Incident CLI through click's CliRunner, on databases made by the real analysis: the queue
(one line per host, its line count, weak signals behind --all), show (score terms, playbook
of the incident's tier, story), set-status/assign/note, --overdue, export, rescore after
assets import and suppressions, and the host timeline."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest
from click.testing import CliRunner
from helpers import conn, zeek_tsv

from zeekwatch.app.analyze import analyze
from zeekwatch.cli.main import cli
from zeekwatch.config import Config
from zeekwatch.triage import playbooks

T0 = 1_700_043_200  # 2023-11-15 10:13:20 UTC (business hours)


def run(*args, ok=True):
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if ok:
        assert r.exit_code == 0, r.output
    return r


def make_db(tmp_path, rows, name="i.db"):
    log = zeek_tsv(tmp_path / f"{name}.log", "conn", rows)
    db = str(tmp_path / name)
    analyze([log], Config(), db)
    return db


def irc(host, at, peer="203.0.113.66"):
    return conn(at, host, peer, 6667, service="irc", uid=f"Ci{host}{at}", orig_bytes=500,
                resp_bytes=900, duration=30.0)


def scan(host, start=T0, n=25):
    return [conn(start + i, host, f"10.9.8.{i + 1}", 445, conn_state="S0", uid=f"Cs{host}{i}")
            for i in range(n)]


def weak_only(host, at):
    """An established connection on an unusual port: unusual_port alone (weak)."""
    return conn(at, host, "198.51.100.77", 40123, uid=f"Cw{host}", orig_bytes=100, resp_bytes=100)


def queue_ids(output):
    return [line.split()[0] for line in output.splitlines()[1:-1]]


def test_queue_one_line_per_host_and_weak_signals_behind_all(tmp_path):
    db = make_db(tmp_path, [irc("10.0.0.5", T0)] + scan("10.0.0.5", T0 + 60)
                 + scan("10.0.0.6", T0) + [weak_only("10.0.0.8", T0 + 30)])
    r = run("incidents", "--db", db)
    lines = r.output.splitlines()
    assert lines[0].split()[:4] == ["ID", "URG", "TIER", "DUE"]
    hosts = [re.search(r" (\d+\.\d+\.\d+\.\d+) ", line).group(1) for line in lines[1:-1]]
    assert hosts == ["10.0.0.5", "10.0.0.6"]  # most urgent first; the weak host waits
    assert lines[-1] == "2 lines (2 hosts); 1 more wait for company (weak signals only): --all"
    assert "c2_port, horizontal_scan, unusual_port" in lines[1] or "horizontal_scan" in lines[1]
    r = run("incidents", "--all", "--db", db)
    assert r.output.splitlines()[-1] == "3 lines (3 hosts)"
    assert "10.0.0.8" in r.output


@pytest.mark.parametrize("klass, tier", [("client", 2), ("core_server", 3)])
def test_show_prints_score_story_and_the_playbook_of_its_tier(tmp_path, klass, tier):
    db = make_db(tmp_path, [irc("10.0.0.5", T0)])
    inv = tmp_path / "inv.csv"
    inv.write_text(f"address,class\n10.0.0.5,{klass}\n")
    run("assets", "import", str(inv), "--db", db)
    iid = queue_ids(run("incidents", "--db", db).output)[0]
    out = run("incidents", "show", iid[:7], "--db", db).output
    assert f"→ tier {tier}" in out and f"playbook (c2, tier {tier})" in out
    for step in playbooks.text_for(playbooks.load(None), "c2", tier).splitlines():
        assert f"  {step}" in out
    assert "highest finding: c2_port" in out and "story (time order)" in out
    # export carries the playbook
    rec = json.loads(run("incidents", "export", "--db", db).output.splitlines()[0])
    assert rec["playbook"].splitlines()[0].startswith("1. ") and rec["tier"] == tier
    assert len(rec["findings"]) == 2


def test_playbook_tier1_for_an_inbound_scan(tmp_path):
    db = make_db(tmp_path, [conn(T0 + i, "203.0.113.50", "10.0.0.9", 1000 + i, conn_state="S0",
                                 uid=f"Cv{i}") for i in range(25)])
    iid = queue_ids(run("incidents", "--db", db).output)[0]
    out = run("incidents", "show", iid, "--db", db).output
    assert "10.0.0.9 (inbound)" in out and "playbook (inbound, tier 1)" in out
    assert playbooks.text_for(playbooks.load(None), "inbound", 1).splitlines()[0] in out


def test_workflow_overdue_and_history(tmp_path):
    db = make_db(tmp_path, [irc("10.0.0.5", T0)] + scan("10.0.0.6", T0))
    ids = queue_ids(run("incidents", "--db", db).output)
    # data of 2023: everything open is past due
    assert queue_ids(run("incidents", "--overdue", "--db", db).output) == ids
    run("incidents", "assign", ids[0], "carol", "--who", "alice", "--db", db)
    run("incidents", "note", ids[0], "phoned the user", "--who", "alice", "--db", db)
    r = run("incidents", "set-status", ids[0], "resolved", "--note", "reimaged", "--who", "alice",
            "--db", db)
    assert r.output.strip().endswith("2 findings changed with it")
    assert queue_ids(run("incidents", "--overdue", "--db", db).output) == ids[1:]
    r = run("incidents", "set-status", ids[0], "contained", "--note", "x", "--db", db, ok=False)
    assert r.exit_code != 0 and "can move to investigating" in r.output
    out = run("incidents", "show", ids[0], "--db", db).output
    hist = out.split("history\n")[1].splitlines()
    assert [h.split("  ")[2] for h in hist] == ["alice", "alice", "alice"]
    assert "assign: assignee - → carol" in hist[0] and "note: phoned the user" in hist[1]
    assert "new → resolved  set-status: reimaged" in hist[2]
    assert "resolved" in run("findings", "--status", "resolved", "--db", db).output


def test_suppression_rescores_the_incident(tmp_path):
    db = make_db(tmp_path, [irc("10.0.0.5", T0)] + scan("10.0.0.5", T0 + 60))
    before = json.loads(run("incidents", "export", "--db", db).output)
    r = run("suppress", "add", "--detector", "c2_port", "--owner", "bob", "--reason", "IRC is used here",
            "--db", db)
    assert "rescored:" in r.output
    after = json.loads(run("incidents", "export", "--db", db).output)
    assert after["findings_counted"] == before["findings_counted"] - 1
    assert "c2_port" not in after["detectors"] and after["urgency"] < before["urgency"]
    run("suppress", "remove", "1", "--db", db)
    again = json.loads(run("incidents", "export", "--db", db).output)
    assert again["urgency"] == before["urgency"]
    con = sqlite3.connect(db)
    notes = [n for (n,) in con.execute("SELECT note FROM incident_audit WHERE action = 'rescore'")]
    assert len(notes) == 2 and "suppression 1 added" in notes[0] and "suppression 1 removed" in notes[1]


def test_rescore_command_and_host_timeline(tmp_path):
    db = make_db(tmp_path, [irc("10.0.0.5", T0)])
    assert "0 finding(s) and 0 incident(s) changed" in run("rescore", "--db", db).output
    out = run("host", "10.0.0.5", "--db", db).output.splitlines()
    assert out[0] == "10.0.0.5: internal; asset class client (from default)"
    kinds = [line.split()[2] for line in out[1:]]
    assert "incident" in kinds and kinds.count("finding") == 2
    assert run("host", "203.0.113.66", "--db", db).output.splitlines()[0].startswith(
        "203.0.113.66: external; asset class external")


def test_terminal_control_characters_are_not_printed(tmp_path):
    db = make_db(tmp_path, [irc("10.0.0.5", T0)])
    iid = queue_ids(run("incidents", "--db", db).output)[0]
    run("incidents", "note", iid, "evil \x1b[2J text", "--db", db)
    out = run("incidents", "show", iid, "--db", db).output
    assert "\x1b" not in out and "evil \\x1b[2J text" in out
