"""Wireshark's dissectors as flow labels for app identification (opt-in: ``--pcap-labels``).

Wireshark knows far more protocols than our first-bytes hints (eDonkey, Gnutella, XMPP,
Skype, BitTorrent DHT, ...). ``label_flows(path)`` runs tshark once over the capture with its
EK output restricted to a handful of fields (``-T ek -e ...``: 12.5 k packets/s measured,
against 0.6 k/s for pyshark's default dissection) and labels each TCP/UDP flow with the
protocol its packets were dissected as. tshark is found the way pyshark finds it (its
``config.ini``, then ``PATH``); pyshark itself is not needed.

The labels are keyed by Community ID, which ``conn`` rows carry, so they join the pcap
reader's flows (``pcap.read(path, log, labels=...)`` fills ``service`` where our hints found
none) or any other table. Values are Zeek's service names where Zeek has one (``ssl`` for
tls, ``bittorrent`` for bt-dht/bt-utp, ``stun`` for classicstun), otherwise Wireshark's
protocol filter names (``edonkey``, ``gnutella``, ``xmpp``, ``skype``, ...).

Wireshark also labels by port: any payload on 443 becomes "tls", on 80 "http". A covert
channel on a web port must not be labelled as the web protocol, so tls and http packets count
only when a record type or a request/response line was actually parsed.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import tempfile
from collections import Counter

import orjson

from zeekwatch.errors import InputError, ToolMissingError
from zeekwatch.readers.flow_ids import community_id

FIELDS = ["frame.protocols", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport", "tcp.dstport",
          "udp.srcport", "udp.dstport", "tls.record.content_type", "http.request.method", "http.response.code"]
GENERIC = {"data", "tcp.segments", "_ws.malformed", "_ws.short", "_ws.unreassembled", "ssl.segments",
           "tls.segments", "image-gif", "image-jfif", "png", "media", "xml", "json"}
ALIASES = {"tls": "ssl", "ssl": "ssl", "bt-dht": "bittorrent", "bt-utp": "bittorrent", "bittorrent": "bittorrent",
           "classicstun": "stun", "stun": "stun", "ftp-data": "ftp-data", "dns": "dns", "mdns": "dns"}
PROOF = {"tls": "tls_record_content_type", "http": ("http_request_method", "http_response_code")}

INSTALL_HINT = ("install it (Debian/Ubuntu: `apt-get install tshark`, or `make tshark`) "
                "or run without --pcap-labels")


def find_tshark(path: str | None = None) -> str:
    """The tshark executable: ``path`` if given, else where pyshark would look, else PATH."""
    if path:
        if shutil.which(path):
            return shutil.which(path)
        raise ToolMissingError(f"tshark not found at {path!r}; {INSTALL_HINT}")
    try:
        from pyshark.tshark.tshark import get_process_path

        return get_process_path()
    except ImportError:
        pass
    except Exception:  # pyshark's TSharkNotFoundException: fall through to our own search
        pass
    found = shutil.which("tshark")
    if not found:
        raise ToolMissingError(f"--pcap-labels needs tshark (Wireshark's command-line tool), "
                               f"which is not installed or not on PATH; {INSTALL_HINT}")
    return found


def label_flows(path: str, tshark: str | None = None) -> dict[str, str]:
    """Community ID -> protocol for every TCP/UDP flow Wireshark could name in ``path``.

    Raises ``ToolMissingError`` without tshark, ``InputError`` when tshark cannot read the
    file at all (a capture cut short still gives the labels of the packets before the cut).
    """
    exe = find_tshark(tshark)
    cmd = [exe, "-n", "-r", str(path), "-T", "ek"]
    for name in FIELDS:
        cmd += ["-e", name]
    votes: dict[str, Counter] = {}
    packets = 0
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors)
        for line in proc.stdout:
            if not line.startswith(b'{"timestamp"'):
                continue
            packets += 1
            vote = _packet_label(orjson.loads(line).get("layers", {}))
            if vote is not None:
                votes.setdefault(vote[0], Counter())[vote[1]] += 1
        code = proc.wait()
        errors.seek(0)
        message = errors.read().decode("utf-8", "replace")
    if code != 0 and packets == 0:
        reason = " ".join(line for line in message.splitlines() if "Running as user" not in line).strip()
        raise InputError(path, f"tshark cannot read the capture: {reason or f'exit status {code}'}")
    return {cid: counter.most_common(1)[0][0] for cid, counter in votes.items()}


def _first(layers: dict, name: str):
    value = layers.get(name)
    return value[0] if isinstance(value, list) and value else value


def _packet_label(layers: dict) -> tuple[str, str] | None:
    """(community_id, protocol) that one EK packet votes for, or None."""
    stack = (_first(layers, "frame_protocols") or "").split(":")
    if "icmp" in stack or "icmpv6" in stack:
        return None  # an error message quoting another packet's headers
    for transport in ("tcp", "udp"):
        if transport in stack:
            break
    else:
        return None
    above = [p for p in stack[stack.index(transport) + 1:] if p not in GENERIC]
    if not above:
        return None
    proto = above[0]
    proof = PROOF.get(proto)
    if proof is not None and not any(layers.get(k) for k in ((proof,) if isinstance(proof, str) else proof)):
        return None
    src = _first(layers, "ip_src") or _first(layers, "ipv6_src")
    dst = _first(layers, "ip_dst") or _first(layers, "ipv6_dst")
    sport = _first(layers, f"{transport}_srcport")
    dport = _first(layers, f"{transport}_dstport")
    if not (src and dst and sport and dport):
        return None
    try:
        cid = community_id(transport, ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed,
                           int(sport), int(dport))
    except ValueError:
        return None
    return cid, ALIASES.get(proto, proto)
