"""Scoring: the risk matrix threat x asset class -> urgency 1..10 -> tier and deadline.

The matrix, the asset classes and the tiers are data (config ``[scoring]`` overrides the
shipped defaults). Every term that moved the urgency is stored on the finding
(``score_terms``) so ``zeekwatch findings show`` can explain the number.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from .config import Config
from .errors import ConfigError
from .nets import NetClass
from .store import iso, parse_iso

ASSET_CLASSES = ("client", "vip_client", "server", "confidential_server", "core_server")

# urgency by threat type (rows) and asset class (columns, in ASSET_CLASSES order)
DEFAULT_MATRIX: dict[str, list[int]] = {
    "c2":           [7, 8, 8, 9, 10],
    "backdoor":     [6, 7, 8, 9, 10],
    "worm":         [6, 7, 7, 8, 9],
    "mass_mailer":  [5, 6, 7, 8, 8],
    "tunnel":       [5, 6, 6, 8, 8],
    "ids":          [5, 6, 6, 7, 8],
    "exfiltration": [5, 6, 7, 9, 10],
    "recon":        [2, 2, 3, 4, 4],
    "policy":       [2, 3, 3, 4, 4],
    "anomaly":      [3, 3, 4, 5, 5],
}

# (lowest urgency, name, hours to act, owner role)
TIERS = [
    (8, 3, "act now", 2, "CIO/CISO"),
    (4, 2, "act now", 8, "security team"),
    (1, 1, "watch", 24, "IT operations"),
]


@dataclass
class Tier:
    number: int
    name: str
    hours: int
    owner: str


def tier_for(urgency: int) -> Tier:
    for low, number, name, hours, owner in TIERS:
        if urgency >= low:
            return Tier(number, name, hours, owner)
    raise ValueError(f"urgency {urgency} below 1")


def clamp(value: int) -> int:
    return max(1, min(10, int(value)))


class Scorer:
    """Scores candidate findings for one config."""

    def __init__(self, config: Config):
        sc = config.scoring
        self.matrix = dict(DEFAULT_MATRIX)
        for threat, row in (sc.get("matrix") or {}).items():
            if len(row) != len(ASSET_CLASSES) or not all(1 <= int(v) <= 10 for v in row):
                raise ConfigError(f"scoring.matrix.{threat}: need {len(ASSET_CLASSES)} values "
                                  f"1..10 for {', '.join(ASSET_CLASSES)}")
            self.matrix[threat] = [int(v) for v in row]
        self.default_class = sc.get("default_asset_class", "client")
        self.asset_nets: list[tuple[str, NetClass]] = []
        for cls, cidrs in (sc.get("assets") or {}).items():
            if cls not in ASSET_CLASSES:
                raise ConfigError(f"scoring.assets.{cls}: unknown asset class "
                                  f"(known: {', '.join(ASSET_CLASSES)})")
            try:
                self.asset_nets.append((cls, NetClass.from_cidrs(cls, cidrs)))
            except ValueError as exc:
                raise ConfigError(f"scoring.assets.{cls}: {exc}") from None
        self.inventory: dict[str, str] = {}  # exact address -> class (assets import)

    def asset_class(self, host: str) -> str:
        if host in self.inventory:
            return self.inventory[host]
        # most valuable matching class wins
        best = None
        for cls, net in self.asset_nets:
            if net.contains(host) and (best is None or ASSET_CLASSES.index(cls) > ASSET_CLASSES.index(best)):
                best = cls
        return best or self.default_class

    def score(self, f: dict, modifiers: list[tuple[str, int]] = ()) -> None:
        """Set urgency, tier, due_at and score_terms on finding ``f`` (in place)."""
        cls = self.asset_class(f["host"])
        row = self.matrix.get(f["threat"], self.matrix["anomaly"])
        base = row[ASSET_CLASSES.index(cls)]
        terms = [{"term": f"matrix[{f['threat']}][{cls}]", "value": base}]
        total = base
        for name, delta in modifiers:
            terms.append({"term": name, "value": delta})
            total += delta
        urgency = clamp(total)
        if urgency != total:
            terms.append({"term": "clamped to 1..10", "value": urgency - total})
        tier = tier_for(urgency)
        f["urgency"] = urgency
        f["tier"] = tier.number
        f["due_at"] = iso(parse_iso(f["first_seen"]) + dt.timedelta(hours=tier.hours))
        f["score_terms"] = json.dumps({"asset_class": cls, "terms": terms, "tier": tier.name,
                                       "owner": tier.owner, "sla_hours": tier.hours})
