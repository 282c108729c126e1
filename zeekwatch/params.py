"""Typed parameters: every configurable value declared once with its type, range, unit and doc.

Detectors declare their parameters as ``Param`` objects (``zeekwatch.detectors.base``), and the
config sections' scalar keys are checked by the same ``Param.check`` (``zeekwatch.config``). A
value that reaches SQL is therefore always a validated number, a port spec, a boolean or a list
of those; text values are only ever quoted with ``sql_text``. A wrong type or range is a
``ConfigError`` (exit 4) naming the key and what is allowed.

Kinds:
    int, float        a number in [min, max] (TOML booleans are refused)
    bool              true / false (not "false", not 0)
    choice            one of ``choices`` (text)
    text              free text (quoted whenever it reaches SQL)
    ports             list of ports: 25, "6660-6669" (a range), "udp/53" (one protocol)
    ints              list of integers in [min, max]
    texts             list of text values
    networks          list of addresses / CIDRs (IPv4 or IPv6)
    networks_auto     the same, where "auto" may stand too (networks.internal: learn from the logs)
    table             table of text -> text (values in ``choices`` when given)
    size              bytes as text with a unit, as DuckDB takes it: "512MB", "2GB", "1GiB"
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from zeekwatch.errors import ConfigError

KINDS = ("int", "float", "bool", "choice", "text", "ports", "ints", "texts", "networks",
         "networks_auto", "table", "size")
_PORT_RANGE = re.compile(r"^(\d{1,5})-(\d{1,5})$")
_PROTO_PORT = re.compile(r"^(tcp|udp|icmp)/(\d{1,5})$")
_SIZE = re.compile(r"^\s*\d+(?:\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$", re.I)


@dataclass(frozen=True)
class Param:
    """One configurable value: name, default, kind, allowed range or choices, unit, doc."""

    name: str
    default: Any
    kind: str
    doc: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    unit: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"param {self.name}: unknown kind {self.kind!r}")
        self.check(self.default, f"(default of {self.name})")  # a declaration error is a bug

    def allowed(self) -> str:
        """The allowed values in words (for errors, `zeekwatch detectors` and the docs)."""
        rng = ""
        if self.min is not None and self.max is not None:
            rng = f" from {_num(self.min)} to {_num(self.max)}"
        elif self.min is not None:
            rng = f" >= {_num(self.min)}"
        elif self.max is not None:
            rng = f" <= {_num(self.max)}"
        unit = f" ({self.unit})" if self.unit else ""
        return {
            "int": f"an integer{rng}{unit}",
            "float": f"a number{rng}{unit}",
            "bool": "true or false",
            "choice": "one of " + ", ".join(repr(c) for c in self.choices),
            "text": "text",
            "ports": 'a list of ports: 25, "6660-6669" or "udp/53"',
            "ints": f"a list of integers{rng}{unit}",
            "texts": "a list of text values",
            "networks": "a list of addresses or CIDRs",
            "networks_auto": '"auto", or a list of addresses or CIDRs (with "auto" among them '
                             'to learn from the logs too)',
            "table": "a table of text keys to " + (
                "one of " + ", ".join(repr(c) for c in self.choices) if self.choices else "text"),
            "size": 'a size with a unit, e.g. "512MB", "2GB" or "1GiB"',
        }[self.kind]

    def check(self, value: Any, where: str) -> Any:
        """``value`` if it is valid, else a ConfigError naming ``where`` and the allowed values."""
        ok, out = _CHECKS[self.kind](self, value)
        if not ok:
            bad = _first_bad_item(self, value)
            if bad is not None:
                raise ConfigError(f"{where}: {bad!r} is not valid here: expected {self.allowed()}")
            raise ConfigError(f"{where}: {value!r} is not {self.allowed()}")
        return out


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _in_range(p: Param, x: float) -> bool:
    return (p.min is None or x >= p.min) and (p.max is None or x <= p.max)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_int(p, v):
    return _is_int(v) and _in_range(p, v), v


def _check_float(p, v):
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and _in_range(p, v)
    return ok, v


def _check_bool(p, v):
    return isinstance(v, bool), v


def _check_choice(p, v):
    return isinstance(v, str) and v in p.choices, v


def _check_text(p, v):
    return isinstance(v, str), v


def port_ok(item) -> bool:
    """One entry of a port list: 0-65535, "lo-hi" or "proto/port"."""
    if _is_int(item):
        return 0 <= item <= 65535
    if not isinstance(item, str):
        return False
    m = _PORT_RANGE.match(item.strip())
    if m:
        lo, hi = int(m.group(1)), int(m.group(2))
        return 0 <= lo <= hi <= 65535
    m = _PROTO_PORT.match(item.strip().lower())
    return bool(m) and int(m.group(2)) <= 65535


def _check_ports(p, v):
    return isinstance(v, list) and all(port_ok(i) for i in v), v


def _check_ints(p, v):
    return isinstance(v, list) and all(_is_int(i) and _in_range(p, i) for i in v), v


def _check_texts(p, v):
    return isinstance(v, list) and all(isinstance(i, str) for i in v), v


def network_ok(item) -> bool:
    if not isinstance(item, str):
        return False
    try:
        ipaddress.ip_network(item.strip("[]"), strict=False)
    except ValueError:
        return False
    return True


def _check_networks(p, v):
    return isinstance(v, list) and all(network_ok(i) for i in v), v


def _check_networks_auto(p, v):
    if v == "auto":
        v = ["auto"]
    return isinstance(v, list) and all(i == "auto" or network_ok(i) for i in v), v


def _first_bad_item(p: Param, value):
    """The first invalid element of a list value (for a precise message), else None."""
    if not isinstance(value, list):
        return None
    item_ok = {"ports": port_ok, "networks": network_ok,
               "networks_auto": lambda i: i == "auto" or network_ok(i),
               "ints": lambda i: _is_int(i) and _in_range(p, i),
               "texts": lambda i: isinstance(i, str)}.get(p.kind)
    if item_ok is None:
        return None
    return next((i for i in value if not item_ok(i)), None)


def _check_table(p, v):
    if not isinstance(v, dict):
        return False, v
    ok = all(isinstance(k, str) and isinstance(x, str) and (not p.choices or x in p.choices)
             for k, x in v.items())
    return ok, v


def _check_size(p, v):
    return isinstance(v, str) and bool(_SIZE.match(v)) and not v.strip().startswith("0"), v


_CHECKS = {"int": _check_int, "float": _check_float, "bool": _check_bool, "choice": _check_choice,
           "text": _check_text, "ports": _check_ports, "ints": _check_ints, "texts": _check_texts,
           "networks": _check_networks, "networks_auto": _check_networks_auto,
           "table": _check_table, "size": _check_size}


def resolve(params: tuple[Param, ...], given: dict[str, Any], where: str,
            extra_keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """Declared defaults overlaid with ``given``, each value checked; unknown keys refused."""
    by_name = {p.name: p for p in params}
    unknown = set(given) - set(by_name) - set(extra_keys)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(sorted(by_name)) or '(none)'}")
    out = {p.name: p.default for p in params}
    for key, value in given.items():
        if key in by_name:
            out[key] = by_name[key].check(value, f"{where}.{key}")
    return out
