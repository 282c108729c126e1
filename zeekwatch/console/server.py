"""Build and run the Datasette console over a findings database.

The database is opened read-only (Datasette's ``mode=ro`` for a mutable file, so rows that
``zeekwatch follow`` commits in WAL mode show up on the next page load, and nothing here can
write). The metadata and the datasette-dashboards configuration are generated from
``panels``; nothing is fetched from the Internet (vega, vega-lite and vega-embed are served
from the datasette-dashboards wheel).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import sqlite3

from zeekwatch.console.panels import (
    FILTERS,
    INCIDENT_LAYOUT,
    INCIDENT_PANELS,
    LAYOUT,
    PANELS,
    STATUS_CHOICES,
)
from zeekwatch.errors import StoreError

TEMPLATES = Path(__file__).with_name("templates")
SLUG = "zeekwatch"


def database_name(db_path: str) -> str:
    """The name Datasette gives a database file (its stem)."""
    return Path(db_path).stem


def chart_config(db: str, name: str, panel: dict) -> dict:
    if panel.get("kind") == "metric":
        return {"title": panel["title"], "db": db, "query": panel["query"], "library": "metric",
                "display": {"field": panel["field"]}}
    return {"title": panel["title"], "db": db, "query": panel["query"], "library": "vega-lite",
            "display": copy.deepcopy(panel["spec"])}


def has_incidents(db_path: str) -> bool:
    """Whether the database has the incidents table (the incident panels are shown then; a
    table created later shows after a restart of the dashboard)."""
    try:
        conn = sqlite3.connect(f"file:{os.path.abspath(db_path)}?mode=ro", uri=True)
        try:
            return bool(conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                     "name = 'incidents'").fetchone())
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{db_path}: cannot read as a zeekwatch database: {exc}") from None


def dashboard_config(db: str, incidents: bool = False) -> dict:
    """The datasette-dashboards configuration of the overview dashboard."""
    filters = {}
    for key, (title, kind, _) in FILTERS.items():
        flt = {"name": title, "type": kind}
        if key == "status":
            flt["options"] = STATUS_CHOICES
        elif key == "tier":
            flt["options"] = ["1", "2", "3"]
        elif key == "detector":
            flt.update({"db": db, "query": "SELECT DISTINCT detector FROM findings ORDER BY 1"})
        filters[key] = flt
    return {SLUG: {
        "title": "zeekwatch console",
        "description": "Findings of the behaviour detectors. Open findings by tier, alarms over "
                       "time, app usage, top hosts (click a bar for the host's page), suppression. "
                       "The list of open findings: /-/zeekwatch/open",
        "layout": (INCIDENT_LAYOUT if incidents else []) + LAYOUT,
        "filters": filters,
        "charts": {name: chart_config(db, name, p) for name, p in
                   ({**INCIDENT_PANELS, **PANELS} if incidents else PANELS).items()},
    }}


def metadata(db_path: str, enable_sql: bool = False) -> dict:
    db = database_name(db_path)
    meta = {
        "title": "zeekwatch console",
        "description": "Read-only view of the zeekwatch findings database.",
        "plugins": {"datasette-dashboards": dashboard_config(db, has_incidents(db_path)),
                    "zeekwatch": {"database": db, "enable_sql": enable_sql}},
    }
    if not enable_sql:
        # execute-sql for the console's own chart queries only (see plugin.actor_from_request)
        meta["allow_sql"] = {"id": "zeekwatch-console"}
    return meta


def build(db_path: str, enable_sql: bool = False):
    """A Datasette instance over ``db_path`` (read-only) with the console plugin registered."""
    from datasette.app import Datasette
    from datasette.plugins import pm

    from zeekwatch.console import plugin

    if not os.path.isfile(db_path):
        raise StoreError(f"{db_path}: no such database (create it with "
                         f"`zeekwatch analyze ... --db {db_path}`)")
    if not pm.is_registered(plugin):
        pm.register(plugin, name="zeekwatch")
    return Datasette(files=[db_path], metadata=metadata(db_path, enable_sql),
                     template_dir=str(TEMPLATES),
                     settings={"allow_download": False, "default_allow_sql": enable_sql,
                               "sql_time_limit_ms": 30000})


def serve(db_path: str, host: str, port: int, enable_sql: bool = False) -> None:
    import uvicorn

    ds = build(db_path, enable_sql)
    uvicorn.run(ds.app(), host=host, port=port, log_level="warning", lifespan="on")
