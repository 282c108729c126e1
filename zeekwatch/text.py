"""Text from the network and the file system, made safe to store and to show.

- ``path_text``: a file name as valid UTF-8 (a Latin-1 name, which Python holds as
  surrogates, gets ``\\xe9`` escapes), so it can be stored in SQLite and Arrow.
- ``printable``: any value with control characters escaped as Zeek's log writer does
  (``\\x1b``), for every terminal output: an address or signature holding
  ``ESC[2J`` or a newline cannot clear the screen, retitle the window or forge a row.
  Exports (CSV, JSON lines) keep the exact data; only what a terminal shows is escaped.
"""

from __future__ import annotations

import ipaddress
import re

# C0 and C1 control characters and DEL; also the bidi overrides that reorder what is shown
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def path_text(path) -> str:
    """``path`` as valid UTF-8 text: undecodable bytes of a file name become ``\\xNN``."""
    text = str(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _escape(m: re.Match) -> str:
    code = ord(m.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value) -> str:
    """``value`` as text for a terminal: control characters as ``\\xHH``, surrogates (bytes of
    a file name that are not UTF-8) as ``\\xHH`` too. A backslash is kept as it is."""
    text = path_text("" if value is None else value)
    return _CONTROL.sub(_escape, text)


def analyst_network(text: str, what: str):
    """An address or CIDR typed by an analyst, as an ``ip_network``; ``ValueError`` naming
    ``what`` otherwise. A CIDR with host bits set (10.0.0.1/8) is refused, not silently
    widened to 10.0.0.0/8: the analyst says which was meant."""
    text = (text or "").strip()
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        try:
            wide = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"{what}: {text!r} is not an address or CIDR ({exc})") from None
        host = text.split("/", 1)[0]
        raise ValueError(f"{what}: {text!r} has host bits set; write {wide} for the network "
                         f"or {host} for the one address") from None
