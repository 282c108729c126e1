"""Configuration: defaults (dataclasses) -> TOML file -> command-line flags, as one object.

The object is passed down explicitly; nothing reads a global. ``SAMPLE`` (in
``zeekwatch/data/sample-config.toml``) is what ``zeekwatch config init`` writes: every key
with its default and a comment, and the flag that overrides it where there is one.
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass, replace
from importlib import resources
from typing import Any

from zeekwatch.errors import ConfigError

RFC1918 = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]


@dataclass
class Networks:
    internal: list[str] = field(default_factory=lambda: list(RFC1918))
    mail_servers: list[str] = field(default_factory=list)
    dns_servers: list[str] = field(default_factory=list)
    vpn: list[str] = field(default_factory=list)  # VPN/RAS segments (off_hours exempt)
    vpn_gateways: list[str] = field(default_factory=list)  # long_connection exempt


@dataclass
class Time:
    timezone: str = "UTC"
    business_start: str = "06:00"  # off-hours are [business_end, business_start) and weekends
    business_end: str = "22:00"
    weekends_off: bool = True


STORAGES = ("auto", "memory", "file")


@dataclass
class Engine:
    memory_limit: str = "1GB"
    threads: int = 2
    temp_directory: str = ""  # empty: a temporary directory per run
    # where the tables are kept: "auto" (in memory up to half of memory_limit, else the
    # scratch database file), "memory" or "file"
    storage: str = "auto"


@dataclass
class Store:
    db: str = "findings.db"
    merge_gap: int = 300  # seconds: episodes of one detector and host closer than this merge


@dataclass
class Config:
    networks: Networks = field(default_factory=Networks)
    time: Time = field(default_factory=Time)
    engine: Engine = field(default_factory=Engine)
    store: Store = field(default_factory=Store)
    # detector id -> {param: value}; merged over each detector's declared defaults
    detectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    # free-form sections owned by later stages (scoring, suppression, assets)
    scoring: dict[str, Any] = field(default_factory=dict)
    suppress: dict[str, Any] = field(default_factory=dict)
    incidents: dict[str, Any] = field(default_factory=dict)  # triage/incidents.py

    def validate(self) -> "Config":
        for name in ("internal", "mail_servers", "dns_servers", "vpn", "vpn_gateways"):
            for cidr in getattr(self.networks, name):
                try:
                    ipaddress.ip_network(cidr, strict=False)
                except ValueError as exc:
                    raise ConfigError(f"networks.{name}: {cidr!r} is not an address or CIDR ({exc})") from None
        for key in ("business_start", "business_end"):
            value = getattr(self.time, key)
            try:
                h, m = value.split(":")
                assert 0 <= int(h) < 24 and 0 <= int(m) < 60
            except Exception:
                raise ConfigError(f"time.{key}: {value!r} is not HH:MM") from None
        if self.engine.storage not in STORAGES:
            raise ConfigError(f"engine.storage: {self.engine.storage!r} is not one of "
                              f"{', '.join(STORAGES)}")
        try:
            import zoneinfo

            zoneinfo.ZoneInfo(self.time.timezone)
        except Exception:
            raise ConfigError(f"time.timezone: unknown time zone {self.time.timezone!r}") from None
        return self

    def params(self, detector_id: str, defaults: dict[str, Any]) -> dict[str, Any]:
        """A detector's parameters: its declared defaults overlaid with this config's."""
        over = self.detectors.get(detector_id, {})
        unknown = set(over) - set(defaults) - {"enabled"}
        if unknown:
            raise ConfigError(f"detectors.{detector_id}: unknown key(s) {', '.join(sorted(unknown))}; "
                              f"known: {', '.join(sorted(defaults))}")
        merged = dict(defaults)
        merged.update(over)
        return merged

    def enabled(self, detector_id: str) -> bool:
        return bool(self.detectors.get(detector_id, {}).get("enabled", True))


def _merge(obj, data: dict, where: str):
    if not is_dataclass(obj):
        return data
    known = {f.name: f for f in fields(obj)}
    changes = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{where}{key}: unknown key (known: {', '.join(sorted(known))})")
        current = getattr(obj, key)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}{key}: expected a table")
            changes[key] = _merge(current, value, f"{where}{key}.")
        else:
            if isinstance(current, list) and not isinstance(value, list):
                raise ConfigError(f"{where}{key}: expected a list")
            changes[key] = value
    return replace(obj, **changes)


def from_dict(data: dict) -> Config:
    return _merge(Config(), data, "").validate()


def load(path: str | None) -> Config:
    """Defaults, overlaid with the TOML file at ``path`` when given."""
    if not path:
        return Config().validate()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (create one with `zeekwatch config init`)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return from_dict(data)


def sample() -> str:
    return resources.files("zeekwatch").joinpath("data/sample-config.toml").read_text()
