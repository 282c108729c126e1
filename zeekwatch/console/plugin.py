"""zeekwatch's Datasette plugin: SQL functions, the console's own pages, links, and the rule
that lets the dashboard's charts (and nothing else) run SQL.

Datasette's ``execute-sql`` permission is given (through ``allow_sql`` in the metadata) only to
the actor ``zeekwatch-console``, and this plugin's ``actor_from_request`` names that actor only
for the dashboard pages and for JSON requests whose SQL is exactly one of the dashboard's chart
queries with the request's filters applied. So there is no arbitrary-SQL page and no SQL form
unless ``zeekwatch dashboard --enable-sql`` is given. Registered by ``server.build`` (not as a
setuptools entry point, so other Datasette instances on the machine are unaffected).
"""

from __future__ import annotations

import urllib.parse

from datasette import hookimpl
from datasette.utils.asgi import NotFound, Response
from markupsafe import Markup

from zeekwatch.console import pages, sqlfns
from zeekwatch.console.panels import FILTERS, STATUS_CHOICES, all_panels, resolve

CONSOLE_ACTOR = {"id": "zeekwatch-console", "display": "read-only"}  # shown in the header


def _settings(datasette) -> dict:
    return datasette.plugin_config("zeekwatch") or {}


@hookimpl
def prepare_connection(conn):
    sqlfns.register(conn)


@hookimpl
def actor_from_request(datasette, request):
    cfg = _settings(datasette)
    path = request.path
    if path.startswith("/-/dashboards"):
        return CONSOLE_ACTOR
    sql = request.args.get("sql")
    if sql and cfg.get("database") and path == datasette.urls.database(cfg["database"]) + ".json":
        options = {k: request.args.get(k) for k in FILTERS if request.args.get(k)}
        if any(resolve(p["query"], options) == sql for p in all_panels().values()):
            return CONSOLE_ACTOR
    return None


@hookimpl
def register_routes():
    return [
        (r"^/-/zeekwatch/open$", open_page),
        (r"^/-/zeekwatch/host/(?P<host>[^/]+)$", host_page),
        (r"^/-/zeekwatch/finding/(?P<fid>[^/]+)$", finding_page),
        (r"^/-/zeekwatch/incident/(?P<iid>[^/]+)$", incident_page),
    ]


@hookimpl
def menu_links(datasette, actor):
    return [{"href": datasette.urls.path("/-/dashboards/zeekwatch"), "label": "zeekwatch console"},
            {"href": datasette.urls.path("/-/zeekwatch/open"), "label": "Open findings"}]


@hookimpl
def render_cell(value, column, table, database, datasette):
    """Hosts and finding ids link to their console pages in Datasette's own table views."""
    if value is None or not isinstance(value, str):
        return None
    kinds = {"host": "host", "finding_id": "finding", "incident_id": "incident"}
    if table in ("findings", "incidents") and column == "id":
        kinds["id"] = table[:-1]
    if column in kinds:
        kind = kinds[column]
        href = datasette.urls.path(f"/-/zeekwatch/{kind}/{urllib.parse.quote(value, safe='')}")
        return Markup('<a href="{}">{}</a>').format(href, value)
    return None


def _db(datasette):
    return datasette.get_database(_settings(datasette).get("database"))


async def _detectors(db) -> list[str]:
    res = await db.execute("SELECT DISTINCT detector FROM findings ORDER BY 1")
    return [r[0] for r in res.rows]


async def open_page(datasette, request):
    db = _db(datasette)
    options = pages.clean_options(request.args)
    data = await db.execute_fn(lambda conn: pages.open_list(conn, options))
    incidents = await db.execute_fn(lambda conn: pages.incidents_open(conn, options))
    return Response.html(await datasette.render_template("zeekwatch_open.html", {
        "data": data, "incidents": incidents, "filters": FILTERS, "options": options,
        "statuses": STATUS_CHOICES, "detectors": await _detectors(db), "tiers": ["1", "2", "3"],
    }, request=request))


async def host_page(datasette, request):
    host = urllib.parse.unquote(request.url_vars["host"])
    data = await _db(datasette).execute_fn(lambda conn: pages.host_data(conn, host))
    if not (data["findings"] or data["usage"] or data["incidents"]):
        raise NotFound(f"No findings, app usage or incidents for host {host}")
    return Response.html(await datasette.render_template(
        "zeekwatch_host.html", {"d": data, "chart": timeline_spec(data["timeline"])},
        request=request))


async def finding_page(datasette, request):
    fid = urllib.parse.unquote(request.url_vars["fid"])
    data = await _db(datasette).execute_fn(lambda conn: pages.finding_data(conn, fid))
    if data is None:
        raise NotFound(f"No finding {fid}")
    return Response.html(await datasette.render_template("zeekwatch_finding.html", {"d": data},
                                                         request=request))


async def incident_page(datasette, request):
    iid = urllib.parse.unquote(request.url_vars["iid"])
    data = await _db(datasette).execute_fn(lambda conn: pages.incident_data(conn, iid))
    if data is None:
        raise NotFound(f"No incident {iid}")
    return Response.html(await datasette.render_template("zeekwatch_incident.html", {"d": data},
                                                         request=request))


def timeline_spec(timeline: list[dict]) -> dict:
    """A host's timeline: one row per finding / app / incident, a bar from first to last seen
    and a point at the start (a span of seconds is invisible at a day's scale)."""
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "width": "container", "data": {"values": timeline},
        "encoding": {
            "y": {"field": "label", "type": "nominal", "title": None},
            "x": {"field": "start", "type": "temporal", "title": "time (UTC)",
                  "scale": {"type": "utc"}, "axis": {"format": "%m-%d %H:%M"}},
            "color": {"field": "kind", "type": "nominal"},
            "tooltip": [{"field": "kind"}, {"field": "label"}, {"field": "start"},
                        {"field": "end"}, {"field": "status"}],
        },
        "layer": [{"mark": {"type": "bar", "height": 8}, "encoding": {"x2": {"field": "end"}}},
                  {"mark": {"type": "point", "filled": True, "size": 60}}],
    }

