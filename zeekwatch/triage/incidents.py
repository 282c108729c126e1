"""Incidents: the findings about one internal host over a span, scored as one case.

``Incidents.build`` runs after the findings of an analysis (or a follow batch) are stored:
the store groups every finding that has no incident yet (SQL gaps and islands per entity,
``store.incidents``), then each incident that changed is scored from its members:

    urgency = clamp(highest own urgency of a counted finding
                    + corroboration per further behaviour family whose evidence shares no
                      connection uid with the families already counted, 1..10)

A finding's *own* urgency is its urgency without its per-finding corroboration term (the
incident judges corroboration itself, by independent evidence). Counted findings are those
not suppressed and not false_positive; suppressed ones are listed but never counted. Weak
detectors (``incidents.weak_detectors``) add risk (they corroborate like any family) but
put an incident in the default queue (``queued``) only once a detector that is not weak
joins them: several weak families together still wait. Findings on an external host
belong to the incident of their internal target (direction ``inbound``; scored by the
``inbound`` rows of the risk matrix, ``triage.score``).

Every term is stored in ``score_terms`` (JSON), like a finding's. Tier, deadline
(first_seen + tier hours) and owner follow from the urgency; the playbook text from the
threat type of the highest finding and the tier (``triage.playbooks``).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from collections import Counter, defaultdict

import pyarrow as pa

from zeekwatch.config import Config
from zeekwatch.errors import ConfigError
from zeekwatch.finding import Finding
from zeekwatch.store.db import OPEN_STATUSES, Store, iso, parse_iso
from zeekwatch.store.incidents import IncidentStore, dumps
from zeekwatch.triage import playbooks
from zeekwatch.timefmt import parse_iso_cached
from zeekwatch.triage.appusage import temp_table
from zeekwatch.triage.score import NO_CORROBORATION, Scorer, clamp, tier_for

DEFAULT_WINDOW = 86400
DEFAULT_WEAK = ("outbound_ping", "off_hours", "unusual_port", "rare_destination")
DEFAULT_FAMILIES = {
    "scan": ["horizontal_scan", "vertical_scan", "ping_sweep", "outbound_ping"],
    "mail": ["mass_mailer", "mx_burst"],
    "c2": ["c2_port", "non_web_on_web_port", "unusual_port", "rare_destination"],
    "tunnel": ["long_connection"],
    "backdoor": ["new_listener"],
    "ids": ["ids_alert"],
    "policy": ["off_hours"],
}
CONFIG_KEYS = {"window", "weak_detectors", "families", "corroboration", "max_corroboration",
               "playbooks"}


class Settings:
    """``[incidents]`` of the config, validated."""

    def __init__(self, config: Config):
        c = config.incidents or {}
        unknown = set(c) - CONFIG_KEYS
        if unknown:
            raise ConfigError(f"incidents: unknown key(s) {', '.join(sorted(unknown))}; "
                              f"known: {', '.join(sorted(CONFIG_KEYS))}")
        self.window = _number(c, "window", DEFAULT_WINDOW)
        self.weak = set(_names(c, "weak_detectors", DEFAULT_WEAK))
        fams = c.get("families", DEFAULT_FAMILIES)
        if not isinstance(fams, dict):
            raise ConfigError("incidents.families: a table of family = [detector ids]")
        self.family_of = {}
        for fam, dets in fams.items():
            for d in _names({fam: dets}, fam, ()):
                self.family_of[d] = fam
        self.corroboration = int(_number(c, "corroboration", 1))
        self.max_corroboration = int(_number(c, "max_corroboration", 3))
        self.playbooks = playbooks.load(c.get("playbooks"))

    def family(self, detector: str) -> str:
        return self.family_of.get(detector, detector)


def _number(c: dict, key: str, default: float) -> float:
    v = c.get(key, default)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
        raise ConfigError(f"incidents.{key}: a number >= 0, not {v!r}")
    return v


def _names(c: dict, key: str, default) -> list[str]:
    v = c.get(key, list(default))
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ConfigError(f"incidents.{key}: a list of detector ids")
    return v


_CORROBORATED = re.compile(r'"corroborated by [^"]*", "value": (-?\d+)')
_CLAMPED = re.compile(r'"clamped to 1\.\.10", "value": (-?\d+)')


def own_urgency(f: dict) -> int:
    """A finding's urgency without its per-finding corroboration term (``corroborated``:
    its score_terms when it has one, see ``store.incidents.SCORE_FIELDS``): the unclamped
    total is urgency minus the clamp term, less the corroboration term, clamped again."""
    text = f.get("corroborated")
    if not text:
        return int(f["urgency"] or 1)
    return _own(f["urgency"], text)


@functools.lru_cache(maxsize=4096)
def _own(urgency, text: str) -> int:
    """``own_urgency`` of a corroborated finding, worked out once per distinct score_terms
    (a noisy run's 20 k findings hold some 20). The terms are read with a pattern
    (json.dumps' layout, score.py), and as JSON when the pattern does not match."""
    corr = _CORROBORATED.findall(text)
    if len(corr) == 1:
        clamped = _CLAMPED.findall(text)
        total = int(urgency) - sum(int(c) for c in clamped)
        return clamp(total - int(corr[0]))
    terms = json.loads(text).get("terms") or []
    return clamp(sum(int(t["value"]) for t in terms
                     if not str(t["term"]).startswith(("corroborated by", "clamped"))))


class Incidents:
    """Builds and scores incidents for one config (made before anything is written, so a
    config error refuses early)."""

    def __init__(self, config: Config):
        self.settings = Settings(config)
        self.scorer = Scorer(config)

    # -- building -------------------------------------------------------------------------------
    def build(self, store: Store, finding_ids=()) -> dict:
        """Group unassigned findings into incidents and rescore the incidents that received
        findings or hold ``finding_ids`` (findings this run stored or rescored). Idempotent:
        an identical re-run writes nothing. Returns counts."""
        ist = IncidentStore(store)
        touched = ist.assign(self.settings.window)
        touched |= ist.incidents_of_findings(finding_ids)
        changed = self.refresh(ist, touched)
        return {"touched": len(touched), "changed": len(changed)}

    def refresh(self, ist: IncidentStore, ids, who: str | None = None, why: str = "") -> dict[str, dict]:
        """Rescore incidents ``ids`` from their stored members; write the changed ones. With
        ``who``, an urgency change is an audit row (rescoring on an analyst's action)."""
        ids = set(ids)
        if not ids:
            return {}
        members = ist.scoring_members(ids)
        # evidence uids matter only where several families meet (independence)
        family = self.settings.family
        need = [f["id"] for ms in members.values()
                if len({family(d) for d in {f["detector"] for f in ms}}) > 1 for f in ms]
        uids: dict[str, set[str]] = defaultdict(set)
        for fid, uid in ist.uids(need) if need else ():
            uids[fid].add(uid)
        current = ist.rows(ids)
        changes, rows = {}, {}
        for iid, old in current.items():
            new = self.score(members.get(iid, []), uids)
            diff = {k: v for k, v in new.items() if old.get(k) != v}
            if diff:
                changes[iid] = diff
                rows[iid] = new
        if changes:
            with ist.db.atomic():
                ist.update_machine(rows)
                if who:
                    for iid, diff in changes.items():
                        if "urgency" in diff:
                            ist.add_audit(iid, who, "rescore", None, None,
                                          f"urgency {current[iid]['urgency']} → {diff['urgency']}"
                                          + (f" ({why})" if why else ""))
        return changes

    # -- scoring --------------------------------------------------------------------------------
    def score(self, findings: list[dict], uids: dict[str, set[str]]) -> dict:
        """The machine-owned columns of an incident with these member findings."""
        s = self.settings
        counted = [f for f in findings if f["status"] not in NO_CORROBORATION]
        pool = counted or findings
        if not pool:
            return {}
        for f in findings:
            f["own"] = own_urgency(f)
        directions = [f["direction"] or "outbound" for f in pool]
        direction = ("outbound" if "outbound" in directions else
                     "inbound" if "inbound" in directions else "external")
        ranked = sorted(pool, key=lambda f: (-f["own"], f["first_seen"], f["id"]))
        top = ranked[0]
        terms = [{"term": f"highest finding: {top['detector']} {top['id']} (own urgency, "
                          f"without its per-finding corroboration)", "value": top["own"]}]
        if not counted:  # listed, never counted: the incident carries no risk of its own
            terms = [{"term": "no counted finding (all suppressed or false positive)", "value": 1}]
        fams, extra = self._corroboration(ranked, uids, bool(counted))
        terms += extra
        total = sum(t["value"] for t in terms)
        urgency = clamp(total)
        if urgency != total:
            terms.append({"term": "clamped to 1..10", "value": urgency - total})
        tier = tier_for(urgency, self.scorer.tiers)
        first = min(f["first_seen"] for f in pool)
        due = parse_iso(first)
        if any(f["time_unknown"] for f in pool):
            due = dt.datetime.now(dt.timezone.utc)
        threat = self._threat(top)
        queued, reason = self._queued(counted)
        n_sources = self._source_count(pool)
        return {
            "direction": direction, "first_seen": first,
            "last_seen": max(f["last_seen"] for f in findings),
            "urgency": urgency, "tier": tier.number,
            "due_at": iso(due + dt.timedelta(hours=tier.hours)), "owner": tier.owner,
            "threat": threat, "queued": int(queued), "findings_counted": len(counted),
            "findings_listed": len(findings),
            "detectors": dumps(dict(sorted(Counter(f["detector"] for f in counted).items()))),
            "families": dumps(sorted(fams)), "sources": n_sources,
            "summary": story(pool, n_sources, s.weak),
            "score_terms": dumps({"terms": terms, "urgency": urgency, "tier": tier.name,
                                  "tier_number": tier.number, "owner": tier.owner,
                                  "sla_hours": tier.hours, "threat": threat,
                                  "queued": reason, "families": sorted(fams)}),
            "playbook": playbooks.text_for(s.playbooks, threat, tier.number),
        }

    def _queued(self, counted: list[dict]) -> tuple[bool, str]:
        """In the default queue? Weak signals, of one family or several, wait for company."""
        if any(f["detector"] not in self.settings.weak for f in counted):
            return True, "a strong detector fired"
        if counted:
            return False, "weak signals only: waiting for a strong detector (shown with --all)"
        return False, "no counted finding (all suppressed or false positive)"

    def _source_count(self, pool: list[dict]) -> int:
        """Distinct external sources: the listed ones (20 per finding), at least the largest
        count a single finding holds."""
        srcs = [(f, self._sources(f)) for f in pool]
        listed = set().union(*(x for _, x in srcs))
        return max([len(listed)] + [int(f["distinct_total"] or 0) for f, x in srcs
                                    if x and f["host"] == self._target(f)])

    def _corroboration(self, ranked: list[dict], uids: dict[str, set[str]],
                       counted: bool) -> tuple[set[str], list[dict]]:
        """Families with independent evidence, and one term per further family: +N when
        some finding of it shares no connection uid with the families already counted, 0
        (shown, with the shared uid) when every one of its findings does."""
        s = self.settings
        if not counted:
            return set(), []
        by_family: dict[str, list[dict]] = {}
        for f in ranked:
            by_family.setdefault(s.family(f["detector"]), []).append(f)
        order = list(by_family)  # best own urgency first
        accepted = {order[0]}
        seen = set().union(*(uids.get(f["id"], set()) for f in by_family[order[0]]))
        terms, raised = [], 0
        for fam in order[1:]:
            free = [f for f in by_family[fam] if not (uids.get(f["id"], set()) & seen)]
            if not free:
                f = by_family[fam][0]
                shared = sorted(uids.get(f["id"], set()) & seen)[0]
                terms.append({"term": f"{fam}: {f['detector']} {f['id']} shares connection "
                                      f"{shared} with earlier evidence: not independent", "value": 0})
                continue
            accepted.add(fam)
            seen |= set().union(*(uids.get(f["id"], set()) for f in by_family[fam]))
            add = s.corroboration if raised < s.max_corroboration else 0
            raised += 1 if add else 0
            f = free[0]
            cap = "" if add else f" (max_corroboration {s.max_corroboration} reached)"
            terms.append({"term": f"independent {fam} evidence: {f['detector']} {f['id']}{cap}",
                          "value": add})
        return accepted, terms

    @staticmethod
    def _target(f: dict) -> str:
        return f["target"] or f["host"]

    @staticmethod
    def _sources(f: dict) -> set[str]:
        """The external actors of an inbound finding: its host, or (an internal host that was
        the alerts' destination) its peers."""
        if f["direction"] != "inbound":
            return set()
        if f["target"] and f["target"] != f["host"]:
            return {f["host"]}
        return set(json.loads(f["distinct_values"] or "[]")) or ({f["peer"]} if f["peer"] else set())

    @staticmethod
    def _threat(f: dict) -> str:
        if f["direction"] in ("inbound", "external"):
            return "inbound_answered" if f["answered"] else "inbound"
        return f["threat"]


ANSWER_WINDOW = 3600  # seconds after a finding's last event in which an answer still counts


def mark_answered(con, candidates: list[Finding]) -> None:
    """Inbound findings whose target answered: an external host's finding (a scan) followed
    by established connections from that host to its internal peer, within ``ANSWER_WINDOW``
    s of the finding. Sets details ``answered_connections`` (scoring reads it: the
    ``inbound_answered`` row of the risk matrix). One query over conn for all candidates."""
    todo = [f for f in candidates if f.peer and f.detector != "ids_alert"]
    if not todo:
        return
    ts = pa.timestamp("us", tz="UTC")
    temp_table(con, "zi_inbound", {"host": pa.string(), "peer": pa.string(), "lo": ts, "hi": ts},
               [(f.host, f.peer, parse_iso_cached(f.first_seen),
                 parse_iso_cached(f.last_seen) + dt.timedelta(seconds=ANSWER_WINDOW))
                for f in todo])
    rows = con.execute(
        "SELECT t.host, t.peer, t.lo, count(*) FROM zi_inbound t JOIN cx c "
        "ON c.orig_h = t.host AND c.resp_h = t.peer AND c.ts BETWEEN t.lo AND t.hi "
        "WHERE c.established AND NOT c.orig_internal AND c.resp_internal "
        "GROUP BY t.host, t.peer, t.lo").fetchall()
    found = {(h, p, iso(lo)): n for h, p, lo, n in rows}
    for f in todo:
        n = found.get((f.host, f.peer, f.first_seen))
        if n:
            f.details["answered_connections"] = n


def _phrase(f: dict) -> str:
    what = f["detector"]
    if f.get("key"):
        what += f" {f['key']}"
    if f.get("peer"):
        what += f" with {f['peer']}"
    elif (f.get("distinct_total") or 0) > 1:
        what += f" ({f['distinct_total']} values)"
    return what


def story(findings: list[dict], sources: int, weak=frozenset()) -> str:
    """One line, in time order: "horizontal_scan tcp/445 (40 values), then c2_port ...". The
    findings of weak detectors are told after the others, as counts ("with 22 weak signals:
    rare_destination×16, unusual_port×6"), unless there is nothing else to tell."""
    strong = [f for f in findings if f["detector"] not in weak]
    quiet = [f for f in findings if f["detector"] in weak] if strong else []
    phrases = list(dict.fromkeys(_phrase(f) for f in (strong or findings)))
    text = ", then ".join(phrases[:4])
    if len(phrases) > 4:
        text += f", and {len(phrases) - 4} more"
    if quiet:
        counts = Counter(f["detector"] for f in quiet)
        text += (f"; with {len(quiet)} weak signal{'s' if len(quiet) != 1 else ''}: "
                 + ", ".join(f"{d}×{n}" if n > 1 else d for d, n in sorted(counts.items())))
    if sources:
        n = sources
        text = f"under attack from {n} source{'s' if n != 1 else ''}: " + text
    return text


def open_ids(ist: IncidentStore, hosts=None) -> set[str]:
    where = f"status IN ({', '.join('?' * len(OPEN_STATUSES))})"
    params = list(OPEN_STATUSES)
    if hosts is not None:
        hosts = sorted(set(hosts))
        if not hosts:
            return set()
        where += f" AND host IN ({', '.join('?' * len(hosts))})"
        params += hosts
    return ist.ids_where(where, params)

