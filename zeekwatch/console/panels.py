"""The console's panels, declared once: SQL over the findings database and a vega-lite spec each.

The dashboard (datasette-dashboards) runs them in the browser through Datasette's JSON API;
the HTML report runs the same SQL in Python and renders the same specs to static SVG. Filters
are written as datasette-dashboards optional clauses, ``[[ AND col = :name ]]``: a clause is
kept only when its parameter is given (``resolve``).

SQL functions the queries use are registered on every connection by ``zeekwatch.console.sqlfns``:
``zw_in_net(address, cidr)``, ``zw_family(threat)`` and ``zw_now()`` (written ``(SELECT zw_now())``:
a constant subquery, evaluated once per query instead of once per row).
"""

from __future__ import annotations

import re

OPEN = "('new', 'investigating', 'contained')"
FAMILIES = {
    "worm": "worm/scan", "recon": "worm/scan", "mass_mailer": "mass mailer",
    "c2": "C2/backdoor", "backdoor": "C2/backdoor", "tunnel": "C2/backdoor", "ids": "IDS",
}
# the family in SQL (a CASE, not a Python function called per row)
FAMILY_SQL = ("CASE threat " + " ".join(f"WHEN '{t}' THEN '{f}'" for t, f in FAMILIES.items())
              + " ELSE 'other' END")
TIER_LABEL = ("CASE tier WHEN 3 THEN '3 act now (2 h)' WHEN 2 THEN '2 act now (8 h)' "
              "WHEN 1 THEN '1 watch (24 h)' ELSE 'unscored' END")

# filter name -> (title, type, clause over the findings columns)
FILTERS = {
    "since": ("Last seen from (date)", "date", "[[ AND last_seen >= :since ]]"),
    "until": ("First seen until (date)", "date", "[[ AND first_seen < date(:until, '+1 day') ]]"),
    "net": ("Network (CIDR or address)", "text", "[[ AND zw_in_net(host, :net) ]]"),
    "detector": ("Detector", "select", "[[ AND detector = :detector ]]"),
    "status": ("Status", "select", "[[ AND (status = :status OR (:status = 'open' AND status IN "
                                   + OPEN + ")) ]]"),
    "tier": ("Tier", "select", "[[ AND tier = :tier ]]"),
}
STATUS_CHOICES = ["open", "new", "investigating", "contained", "resolved", "false_positive",
                  "suppressed"]
_OPT = re.compile(r"\[\[.*?\]\]")
_VAR = re.compile(r":([a-zA-Z0-9_]+)")




def _by_tier_spec(field: str, title: str) -> dict:
    """Open items (findings or incidents) per tier, overdue and due later stacked."""
    return {
        "mark": {"type": "bar", "tooltip": True},
        "encoding": {
            "y": {"field": "tier", "type": "nominal", "sort": "descending", "title": None},
            "x": {"field": field, "type": "quantitative", "title": title},
            "color": {"field": "due", "type": "nominal", "title": "due",
                      "scale": {"domain": ["overdue", "due later"],
                                "range": ["#c0392b", "#7f8c8d"]}},
            "order": {"field": "due", "sort": "descending"},
        },
    }


def where(*names: str) -> str:
    """The optional filter clauses ``names`` (all when none are named)."""
    return " ".join(FILTERS[n][2] for n in (names or FILTERS))


def resolve(query: str, options: dict) -> str:
    """Keep the optional clauses whose parameter is given, drop the others (the same rule as
    datasette-dashboards' ``replace_opts_in_query``)."""
    def one(m: re.Match) -> str:
        var = _VAR.search(m.group(0))
        keep = var is not None and options.get(var.group(1)) not in (None, "")
        return m.group(0)[2:-2] if keep else ""
    return _OPT.sub(one, query)


APP_FILTERS = ("[[ AND last_seen >= :since ]] [[ AND first_seen < date(:until, '+1 day') ]] "
               "[[ AND zw_in_net(host, :net) ]]")

PANELS = {
    "open_count": {
        "title": "Open findings",
        "kind": "metric", "field": "n",
        "query": f"SELECT count(*) AS n FROM findings WHERE status IN {OPEN} "
                 + where("since", "until", "net", "detector", "tier"),
    },
    "overdue_count": {
        "title": "Open and overdue",
        "kind": "metric", "field": "n",
        "query": f"SELECT count(*) AS n FROM findings WHERE status IN {OPEN} AND due_at < (SELECT zw_now()) "
                 + where("since", "until", "net", "detector", "tier"),
    },
    "open_by_tier": {
        "title": "Open findings by tier (overdue first)",
        "query": f"SELECT {TIER_LABEL} AS tier, CASE WHEN due_at < (SELECT zw_now()) THEN 'overdue' "
                 "ELSE 'due later' END AS due, count(*) AS findings, min(due_at) AS first_due "
                 f"FROM findings WHERE status IN {OPEN} "
                 + where("since", "until", "net", "detector", "tier")
                 + " GROUP BY 1, 2 ORDER BY 1 DESC, 2 DESC",
        "spec": _by_tier_spec("findings", "open findings"),
    },
    "alarms_over_time": {
        "title": "Alarms over time by behaviour family",
        "query": "SELECT CASE WHEN (SELECT julianday(max(first_seen)) - julianday(min(first_seen)) "
                 "FROM findings) > 3 THEN substr(first_seen, 1, 10) "
                 "ELSE substr(first_seen, 1, 13) || ':00' END AS period, "
                 + FAMILY_SQL + " AS family, count(*) AS alarms FROM findings "
                 "WHERE status <> 'suppressed' " + where() + " GROUP BY 1, 2 ORDER BY 1, 2",
        "spec": {
            "mark": {"type": "bar", "tooltip": True},
            "encoding": {
                "x": {"field": "period", "type": "ordinal", "title": "first seen (UTC)"},
                "y": {"field": "alarms", "type": "quantitative", "stack": "zero"},
                "color": {"field": "family", "type": "nominal", "title": "family"},
            },
        },
    },
    "app_usage": {
        "title": "P2P, instant messaging and Skype/VoIP use by host (top 40)",
        "query": "SELECT host, app, category, sum(count) AS uses, min(first_seen) AS first_seen, "
                 "max(last_seen) AS last_seen FROM app_usage WHERE 1 " + APP_FILTERS
                 + " GROUP BY host, app, category ORDER BY uses DESC, host, app LIMIT 40",
        "spec": {
            "mark": {"type": "bar", "tooltip": {"content": "data"}},
            "encoding": {
                "y": {"field": "host", "type": "nominal", "title": None},
                "x": {"field": "uses", "type": "quantitative", "title": "connections / records"},
                "color": {"field": "app", "type": "nominal"},
            },
        },
    },
    "top_hosts": {
        "title": "Top hosts by urgency (open findings; click a bar)",
        "query": "SELECT host, max(urgency) AS urgency, count(*) AS findings, "
                 "'/-/zeekwatch/host/' || host AS url FROM findings "
                 f"WHERE status IN {OPEN} " + where("since", "until", "net", "detector", "tier")
                 + " GROUP BY host ORDER BY urgency DESC, findings DESC, host LIMIT 15",
        "spec": {
            "mark": {"type": "bar", "tooltip": True, "cursor": "pointer"},
            "encoding": {
                "y": {"field": "host", "type": "nominal", "sort": "-x", "title": None},
                "x": {"field": "urgency", "type": "quantitative", "scale": {"domain": [0, 10]}},
                "color": {"field": "findings", "type": "quantitative", "title": "findings"},
                "href": {"field": "url", "type": "nominal"},
            },
        },
    },
    "per_detector": {
        "title": "Findings per detector: raised vs suppressed",
        "query": "SELECT detector, CASE WHEN status = 'suppressed' THEN 'suppressed' ELSE 'raised' "
                 "END AS outcome, count(*) AS findings FROM findings WHERE 1 " + where()
                 + " GROUP BY 1, 2 ORDER BY 1, 2",
        "spec": {
            "mark": {"type": "bar", "tooltip": True},
            "encoding": {
                "y": {"field": "detector", "type": "nominal", "title": None},
                "x": {"field": "findings", "type": "quantitative"},
                "color": {"field": "outcome", "type": "nominal",
                          "scale": {"domain": ["raised", "suppressed"],
                                    "range": ["#2c3e50", "#bdc3c7"]}},
            },
        },
    },
    "suppressed_why": {
        "title": "What suppression removed (look-alikes and allowlist rules)",
        "query": "SELECT CASE WHEN h.kind IS NULL THEN 'status set by analyst' ELSE h.kind END "
                 "AS rule, count(*) AS findings FROM findings LEFT JOIN suppression_hits h "
                 "ON h.finding_id = findings.id AND h.released_at IS NULL "
                 "WHERE status = 'suppressed' " + where("since", "until", "net", "detector", "tier")
                 + " GROUP BY 1 ORDER BY 2 DESC",
        "spec": {
            "mark": {"type": "bar", "tooltip": True},
            "encoding": {
                "y": {"field": "rule", "type": "nominal", "title": None},
                "x": {"field": "findings", "type": "quantitative"},
            },
        },
    },
}

# shown when the database has an ``incidents`` table (zeekwatch's incident grouping)
INCIDENT_WHERE = where("since", "until", "net", "tier")
INCIDENT_PANELS = {
    "open_incidents": {
        "title": "Open incidents",
        "kind": "metric", "field": "n",
        "query": f"SELECT count(*) AS n FROM incidents WHERE status IN {OPEN} " + INCIDENT_WHERE,
    },
    "incidents_by_tier": {
        "title": "Open incidents by tier (overdue first)",
        "query": f"SELECT {TIER_LABEL} AS tier, CASE WHEN due_at < (SELECT zw_now()) THEN 'overdue' "
                 "ELSE 'due later' END AS due, count(*) AS incidents, min(due_at) AS first_due "
                 f"FROM incidents WHERE status IN {OPEN} " + INCIDENT_WHERE
                 + " GROUP BY 1, 2 ORDER BY 1 DESC, 2 DESC",
        "spec": _by_tier_spec("incidents", "open incidents"),
    },
}
INCIDENT_LAYOUT = [["open_incidents", "incidents_by_tier"]]


def all_panels() -> dict:
    return {**INCIDENT_PANELS, **PANELS}


# the dashboard's grid, one row per line
LAYOUT = [
    ["open_count", "overdue_count"],
    ["open_by_tier", "top_hosts"],
    ["alarms_over_time", "alarms_over_time"],
    ["per_detector", "suppressed_why"],
    ["app_usage", "app_usage"],
]


def family(threat: str | None) -> str:
    """The behaviour family of a threat type (the alarms-over-time panel's colours)."""
    return FAMILIES.get(threat or "", "other")
