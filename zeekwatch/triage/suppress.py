"""Suppression: app look-alikes and allowlist rules turn findings into ``suppressed``.

Nothing is deleted. A suppressed finding keeps its row, its evidence and its score, and
carries ``suppressed_reason`` naming what explained it:

- **look-alikes a detector names** (automatic, during analysis): a finding whose details carry
  ``lookalike`` (beacon: NTP, DNS to the site's resolvers, a listed update/telemetry/push name)
  is suppressed with that text as the reason.
- **app usage** (automatic, during analysis): a scan-like finding (config
  ``suppress.app_detectors``, detector -> the app categories that may explain it) whose host
  used such an app in the same time span — the usage span widened by ``suppress.slack``
  seconds (3600) on both sides overlaps the finding's [first_seen, last_seen]. Apps in
  ``suppress.never_explain`` (IRC: the classic bot C2 channel) are recorded but never
  explain anything.
- **allowlist rules** (``zeekwatch suppress add``): every condition given must hold — host in
  ``cidr``, peer in ``peer``, a name of the finding matching ``domain`` (appusage's wildcard
  forms), destination ``port``, ``detector``, Suricata ``sid``, finding overlapping
  [``start``, ``end``]. A rule has an owner, a reason and optionally an expiry; it applies to
  new findings while active and, when added, to stored open findings (new, investigating,
  contained). Removing it restores the findings it suppressed to their exact prior status.

Automation never overrides an analyst: during analysis a stored finding is suppressed only
while its status is still ``new`` and nobody but zeekwatch has changed it (an analyst who
unsuppressed it, or removed the rule that suppressed it, has the last word).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from dataclasses import dataclass, field

from zeekwatch.config import Config
from zeekwatch.errors import ConfigError
from zeekwatch.finding import Finding
from zeekwatch.store.triage import TriageError, TriageStore
from zeekwatch.text import analyst_network
from zeekwatch.timefmt import iso, parse_iso, parse_iso_cached
from zeekwatch.triage.appusage import UNITS, AppRules, domain_matches, parse_domain

DEFAULT_APP_DETECTORS: dict[str, list[str]] = {
    "horizontal_scan": ["p2p", "voip"],
    "vertical_scan": ["p2p", "voip"],
    "unusual_port": ["p2p", "voip", "im"],
    "rare_destination": ["p2p", "voip", "im"],
}
DEFAULT_NEVER_EXPLAIN = ["irc"]
DEFAULT_SLACK = 3600
DEFAULT_SESSION_GAP = 3600
CONFIG_KEYS = {"slack", "session_gap", "app_detectors", "never_explain", "use_defaults", "apps",
               "signatures", "services", "domains", "http"}
RULE_FIELDS = ("cidr", "peer", "domain", "port", "detector", "sid", "start", "end")


@dataclass
class Settings:
    """Config ``[suppress]`` with its defaults, validated."""

    slack: float = DEFAULT_SLACK
    session_gap: float = DEFAULT_SESSION_GAP
    app_detectors: dict[str, list[str]] = field(default_factory=lambda: dict(DEFAULT_APP_DETECTORS))
    never_explain: set[str] = field(default_factory=lambda: set(DEFAULT_NEVER_EXPLAIN))
    rules: AppRules = field(default_factory=lambda: AppRules.from_config({}))

    @classmethod
    def from_config(cls, config: Config) -> "Settings":
        sup = config.suppress or {}
        unknown = set(sup) - CONFIG_KEYS
        if unknown:
            raise ConfigError(f"suppress: unknown key(s) {', '.join(sorted(unknown))}; "
                              f"known: {', '.join(sorted(CONFIG_KEYS))}")
        s = cls(rules=AppRules.from_config(sup))
        for key in ("slack", "session_gap"):
            if key in sup:
                try:
                    value = float(sup[key])
                    assert value >= 0
                except (TypeError, ValueError, AssertionError):
                    raise ConfigError(f"suppress.{key}: seconds >= 0, not {sup[key]!r}") from None
                setattr(s, key, value)
        for det, cats in (sup.get("app_detectors") or {}).items():
            bad = [c for c in (cats or []) if c not in ("p2p", "im", "voip")]
            if not isinstance(cats, list) or bad:
                raise ConfigError(f"suppress.app_detectors.{det}: a list of categories "
                                  "(p2p, im, voip)")
            s.app_detectors[det] = list(cats)
        if "never_explain" in sup:
            s.never_explain = {str(a).lower() for a in sup["never_explain"]}
        return s


# -- app look-alikes ------------------------------------------------------------------------
def _span(first_seen: str, last_seen: str) -> tuple[dt.datetime, dt.datetime]:
    return parse_iso_cached(first_seen), parse_iso_cached(last_seen)


def _clock(a: str, b: str) -> str:
    x, y = parse_iso(a), parse_iso(b)
    if x.date() == y.date():
        return f"{x:%H:%M}–{y:%H:%M} UTC"
    return f"{x:%Y-%m-%d %H:%M}–{y:%Y-%m-%d %H:%M} UTC"


def usage_text(u: dict) -> str:
    """``bittorrent (conn service bittorrent, 12 flows, 10:02–10:40 UTC)``"""
    unit = UNITS.get(u["source"], "event")
    n = int(u["count"])
    return (f"{u['app']} ({u['evidence']}, {n} {unit}{'s' if n != 1 else ''}, "
            f"{_clock(u['first_seen'], u['last_seen'])})")


def explain_by_app(f: Finding, usages: list[dict], settings: Settings) -> str | None:
    """The reason an app explains finding ``f``, or None."""
    cats = settings.app_detectors.get(f.detector)
    if not cats or not usages:  # most hosts of a noisy run used no app: no times to read
        return None
    f0, f1 = _span(f.first_seen, f.last_seen)
    slack = dt.timedelta(seconds=settings.slack)
    hits = []
    for u in usages:
        if u["host"] != f.host or u["category"] not in cats or u["app"] in settings.never_explain:
            continue
        u0, u1 = _span(u["first_seen"], u["last_seen"])
        if u0 - slack <= f1 and u1 + slack >= f0:
            hits.append(u)
    if not hits:
        return None
    hits.sort(key=lambda u: (-int(u["count"]), u["first_seen"], u["app"], u["evidence"]))
    text = "app usage: " + usage_text(hits[0])
    if len(hits) > 1:
        text += f"; {len(hits) - 1} more usage record{'s' if len(hits) > 2 else ''}"
    return text


# -- allowlist rules ------------------------------------------------------------------------
def parse_time(text: str | None, what: str) -> str | None:
    """ISO date or date-time (naive = UTC) as the store's ISO text."""
    if text in (None, ""):
        return None
    try:
        d = dt.datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
        if not 1970 <= d.year < 2200:
            raise OverflowError
        return iso(d)
    except ValueError:
        raise TriageError(f"{what}: {text!r} is not an ISO date or date-time "
                          "(e.g. 2024-05-01 or 2024-05-01T10:00)") from None
    except OverflowError:
        raise TriageError(f"{what}: {text!r} is out of range (years 1970 to 2199)") from None


def make_rule(fields: dict, owner: str, reason: str, expires: str | None,
              who: str, origin: str, now: str) -> dict:
    """A validated rule row from user input; raises ``TriageError``."""
    rule: dict = {k: fields.get(k) for k in RULE_FIELDS}
    if not any(rule[k] not in (None, "") for k in ("cidr", "peer", "domain", "port", "detector", "sid")):
        raise TriageError("a suppression needs at least one of --cidr, --peer, --domain, --port, "
                          "--detector, --sid")
    if not (owner or "").strip() or not (reason or "").strip():
        raise TriageError("a suppression needs an owner and a reason")
    for key in ("cidr", "peer"):
        if rule[key]:
            try:
                rule[key] = str(analyst_network(rule[key], f"--{key}"))
            except ValueError as exc:
                raise TriageError(str(exc)) from None
    if rule["domain"]:
        try:
            parse_domain(rule["domain"])
        except ValueError as exc:
            raise TriageError(f"--domain: {exc}") from None
        rule["domain"] = rule["domain"].strip().lower()
    if rule["port"] is not None and not 0 <= int(rule["port"]) <= 65535:
        raise TriageError(f"--port: {rule['port']} is not a port number")
    rule["start"] = parse_time(rule["start"], "--start")
    rule["end"] = parse_time(rule["end"], "--end")
    if rule["start"] and rule["end"] and rule["start"] > rule["end"]:
        raise TriageError(f"--start {rule['start']} is after --end {rule['end']}")
    if rule["sid"] is not None and not 1 <= int(rule["sid"]) < 2**32:
        raise TriageError(f"--sid: {rule['sid']} is not a Suricata signature id (1 to 4294967295)")
    expires = parse_time(expires, "--expires")
    if expires is not None and expires <= now:
        raise TriageError(f"--expires: {expires} is in the past")
    rule.update({"owner": owner.strip(), "reason": reason.strip(), "expires": expires,
                 "created_at": now, "created_by": who, "origin": origin})
    return rule


def describe(rule: dict) -> str:
    """``cidr 10.0.0.5/32, detector horizontal_scan`` — the conditions of a rule."""
    parts = [f"{k} {rule[k]}" for k in RULE_FIELDS if rule.get(k) not in (None, "")]
    return ", ".join(parts)


def rule_reason(rule: dict) -> str:
    exp = f", expires {rule['expires'][:16].replace('T', ' ')}" if rule.get("expires") else ""
    return f"allowlist rule {rule['id']} ({describe(rule)}; owner {rule['owner']}{exp}): {rule['reason']}"


def active(rule: dict, now: str) -> bool:
    return not rule.get("removed_at") and (not rule.get("expires") or rule["expires"] > now)


def finding_names(f: Finding) -> list[str]:
    """Every text of a finding that may be a DNS name: peer, key, distinct values, details."""
    out = [f.peer, f.key, *f.values]
    for v in f.details.values():
        out += v if isinstance(v, list) else [v]
    return [str(x) for x in out if isinstance(x, str) and x]


def _port_of(f: Finding) -> set[int]:
    ports = set()
    m = re.search(r"(?:^|/)([0-9]{1,5})$", f.key or "")
    if m:
        ports.add(int(m.group(1)))
    for k in ("resp_p", "port", "dest_port"):
        v = f.details.get(k)
        if isinstance(v, int) or (isinstance(v, str) and v.isdigit()):
            ports.add(int(v))
    return ports


def _in(addr: str | None, cidr: str) -> bool:
    try:
        return addr is not None and ipaddress.ip_address(addr) in ipaddress.ip_network(cidr)
    except ValueError:
        return False


def rule_matches(rule: dict, f: Finding) -> bool:
    """Whether every condition of ``rule`` holds for finding ``f``."""
    if rule.get("detector") and f.detector != rule["detector"]:
        return False
    if rule.get("cidr") and not _in(f.host, rule["cidr"]):
        return False
    if rule.get("peer") and not _in(f.peer, rule["peer"]):
        return False
    if rule.get("sid") is not None:
        # an ids_alert finding rolls up the signatures of a category: the rule matches when
        # every signature in it is the rule's (other signatures' alerts stay visible)
        d = f.details
        sids = [str(x) for x in d.get("sids") or [d.get("sid")] if x is not None]
        if f.key != f"sid:{rule['sid']}" and (not sids or set(sids) != {str(rule["sid"])}):
            return False
    if rule.get("port") is not None and int(rule["port"]) not in _port_of(f):
        return False
    if rule.get("domain") and not any(domain_matches(rule["domain"], n) for n in finding_names(f)):
        return False
    if rule.get("start") and f.last_seen < rule["start"]:
        return False
    if rule.get("end") and f.first_seen > rule["end"]:
        return False
    return True


# -- applying -------------------------------------------------------------------------------
def apply(candidates: list[Finding], usages: list[dict], rules: list[dict], settings: Settings,
          now: str) -> int:
    """Mark candidates suppressed (rules first, then look-alikes the detector named, then app
    usage); returns how many.

    Each suppressed candidate gets ``status``, ``suppressed_reason`` and ``suppression_hit``
    (kind, rule id) for the store to record."""
    live = [r for r in rules if active(r, now)]
    by_host: dict[str, list[dict]] = {}
    for u in usages:
        by_host.setdefault(u["host"], []).append(u)
    n = 0
    for f in candidates:
        rule = next((r for r in live if rule_matches(r, f)), None)
        if rule is not None:
            reason, hit = rule_reason(rule), ("rule", rule["id"])
        elif f.details.get("lookalike"):  # the detector named a look-alike itself (beacon: NTP...)
            reason, hit = str(f.details["lookalike"]), ("lookalike", None)
        else:
            reason, hit = explain_by_app(f, by_host.get(f.host, []), settings), ("app", None)
            if reason is None:
                continue
        f.status, f.suppressed_reason, f.suppression_hit = "suppressed", reason, hit
        n += 1
    return n


def add_rule(ts: TriageStore, rule: dict, who: str) -> tuple[int, list[str]]:
    """Store a rule and apply it to stored open findings; returns (rule id, suppressed ids)."""
    with ts.db.atomic():  # the rule and what it suppresses: all or nothing
        rid = ts.add_suppression(rule)
        rule = ts.suppression(rid)
        done = _apply_stored(ts, [rule], ts.open_findings(), who)
    ts.store.checkpoint()
    return rid, done


def _apply_stored(ts: TriageStore, rules: list[dict], findings: list[dict], who: str) -> list[str]:
    """Suppress the stored finding rows that one of ``rules`` matches; returns their ids."""
    done = []
    for f in findings:
        finding = Finding.from_row(f)
        rule = next((r for r in rules if rule_matches(r, finding)), None)
        if rule is not None:
            ts.suppress_finding(f["id"], rule_reason(rule), "rule", rule["id"], who)
            done.append(f["id"])
    return done


def remove_rule(ts: TriageStore, rid: int, who: str, now: str) -> tuple[list[str], list[str]]:
    """Retire a rule (kept, marked removed) and restore what it suppressed.

    Returns (restored ids, ids suppressed again by another active rule)."""
    rule = ts.suppression(rid)
    if rule is None:
        raise TriageError(f"no suppression {rid}")
    if rule["removed_at"]:
        raise TriageError(f"suppression {rid} was already removed on {rule['removed_at'][:19]}Z "
                          f"by {rule['removed_by']}")
    with ts.db.atomic():
        ts.mark_removed(rid, who)
        restored = [h["finding_id"] for h in ts.hits(suppression_id=rid)
                    if ts.restore_hit(h, who, f"suppression {rid} removed by {who}")]
        others = [r for r in ts.suppressions() if active(r, now)]
        again = _apply_stored(ts, others, ts.open_findings(ids=restored), who)
    ts.store.checkpoint()
    return restored, again
