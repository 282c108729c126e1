"""The console's queries, access rule and pages without a browser: every panel's SQL on a real
analysed database with every filter, the chart-only SQL rule through Datasette's own client,
and databases without the optional tables."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import urllib.parse

import pytest
from conftest import PCAPS

from zeekwatch.config import load
from zeekwatch.console import pages, sqlfns
from zeekwatch.console.panels import FILTERS, PANELS, family, resolve
from zeekwatch.finding import Finding
from zeekwatch.store.db import Store

datasette = pytest.importorskip("datasette", reason="the console extra is not installed")

OPTIONS = {"since": "2024-03-12", "until": "2024-03-12", "net": "10.0.0.0/8",
           "detector": "horizontal_scan", "status": "open", "tier": "2"}


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    from zeekwatch.app.analyze import analyze

    path = str(tmp_path_factory.mktemp("console") / "scen.db")
    analyze(sorted(str(p) for p in PCAPS.glob("*.pcap")), load(str(PCAPS / "zeekwatch.toml")), path)
    return path


def connect(path):
    c = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    sqlfns.register(c)
    return c


def test_resolve_matches_datasette_dashboards():
    from datasette_dashboards import replace_opts_in_query

    for n in range(len(FILTERS) + 1):
        for keys in itertools.combinations(FILTERS, n):
            opts = {k: OPTIONS[k] for k in keys}
            for p in PANELS.values():
                assert resolve(p["query"], opts) == replace_opts_in_query(p["query"], opts)
    assert resolve("x [[ AND a = :a ]]", {"a": ""}) == "x "


def test_in_net_and_family():
    assert sqlfns.in_net("10.1.2.3", "10.0.0.0/8") == 1
    assert sqlfns.in_net("10.1.2.3", "10.1.2.3") == 1
    assert sqlfns.in_net("192.168.1.1", "10.0.0.0/8") == 0
    assert sqlfns.in_net("fd00::1", "fc00::/7") == 1
    assert sqlfns.in_net("fd00::1", "10.0.0.0/8") == 0
    for bad in ("not a net", "10.0.0.0/99", "'; DROP TABLE findings; --", ""):
        assert sqlfns.in_net("10.1.2.3", bad) == 0
    assert sqlfns.in_net("garbage", "10.0.0.0/8") == 0
    assert family("worm") == "worm/scan" and family("ids") == "IDS" and family(None) == "other"


@pytest.mark.parametrize("name", list(PANELS))
def test_every_panel_runs_with_every_filter(db, name):
    c = connect(db)
    for n in (0, 1, len(FILTERS)):
        for keys in itertools.combinations(FILTERS, n):
            opts = {k: OPTIONS[k] for k in keys}
            sql = resolve(PANELS[name]["query"], opts)
            pages.rows(c, sql, {k: v for k, v in opts.items() if ":" + k in sql})


def test_filters_select_what_they_say(db):
    c = connect(db)
    everything = pages.rows(c, "SELECT host, detector, tier, status FROM findings")
    sql = resolve(PANELS["open_count"]["query"], {"net": "10.3.0.0/16"})
    n = pages.rows(c, sql, {"net": "10.3.0.0/16"})[0]["n"]
    assert n == sum(1 for f in everything if f["host"].startswith("10.3.")) > 0
    listed = pages.open_list(c, {"detector": "horizontal_scan"})
    assert listed["total"] == sum(1 for f in everything if f["detector"] == "horizontal_scan") == 1
    assert pages.open_list(c, {"net": "not-a-cidr"})["total"] == 0


def test_open_list_orders_overdue_then_tier(db):
    rows = pages.open_list(connect(db), {})["rows"]
    keys = [(-r["overdue"], -r["tier"], -r["urgency"]) for r in rows]
    assert keys == sorted(keys) and len(rows) > 3


def run_client(ds, path):
    async def go():
        return await ds.client.get(path)
    return asyncio.run(go())


def test_only_the_charts_may_run_sql(db):
    from zeekwatch.console.server import build

    ds = build(db)
    name = "scen"
    for panel in PANELS.values():
        sql = resolve(panel["query"], {"net": "10.0.0.0/8"})
        r = run_client(ds, f"/{name}.json?sql={urllib.parse.quote(sql)}&net=10.0.0.0%2F8&_shape=objects")
        assert r.status_code == 200, r.text
    for sql in ("SELECT * FROM audit", "SELECT sqlite_version()"):
        assert run_client(ds, f"/{name}.json?sql={urllib.parse.quote(sql)}").status_code == 403
        assert run_client(ds, f"/{name}?sql={urllib.parse.quote(sql)}").status_code == 403
    assert "<textarea" not in run_client(ds, f"/{name}").text
    assert run_client(build(db, enable_sql=True),
                      f"/{name}.json?sql={urllib.parse.quote('SELECT 1')}").status_code == 200


def test_pages_and_report_tolerate_a_database_without_optional_tables(tmp_path):
    """A database with only the store's own tables (no app_usage, suppression_hits, assets,
    incidents): the pages and the report work; an incidents table is shown when present."""
    from zeekwatch.console.report import write_report

    path = str(tmp_path / "bare.db")
    store = Store(path)
    store.upsert_findings([Finding(detector="horizontal_scan", threat="worm", host="10.0.0.5",
                                   title="Horizontal scan", first_seen="2024-03-12T09:30:00.000000Z",
                                   last_seen="2024-03-12T09:31:00.000000Z", urgency=6, tier=2,
                                   due_at="2024-03-12T17:30:00.000000Z", summary="<b>x</b>",
                                   values=["<script>alert(1)</script>"])], 1, 60)
    store.close()
    c = connect(path)
    assert pages.incidents_open(c, {}) is None
    host = pages.host_data(c, "10.0.0.5")
    assert len(host["findings"]) == 1 and host["usage"] == [] and host["asset_class"] == "unknown"
    info = write_report(path, str(tmp_path / "r.html"))
    text = (tmp_path / "r.html").read_text()
    assert info["findings"] == 1 and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script" not in text and "http://" not in text.replace("http://www.w3.org", "")
    w = sqlite3.connect(path)
    w.execute("CREATE TABLE incidents (id INTEGER PRIMARY KEY, host TEXT, status TEXT, tier INT, "
              "due_at TEXT, title TEXT)")
    w.execute("INSERT INTO incidents VALUES (1, '10.0.0.5', 'new', 2, '2024-03-12T17:30:00Z', 't')")
    w.commit()
    w.close()
    c = connect(path)
    assert [i["id"] for i in pages.incidents_open(c, {})] == [1]
    assert len(pages.host_data(c, "10.0.0.5")["incidents"]) == 1


def test_report_cli_errors_are_clear(tmp_path):
    from click.testing import CliRunner

    from zeekwatch.cli.main import cli

    r = CliRunner().invoke(cli, ["report", "--html", str(tmp_path / "r.html"), "--db",
                                 str(tmp_path / "missing.db")])
    assert r.exit_code != 0 and "no such database" in str(r.exception)
    bad = tmp_path / "bad.db"
    bad.write_text("not sqlite")
    r = CliRunner().invoke(cli, ["report", "--html", str(tmp_path / "r.html"), "--db", str(bad)])
    assert r.exit_code != 0 and "cannot read" in str(r.exception)
    assert not (tmp_path / "r.html").exists()


def test_since_limits_the_report(db, tmp_path):
    from zeekwatch.console.report import write_report

    assert write_report(db, str(tmp_path / "all.html"))["findings"] > 0
    assert write_report(db, str(tmp_path / "none.html"), "2030-01-01T00:00:00.000000Z")["findings"] == 0



# analyze makes the incident tables itself now (store/incidents.py); a database from before
# has none, so they are created here if missing, and emptied so the test's one incident is alone
INCIDENT_SCHEMA = ("CREATE TABLE IF NOT EXISTS incidents (id TEXT PRIMARY KEY, host TEXT, direction TEXT, "
                   "first_seen TEXT, last_seen TEXT, urgency INT, tier INT, due_at TEXT, owner TEXT, "
                   "status TEXT, assignee TEXT, threat TEXT, summary TEXT, score_terms TEXT, "
                   "families TEXT, playbook TEXT); "
                   "CREATE TABLE IF NOT EXISTS incident_findings (incident_id TEXT, finding_id TEXT, "
                   "added_at TEXT); "
                   "CREATE TABLE IF NOT EXISTS incident_audit (id INTEGER PRIMARY KEY, incident_id TEXT, "
                   "at TEXT, who TEXT, action TEXT, old_status TEXT, new_status TEXT, note TEXT); "
                   "DELETE FROM incident_findings; DELETE FROM incident_audit; DELETE FROM incidents")


def test_incident_panels_and_page_when_the_table_exists(db, tmp_path):
    """The incidents table (the incidents issue's columns): its panels join the dashboard and
    the report, its page lists the incident's findings; without it they are absent."""
    import shutil

    from zeekwatch.console.report import write_report
    from zeekwatch.console.server import build, dashboard_config

    assert "open_incidents" not in dashboard_config("x")["zeekwatch"]["charts"]
    path = str(tmp_path / "inc.db")
    shutil.copy(db, path)
    w = sqlite3.connect(path)
    w.executescript(INCIDENT_SCHEMA)
    fid = w.execute("SELECT id FROM findings WHERE detector = 'mass_mailer'").fetchone()[0]
    w.execute("INSERT INTO incidents (id, host, first_seen, last_seen, urgency, tier, due_at, "
              "status, threat, summary, score_terms, families) VALUES ('Iabc', '10.2.0.66', "
              "'2024-03-12T09:00:00Z', '2024-03-12T09:11:00Z', 8, 3, '2024-03-12T11:00:00Z', "
              "'new', 'mass_mailer', '<i>mailer</i>', '{\"terms\": [{\"term\": \"m\", \"value\": 8}]}', "
              "'[\"mass mailer\"]')")
    w.execute("INSERT INTO incident_findings VALUES ('Iabc', ?, '2024-03-12T09:12:00Z')", [fid])
    w.commit()
    w.close()
    ds = build(path)
    charts = ds.plugin_config("datasette-dashboards")["zeekwatch"]["charts"]
    assert {"open_incidents", "incidents_by_tier"} <= set(charts)
    sql = resolve(charts["open_incidents"]["query"], {})
    r = run_client(ds, f"/inc.json?sql={urllib.parse.quote(sql)}&_shape=objects")
    assert r.status_code == 200 and r.json()["rows"] == [{"n": 1}]
    page = run_client(ds, "/-/zeekwatch/incident/Iabc")
    assert page.status_code == 200 and fid in page.text and "&lt;i&gt;mailer&lt;/i&gt;" in page.text
    assert run_client(ds, "/-/zeekwatch/incident/nope").status_code == 404
    listed = run_client(ds, "/-/zeekwatch/open")
    assert "/-/zeekwatch/incident/Iabc" in listed.text
    write_report(path, str(tmp_path / "r.html"))
    text = (tmp_path / "r.html").read_text()
    assert 'id="panel-incidents_by_tier"' in text and 'id="metric-open_incidents"' in text


def test_dashboard_refuses_a_port_in_use_clearly(db):
    import socket

    from click.testing import CliRunner

    from zeekwatch.cli.main import cli

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = CliRunner().invoke(cli, ["dashboard", "--db", db, "--port", str(port)])
    assert r.exit_code == 2 and "cannot listen on 127.0.0.1 port" in r.output
    r = CliRunner().invoke(cli, ["dashboard", "--db", db + ".missing"])
    assert r.exit_code != 0 and "no such database" in str(r.exception)


def test_console_doc_shows_the_screenshots_the_browser_tests_take():
    import re

    from conftest import ROOT

    text = (ROOT / "docs" / "console.md").read_text()
    images = re.findall(r"\]\((img/console/[^)]+)\)", text)
    assert len(images) >= 5
    for rel in images:
        assert (ROOT / "docs" / rel).is_file(), rel
        name = rel.rsplit("/", 1)[1].rsplit(".", 1)[0]
        e2e = (ROOT / "tests" / "e2e" / "test_console.py").read_text()
        assert f'shot(page, "{name}"' in e2e, f"{rel} is not taken by the browser tests"
