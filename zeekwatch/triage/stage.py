"""Triage: the analysis stage after detection, and the analyst's status workflow.

Stage order inside ``app.analyze`` (and follow): detect -> app usage -> suppress -> score -> store.
``TriageStage.run`` computes app usage in the engine (stored in ``app_usage``), enriches
candidates (DNS names of the peer; which side of the alerts an ids_alert host was), applies
allowlist rules and app look-alikes, and scores; after the store has upserted the candidates,
``TriageStage.settle`` records the suppressions (so a rule's removal restores them) and
refreshes the score of findings that an earlier run stored.

The status flow (``change_status``): new -> investigating -> contained -> resolved, or
false_positive, or suppressed; closed findings can be reopened to investigating. Every change
is an audit row (who, when, old -> new, note).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
from collections import Counter

import pyarrow as pa

from zeekwatch.config import Config
from zeekwatch.finding import Finding, jsonable
from zeekwatch.store.db import STATUSES, Store, iso, now_iso, parse_iso
from zeekwatch.store.triage import TriageError, TriageStore
from zeekwatch.timefmt import parse_iso_cached
from zeekwatch.triage import appusage, incidents, suppress
from zeekwatch.triage.score import Corroborators, Scorer

AUTOMATION = "zeekwatch"

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "new": ("investigating", "contained", "resolved", "false_positive", "suppressed"),
    "investigating": ("contained", "resolved", "false_positive", "suppressed"),
    "contained": ("investigating", "resolved", "false_positive"),
    "resolved": ("investigating",),
    "false_positive": ("investigating",),
    "suppressed": ("new", "investigating"),
}


class TriageStage:
    """Built from the config before anything is written (so a config error refuses early)."""

    def __init__(self, config: Config):
        self.settings = suppress.Settings.from_config(config)
        self.scorer = Scorer(config)
        self.usage: list[dict] = []
        # stored findings near this run's: to corroborate (without their JSON columns) and to
        # be rescored in return (``settle`` reads those rows in full)
        self.neighbours: list[Finding] = []
        self.neighbour_rows: dict[str, dict] = {}

    def run(self, engine, store: Store, candidates: list[Finding], run_id: int) -> None:
        ts = TriageStore(store)
        con, ctx = engine.con, engine.context()
        self.usage = appusage.compute(con, self.settings.rules, ctx.nets,
                                      self.settings.session_gap, ctx.dialect)
        ts.save_app_usage(self.usage, run_id, self.settings.session_gap)
        _enrich(con, candidates, ctx.dialect)
        hosts = {f.host for f in candidates}
        suppress.apply(candidates, ts.app_usage(hosts), ts.suppressions(), self.settings, now_iso())
        self.scorer.load_inventory(ts.assets())
        self.neighbours = self._stored_neighbours(ts, candidates)
        self.scorer.score_all(candidates, self.neighbours)

    def _stored_neighbours(self, ts: TriageStore, candidates: list[Finding]) -> list[Finding]:
        if not candidates:
            return []
        w = dt.timedelta(seconds=self.scorer.window)
        lo = iso(min(parse_iso_cached(f.first_seen) for f in candidates) - w)
        hi = iso(max(parse_iso_cached(f.last_seen) for f in candidates) + w)
        rows = ts.nearby_findings({f.host for f in candidates}, lo, hi)
        self.neighbour_rows = {r["id"]: r for r in rows}
        return [Finding.from_row(r, explain=False) for r in rows]

    def settle(self, store: Store, candidates: list[Finding]) -> None:
        """After the upsert: record suppressions, refresh the scores of continued findings and
        of stored findings that this run's findings now corroborate. Set-wise (a fixed number
        of statements for any number of findings)."""
        ts = TriageStore(store)
        ids = {f.id for f in candidates}
        pool = Corroborators(candidates + self.neighbours, self.scorer.weak)
        scores: dict[str, dict] = {}
        for n in self.neighbours:
            if n.id not in ids:
                g = Finding.from_row(self.neighbour_rows[n.id])
                self.scorer.score(g, self.scorer.modifiers(g, pool))
                scores[g.id] = g.scores()
        takers = Counter(f.id for f in candidates)
        for f in candidates:
            # a finding inserted from this one candidate holds its scores already
            if f.id is not None and not (f.stored == "new" and takers[f.id] == 1):
                scores[f.id] = f.scores()  # a finding that took several candidates: the last one's
        with store.db.atomic():
            ts.update_scores(scores)
            ts.settle_hits([f for f in candidates
                            if f.id is not None and f.suppression_hit is not None], AUTOMATION)


def _enrich(con, candidates: list[Finding], dialect=None) -> None:
    """Details the later stages use: ``peer_names`` (DNS names that resolved to the peer, for
    domain rules) and, for ids_alert, ``host_role`` (src, dst or both: which side of the
    alerts the host was, for ``zeekwatch tune suricata``)."""
    names = appusage.peer_names(con, [f.peer for f in candidates], dialect)
    roles = _alert_roles(con, [f for f in candidates if f.detector == "ids_alert"])
    for f in candidates:
        if names.get(f.peer):
            f.details.setdefault("peer_names", jsonable(names[f.peer]))
        role = roles.get((f.host, f.key, f.first_seen))
        if role:
            f.details.setdefault("host_role", role)
    incidents.mark_answered(con, candidates)  # inbound scans the target answered


def _alert_roles(con, findings: list[Finding]) -> dict[tuple, str]:
    todo = [f for f in findings
            if "host_role" not in f.details and (f.key or "").startswith("sid:")]
    if not todo:
        return {}
    ts = pa.timestamp("us", tz="UTC")
    appusage.temp_table(con, "tr_ids", {"host": pa.string(), "k": pa.string(), "sid": pa.int64(),
                                        "lo": ts, "hi": ts}, [
        (f.host, f.key, int(f.key[4:]), parse_iso(f.first_seen), parse_iso(f.last_seen))
        for f in todo if f.key[4:].isdigit()])
    rows = con.execute(
        "SELECT t.host, t.k, t.lo, sum(CASE WHEN a.orig_h = t.host THEN 1 ELSE 0 END), "
        "sum(CASE WHEN a.resp_h = t.host THEN 1 ELSE 0 END) FROM tr_ids t JOIN alert a "
        "ON a.sid = t.sid AND (a.orig_h = t.host OR a.resp_h = t.host) AND a.ts BETWEEN t.lo AND t.hi "
        "GROUP BY t.host, t.k, t.lo").fetchall()
    out = {}
    for host, key, lo, src, dst in rows:
        out[(host, key, iso(lo))] = "both" if src and dst else ("src" if src else "dst")
    return out


# -- the analyst's workflow --------------------------------------------------------------------
def change_status(ts: TriageStore, fid: str, status: str, who: str, note: str,
                  suppress_as: str | None = None, expires: str | None = None) -> dict:
    """Move finding ``fid`` to ``status`` (audited). ``suppress_as`` (host or signature, with
    false_positive only) also creates an allowlist rule from the verdict, applied to the other
    stored open findings it matches. Returns {finding, rule_id, suppressed}."""
    fid = ts.resolve_id(fid)
    f = ts.store.get(fid)
    if status not in STATUSES:
        raise TriageError(f"unknown status {status!r} (known: {', '.join(STATUSES)})")
    if status != f["status"] and status not in TRANSITIONS[f["status"]]:
        allowed = ", ".join(TRANSITIONS[f["status"]])
        raise TriageError(f"{fid} is {f['status']}: it can move to {allowed}, not {status}")
    if not (note or "").strip():
        raise TriageError("a status change needs a note (--note)")
    if suppress_as and status != "false_positive":
        raise TriageError("--suppress goes with false_positive")
    if expires and not suppress_as:
        raise TriageError("--expires goes with --suppress (it is the rule's expiry)")
    rule = None
    if suppress_as:  # validated before anything is written
        rule = suppress.make_rule(_verdict_rule(f, suppress_as), owner=who, reason=note,
                                  expires=expires, who=who, origin=f"false_positive {fid}",
                                  now=now_iso())
    reason = f"analyst {who}: {note}" if status == "suppressed" else None
    action = "set-status" if status != f["status"] else "note"
    with ts.db.atomic():  # the status change, its audit row and the rule: all or nothing
        out = {"finding": ts.set_status(fid, status, who, note, reason, action), "rule_id": None,
               "suppressed": []}
        if rule is not None:
            out["rule_id"], out["suppressed"] = suppress.add_rule(ts, rule, who)
    ts.store.checkpoint()
    return out


def _verdict_rule(f: dict, kind: str) -> dict:
    details = json.loads(f.get("details") or "{}")
    sid = details.get("sid")
    if sid is None and (f.get("key") or "").startswith("sid:"):
        sid = f["key"][4:]
    if f["detector"] == "ids_alert" and sid is None and details.get("sids"):
        sids = " ".join(str(x) for x in details["sids"])
        raise TriageError(f"--suppress: this finding rolls up {len(details['sids'])} signatures "
                          f"({sids}); suppress each with `zeekwatch suppress add --sid N` "
                          f"(and --cidr {f['host']} for this host only)")
    if kind == "host":
        try:
            net = ipaddress.ip_network(f["host"])
        except ValueError:
            raise TriageError(f"--suppress host: {f['host']!r} is not an address") from None
        rule = {"cidr": str(net), "detector": f["detector"]}
        if f["detector"] == "ids_alert" and sid is not None:
            rule["sid"] = int(sid)
        return rule
    if kind == "signature":
        if f["detector"] != "ids_alert" or sid is None:
            raise TriageError("--suppress signature applies to ids_alert findings (a Suricata sid)")
        return {"detector": "ids_alert", "sid": int(sid)}
    raise TriageError(f"--suppress must be host or signature, not {kind!r}")


def parse_since(text: str, now: dt.datetime) -> str:
    """``--since``: a duration back from now (30m, 24h, 7d, 2w) or an ISO date/date-time."""
    m = re.fullmatch(r"\s*([0-9]+)\s*([mhdw])\s*", text or "")
    if m:
        n, unit = int(m.group(1)), m.group(2)
        try:
            delta = {"m": dt.timedelta(minutes=n), "h": dt.timedelta(hours=n),
                     "d": dt.timedelta(days=n), "w": dt.timedelta(weeks=n)}[unit]
            back = now - delta
            if back.year < 1970:
                raise OverflowError
        except OverflowError:
            raise TriageError(f"--since: {text!r} reaches back before 1970") from None
        return iso(back)
    return suppress.parse_time(text, "--since")
