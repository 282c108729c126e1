"""Helpers of the console tests: a findings database made by the real `zeekwatch analyze`, the
real `zeekwatch dashboard` on a free loopback port, and headless Debian chromium driven by
Playwright (its own browser download is never used).

Pages are opened in a browser context that aborts every request leaving the machine (anything
but 127.0.0.1 / file://) and records console errors, page errors, dialogs (an executed
``alert``) and the outside requests it blocked.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import PCAPS, ROOT, shared_file
from helpers import zeek_tsv

EXE = Path(sys.executable).parent / "zeekwatch"
ARTIFACTS = Path(os.environ.get("ZEEKWATCH_ARTIFACTS", ROOT / "build" / "test-artifacts")) / "console"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]

XSS_SCRIPT = "<script>alert(1)</script>"
XSS_IMG = '"><img src=x onerror=alert(2)>'
XSS_HOST = "10.66.0.5"


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("Debian chromium is not installed (`make test` installs it; apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args, timeout=300) -> subprocess.CompletedProcess:
    res = subprocess.run([str(EXE), *args], capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"zeekwatch {' '.join(args)}: {res.stderr}"
    return res


def xss_dns_log(path) -> str:
    """A Zeek dns.log of an MX burst (mx_burst) whose query names carry markup: the names are
    what the network said, so the console must show them as text."""
    names = [f"customer{i:02d}.example" for i in range(22)] + [XSS_SCRIPT, XSS_IMG]
    rows = [dict(ts=1_710_250_000 + i, uid=f"CXSS{i:04d}", orig_h=XSS_HOST, orig_p=40000 + i,
                 resp_h="10.66.0.53", resp_p=53, proto="udp", trans_id=i, query=name,
                 qtype_name="MX", rcode_name="NOERROR", answers=[f"mx.{name}"])
            for i, name in enumerate(names)]
    return zeek_tsv(path, "dns", rows)


def make_console_db(tmp: Path) -> str:
    """The pcaps/ scenarios + real shared data (Suricata alerts, a SYN scan capture) + the
    crafted DNS log, analysed by the real command; one allowlist rule suppresses findings."""
    inputs = sorted(str(p) for p in PCAPS.glob("*.pcap"))
    inputs += [shared_file("frank-suricata/honeypot-2018/alerts-only.eve.ndjson"),
               shared_file("chrissanders-packets/synscan.pcapng"),
               xss_dns_log(tmp / "dns.log")]
    db = str(tmp / "console.db")
    run("--config", str(PCAPS / "zeekwatch.toml"), "analyze", "-q", *inputs, "--db", db)
    run("suppress", "add", "--detector", "unusual_port", "--owner", "tests",
        "--reason", "lab IRC and SMB test hosts", "--who", "tests", "--db", db)
    return db


def query(db: str, sql: str, params=()) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


@contextlib.contextmanager
def dashboard(db: str, *extra: str):
    """The real `zeekwatch dashboard` on a free loopback port; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen([str(EXE), "dashboard", "--db", db, "--port", str(port), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    host = extra[extra.index("--host") + 1] if "--host" in extra else "127.0.0.1"
    base = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/-/versions.json", timeout=2).read()
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    out, err = proc.communicate()
                    raise AssertionError(f"dashboard did not start: {out}\n{err}")
                time.sleep(0.2)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass
class Watch:
    """What a page did: console errors, uncaught errors, dialogs, blocked outside requests."""
    errors: list = field(default_factory=list)
    dialogs: list = field(default_factory=list)
    outside: list = field(default_factory=list)

    def clean(self) -> None:
        assert not self.errors, f"console errors: {self.errors}"
        assert not self.dialogs, f"a dialog opened (script ran): {self.dialogs}"
        assert not self.outside, f"requests leaving the machine: {self.outside}"


def local(url: str) -> bool:
    return url.startswith(("file://", "http://127.0.0.1:", "data:", "blob:", "about:"))


def open_page(browser, watch: Watch, width=1400, height=1000):
    """A new page in its own context: outside requests are aborted and recorded."""
    ctx = browser.new_context(viewport={"width": width, "height": height})

    def route(r):
        if local(r.request.url):
            r.continue_()
        else:
            watch.outside.append(r.request.url)
            r.abort()
    ctx.route("**/*", route)
    page = ctx.new_page()
    page.on("console", lambda m: watch.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: watch.errors.append(str(e)))

    def dialog(d):
        watch.dialogs.append(d.message)
        d.dismiss()
    page.on("dialog", dialog)
    return page


def shot(page, name: str, full: bool = True) -> Path:
    """A screenshot of the page (the whole page, or the window for long lists) as a JPEG,
    small enough for docs/img/console/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.jpg"
    page.screenshot(path=str(path), full_page=full, type="jpeg", quality=70)
    return path
