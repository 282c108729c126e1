"""Configuration: defaults (dataclasses) -> TOML file -> command-line flags, as one object.

The object is passed down explicitly; nothing reads a global. ``SAMPLE`` (in
``zeekwatch/data/sample-config.toml``) is what ``zeekwatch config init`` writes: every key
with its default and a comment, and the flag that overrides it where there is one.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass, replace
from importlib import resources
from typing import Any

from zeekwatch.errors import ConfigError
from zeekwatch.params import Param, resolve

RFC1918 = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]


def _key(default, kind: str, doc: str, **limits):
    """A config key: its default and its typed declaration (checked by ``Config.validate``)."""
    param = Param("", default, kind, doc, **limits)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"param": param})
    return field(default=default, metadata={"param": param})


@dataclass
class Networks:
    # "auto": also the addresses Zeek marks local (local_orig / local_resp), per sensor
    internal: list[str] = _key(list(RFC1918), "networks_auto", "internal networks, or \"auto\"")
    mail_servers: list[str] = _key([], "networks", "legitimate mail servers")
    dns_servers: list[str] = _key([], "networks", "DNS servers (resolvers)")
    vpn: list[str] = _key([], "networks", "VPN/RAS segments (off_hours exempt)")
    vpn_gateways: list[str] = _key([], "networks", "VPN gateways (long_connection exempt)")


@dataclass
class Time:
    timezone: str = _key("UTC", "text", "IANA time zone for off-hours")
    # off-hours are [business_end, business_start) and weekends
    business_start: str = _key("06:00", "text", "start of business hours, HH:MM")
    business_end: str = _key("22:00", "text", "end of business hours, HH:MM")
    weekends_off: bool = _key(True, "bool", "Saturday and Sunday are off-hours")


STORAGES = ("auto", "memory", "file")
ENGINES = ("duckdb", "spark")


@dataclass
class Engine:
    memory_limit: str = _key("1GB", "size", "DuckDB memory limit")
    threads: int = _key(2, "int", "DuckDB worker threads", min=1, max=1024)
    # empty: a temporary directory per run
    temp_directory: str = _key("", "text", "directory for DuckDB's spill and scratch files")
    # where the tables are kept: "auto" (in memory up to half of memory_limit, else the
    # scratch database file), "memory" or "file"
    storage: str = _key("auto", "choice", "where the tables are kept", choices=STORAGES)
    # "duckdb" (this machine) or "spark" (docs/spark.md; --engine)
    kind: str = _key("duckdb", "choice", "the engine that runs the detectors", choices=ENGINES)
    spark_master: str = _key("local[*]", "text", "Spark master URL (--spark-master)")
    spark_conf: dict = _key({}, "table", "Spark settings, key = \"value\" (--spark-conf K=V)")


@dataclass
class Store:
    db: str = _key("findings.db", "text", "SQLite database of findings")
    # seconds: episodes of one detector and host closer than this merge
    merge_gap: int = _key(300, "int", "episodes closer than this merge", min=0, max=30 * 86400,
                          unit="s")


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
        for section in ("networks", "time", "engine", "store"):
            obj = getattr(self, section)
            for f in fields(obj):
                param = f.metadata.get("param")
                if param is not None:
                    param.check(getattr(obj, f.name), f"{section}.{f.name}")
        _check_temp_directory(self.engine.temp_directory)
        for key in ("business_start", "business_end"):
            value = getattr(self.time, key)
            try:
                h, m = value.split(":")
                assert 0 <= int(h) < 24 and 0 <= int(m) < 60
            except Exception:
                raise ConfigError(f"time.{key}: {value!r} is not HH:MM") from None
        try:
            import zoneinfo

            zoneinfo.ZoneInfo(self.time.timezone)
        except Exception:
            raise ConfigError(f"time.timezone: unknown time zone {self.time.timezone!r}") from None
        return self

    def params(self, detector_id: str, params: tuple[Param, ...]) -> dict[str, Any]:
        """A detector's parameters: its declared defaults overlaid with this config's, each
        value checked against its declaration (ConfigError naming the key otherwise)."""
        over = self.detectors.get(detector_id, {})
        if not isinstance(over, dict):
            raise ConfigError(f"detectors.{detector_id}: expected a table")
        where = f"detectors.{detector_id}"
        if "enabled" in over:
            ENABLED.check(over["enabled"], f"{where}.enabled")
        return resolve(params, over, where, extra_keys=("enabled",))

    def enabled(self, detector_id: str) -> bool:
        over = self.detectors.get(detector_id, {})
        return ENABLED.check(over.get("enabled", True), f"detectors.{detector_id}.enabled")


ENABLED = Param("enabled", True, "bool", "run this detector")


def _check_temp_directory(path: str) -> None:
    """engine.temp_directory must be a writable directory, or creatable under one."""
    if not path:
        return
    probe = path
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe.rstrip(os.sep)) or "."
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"engine.temp_directory: {path!r} is not a writable directory "
                          f"(nor can it be created: {probe!r} is not writable)")


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
            if value == "auto" and f_kind(known[key]) == "networks_auto":
                value = ["auto"]
            if isinstance(current, list) and not isinstance(value, list):
                raise ConfigError(f"{where}{key}: expected a list")
            changes[key] = value
    return replace(obj, **changes)


def f_kind(f) -> str:
    """The declared kind of a config dataclass field ('' when undeclared)."""
    param = f.metadata.get("param")
    return param.kind if param is not None else ""


AUTO = "auto"


def internal_networks(networks: Networks) -> tuple[list[str], bool]:
    """networks.internal as (CIDRs, learn from the logs): "auto" alone means the default
    private ranges plus what the logs mark local; "auto" in a list, the listed ones plus."""
    listed = [n for n in networks.internal if n != AUTO]
    auto = AUTO in networks.internal
    if auto and not listed:
        listed = list(RFC1918)
    return listed, auto


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
