"""The console in a real browser: the real `zeekwatch dashboard` over a database made by the real
`zeekwatch analyze`, and the HTML report from `zeekwatch report`, in headless Debian chromium.

Every page: no console error, no dialog (an executed alert), no request leaving the machine.
Screenshots go to build/test-artifacts/console/ (docs/console.md uses them).
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import pytest
from console_helpers import (
    XSS_HOST,
    XSS_IMG,
    XSS_SCRIPT,
    Watch,
    chromium,
    dashboard,
    make_console_db,
    open_page,
    query,
    run,
    shot,
    xss_dns_log,
)

from zeekwatch.console.panels import PANELS

pytestmark = pytest.mark.slow
OPEN = "status IN ('new', 'investigating', 'contained')"
CHARTS = [n for n, p in PANELS.items() if p.get("kind") != "metric"]


@pytest.fixture(scope="module")
def browser():
    path = chromium()
    from playwright.sync_api import sync_playwright

    from console_helpers import CHROMIUM_ARGS
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return make_console_db(tmp_path_factory.mktemp("console"))


@pytest.fixture(scope="module")
def server(db):
    with dashboard(db) as (base, _):
        yield base


def wait_charts(page, names=CHARTS):
    """Wait until every chart of ``names`` has drawn its SVG (or its metric)."""
    sel = ", ".join(f"#chart-{n} svg.marks" for n in names)
    page.wait_for_function(f"document.querySelectorAll({sel!r}).length >= {len(names)}", timeout=20000)
    page.wait_for_function("document.querySelector('#chart-open_count p') !== null", timeout=20000)


def labels(page, chart: str) -> list[dict]:
    """The bars of a vega chart as dicts, from the aria-labels vega writes on each mark."""
    out = []
    for text in page.eval_on_selector_all(f"#chart-{chart} svg path[aria-roledescription=bar]",
                                          "els => els.map(e => e.getAttribute('aria-label'))"):
        out.append(dict(part.split(": ", 1) for part in (text or "").split("; ") if ": " in part))
    return out


def test_dashboard_panels_render_and_show_the_database_counts(browser, server, db):
    watch = Watch()
    page = open_page(browser, watch, height=1800)
    page.goto(server + "/-/dashboards/zeekwatch")
    wait_charts(page)
    shot(page, "dashboard")
    open_n = query(db, f"SELECT count(*) FROM findings WHERE {OPEN}")[0][0]
    overdue = query(db, f"SELECT count(*) FROM findings WHERE {OPEN} AND due_at < ?",
                    ["9999"])[0][0]  # the scenario data is from 2024: everything open is overdue
    assert page.inner_text("#chart-open_count").strip() == str(open_n)
    assert page.inner_text("#chart-overdue_count").strip() == str(overdue)
    for name in CHARTS:
        assert page.locator(f"#chart-{name} svg .mark-rect path").count() > 0, f"{name} drew no marks"
    per_det = {(b["detector"], b["outcome"]): int(b["findings"]) for b in labels(page, "per_detector")}
    expect = {(d, "suppressed" if s == "suppressed" else "raised"): n for d, s, n in query(
        db, "SELECT detector, CASE WHEN status = 'suppressed' THEN 'suppressed' ELSE 'raised' END, "
            "count(*) FROM findings GROUP BY 1, 2")}
    assert per_det == expect
    hosts = {b["host"]: int(b["urgency"]) for b in labels(page, "top_hosts")}
    top = dict(query(db, f"SELECT host, max(urgency) FROM findings WHERE {OPEN} GROUP BY host "
                         "ORDER BY 2 DESC, count(*) DESC, host LIMIT 15"))
    assert hosts == top
    assert sum(int(b["alarms"]) for b in labels(page, "alarms_over_time")) == query(
        db, "SELECT count(*) FROM findings WHERE status <> 'suppressed'")[0][0]
    suppressed = sum(int(b["findings"]) for b in labels(page, "suppressed_why"))
    assert suppressed == query(db, "SELECT count(*) FROM findings WHERE status = 'suppressed'")[0][0] > 0
    usage = {(b["host"], b["app"]): int(b["connections / records"]) for b in labels(page, "app_usage")}
    assert usage == {(h, a): n for h, a, n in query(
        db, "SELECT host, app, sum(count) FROM app_usage GROUP BY 1, 2")}
    watch.clean()


def test_a_filter_changes_the_counts(browser, server, db):
    watch = Watch()
    page = open_page(browser, watch)
    page.goto(server + "/-/dashboards/zeekwatch")
    wait_charts(page)
    page.select_option("select#detector", "ids_alert")
    page.fill("input#net", "192.168.0.0/16")
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(r"detector=ids_alert"))
    wait_charts(page)
    want = query(db, f"SELECT host FROM findings WHERE {OPEN} AND detector = 'ids_alert'")
    import ipaddress
    net = ipaddress.ip_network("192.168.0.0/16")
    n = sum(1 for (h,) in want if ipaddress.ip_address(h) in net)
    total = query(db, f"SELECT count(*) FROM findings WHERE {OPEN}")[0][0]
    assert n != total
    assert page.inner_text("#chart-open_count").strip() == str(n)
    shot(page, "dashboard-filtered")
    watch.clean()


def test_clicking_a_host_opens_its_page(browser, server, db):
    watch = Watch()
    page = open_page(browser, watch)
    page.goto(server + "/-/dashboards/zeekwatch")
    wait_charts(page)
    first = labels(page, "top_hosts")[0]["host"]
    page.click("#chart-top_hosts svg .mark-rect path >> nth=0")
    page.wait_for_url(re.compile(r"/-/zeekwatch/host/"))
    page.wait_for_selector("#zw-timeline svg .mark-symbol path")
    assert page.inner_text("#zw-host") == first
    rows = page.locator("#zw-host-findings tbody tr").count()
    assert rows == query(db, "SELECT count(*) FROM findings WHERE host = ?", [first])[0][0]
    assert page.locator("#zw-timeline svg .mark-rect path").count() >= rows
    shot(page, "host")
    # and on to a finding of that host
    page.click("#zw-host-findings tbody tr >> nth=0 >> a")
    page.wait_for_url(re.compile(r"/-/zeekwatch/finding/"))
    fid = page.inner_text("#zw-finding-id").split()[0]
    assert query(db, "SELECT host FROM findings WHERE id = ?", [fid])[0][0] == first
    assert page.locator("#zw-evidence tbody tr").count() == max(1, query(
        db, "SELECT count(*) FROM evidence WHERE finding_id = ?", [fid])[0][0])
    assert page.locator("#zw-terms tbody tr").count() >= 2
    assert page.locator("#zw-steps li").count() >= 3
    shot(page, "finding")
    watch.clean()


def test_open_findings_page_lists_overdue_first_and_filters(browser, server, db):
    watch = Watch()
    page = open_page(browser, watch)
    page.goto(server + "/-/zeekwatch/open")
    total = query(db, f"SELECT count(*) FROM findings WHERE {OPEN}")[0][0]
    assert page.inner_text("#zw-total").startswith(f"{total:,} finding")
    tiers = [int(t) for t in page.eval_on_selector_all(
        "#zw-findings tbody tr td:nth-child(4)", "els => els.map(e => e.textContent)")]
    assert tiers == sorted(tiers, reverse=True)  # all overdue (2024 data): highest tier first
    shot(page, "open-findings", full=False)
    # the highest tier holding some, not all, of the open findings
    counts = {t: query(db, f"SELECT count(*) FROM findings WHERE {OPEN} AND tier = ?", [t])[0][0]
              for t in (3, 2, 1)}
    tier, n = next((t, c) for t, c in counts.items() if 0 < c < total)
    page.select_option("select#zw-tier", str(tier))
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(rf"tier={tier}"))
    assert page.inner_text("#zw-total").startswith(f"{n:,} finding")
    host = page.inner_text("#zw-findings tbody tr >> nth=0 >> a.zw-host")
    page.click("#zw-findings tbody tr >> nth=0 >> a.zw-host")
    page.wait_for_url(re.compile(r"/-/zeekwatch/host/"))
    assert page.inner_text("#zw-host") == host
    watch.clean()


def test_network_values_render_as_text_and_run_nothing(browser, server, db):
    fid = query(db, "SELECT id FROM findings WHERE host = ? AND detector = 'mx_burst'", [XSS_HOST])[0][0]
    stored = [v for (v,) in query(db, "SELECT value FROM evidence WHERE finding_id = ?", [fid])]
    assert XSS_SCRIPT in stored and XSS_IMG in stored  # planted through the DNS log
    watch = Watch()
    page = open_page(browser, watch)
    net = urllib.parse.quote(XSS_HOST)
    for path in (f"/-/zeekwatch/finding/{fid}", f"/-/zeekwatch/host/{XSS_HOST}",
                 f"/-/zeekwatch/open?net={net}", "/console/evidence?finding_id=" + fid,
                 "/-/dashboards/zeekwatch?net=" + urllib.parse.quote(XSS_IMG)):
        page.goto(server + path)
        page.wait_for_load_state("networkidle")
        assert page.locator("img[src=x]").count() == 0, path
        assert page.evaluate("Array.from(document.scripts).filter(s => s.type !== "
                             "'application/json' && s.textContent.includes('alert(')).length") == 0, path
    page.goto(server + f"/-/zeekwatch/finding/{fid}")
    text = page.inner_text("#zw-evidence")
    assert XSS_SCRIPT in text and XSS_IMG in text  # shown, as text
    shot(page, "finding-xss")
    page.goto(server + "/-/dashboards/zeekwatch?net=" + urllib.parse.quote(XSS_IMG))
    assert page.input_value("input#net") == XSS_IMG
    watch.clean()


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=20) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_no_arbitrary_sql_and_no_writes_unless_enabled(server, db):
    arbitrary = urllib.parse.quote("SELECT * FROM audit")
    assert get(f"{server}/console.json?sql={arbitrary}")[0] == 403
    assert get(f"{server}/console?sql={arbitrary}")[0] == 403
    status, page = get(f"{server}/console")
    assert status == 200 and "<textarea" not in page
    # a chart's query with its filter clauses resolved is what the dashboard sends: allowed;
    # the same with anything changed is not
    from zeekwatch.console.panels import resolve
    ok = resolve(PANELS["per_detector"]["query"], {"tier": "2"})
    assert get(f"{server}/console.json?sql={urllib.parse.quote(ok)}&tier=2&_shape=objects")[0] == 200
    assert get(f"{server}/console.json?sql={urllib.parse.quote(ok)}&_shape=objects")[0] == 403
    assert get(f"{server}/console.json?sql={urllib.parse.quote(ok + ' UNION SELECT 1, 2, 3')}"
               "&tier=2")[0] == 403
    before = query(db, "SELECT count(*), max(updated_at) FROM findings")
    for path, body in (("/console/findings", b"status=resolved"),
                       ("/console/findings/-/insert", b'{"row": {"id": "x"}}'),
                       ("/console/-/create", b'{"table": "x", "row": {"id": 1}}')):
        req = urllib.request.Request(server + path, data=body, method="POST")
        try:
            urllib.request.urlopen(req, timeout=20)
            code = 200
        except urllib.error.HTTPError as e:
            code = e.code  # Datasette 0.65: "You may only POST to a canned query" / not found
        assert code >= 400, path
    assert query(db, "SELECT count(*), max(updated_at) FROM findings") == before


def test_enable_sql_and_host_warning(db):
    with dashboard(db, "--enable-sql", "--host", "127.0.0.2") as (base, proc):
        status, body = get(f"{base}/console.json?sql=" + urllib.parse.quote("SELECT count(*) AS n FROM audit"))
        assert status == 200 and '"rows"' in body
    out, err = proc.communicate(timeout=10)
    assert "warning: listening on 127.0.0.2" in err and "arbitrary read-only SQL is enabled" in err
    assert "http://127.0.0.2:" in out


def test_the_dashboard_shows_what_a_writer_adds_meanwhile(browser, db, tmp_path):
    copy = str(tmp_path / "live.db")
    src, dst = sqlite3.connect(db), sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    dst.close()
    watch = Watch()
    page = open_page(browser, watch)
    with dashboard(copy) as (base, _):
        page.goto(base + "/-/dashboards/zeekwatch")
        wait_charts(page)
        before = int(page.inner_text("#chart-open_count"))
        log = xss_dns_log(tmp_path / "dns.log")
        text = open(log).read().replace(XSS_HOST, "10.77.0.5")
        open(log, "w").write(text)
        run("analyze", "-q", log, "--db", copy)  # a writer (WAL) while the console reads
        page.reload()
        wait_charts(page)
        assert int(page.inner_text("#chart-open_count")) == before + 1
    watch.clean()


def test_report_opens_offline_with_the_same_panels(browser, db, tmp_path):
    html = tmp_path / "report.html"
    out = run("report", "--html", str(html), "--db", db).stdout
    assert str(html) in out.replace("\n", "")
    watch = Watch()
    page = open_page(browser, watch, height=1800)
    page.goto(html.as_uri())
    page.wait_for_load_state("load")
    for name in CHARTS:
        assert page.locator(f"#panel-{name} svg .mark-rect path").count() > 0, name
    open_n = query(db, f"SELECT count(*) FROM findings WHERE {OPEN}")[0][0]
    assert page.inner_text("#metric-open_count .value") == f"{open_n:,}"
    assert page.inner_text("#open-total").startswith(f"{open_n:,} open")
    assert page.locator("#open-findings tbody tr").count() == min(open_n, 500)
    assert XSS_SCRIPT in page.inner_text("#open-findings") and page.locator("img[src=x]").count() == 0
    assert page.evaluate("document.scripts.length") == 0  # static: nothing to run
    shot(page, "report", full=False)
    pdf = page.pdf(format="A4")  # printable
    assert pdf[:4] == b"%PDF" and len(pdf) > 10_000
    watch.clean()
    assert not watch.outside


def test_demo_makefile_writes_a_report_and_says_how_to_start_the_dashboard():
    from conftest import ROOT
    text = (ROOT / "Makefile").read_text()
    demo = text.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "zeekwatch report --html" in demo and "zeekwatch dashboard" in demo
    assert shutil.which("make") is None or subprocess.run(
        ["make", "-n", "demo"], cwd=ROOT, capture_output=True, text=True).returncode == 0
