"""The real `zeekwatch` command: help for every command, analyze end to end, errors."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import conn, zeek_tsv

from zeekwatch.cli.main import cli

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "setup.cfg").exists())
EXE = Path(sys.executable).parent / "zeekwatch"


def all_commands(group=cli, prefix=()):
    for name, cmd in group.commands.items():
        yield prefix + (name,), cmd
        if hasattr(cmd, "commands"):
            yield from all_commands(cmd, prefix + (name,))


@pytest.mark.parametrize("path", [p for p, _ in all_commands()], ids=" ".join)
def test_every_command_has_help(path):
    result = CliRunner().invoke(cli, list(path) + ["--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output
    cmd = dict(all_commands())[path]
    assert (cmd.help or "").strip(), f"{' '.join(path)} has no help text"


def test_readme_mentions_every_top_level_command():
    readme = (ROOT / "README.md").read_text()
    for name in cli.commands:
        assert f"zeekwatch {name}" in readme, f"README does not mention `zeekwatch {name}`"


def scan_log(tmp_path):
    rows = [conn(1_700_000_000 + i, "10.0.0.5", f"203.0.113.{i + 1}", 445, conn_state="S0")
            for i in range(30)]
    rows += [conn(1_700_000_100 + i, "10.0.0.7", "10.0.0.9", 80, conn_state="SF", service="http")
             for i in range(5)]
    return zeek_tsv(tmp_path / "conn.log", "conn", rows)


def run(*args, cwd=None):
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_analyze_end_to_end_is_idempotent(tmp_path):
    pytest.importorskip("zeekwatch.readers.zeek.tsv")
    log = scan_log(tmp_path)
    db = str(tmp_path / "f.db")
    first = run("analyze", log, "--db", db, "--json")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["records"] == {"conn": 35}
    assert summary["findings_new"] >= 1
    assert list(summary["steps"]) == ["read", "detect", "triage", "store", "incidents", "learn"]
    assert "horizontal_scan" in summary["detector_seconds"]
    assert sum(summary["detector_seconds"].values()) <= summary["steps"]["detect"] + 0.01
    assert sum(summary["steps"].values()) <= summary["seconds"] + 0.01
    con = sqlite3.connect(db)
    rows = con.execute("SELECT detector, host, key, status, urgency, tier FROM findings "
                       "WHERE detector = 'horizontal_scan'").fetchall()
    assert rows == [("horizontal_scan", "10.0.0.5", "tcp/445", "new", rows[0][4], rows[0][5])]
    assert 1 <= rows[0][4] <= 10
    before = con.execute("SELECT * FROM findings ORDER BY id").fetchall()
    second = run("analyze", log, "--db", db, "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["findings_new"] == 0
    assert con.execute("SELECT * FROM findings ORDER BY id").fetchall() == before
    assert con.execute("SELECT count(*) FROM runs WHERE status = 'ok'").fetchone()[0] == 2


def test_the_command_exits_hard_but_flushes_everything_first(tmp_path):
    # the console script ends with os._exit (cli.entry): output must be complete, in a
    # file and in a pipe, and a reader that closes the pipe early must cause no traceback
    out = tmp_path / "out.txt"
    with open(out, "w") as f:
        res = subprocess.run([str(EXE), "detectors"], stdout=f, stderr=subprocess.PIPE, text=True,
                             timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert res.returncode == 0, res.stderr
    text = out.read_text()
    for det in ("horizontal_scan", "ids_alert", "non_web_on_web_port"):
        assert det in text
    piped = subprocess.run(f"'{EXE}' detectors | head -n 1", shell=True, capture_output=True,
                           text=True, timeout=120)
    assert piped.stdout.count("\n") == 1 and "Traceback" not in piped.stderr


def test_analyze_refuses_a_text_file_by_name(tmp_path):
    p = tmp_path / "conn.log"
    p.write_text("Lorem ipsum dolor sit amet\nconsectetur adipiscing elit\n")
    res = run("analyze", str(p), "--db", str(tmp_path / "f.db"))
    assert res.returncode == 3
    assert f"error: {p}: not a Zeek log, Suricata EVE file or capture" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "f.db").exists()  # refused before anything was written


def test_missing_path_and_bad_config_exit_codes(tmp_path):
    res = run("analyze", str(tmp_path / "nope.log"), "--db", str(tmp_path / "f.db"))
    assert res.returncode == 3 and "no such file or directory" in res.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[networks]\ninternal = ['not-a-cidr']\n")
    res = run("--config", str(bad), "analyze", str(tmp_path), "--db", str(tmp_path / "f.db"))
    assert res.returncode == 4 and "networks.internal: 'not-a-cidr'" in res.stderr


def test_config_init_writes_the_sample(tmp_path):
    res = run("config", "init", str(tmp_path / "z.toml"))
    assert res.returncode == 0
    text = (tmp_path / "z.toml").read_text()
    assert "[networks]" in text and "[detectors.horizontal_scan]" in text
    assert run("config", "check", str(tmp_path / "z.toml")).returncode == 0
    again = run("config", "init", str(tmp_path / "z.toml"))
    assert again.returncode != 0 and "exists; use --force" in again.stderr


def test_directory_with_a_readme_skips_it(tmp_path):
    pytest.importorskip("zeekwatch.readers.zeek.tsv")
    scan_log(tmp_path)
    (tmp_path / "README").write_text("These are the logs of sensor 3.\n")
    res = run("analyze", str(tmp_path), "--db", str(tmp_path / "f.db"), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert [s["path"] for s in out["skipped"]] == [os.path.join(str(tmp_path), "README")]


def test_store_db_of_the_config_is_the_default_database(tmp_path):
    cfg = tmp_path / "z.toml"
    cfg.write_text('[store]\ndb = "site.db"\n')
    cap = str(ROOT / "pcaps" / "irc_bot.pcap")
    res = run("--config", str(cfg), "analyze", cap, "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["db"] == "site.db" and (tmp_path / "site.db").exists()
    listed = run("--config", str(cfg), "findings", cwd=tmp_path)
    assert listed.returncode == 0 and "c2_port" in listed.stdout


@pytest.mark.parametrize("command", [["findings"], ["suppress", "list"], ["detectors"],
                                     ["analyze", "nothing.log"], ["tune", "suricata"]])
def test_a_missing_config_is_exit_4_for_every_command(tmp_path, command):
    result = run("--config", str(tmp_path / "nosuch.toml"), *command, "--db", str(tmp_path / "f.db")) \
        if command[0] in ("findings", "analyze") else run("--config", str(tmp_path / "nosuch.toml"), *command)
    assert result.returncode == 4, result.stderr
    assert "nosuch.toml: no such config file" in result.stderr
    assert not (tmp_path / "f.db").exists()


def test_an_invalid_detector_value_is_exit_4_before_anything_is_written(tmp_path):
    cfg = tmp_path / "z.toml"
    cfg.write_text("[detectors.mass_mailer]\nmin_servers = \"(SELECT 1)\"\n")
    db = tmp_path / "f.db"
    result = run("--config", str(cfg), "analyze", scan_log(tmp_path), "--db", str(db))
    assert result.returncode == 4, result.stderr
    assert "detectors.mass_mailer.min_servers" in result.stderr and "is not an integer" in result.stderr
    assert run("config", "check", str(cfg)).returncode == 4
    assert not db.exists()


def test_detectors_shows_the_configured_values(tmp_path):
    cfg = tmp_path / "z.toml"
    cfg.write_text("[detectors.horizontal_scan]\nmin_hosts = 33\n[detectors.ping_sweep]\nenabled = false\n")
    result = CliRunner().invoke(cli, ["--config", str(cfg), "detectors", "horizontal_scan"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "min_hosts" in line and "netbios" not in line)
    assert "33" in row and "20" in row  # value in effect, and the default beside it
    listing = CliRunner().invoke(cli, ["--config", str(cfg), "detectors"], terminal_width=200)
    assert "disabled" in next(line for line in listing.output.splitlines() if "ping_sweep" in line)
    assert CliRunner().invoke(cli, ["detectors", "nosuch"]).exit_code == 2
