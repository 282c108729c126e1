"""Identifiers of a flow: Zeek-style uid, Community ID v1, and printable addresses.

Both ids are pure functions of the flow's 5-tuple (and first packet time for the uid), so a
rerun over the same capture gives the same values, and ``community_id`` joins our rows with
Suricata's and Zeek's records of the same flow.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct

# request type -> reply type (and back) for ICMP message pairs, per Zeek and the Community ID spec
ICMP4_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
ICMP6_PAIRS = {128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135, 130: 131, 131: 130,
               144: 145, 145: 144}

B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PROTO_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1, "sctp": 132}


def ntop(addr: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6 if len(addr) == 16 else socket.AF_INET, addr)


def community_id(proto: str, oa: bytes, ra: bytes, op: int, rp: int, seed: int = 0) -> str:
    """Community ID v1 (corelight/community-id-spec) of a flow; ICMP ports are type/counterpart."""
    number = PROTO_NUMBERS[proto]
    one_way = False
    if proto == "icmp":
        v6 = len(oa) == 16
        number = 58 if v6 else 1
        pairs = ICMP6_PAIRS if v6 else ICMP4_PAIRS
        one_way = op not in pairs
    if not one_way and (oa, op) > (ra, rp):
        oa, ra, op, rp = ra, oa, rp, op
    packed = struct.pack("!H", seed) + oa + ra + struct.pack("!BxHH", number, op, rp)
    return "1:" + base64.b64encode(hashlib.sha1(packed).digest()).decode()


def flow_uid(f) -> str:
    """A Zeek-looking uid ('C' + 17 base62 characters) that is the same on every run."""
    digest = hashlib.blake2b(f.proto.encode() + f.key + f.ts0.to_bytes(8, "big", signed=True),
                             digest_size=13).digest()
    n = int.from_bytes(digest, "big")
    chars = []
    for _ in range(17):
        n, r = divmod(n, 62)
        chars.append(B62[r])
    return "C" + "".join(chars)
