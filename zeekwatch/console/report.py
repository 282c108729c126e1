"""The HTML report: one self-contained file with the console's panels, for mailing and archiving.

The same SQL as the dashboard (``panels``) runs on a read-only connection; each chart's
vega-lite spec is rendered to static SVG in Python by vl-convert (no JavaScript in the file, so
it opens and prints anywhere, with no network); styles are inline. Values from the network are
escaped by Jinja's autoescape (tables) and by vega's SVG writer (chart labels).
"""

from __future__ import annotations

import copy
import os
import sqlite3
from pathlib import Path

import jinja2
from markupsafe import Markup

from zeekwatch import __version__
from zeekwatch.console import pages, sqlfns
from zeekwatch.console.panels import PANELS, all_panels, resolve
from zeekwatch.errors import StoreError
from zeekwatch.timefmt import now_iso

TEMPLATES = Path(__file__).with_name("templates")
CHART_WIDTH = 420
WIDE = {"alarms_over_time", "app_usage"}


def connect_ro(path: str) -> sqlite3.Connection:
    """A read-only connection (works while `follow` writes in WAL mode)."""
    if not os.path.isfile(path):
        raise StoreError(f"{path}: no such database (create it with `zeekwatch analyze ... --db {path}`)")
    try:
        conn = sqlite3.connect(f"file:{os.path.abspath(path)}?mode=ro", uri=True)
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("SELECT count(*) FROM findings").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: cannot read as a zeekwatch database: {exc}") from None
    sqlfns.register(conn)
    return conn


def panel_rows(conn: sqlite3.Connection, name: str, options: dict) -> list[dict]:
    sql = resolve(all_panels()[name]["query"], options)
    if "suppression_hits" in sql and "suppression_hits" not in pages.tables(conn):
        return []
    if "app_usage" in sql and "app_usage" not in pages.tables(conn):
        return []
    return pages.rows(conn, sql, {k: v for k, v in options.items() if ":" + k in sql})


def chart_svg(name: str, data: list[dict]) -> Markup:
    """A panel's vega-lite spec over ``data`` as static SVG (links and tooltips dropped)."""
    import vl_convert

    spec = copy.deepcopy(all_panels()[name]["spec"])
    spec["encoding"].pop("href", None)
    if isinstance(spec.get("mark"), dict):
        spec["mark"].pop("tooltip", None)
        spec["mark"].pop("cursor", None)
    spec.update({"$schema": "https://vega.github.io/schema/vega-lite/v5.json",
                 "data": {"values": data},
                 "width": CHART_WIDTH * 2 + 40 if name in WIDE else CHART_WIDTH,
                 "config": {"font": "sans-serif", "view": {"stroke": None}}})
    if not data:
        return Markup('<p class="empty">No data.</p>')
    # vega writes every label with XML escaping: the SVG is safe to inline
    return Markup(vl_convert.vegalite_to_svg(spec))


def build(conn: sqlite3.Connection, db_path: str, since: str | None) -> dict:
    options = {"since": since} if since else {}
    panels = []
    metrics = {}
    shown = all_panels() if "incidents" in pages.tables(conn) else PANELS
    for name, panel in shown.items():
        data = panel_rows(conn, name, options)
        if panel.get("kind") == "metric":
            metrics[name] = {"title": panel["title"], "value": data[0][panel["field"]] if data else 0}
            continue
        panels.append({"name": name, "title": panel["title"].replace("; click a bar", ""), "svg": chart_svg(name, data),
                       "rows": data, "wide": name in WIDE})
    total = conn.execute("SELECT count(*) FROM findings" + (" WHERE last_seen >= ?" if since else ""),
                         [since] if since else []).fetchone()[0]
    return {"db": db_path, "generated": now_iso(), "since": since, "version": __version__,
            "metrics": metrics, "panels": panels, "total": total,
            "open": pages.open_list(conn, options),
            "incidents": pages.incidents_open(conn, options)}


def render(context: dict) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    return env.get_template("zeekwatch_report.html").render(**context)


def write_report(db_path: str, html_path: str, since: str | None = None) -> dict:
    """Write the report; returns its size in bytes and the number of findings covered. The
    file is written next to its target and renamed, so a reader never sees half a report."""
    conn = connect_ro(db_path)
    try:
        context = build(conn, db_path, since)
    finally:
        conn.close()
    text = render(context)
    tmp = f"{html_path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, html_path)
    return {"bytes": len(text.encode()), "findings": context["total"]}
