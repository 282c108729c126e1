"""Lenient value conversions for EVE fields: a value of the wrong type becomes None (NULL)."""

from __future__ import annotations

from typing import NamedTuple


class Common(NamedTuple):
    """The fields every EVE event has, already converted (ICMP type/code in the port slots)."""

    ts: str | None
    uid: str | None  # flow_id as text
    flow_id: int | None
    src_ip: str | None
    src_port: int | None
    dest_ip: str | None
    dest_port: int | None
    proto: str | None
    community_id: str | None


def as_int(v) -> int | None:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            return None
    return None


def as_str(v) -> str | None:
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
    return None


def as_str_list(v) -> list[str] | None:
    if v is None:
        return None
    if isinstance(v, str):
        return [v]
    if isinstance(v, list):
        return [s for s in (as_str(x) for x in v) if s is not None]
    return None


def mailbox(v) -> str | None:
    """Suricata logs SMTP addresses as written on the wire ("<a@b>"); Zeek without brackets."""
    s = as_str(v)
    if s is None:
        return None
    s = s.strip()
    if s.startswith("<") and s.endswith(">"):
        s = s[1:-1]
    return s
