"""What ``zeekwatch enrich`` adds to a record: the ``zw.*`` fields, from the store and the config.

- ``orig_side`` / ``resp_side``: ``internal`` or ``external`` (``networks.internal``);
- ``orig_asset`` / ``resp_asset``: the asset class of an internal address (inventory, then
  ``scoring.assets``, then the default class), unset for an external one;
- ``app``: the app usage (``category:app``, e.g. ``p2p:bittorrent``) recorded for the
  originator (else the responder) at the record's time;
- ``finding_ids``, ``detectors``, ``techniques``: the findings whose evidence cites this record
  (by uid, Suricata flow_id or community id), their detectors and ATT&CK techniques;
- ``urgency``, ``tier``: the highest among them; ``suppressed``: the suppression reasons of
  those that are suppressed.
"""

from __future__ import annotations

import socket
from bisect import bisect_right
from dataclasses import dataclass

from zeekwatch.config import Config
from zeekwatch.detectors import REGISTRY
from zeekwatch.nets import classes
from zeekwatch.store import handoff
from zeekwatch.store.db import Store
from zeekwatch.store.triage import TriageStore
from zeekwatch.timefmt import parse_iso
from zeekwatch.triage.score import Scorer

# the added fields, in order, with their Zeek types (TSV #types)
FIELDS = (("orig_side", "string"), ("resp_side", "string"), ("orig_asset", "string"),
          ("resp_asset", "string"), ("app", "string"), ("finding_ids", "set[string]"),
          ("detectors", "set[string]"), ("techniques", "set[string]"), ("urgency", "count"),
          ("tier", "count"), ("suppressed", "string"))
PREFIX = "zw."
ADDRESS_FIELDS = 4  # the first four depend on the addresses only
CITED_FIELDS = 6  # the last six on the findings that cite the record


@dataclass(frozen=True)
class Citation:
    finding_ids: tuple[str, ...]
    detectors: tuple[str, ...]
    techniques: tuple[str, ...]
    urgency: int | None
    tier: int | None
    suppressed: tuple[str, ...]

    def values(self) -> dict:
        """The cited fields as JSON values (absent when unset, as Zeek's JSON writer does)."""
        out = {"finding_ids": list(self.finding_ids), "detectors": list(self.detectors),
               "techniques": list(self.techniques)}
        if self.urgency is not None:
            out["urgency"] = self.urgency
        if self.tier is not None:
            out["tier"] = self.tier
        if self.suppressed:
            out["suppressed"] = "; ".join(self.suppressed)
        return out


def _citations(store: Store) -> dict[str, Citation]:
    cites: dict[str, set[str]] = {}
    for value, _kind, fid in handoff.citations(store):
        cites.setdefault(value, set()).add(fid)
    findings = handoff.findings_by_id(store, {f for ids in cites.values() for f in ids})
    out = {}
    for value, ids in cites.items():
        rows = [findings[i] for i in sorted(ids) if i in findings]
        if not rows:
            continue
        dets = sorted({r["detector"] for r in rows})
        techs = sorted({t for d in dets for t in (REGISTRY[d].attack if d in REGISTRY else ())})
        urg = [r["urgency"] for r in rows if r["urgency"] is not None]
        tiers = [r["tier"] for r in rows if r["tier"] is not None]
        supp = sorted({r["suppressed_reason"] for r in rows
                       if r["status"] == "suppressed" and r["suppressed_reason"]})
        out[value] = Citation(tuple(r["id"] for r in rows), tuple(dets), tuple(techs),
                              max(urg) if urg else None, max(tiers) if tiers else None,
                              tuple(supp))
    return out


class Annotator:
    """The index ``enrich`` looks records up in: built once from the store and the config."""

    def __init__(self, store: Store, config: Config):
        ts = TriageStore(store)
        self.internal = classes(config)["internal"]
        self.scorer = Scorer(config)
        self.scorer.load_inventory(ts.assets())
        self.cited = _citations(store)
        self._addr: dict[str, tuple[str, str | None]] = {}
        # host -> (span starts, sorted spans (start, end, label)), epoch seconds
        self.usage: dict[str, tuple[list[float], list[tuple[float, float, str]]]] = {}
        for u in ts.app_usage():
            label = f"{u['category']}:{u['app']}" if u.get("category") else u["app"]
            start = parse_iso(u["first_seen"]).timestamp()
            end = parse_iso(u["last_seen"]).timestamp()
            self.usage.setdefault(u["host"], ([], []))[1].append((start, end, label))
        for host, (starts, spans) in self.usage.items():
            spans.sort()
            starts[:] = [s for s, _e, _l in spans]

    def address(self, addr: str | None) -> tuple[str, str | None]:
        """(side, asset class or None) of an address; cached."""
        if not addr:
            return "-", None
        hit = self._addr.get(addr)
        if hit is None:
            if self._internal(addr):
                hit = ("internal", self.scorer.asset_class(addr)[0])
            else:
                hit = ("external", None)
            if len(self._addr) < 2_000_000:  # bounded: a scan's address space cannot grow it forever
                self._addr[addr] = hit
        return hit

    def _internal(self, addr: str) -> bool:
        try:  # dotted quads without the ipaddress module: 20x faster on a scan's many addresses
            n = int.from_bytes(socket.inet_pton(socket.AF_INET, addr), "big") if addr.count(".") == 3 else None
        except OSError:
            n = None
        if n is not None and ":" not in addr:
            return any(lo <= n <= hi for lo, hi in self.internal.v4)
        return self.internal.contains(addr)

    def app(self, host: str | None, ts: float | None) -> str | None:
        """The app usage label of ``host`` at ``ts`` (epoch seconds), if any."""
        entry = self.usage.get(host) if host else None
        if entry is None or ts is None:
            return None
        starts, spans = entry
        i = bisect_right(starts, ts)
        labels = sorted({label for s, e, label in spans[:i] if s <= ts <= e})
        return ",".join(labels) or None

    def citation(self, *keys) -> Citation | None:
        """The findings citing a record with any of ``keys`` (uid, flow id, community id)."""
        found = [self.cited[k] for k in keys if k and k in self.cited]
        if not found:
            return None
        if len(found) == 1:
            return found[0]
        return _merge(found)


def _merge(cs: list[Citation]) -> Citation:
    def union(attr):
        return tuple(sorted({x for c in cs for x in getattr(c, attr)}))
    urg = [c.urgency for c in cs if c.urgency is not None]
    tiers = [c.tier for c in cs if c.tier is not None]
    return Citation(union("finding_ids"), union("detectors"), union("techniques"),
                    max(urg) if urg else None, max(tiers) if tiers else None, union("suppressed"))
