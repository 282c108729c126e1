"""The console benchmark's pieces (the suite itself is registered in bench.py): the databases
and the time to a fully rendered page in headless chromium.

- ``demo_db``: `zeekwatch analyze` of the pcaps/ scenarios (what `make demo` makes);
- ``big_db``: that, plus ``n`` (100 k) findings written through the store's own API
  (``Store.upsert_findings``, ``TriageStore``): 2,000 hosts over 30 days, every detector, scored,
  5 % suppressed by a rule, 3 evidence uids each, and 5,000 app-usage rows. Cached in
  bench-data/console/ (rebuilt when ``n`` changes).
- ``page_seconds``: starts the real `zeekwatch dashboard` on a free port and chromium, loads the
  page once to warm the server, then times a load in a fresh browser context (cold cache: the
  800 kB of vega is fetched and parsed) until the page's content is drawn: every chart's SVG
  for the dashboard, the findings table for the open-findings page, the timeline's marks for a
  host page.
"""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXE = Path(sys.executable).parent / "zeekwatch"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]
HOSTS = 2_000
DAY = 86_400
T0 = 1_709_251_200  # 2024-03-01


def demo_db(folder: Path) -> Path:
    db = folder / "demo.db"
    if not db.exists():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(EXE), "--config", str(ROOT / "pcaps" / "zeekwatch.toml"), "analyze", "-q",
                        *sorted(str(p) for p in (ROOT / "pcaps").glob("*.pcap")), "--db", str(db)],
                       check=True, capture_output=True)
    return db


def address(i: int) -> str:
    h = i % HOSTS
    return f"10.{20 + h // 250}.0.{1 + h % 250}"


def candidates(n: int, rng: random.Random) -> list:
    """``n`` scored findings (``Finding``) as the triage stage hands them to the store."""
    from zeekwatch.detectors import REGISTRY
    from zeekwatch.finding import Finding
    from zeekwatch.timefmt import iso
    from zeekwatch.triage.score import tier_for

    dets = list(REGISTRY.values())
    out = []
    for i in range(n):
        det, host = dets[i % len(dets)], address(i)
        start = T0 + rng.randrange(30 * DAY)
        urgency = rng.randint(1, 10)
        tier = tier_for(urgency)
        status = rng.choices(["new", "investigating", "resolved", "suppressed"], [80, 8, 7, 5])[0]
        out.append(Finding(
            detector=det.id, threat=det.threat, host=host,
            peer=f"203.0.113.{i % 250}", key=f"k{i}", first_seen=iso(start),
            last_seen=iso(start + rng.randrange(3600)), observed=30, threshold=20,
            urgency=urgency, tier=tier.number, due_at=iso(start + tier.hours * 3600),
            status=status, summary=f"{host} synthetic {det.id} finding {i}",
            suppressed_reason="bench rule" if status == "suppressed" else None,
            title=det.title, distinct_total=3, values=["a", "b", "c"],
            evidence_total=3, details={"n": i},
            score_terms={"asset_class": "client", "terms": [{"term": "matrix", "value": urgency}]},
            uids=[f"C{i}a", f"C{i}b", f"C{i}c"]))
    return out


def usage_rows(n: int, rng: random.Random) -> list[dict]:
    from zeekwatch.timefmt import iso

    apps = [("bittorrent", "p2p"), ("stun", "voip"), ("irc", "im"), ("xmpp", "im"), ("skype", "voip")]
    out = []
    for i in range(n):
        app, cat = apps[i % len(apps)]
        start = T0 + rng.randrange(30 * DAY)
        out.append({"host": address(i), "app": app, "category": cat, "source": "conn",
                    "evidence": f"bench {i}", "first_seen": iso(start), "last_seen": iso(start + 600),
                    "count": 1 + i % 40})
    return out


def big_db(folder: Path, n: int) -> Path:
    db = folder / f"findings-{n}.db"
    if db.exists():
        return db
    import shutil

    from zeekwatch.store.db import Store
    from zeekwatch.store.triage import TriageStore

    tmp = db.with_suffix(".tmp")
    shutil.copy(demo_db(folder), tmp)
    store = Store(str(tmp))
    triage = TriageStore(store)
    rng = random.Random(1)
    cands = candidates(n, rng)
    for k in range(0, n, 10_000):
        store.upsert_findings(cands[k:k + 10_000], run_id=1, gap=0)
    rule = triage.add_suppression({"owner": "bench", "reason": "bench rule"})
    for c in cands:
        if c.status == "suppressed":
            triage.record_inserted_suppression(c.id, "bench rule", "rule", rule, "bench")
    triage.save_app_usage(usage_rows(5_000, rng), run_id=1, gap=0)
    store.close()
    tmp.rename(db)
    return db


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


READY = {
    # every card drawn: a vega view (.marks) or a metric (p)
    "dashboard": "Array.from(document.querySelectorAll('.dashboard-card-chart'))"
                 ".every(c => c.querySelector('.marks, p'))",
    "open": "document.querySelector('#zw-total') !== null",
    "host": "document.querySelectorAll('#zw-timeline svg.marks path').length > 0",
}


def busiest_host(db: Path) -> str:
    import sqlite3
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return c.execute("SELECT host FROM findings GROUP BY host ORDER BY count(*) DESC, host "
                         "LIMIT 1").fetchone()[0]
    finally:
        c.close()


def page_seconds(db: Path, page: str) -> dict:
    """Seconds from navigation to the page's content drawn (see the module doc)."""
    from playwright.sync_api import sync_playwright

    path = {"dashboard": "/-/dashboards/zeekwatch", "open": "/-/zeekwatch/open",
            "host": f"/-/zeekwatch/host/{busiest_host(db)}"}[page]
    port = _free_port()
    server = subprocess.Popen([str(EXE), "dashboard", "--db", str(db), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/-/versions.json", timeout=2).read()
                break
            except OSError:
                time.sleep(0.1)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            warm = browser.new_page()
            warm.goto(base + path)
            warm.wait_for_function(READY[page], timeout=60_000)
            ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
            tab = ctx.new_page()
            t = time.perf_counter()
            tab.goto(base + path)
            tab.wait_for_function(READY[page], timeout=60_000, polling="raf")
            seconds = time.perf_counter() - t
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    return {"seconds": seconds, "rows": 1}
