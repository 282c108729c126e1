"""App usage: which hosts used P2P clients, instant messengers or VoIP, and when.

P2P clients, messengers and Skype contact many peers on many ports and look like worms
(docs/triage.md "Look-alikes"). This module finds their traces in the
normalized tables with ONE SQL query run by the engine (no per-row Python) and returns app
usage rows: host, app, category (p2p / im / voip), first_seen, last_seen, source kind,
evidence text, count and a few example values. The suppress stage then explains scan-like
findings of the same host and time span by them.

Evidence sources (each a list of data, shipped defaults plus config ``[suppress]``):

- Suricata alerts: signature / category regular expressions (case-insensitive, RE2 syntax,
  matched anywhere; anchor with ``^``) and signature ids (``signatures``);
- application protocol names: Zeek's ``conn.service`` (a comma-separated list), EVE's
  ``app_proto`` (table alert) and Wireshark dissector names put there by the pcap reader
  (``services``);
- DNS queries, TLS SNI and HTTP Host against provider domain lists (``domains``);
- HTTP request lines and User-Agents against patterns, e.g. Skype through a proxy (``http``).

Domain patterns (case-insensitive; a trailing dot and an HTTP ``:port`` are ignored):

=================  ==========================================================
``example.com``    exactly ``example.com``
``*.example.com``  any name below ``example.com`` (``a.example.com``,
                   ``a.b.example.com``) but not ``example.com`` itself
``.example.com``   ``example.com`` and any name below it
``tracker.*``      any name whose first label is ``tracker`` (``tracker.x.org``)
=================  ==========================================================

No other wildcard is accepted. When several patterns match a name, the most specific wins:
the one naming the longest domain, and an exact name before a wildcard of the same domain.

The host of a usage row is the client: Zeek's originator for conn/dns/tls/http; for an
alert, the side with the higher port (Suricata's src/dest follow the signature, not the
connection). For P2P apps seen in the traffic itself (conn service, alerts) the other side is
a P2P node too and is recorded as well when it is internal; a DNS server answering a tracker
lookup is not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pyarrow as pa

from zeekwatch.detectors.base import Dialect
from zeekwatch.errors import ConfigError
from zeekwatch.timefmt import iso

CATEGORIES = ("p2p", "im", "voip")
EMPTY = "''"
# trailing dots removed, in the SQL standard form both engines read
RTRIM_DOT = "trim(TRAILING '.' FROM {})"

# app -> category
DEFAULT_APPS: dict[str, str] = {
    "bittorrent": "p2p", "edonkey": "p2p", "gnutella": "p2p", "p2p": "p2p",
    "skype": "voip", "teams": "voip", "stun": "voip",
    "whatsapp": "im", "line": "im", "slack": "im", "discord": "im", "telegram": "im",
    "signal": "im", "xmpp": "im", "irc": "im", "msn": "im", "chat": "im",
}

# Suricata alert rules, first match wins (config rules come first). ``field`` is the alert
# column the pattern is matched against (signature or category).
DEFAULT_SIGNATURES: list[dict] = [
    {"pattern": r"skype", "app": "skype"},
    {"pattern": r"^(ET|GPL) P2P .*(bittorrent|utorrent|vuze|azureus|\bDHT\b)", "app": "bittorrent"},
    {"pattern": r"^(ET|GPL) P2P .*(edonkey|emule|kademlia|\bkad\b)", "app": "edonkey"},
    {"pattern": r"^(ET|GPL) P2P .*(gnutella|limewire|bearshare|kazaa)", "app": "gnutella"},
    {"pattern": r"^(ET|GPL) P2P ", "app": "p2p"},
    {"pattern": r"^(ET|GPL) CHAT .*\bIRC\b", "app": "irc"},
    {"pattern": r"^(ET|GPL) CHAT .*(jabber|xmpp|google talk|gtalk)", "app": "xmpp"},
    {"pattern": r"^(ET|GPL) CHAT .*whatsapp", "app": "whatsapp"},
    {"pattern": r"^(ET|GPL) CHAT .*telegram", "app": "telegram"},
    {"pattern": r"^(ET|GPL) CHAT .*(\bMSN\b|windows live messenger)", "app": "msn"},
    {"pattern": r"^(ET|GPL) CHAT ", "app": "chat"},
]

# Application protocol names (Zeek service, EVE app_proto, Wireshark dissectors) -> app
DEFAULT_SERVICES: dict[str, str] = {
    "bittorrent": "bittorrent", "bittorrent-dht": "bittorrent", "bt-dht": "bittorrent",
    "bt-utp": "bittorrent", "bittorrent_dht": "bittorrent",
    "edonkey": "edonkey", "emule": "edonkey", "kademlia": "edonkey",
    "gnutella": "gnutella",
    "stun": "stun", "classicstun": "stun",
    "skype": "skype",
    "xmpp": "xmpp", "jabber": "xmpp",
    "irc": "irc",
    "msnms": "msn",
}

# Provider domains (see the wildcard table in the module docstring)
DEFAULT_DOMAINS: dict[str, list[str]] = {
    "skype": [".skype.com", ".skype.net", ".skypeassets.com", ".skypeforbusiness.com",
              ".lync.com", ".trouter.io"],
    "teams": [".teams.microsoft.com", ".teams.live.com", ".teams.cloud.microsoft"],
    "whatsapp": [".whatsapp.com", ".whatsapp.net", ".wa.me"],
    "line": [".line.me", ".line-apps.com", ".line-scdn.net", ".line.naver.jp"],
    "slack": [".slack.com", ".slack-edge.com", ".slack-msgs.com", ".slack-imgs.com"],
    "discord": [".discord.com", ".discord.gg", ".discord.media", ".discordapp.com",
                ".discordapp.net"],
    "telegram": [".telegram.org", ".telegram.me", ".t.me", ".tdesktop.com"],
    "signal": [".signal.org", ".whispersystems.org"],
    "xmpp": [".jabber.org", ".jabber.ru", ".jabber.de", ".xmpp.jp", ".xmpp.org"],
    # Public BitTorrent trackers and DHT bootstrap nodes. `tracker.*` is deliberately NOT a
    # default: companies name bug trackers tracker.example.com.
    "bittorrent": [".bittorrent.com", ".utorrent.com", ".opentrackr.org",
                   ".openbittorrent.com", ".publicbt.com", ".leechers-paradise.org",
                   ".coppersurfer.tk", "router.bitcomet.com", "dht.transmissionbt.com",
                   "dht.libtorrent.org", ".torrent.eu.org"],
}

# HTTP patterns: ``field`` url (METHOD + ' ' + URI) or user_agent; ``name`` is the evidence.
DEFAULT_HTTP: list[dict] = [
    {"field": "url", "app": "skype", "name": "CONNECT to Skype through a proxy",
     "pattern": r"^CONNECT [^ ]*\b(skype|skypeassets|lync|trouter)\.(com|net|io)(:[0-9]+)?$"},
    {"field": "url", "app": "teams", "name": "CONNECT to Teams through a proxy",
     "pattern": r"^CONNECT [^ ]*\bteams\.(microsoft|live)\.com(:[0-9]+)?$"},
    {"field": "url", "app": "bittorrent", "name": "BitTorrent tracker announce",
     "pattern": r"^GET [^ ]*/(announce|scrape)(\.php)?\?([^ ]*&)?info_hash="},
    {"field": "user_agent", "app": "bittorrent", "name": "BitTorrent client User-Agent",
     "pattern": r"^(utorrent|µtorrent|bittorrent|transmission|qbittorrent|deluge|azureus|vuze"
                r"|libtorrent|rtorrent|bitcomet)\b"},
    {"field": "user_agent", "app": "skype", "name": "Skype User-Agent", "pattern": r"\bskype\b"},
]

# unit of the count per source kind, for explanations ("12 flows")
UNITS = {"conn": "flow", "alert": "alert", "dns": "query", "tls": "connection", "http": "request"}

_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$")


# -- domain patterns ---------------------------------------------------------------------------
def parse_domain(pattern: str) -> tuple[str, str]:
    """``(kind, value)`` of a domain pattern: kind is exact, sub, both or prefix.

    Raises ``ValueError`` for anything outside the four documented forms."""
    p = str(pattern).strip().lower().rstrip(".")
    if p.startswith("*."):
        kind, value = "sub", p[2:]
    elif p.startswith("."):
        kind, value = "both", p[1:]
    elif p.endswith(".*"):
        kind, value = "prefix", p[:-2]
    else:
        kind, value = "exact", p
    labels = value.split(".") if value else []
    if not labels or not all(_LABEL.match(lbl) for lbl in labels):
        raise ValueError(f"{pattern!r} is not a domain pattern (forms: example.com, "
                         "*.example.com, .example.com, label.*)")
    if kind == "prefix" and len(labels) != 1:
        raise ValueError(f"{pattern!r}: a prefix pattern names one first label (e.g. tracker.*)")
    return kind, value


def normalize_name(name: str | None) -> str:
    """A DNS name, SNI or HTTP Host as matched: lower case, no trailing dot, no :port."""
    n = (name or "").strip().lower()
    if n.startswith("[") or n.count(":") > 1:  # IPv6 literal: not a name
        return n
    n = re.sub(r":[0-9]+$", "", n)
    return n.rstrip(".")


def domain_matches(pattern: str, name: str) -> bool:
    """Whether ``name`` matches ``pattern`` (the reference the SQL is tested against)."""
    kind, value = parse_domain(pattern)
    n = normalize_name(name)
    if kind == "exact":
        return n == value
    if kind == "sub":
        return n.endswith("." + value)
    if kind == "both":
        return n == value or n.endswith("." + value)
    return n.startswith(value + ".") and len(n) > len(value) + 1


# -- rules from config ---------------------------------------------------------------------------
def _regex(text, where: str) -> str:
    """A pattern the engine accepts (DuckDB uses RE2: no look-around, no backreferences)."""
    import duckdb  # here: the commands that only import this module start ~0.1 s sooner

    try:
        duckdb.connect().execute("SELECT regexp_matches('', ?)", [str(text)]).fetchall()
    except duckdb.Error as exc:
        raise ConfigError(f"{where}: invalid regular expression {text!r}: "
                          f"{str(exc).splitlines()[0]}") from None
    return str(text)


@dataclass
class AppRules:
    """Everything app usage matches against: defaults overlaid with config ``[suppress]``."""

    apps: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_APPS))
    signatures: list[dict] = field(default_factory=lambda: [dict(r) for r in DEFAULT_SIGNATURES])
    services: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SERVICES))
    domains: list[tuple[str, str, str, str]] = field(default_factory=list)  # kind, value, pattern, app
    http: list[dict] = field(default_factory=lambda: [dict(r) for r in DEFAULT_HTTP])

    @classmethod
    def from_config(cls, sup: dict) -> "AppRules":
        defaults = sup.get("use_defaults", True)
        r = cls() if defaults else cls(apps={}, signatures=[], services={}, http=[])
        for app, cat in (sup.get("apps") or {}).items():
            if cat not in CATEGORIES:
                raise ConfigError(f"suppress.apps.{app}: category must be one of "
                                  f"{', '.join(CATEGORIES)}, not {cat!r}")
            r.apps[str(app).lower()] = cat
        sigs = [r._signature(s, f"suppress.signatures[{i}]")
                for i, s in enumerate(sup.get("signatures") or [])]
        r.signatures = sigs + r.signatures
        for name, app in (sup.get("services") or {}).items():
            r.services[str(name).lower()] = r._app(app, f"suppress.services.{name}")
        pairs = [(app, p, None) for app, pats in (DEFAULT_DOMAINS.items() if defaults else ())
                 for p in pats]
        for app, pats in (sup.get("domains") or {}).items():
            if not isinstance(pats, list):
                raise ConfigError(f"suppress.domains.{app}: expected a list of domain patterns")
            pairs += [(app, p, f"suppress.domains.{app}[{i}]") for i, p in enumerate(pats)]
        for app, p, where in pairs:
            app = r._app(app, where or "suppress.domains")
            try:
                kind, value = parse_domain(p)
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            for k in (("apex", "sub") if kind == "both" else (kind,)):
                r.domains.append((k, value, str(p).strip().lower(), app))
        r.http = [r._http(h, f"suppress.http[{i}]") for i, h in enumerate(sup.get("http") or [])] + r.http
        return r

    def _app(self, app, where: str) -> str:
        app = str(app).lower()
        if app not in self.apps:
            raise ConfigError(f"{where}: unknown app {app!r} (declare it in [suppress.apps] "
                              f"with its category; known: {', '.join(sorted(self.apps))})")
        return app

    def _signature(self, s, where: str) -> dict:
        if not isinstance(s, dict) or "app" not in s or not (("pattern" in s) ^ ("sid" in s)):
            raise ConfigError(f"{where}: needs app and either pattern or sid")
        out = {"app": self._app(s["app"], where), "field": s.get("field", "signature")}
        if out["field"] not in ("signature", "category"):
            raise ConfigError(f"{where}: field must be signature or category")
        if "sid" in s:
            try:
                out["sid"] = int(s["sid"])
            except (TypeError, ValueError):
                raise ConfigError(f"{where}: sid must be an integer") from None
        else:
            out["pattern"] = _regex(s["pattern"], where)
        return out

    def _http(self, h, where: str) -> dict:
        if not isinstance(h, dict) or not {"pattern", "app"} <= set(h):
            raise ConfigError(f"{where}: needs pattern and app")
        fld = h.get("field", "url")
        if fld not in ("url", "user_agent"):
            raise ConfigError(f"{where}: field must be url or user_agent")
        return {"field": fld, "app": self._app(h["app"], where), "pattern": _regex(h["pattern"], where),
                "name": str(h.get("name") or h["pattern"])}


# -- SQL ---------------------------------------------------------------------------------------------
def temp_table(con, name: str, columns: dict, rows: list) -> None:
    """A small DuckDB temp table from Python rows (rule data, candidate keys: never traffic),
    through Arrow in one statement."""
    data = pa.table({c: pa.array([r[i] for r in rows], type=t) for i, (c, t) in enumerate(columns.items())})
    if hasattr(con, "temp_table"):  # the Spark engine's connection (``engine.spark.con``)
        con.temp_table(name, data)
        return
    con.register("_zw_rows", data)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM _zw_rows")
    finally:
        con.unregister("_zw_rows")


def _load_rules(con, rules: AppRules) -> None:
    """The rule lists as small DuckDB tables."""
    S, I = pa.string(), pa.int64()
    temp_table(con, "au_apps", {"app": S, "category": S}, sorted(rules.apps.items()))
    temp_table(con, "au_sigs", {"ord": I, "fld": S, "pattern": S, "sid": I, "app": S},
               [(i, s.get("field", "signature"), s.get("pattern"), s.get("sid"), s["app"])
                for i, s in enumerate(rules.signatures)])
    temp_table(con, "au_services", {"service": S, "app": S}, sorted(rules.services.items()))
    temp_table(con, "au_domains", {"kind": S, "value": S, "pattern": S, "app": S}, rules.domains)
    temp_table(con, "au_http", {"ord": I, "fld": S, "pattern": S, "name": S, "app": S},
               [(i, h["field"], h["pattern"], h["name"], h["app"]) for i, h in enumerate(rules.http)])


# DNS queries, TLS SNI and HTTP Host names of the records, as written (``raw``); EVENTS_SQL
# reads them twice (the distinct names, then the records of matching names) instead of keeping
# a normalized copy of every record
NAMES_SQL = """
  SELECT orig_h AS client, resp_h AS server, ts, 'dns' AS source, 'dns query' AS what, query AS raw
  FROM dns WHERE query IS NOT NULL AND ts IS NOT NULL
  UNION ALL
  SELECT orig_h, resp_h, ts, 'tls', 'tls sni', server_name
  FROM tls WHERE server_name IS NOT NULL AND ts IS NOT NULL
  UNION ALL
  SELECT orig_h, resp_h, ts, 'http', 'http host', host
  FROM http WHERE host IS NOT NULL AND ts IS NOT NULL"""

EVENTS_SQL = """
svc AS (  -- service tokens split once per distinct service value, kept when a rule names them
  SELECT t.service, t.name, r.app FROM (
    SELECT service, trim(tok) AS name FROM (
      SELECT service, {split_service} AS tok
      FROM (SELECT DISTINCT service FROM conn WHERE service IS NOT NULL) d) u) t
  JOIN au_services r ON r.service = t.name),
al AS (
  SELECT ts, sid, signature, category, lower(app_proto) AS app_proto,
         CASE WHEN orig_p < resp_p THEN resp_h ELSE orig_h END AS client,
         CASE WHEN orig_p < resp_p THEN orig_h ELSE resp_h END AS server
  FROM alert WHERE ts IS NOT NULL),
sigs AS (SELECT DISTINCT sid, signature, category FROM al),
sigmatch AS (
  SELECT s.sid, s.signature, s.category, r.app
  FROM (SELECT *, {sig_case} AS rule FROM sigs) s JOIN au_sigs r ON r.ord = s.rule),
raw AS (  -- each distinct name as written, normalized once (not once per record)
  SELECT source, raw, CASE WHEN source = 'http'
                           THEN trim(TRAILING '.' FROM regexp_replace(lower(raw), ':[0-9]+$', ''))
                           ELSE trim(TRAILING '.' FROM lower(raw)) END AS name
  FROM (SELECT DISTINCT source, raw FROM ({names}) x) d),
dn AS (SELECT DISTINCT name FROM raw WHERE name <> ''),
parts AS (SELECT name, {labels} AS labels FROM dn),
sfx AS (
  SELECT name, {first_label} AS first_label, {n_labels} AS n, i, {suffix} AS suffix
  FROM (SELECT name, labels, {label_numbers} AS i FROM parts) x),
dmatch AS (
  SELECT s.name, d.pattern, d.app, 2 * length(d.value) + CAST(d.kind = 'exact' AS INTEGER) AS spec
  FROM sfx s JOIN au_domains d ON s.suffix = d.value
  WHERE (d.kind IN ('exact', 'apex') AND s.i = 1) OR (d.kind = 'sub' AND s.i > 1)
  UNION ALL
  SELECT s.name, d.pattern, d.app, 2 * length(d.value)
  FROM sfx s JOIN au_domains d ON s.first_label = d.value
  WHERE d.kind = 'prefix' AND s.i = 1 AND s.n > 1),
best AS (
  SELECT name, pattern, app FROM (
    SELECT *, row_number() OVER (PARTITION BY name ORDER BY spec DESC, pattern, app) AS rk
    FROM dmatch) x WHERE rk = 1),
hcase AS (
  SELECT ts, orig_h, resp_h, url, user_agent, {url_case} AS url_rule, {ua_case} AS ua_rule
  FROM (SELECT ts, orig_h, resp_h, user_agent,
               coalesce(method, '') || ' ' || coalesce(uri, '') AS url
        FROM http WHERE ts IS NOT NULL) h),
hrules AS (
  SELECT h.ts, h.orig_h, h.resp_h, r.name, r.app, h.url AS value
  FROM hcase h JOIN au_http r ON r.ord = h.url_rule
  UNION ALL
  SELECT h.ts, h.orig_h, h.resp_h, r.name, r.app, h.user_agent
  FROM hcase h JOIN au_http r ON r.ord = h.ua_rule),
ev AS (
  SELECT c.orig_h AS client, c.resp_h AS server, c.ts, 'conn' AS source,
         'conn service ' || s.name AS evidence, s.app, c.resp_h AS value
  FROM conn c JOIN svc s ON s.service = c.service WHERE c.ts IS NOT NULL
  UNION ALL
  SELECT a.client, a.server, a.ts, 'alert',
         'alert "' || coalesce(m.signature, '?') || '" (sid ' || coalesce(CAST(m.sid AS VARCHAR), '?') || ')',
         m.app, a.server
  FROM al a JOIN sigmatch m ON a.sid IS NOT DISTINCT FROM m.sid
    AND a.signature IS NOT DISTINCT FROM m.signature AND a.category IS NOT DISTINCT FROM m.category
  UNION ALL
  SELECT a.client, a.server, a.ts, 'alert', 'alert app_proto ' || a.app_proto, s.app, a.server
  FROM al a JOIN au_services s ON s.service = a.app_proto
  UNION ALL
  SELECT n.client, n.server, n.ts, n.source, n.what || ' matching ' || h.pattern, h.app, h.name
  FROM ({names}) n
  JOIN (SELECT r.source, r.raw, r.name, b.pattern, b.app FROM raw r JOIN best b ON b.name = r.name) h
    ON h.source = n.source AND h.raw = n.raw
  UNION ALL
  SELECT orig_h, resp_h, ts, 'http', 'http ' || name, app, value FROM hrules),
hosts AS (
  SELECT e.client AS host, e.ts, e.source, e.evidence, e.app, p.category, e.value
  FROM ev e JOIN au_apps p ON p.app = e.app WHERE e.client IS NOT NULL
  UNION ALL
  SELECT e.server, e.ts, e.source, e.evidence, e.app, p.category, e.client
  FROM ev e JOIN au_apps p ON p.app = e.app
  WHERE p.category = 'p2p' AND e.source IN ('conn', 'alert') AND e.server IS NOT NULL
    AND {server_internal}),
gaps AS (
  SELECT *, CASE WHEN {epoch_ts} - lag({epoch_ts}) OVER (
                   PARTITION BY host, app, source, evidence ORDER BY ts) <= {gap}
              THEN 0 ELSE 1 END AS brk
  FROM hosts),
isl AS (
  SELECT *, sum(brk) OVER (PARTITION BY host, app, source, evidence ORDER BY ts
                           ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS isl
  FROM gaps)
"""

USAGE_SQL = "WITH " + EVENTS_SQL + """
SELECT host, app, category, source, evidence, min(ts) AS first_seen, max(ts) AS last_seen,
       count(*) AS count, count(DISTINCT value) AS distinct_values,
       {examples} AS examples
FROM isl GROUP BY host, app, category, source, evidence, isl
ORDER BY host, first_seen, app, source, evidence
"""


def _first_match(col: str, http_rules: list[dict], fld: str, d: Dialect) -> str:
    """SQL: the index of the first HTTP rule of field ``fld`` whose pattern matches ``col``.
    Patterns are literals so that each regular expression is compiled once, not per row."""
    whens = [f"WHEN {d.regex_icase(col, h['pattern'])} THEN {i}"
             for i, h in enumerate(http_rules) if h["field"] == fld]
    return f"CASE {' '.join(whens)} END" if whens else "CAST(NULL AS INTEGER)"


def _first_signature(sig_rules: list[dict], d: Dialect) -> str:
    """SQL: the index of the first alert rule (sid, or pattern on signature/category) that
    matches a row of ``sigs``."""
    whens = []
    for i, r in enumerate(sig_rules):
        if r.get("sid") is not None:
            whens.append(f"WHEN sid = {int(r['sid'])} THEN {i}")
        else:
            col = "category" if r.get("field") == "category" else "signature"
            whens.append(f"WHEN {d.regex_icase(f'coalesce({col}, {EMPTY})', r['pattern'])} THEN {i}")
    return f"CASE {' '.join(whens)} END" if whens else "CAST(NULL AS INTEGER)"


def compute(con, rules: AppRules, nets, session_gap: float, dialect: Dialect | None = None) -> list[dict]:
    """App usage rows from the normalized tables in the engine connection ``con`` (DuckDB's,
    or the Spark engine's ``SparkCon`` with its ``dialect``).

    Events of one (host, app, source, evidence) closer than ``session_gap`` seconds form one
    row (time span). ``nets`` comes from ``engine.context()``, which builds the address tables
    the internal() predicate reads."""
    d = dialect or Dialect()
    _load_rules(con, rules)
    sql = USAGE_SQL.format(names=NAMES_SQL, server_internal=nets.internal("e.server"),
                           gap=float(session_gap),
                           sig_case=_first_signature(rules.signatures, d),
                           url_case=_first_match("url", rules.http, "url", d),
                           ua_case=_first_match("user_agent", rules.http, "user_agent", d),
                           split_service=d.unnest_list(d.split_text("lower(service)", ",")),
                           labels=d.split_text("name", "."), first_label=d.list_item("labels", "1"),
                           n_labels=d.list_len("labels"), suffix=d.list_join_from("labels", "i", "."),
                           label_numbers=d.unnest_range("1", d.list_len("labels")),
                           epoch_ts=d.epoch("ts"), examples=d.distinct_list("value", 5))
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    out = []
    for row in cur.fetchall():
        r = dict(zip(names, row))
        r["first_seen"] = iso(r["first_seen"])
        r["last_seen"] = iso(r["last_seen"])
        r["examples"] = [str(v) for v in (r["examples"] or []) if v is not None]
        out.append(r)
    return out


def peer_names(con, addrs: list[str], dialect: Dialect | None = None) -> dict[str, list[str]]:
    """DNS names whose answers contained each address (for domain allowlist rules)."""
    d = dialect or Dialect()
    addrs = sorted({a for a in addrs if a})
    if not addrs:
        return {}
    temp_table(con, "au_addrs", {"a": pa.string()}, [(a,) for a in addrs])
    rows = con.execute(
        f"SELECT x.addr, {d.distinct_list(RTRIM_DOT.format('lower(x.query)'), 10)} "
        f"FROM (SELECT query, {d.unnest_list('answers')} AS addr FROM dns "
        "      WHERE answers IS NOT NULL AND query IS NOT NULL) x "
        "JOIN au_addrs a ON a.a = x.addr GROUP BY x.addr").fetchall()
    return {a: list(names) for a, names in rows}
