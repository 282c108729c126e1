"""Findings as RFC 5424 syslog messages, sent over UDP, TCP or a unix socket.

``udp://HOST:PORT`` (one datagram per message), ``tcp://HOST:PORT`` (octet-counting framing,
RFC 6587), ``unix:///PATH`` (a datagram socket such as /dev/log, else a stream socket).

A message: ``<PRI>1 TIMESTAMP HOSTNAME zeekwatch PROCID finding [zeekwatch@32473 id=".."
detector=".." host=".." urgency=".." tier=".." status=".." change=".."] BOM{json}``.
Facility local0; the severity follows the urgency (8-10 crit, 6-7 err, 4-5 warning, 1-3
notice, suppressed info). The MSG is the finding's JSON document (zeekwatch's record, ECS or
OCSF), UTF-8 with the BOM that RFC 5424 asks for. Structured-data values are escaped
(``"``, ``\\``, ``]``) and stripped of control characters; 32473 is the enterprise number
RFC 5612 reserves for documentation (sites that have their own may change ``SD_ID``).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import socket
from urllib.parse import urlsplit

from zeekwatch.errors import ConfigError

FACILITY = 16  # local0
SD_ID = "zeekwatch@32473"
BOM = "\ufeff"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SD_FIELDS = ("id", "detector", "host", "urgency", "tier", "status")


def severity(urgency: int | None, status: str | None) -> int:
    if status == "suppressed":
        return 6
    u = urgency or 0
    return 2 if u >= 8 else 3 if u >= 6 else 4 if u >= 4 else 5


def _sd_value(value) -> str:
    text = _CONTROL.sub("", str(value))
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _header_word(text: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, at most ``limit`` characters."""
    word = "".join(c for c in text if 33 <= ord(c) <= 126)[:limit]
    return word or "-"


def message(rec: dict, body: str, change: str | None = None, now: dt.datetime | None = None,
            hostname: str | None = None) -> bytes:
    """One RFC 5424 message for an export record; ``body`` is its JSON document."""
    now = now or dt.datetime.now(dt.timezone.utc)
    pri = FACILITY * 8 + severity(rec.get("urgency"), rec.get("status"))
    stamp = now.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    params = [(k, rec.get(k)) for k in SD_FIELDS if rec.get(k) is not None]
    if change:
        params.append(("change", change))
    sd = "[" + SD_ID + "".join(f' {k}="{_sd_value(v)}"' for k, v in params) + "]"
    host = _header_word(hostname or socket.gethostname(), 255)
    head = f"<{pri}>1 {stamp} {host} zeekwatch {os.getpid()} finding {sd} "
    return (head + BOM + body).encode("utf-8")


class Sender:
    """A connected syslog destination (see the module docstring for the URL forms)."""

    def __init__(self, url: str):
        self.url = url
        parts = urlsplit(url)
        self.scheme = parts.scheme
        try:
            if parts.scheme in ("udp", "tcp"):
                if not parts.hostname or not parts.port:
                    raise ConfigError(f"--syslog {url}: expected {parts.scheme}://HOST:PORT")
                kind = socket.SOCK_DGRAM if parts.scheme == "udp" else socket.SOCK_STREAM
                info = socket.getaddrinfo(parts.hostname, parts.port, type=kind)[0]
                self.sock = socket.socket(info[0], kind)
                self.sock.connect(info[4])
            elif parts.scheme == "unix":
                path = parts.path or parts.netloc
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                try:
                    self.sock.connect(path)
                except OSError:
                    self.sock.close()
                    self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    self.sock.connect(path)
                    self.scheme = "unix-stream"
            else:
                raise ConfigError(f"--syslog {url}: expected udp://HOST:PORT, tcp://HOST:PORT "
                                  "or unix:///PATH")
        except OSError as exc:
            raise ConfigError(f"--syslog {url}: {exc.strerror or exc}") from None

    def send(self, msg: bytes) -> None:
        if self.scheme in ("tcp", "unix-stream"):
            self.sock.sendall(f"{len(msg)} ".encode() + msg)  # RFC 6587 octet counting
        else:
            self.sock.send(msg)

    def close(self) -> None:
        self.sock.close()
