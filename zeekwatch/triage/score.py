"""Scoring: the risk matrix threat x asset class -> urgency 1..10 -> tier and deadline.

    urgency = clamp(matrix[threat][asset class] + modifiers, 1, 10)
    tier    = 1 (urgency 1-3, watch, 24 h, IT operations)
              2 (4-7, act now, 8 h, security team)
              3 (8-10, act now, 2 h, CIO/CISO)
    due_at  = first_seen + the tier's hours

The matrix, the asset classes, the modifiers and the tiers' hours and owners are data: config
``[scoring]`` overrides the shipped defaults. The asset class of a host comes from the asset
inventory (``zeekwatch assets import``; the most specific address/CIDR wins), else from the
CIDRs in ``[scoring.assets]`` (the most valuable matching class wins), else
``default_asset_class``. Modifiers (each stored as a term with the finding):

- ``corroboration`` (+1): another detector fired on the same host within
  ``corroboration_window`` seconds (3600) of the finding, on other connections (a finding
  citing one of the same evidence uids is the same evidence, not corroboration); suppressed
  and false-positive findings do not corroborate, and the weak detectors (``weak_detectors``: outbound_ping,
  off_hours) neither give nor receive it;
- ``mx_correlation`` (+1): a mass_mailer finding whose host made MX lookups (details
  ``mx_lookups`` > 0);
- ``ids_severity1`` (+1): an ids_alert finding with Suricata severity 1.

Every term is stored on the finding (``score_terms``) so ``zeekwatch findings show`` can
explain the number.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from typing import Iterable

from zeekwatch.config import Config, internal_networks
from zeekwatch.errors import ConfigError
from zeekwatch.finding import Finding
from zeekwatch.nets import NetClass, parse_address
from zeekwatch.timefmt import iso
from zeekwatch.timefmt import parse_iso_cached as _time

ASSET_CLASSES = ("client", "vip_client", "server", "confidential_server", "core_server")
ASSET_ALIASES = {
    "vip": "vip_client", "important_person_client": "vip_client",
    "important-person client": "vip_client", "important person client": "vip_client",
    "confidential": "confidential_server", "personal_data_server": "confidential_server",
    "confidential/personal-data server": "confidential_server",
    "core": "core_server", "core_business_server": "core_server",
    "core business server": "core_server",
}

# urgency by threat type (rows) and asset class (columns, in ASSET_CLASSES order)
DEFAULT_MATRIX: dict[str, list[int]] = {
    "c2":           [7, 8, 8, 9, 10],
    "backdoor":     [6, 7, 8, 9, 10],
    "worm":         [6, 7, 7, 8, 9],
    "mass_mailer":  [5, 6, 7, 8, 8],
    "tunnel":       [5, 6, 6, 8, 8],
    "ids":          [5, 6, 6, 7, 8],
    "exfiltration": [5, 6, 7, 9, 10],
    "suspicious":   [4, 5, 5, 6, 7],   # unusual ports, rare destinations: worth a look, not proof
    "recon":        [2, 2, 3, 4, 4],
    "policy":       [2, 3, 3, 4, 4],
    "anomaly":      [3, 3, 4, 5, 5],
    # inbound: an external host acting on an internal target (scans, alerts from outside);
    # the column is the target's class. Low unless the target answered (an exploit-category
    # alert, established connections in the finding's details).
    "inbound":          [2, 2, 3, 3, 4],
    "inbound_answered": [4, 5, 6, 7, 8],
}
FALLBACK_THREAT = "anomaly"  # row used for a threat type the matrix does not know

DEFAULT_MODIFIERS = {"corroboration": 1, "mx_correlation": 1, "ids_severity1": 1}
DEFAULT_WEAK = ("outbound_ping", "off_hours")
DEFAULT_WINDOW = 3600
NO_CORROBORATION = ("suppressed", "false_positive")
# Suricata categories of an attack that reached its target (an inbound alert of one of these
# is scored ``inbound_answered``); the alert categories whose threat is one of
# INFECTED_THREATS stay outbound even when the internal host was the destination (a C2
# server's reply matches the signature with the infected client as destination).
EXPLOIT_CATEGORIES = ("attempted administrator privilege gain", "attempted user privilege gain",
                      "successful administrator privilege gain", "successful user privilege gain",
                      "web application attack", "executable code was detected",
                      "a suspicious filename was detected")
INFECTED_THREATS = ("c2", "backdoor", "exfiltration")


@dataclass(frozen=True)
class Tier:
    number: int
    low: int  # lowest urgency of the tier
    high: int
    name: str
    hours: float
    owner: str


DEFAULT_TIERS = (
    Tier(1, 1, 3, "watch", 24, "IT operations"),
    Tier(2, 4, 7, "act now", 8, "security team"),
    Tier(3, 8, 10, "act now", 2, "CIO/CISO"),
)
CONFIG_KEYS = {"matrix", "assets", "default_asset_class", "modifiers", "weak_detectors",
               "corroboration_window", "tier_hours", "tier_owners"}


def tier_for(urgency: int, tiers: tuple[Tier, ...] = DEFAULT_TIERS) -> Tier:
    for t in tiers:
        if t.low <= urgency <= t.high:
            return t
    raise ValueError(f"urgency {urgency} outside 1..10")


def clamp(value: int) -> int:
    return max(1, min(10, int(value)))


def asset_class_name(text: str) -> str:
    """A canonical asset class from a name or alias; ``ValueError`` when unknown."""
    t = str(text).strip().lower()
    t = ASSET_ALIASES.get(t, t).replace("-", "_").replace(" ", "_")
    t = ASSET_ALIASES.get(t, t)
    if t not in ASSET_CLASSES:
        raise ValueError(f"unknown asset class {text!r} (known: {', '.join(ASSET_CLASSES)})")
    return t


def _check_keys(sc: dict) -> None:
    unknown = set(sc) - CONFIG_KEYS
    if unknown:
        raise ConfigError(f"scoring: unknown key(s) {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(sorted(CONFIG_KEYS))}")


def _tiers(sc: dict) -> tuple[Tier, ...]:
    hours = sc.get("tier_hours", [t.hours for t in DEFAULT_TIERS])
    owners = sc.get("tier_owners", [t.owner for t in DEFAULT_TIERS])
    if len(hours) != 3 or not all(isinstance(h, (int, float)) and h > 0 for h in hours):
        raise ConfigError("scoring.tier_hours: three positive numbers of hours (tiers 1, 2, 3)")
    if len(owners) != 3:
        raise ConfigError("scoring.tier_owners: three owner roles (tiers 1, 2, 3)")
    return tuple(Tier(t.number, t.low, t.high, t.name, h, str(o))
                 for t, h, o in zip(DEFAULT_TIERS, hours, owners))


class Scorer:
    """Scores findings for one config (and, once loaded, one asset inventory)."""

    def __init__(self, config: Config, inventory: Iterable[dict] = ()):
        sc = config.scoring or {}
        _check_keys(sc)
        self.matrix = {k: list(v) for k, v in DEFAULT_MATRIX.items()}
        for threat, row in (sc.get("matrix") or {}).items():
            if (not isinstance(row, list) or len(row) != len(ASSET_CLASSES)
                    or not all(isinstance(v, int) and 1 <= v <= 10 for v in row)):
                raise ConfigError(f"scoring.matrix.{threat}: need {len(ASSET_CLASSES)} integers "
                                  f"1..10 for {', '.join(ASSET_CLASSES)}")
            self.matrix[threat] = list(row)
        try:
            self.default_class = asset_class_name(sc.get("default_asset_class", "client"))
        except ValueError as exc:
            raise ConfigError(f"scoring.default_asset_class: {exc}") from None
        self.asset_nets: list[tuple[str, NetClass]] = []
        for cls, cidrs in (sc.get("assets") or {}).items():
            try:
                self.asset_nets.append((asset_class_name(cls), NetClass.from_cidrs(cls, cidrs)))
            except ValueError as exc:
                raise ConfigError(f"scoring.assets.{cls}: {exc}") from None
        mods = sc.get("modifiers") or {}
        if set(mods) - set(DEFAULT_MODIFIERS) or not all(isinstance(v, int) for v in mods.values()):
            raise ConfigError(f"scoring.modifiers: integer values for "
                              f"{', '.join(DEFAULT_MODIFIERS)} only")
        self.modifiers_cfg = {**DEFAULT_MODIFIERS, **mods}
        self.weak = set(sc.get("weak_detectors", DEFAULT_WEAK))
        self.window = float(sc.get("corroboration_window", DEFAULT_WINDOW))
        self.tiers = _tiers(sc)
        # the configured networks ("auto": their listed part; what a run learns from the
        # logs' local_orig/local_resp is the engine's, not the scorer's)
        self.internal = NetClass.from_cidrs("internal", internal_networks(config.networks)[0])
        self._internal: dict = {}
        self.inventory: list[tuple[ipaddress._BaseNetwork, dict]] = []
        self.load_inventory(inventory)

    # -- asset class ------------------------------------------------------------------------
    def load_inventory(self, rows: Iterable[dict]) -> None:
        """Asset inventory rows (address or CIDR, class, name, owner); most specific first."""
        inv = [(ipaddress.ip_network(r["address"], strict=False), r) for r in rows]
        self.inventory = sorted(inv, key=lambda x: -x[0].prefixlen)
        self._classes: dict = {}  # host -> asset_class(host): 20 k findings, 1 k hosts

    def asset_class(self, host: str) -> tuple[str, str]:
        """(class, where it came from) for ``host``."""
        try:
            return self._classes[host]
        except (KeyError, TypeError):
            pass
        out = self._asset_class(host)
        try:
            self._classes[host] = out
        except TypeError:  # an unhashable value: answered, not remembered
            pass
        return out

    def _asset_class(self, host) -> tuple[str, str]:
        if isinstance(host, str):
            ip = parse_address(host)
        else:
            try:
                ip = ipaddress.ip_address(host)
            except (TypeError, ValueError):
                ip = None
        if ip is not None:
            for net, row in self.inventory:
                if ip.version == net.version and ip in net:
                    name = f" {row['name']}" if row.get("name") else ""
                    return row["class"], f"inventory {row['address']}{name}"
        best = None
        for cls, net in self.asset_nets:
            if net.contains(host) and (best is None or ASSET_CLASSES.index(cls) > ASSET_CLASSES.index(best)):
                best = cls
        if best:
            return best, "scoring.assets"
        return self.default_class, "default"

    # -- direction ---------------------------------------------------------------------------
    def direction(self, f: Finding) -> tuple[str, str | None]:
        """(direction, target) of a finding: ``outbound`` (an internal host acting, target =
        the host), ``inbound`` (an external host acting on an internal target: its peer, else
        the first internal address among its values; or an internal host that was the
        destination of the alerts of a non-infection category), ``external`` (no internal
        side at all: the host itself, never classed ``client``)."""
        host, peer = f.host, f.peer
        if self._inside(host):
            if (f.detector == "ids_alert" and f.details.get("host_role") == "dst"
                    and not (peer and self._inside(peer))
                    and f.threat not in INFECTED_THREATS):
                return "inbound", host
            return "outbound", host
        if peer and self._inside(peer):
            return "inbound", peer
        for v in f.values:
            if self.internal.contains(str(v)):
                return "inbound", str(v)
        return "external", host

    def _inside(self, addr) -> bool:
        """``internal.contains``, remembered per address (a host's findings ask it again)."""
        try:
            return self._internal[addr]
        except KeyError:
            inside = self._internal[addr] = self.internal.contains(addr)
            return inside
        except TypeError:
            return self.internal.contains(addr)

    def _answered(self, f: Finding) -> str | None:
        d = f.details
        if f.detector == "ids_alert":
            cats = [str(c).lower() for c in (d.get("categories") or {})] or [str(d.get("category") or "").lower()]
            hit = [c for c in cats if c in EXPLOIT_CATEGORIES]
            return f"alert category {hit[0]}" if hit else None
        n = d.get("answered_connections") or 0
        return f"{n} established connection(s) from the source" if isinstance(n, (int, float)) and n > 0 else None

    def _base(self, f: Finding) -> tuple[str, str, str, dict]:
        """(matrix row, asset class column, term name, extra score_terms keys)."""
        direction, target = self.direction(f)
        if direction == "outbound":
            cls, source = self.asset_class(f.host)
            threat = f.threat if f.threat in self.matrix else FALLBACK_THREAT
            return threat, cls, f"matrix[{threat}][{cls}]", {
                "asset_class": cls, "asset_source": source, "direction": direction}
        answered = self._answered(f)
        row = "inbound_answered" if answered else "inbound"
        extra = {"direction": direction, "target": target}
        if answered:
            extra["answered"] = answered
        if direction == "inbound":
            cls, source = self.asset_class(target)
            if target != f.host:  # the actor is external: it has no asset class of ours
                extra.update({"asset_class": "external", "asset_source":
                              f"outside networks.internal; target {target} is {cls} ({source})"})
            else:
                extra.update({"asset_class": cls, "asset_source": source})
            return row, cls, f"matrix[{row}][{cls} target {target}]", extra
        extra.update({"asset_class": "external", "asset_source": "outside networks.internal",
                      "target": None})
        return row, self.default_class, f"matrix[{row}][{self.default_class}] (no internal side)", extra

    # -- modifiers --------------------------------------------------------------------------
    def modifiers(self, f: Finding, others: Iterable[Finding] = ()) -> list[tuple[str, int]]:
        """The modifier terms that apply to ``f``; ``others`` are findings that may corroborate."""
        out: list[tuple[str, int]] = []
        details = f.details
        if f.detector not in self.weak and self.modifiers_cfg["corroboration"]:
            dets = sorted(self._corroborating(f, others))
            if dets:
                hours = self.window / 3600
                span = f"{hours:g} h" if hours >= 1 else f"{self.window:g} s"
                out.append((f"corroborated by {', '.join(dets)} within {span}",
                            self.modifiers_cfg["corroboration"]))
        if f.detector == "mass_mailer" and (details.get("mx_lookups") or 0) > 0:
            out.append((f"MX lookups by the same host ({details['mx_lookups']})",
                        self.modifiers_cfg["mx_correlation"]))
        if f.detector == "ids_alert" and details.get("severity") == 1:
            out.append(("Suricata severity 1", self.modifiers_cfg["ids_severity1"]))
        return [(n, d) for n, d in out if d]

    def _corroborating(self, f: Finding, others: Iterable[Finding]) -> set[str]:
        if not isinstance(others, Corroborators):
            others = Corroborators(others, self.weak)
        return others.detectors(f, self.window)

    # -- score ------------------------------------------------------------------------------
    def score(self, f: Finding, modifiers: Iterable[tuple[str, int]] | None = None) -> None:
        """Set urgency, tier, due_at and score_terms on finding ``f`` (in place)."""
        if modifiers is None:
            modifiers = self.modifiers(f)
        threat, cls, name, extra = self._base(f)
        base = self.matrix[threat][ASSET_CLASSES.index(cls)]
        terms = [{"term": name, "value": base}]
        total = base
        for name, delta in modifiers:
            terms.append({"term": name, "value": int(delta)})
            total += int(delta)
        urgency = clamp(total)
        if urgency != total:
            terms.append({"term": "clamped to 1..10", "value": urgency - total})
        tier = tier_for(urgency, self.tiers)
        f.urgency = urgency
        f.tier = tier.number
        # without times (masked timestamps) the deadline runs from now
        start = _time(f.first_seen)
        if f.details.get("time_unknown") is True:  # masked input timestamps
            start = dt.datetime.now(dt.timezone.utc)
        f.due_at = iso(start + dt.timedelta(hours=tier.hours))
        f.score_terms = {
            **extra, "threat": f.threat, "terms": terms,
            "urgency": urgency, "tier": tier.name, "tier_number": tier.number,
            "owner": tier.owner, "sla_hours": tier.hours}

    def score_all(self, findings: list[Finding], others: Iterable[Finding] = ()) -> None:
        """Score every finding; each may be corroborated by the others and by ``others``
        (stored findings)."""
        pool = Corroborators(list(findings) + list(others), self.weak)
        for f in findings:
            self.score(f, self.modifiers(f, pool))


class Corroborators:
    """The findings that may corroborate others, by host and detector, sorted out once for
    all the findings scored against them (not once per finding: a noisy run scores 20 k
    findings against the ~20 of their host). Weak detectors, suppressed and false-positive
    findings never corroborate, whatever the finding scored, so they are left out here."""

    def __init__(self, findings: Iterable[Finding], weak):
        self.hosts: dict[str, dict[str, list[tuple]]] = {}
        for g in findings:
            if g.detector in weak or g.status in NO_CORROBORATION:
                continue
            self.hosts.setdefault(g.host, {}).setdefault(g.detector, []).append(
                (g.first_seen, g.last_seen, g.uids))

    def detectors(self, f: Finding, window: float) -> set[str]:
        """The other detectors with a finding on ``f``'s host within ``window`` seconds of it,
        on other connections (one such finding per detector is enough)."""
        f0, f1 = _time(f.first_seen), _time(f.last_seen)
        w = dt.timedelta(seconds=window)
        hi = lo = None  # f1 + w and f0 - w, each worked out once where it was before
        dets: set[str] = set()
        own = f.uids and set(f.uids)
        for det, found in self.hosts.get(f.host, {}).items():
            if det == f.detector:
                continue
            for g0, g1, uids in found:
                if hi is None:
                    hi = f1 + w
                if _time(g0) > hi:
                    continue
                if lo is None:
                    lo = f0 - w
                if _time(g1) >= lo and not (own and uids and not own.isdisjoint(uids)):
                    dets.add(det)
                    break
        return dets


# -- asset inventory CSV ----------------------------------------------------------------------
INVENTORY_COLUMNS = ("address", "class", "name", "owner")


def _inventory_text(path: str, data: bytes) -> str:
    """The CSV as text: UTF-8 (with or without a BOM) or UTF-16 with its BOM; any other
    encoding is refused naming the line and byte, never guessed."""
    from zeekwatch.errors import InputError

    for bom, codec in ((b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            try:
                return data.decode(codec)
            except UnicodeDecodeError as exc:
                raise InputError(path, f"not valid UTF-16 at byte {exc.start}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(path, f"not UTF-8 (byte {data[exc.start]:#04x} at byte offset "
                               f"{exc.start}); save the inventory as UTF-8", line=line) from None


def read_inventory(path: str) -> list[dict]:
    """Rows of an inventory CSV: header with ``address`` (or ``cidr``), ``class`` and optionally
    ``name`` and ``owner``. Raises ``InputError`` naming path:line for a bad row."""
    import csv
    import io

    from zeekwatch.errors import InputError

    try:
        with open(path, "rb") as fh:
            data = fh.read(64 << 20)
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror or exc}") from None
    with io.StringIO(_inventory_text(path, data), newline="") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        addr_col = "address" if "address" in header else ("cidr" if "cidr" in header else None)
        if addr_col is None or "class" not in header:
            raise InputError(path, "an inventory CSV needs a header with address (or cidr) and "
                                   f"class columns; found {', '.join(header) or 'no header'}", line=1)
        rows = []
        for rec in reader:
            line = reader.line_num
            addr = (rec.get(addr_col) or "").strip()
            if not addr and not any((v or "").strip() for v in rec.values() if isinstance(v, str)):
                continue  # blank line
            try:
                net = ipaddress.ip_network(addr, strict=False)
                cls = asset_class_name(rec.get("class") or "")
            except ValueError as exc:
                raise InputError(path, str(exc), line=line) from None
            text = str(net.network_address) if net.num_addresses == 1 else str(net)
            rows.append({"address": text, "class": cls, "name": (rec.get("name") or "").strip() or None,
                         "owner": (rec.get("owner") or "").strip() or None})
    return rows
