"""Struct-level decoding of captured frames down to the transport header.

Link layers: Ethernet (with 802.1Q / QinQ tags and PPPoE sessions), Linux cooked capture v1
and v2 (SLL, SLL2), raw IP, BSD loopback. Then IPv4 (non-first fragments are counted, not
decoded) and IPv6 (hop-by-hop, routing, destination-options, fragment, AH and mobility
extension headers are skipped), and the transport: TCP, UDP, ICMP, ICMPv6 go to the flow
table; anything else is counted.

The loop in ``Decoder.run`` is the hot path of pcap ingest (every packet passes through it),
so it reads bytes by index and hands the flow table a key sliced straight from the packet: for
IPv4 without options ``data[ip+12:ip+24]`` is source, destination, source port, destination
port in one slice. It is deliberately one function: a call per layer would cost a third of the
budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ETH, RAW, RAW_BSD, RAW_OBSD, NULL, LOOP, SLL, SLL2, IPV4, IPV6 = 1, 101, 12, 14, 0, 108, 113, 276, 228, 229
VLAN_TYPES = (0x8100, 0x88A8, 0x9100)
PPPOE_SESSION = 0x8864
V6_EXTENSIONS = {0, 43, 44, 51, 60, 135}
SUPPORTED = {ETH, RAW, RAW_BSD, RAW_OBSD, NULL, LOOP, SLL, SLL2, IPV4, IPV6}


@dataclass
class DecodeStats:
    """What did not become part of a flow, and why (reported as notes, not rejects)."""

    non_ip: int = 0
    other_proto: int = 0
    fragments: int = 0
    short: list[int] = field(default_factory=list)  # numbers of packets too short for their headers (first 10,000)
    short_count: int = 0
    unsupported_link: dict[int, int] = field(default_factory=dict)


def _link(linktype: int, data: bytes) -> tuple[int, int]:
    """(offset of the network header, ethertype) for the link types other than Ethernet."""
    if linktype == SLL:
        return 16, data[14] << 8 | data[15]
    if linktype == SLL2:
        return 20, data[0] << 8 | data[1]
    if linktype in (RAW, RAW_BSD, RAW_OBSD, IPV4, IPV6):
        version = data[0] >> 4
        return 0, 0x0800 if version == 4 else 0x86DD if version == 6 else 0
    if linktype in (NULL, LOOP):
        family = int.from_bytes(data[:4], "little" if linktype == NULL and data[0] else "big")
        return 4, 0x0800 if family == 2 else 0x86DD if family in (10, 24, 28, 30) else 0
    return 0, 0


def _ether_tail(data: bytes, off: int, et: int) -> tuple[int, int]:
    """Skip VLAN tags and a PPPoE session header after the Ethernet header."""
    while et in VLAN_TYPES:
        et = data[off + 2] << 8 | data[off + 3]
        off += 4
    if et == PPPOE_SESSION:
        ppp = data[off + 6] << 8 | data[off + 7]
        return off + 8, 0x0800 if ppp == 0x21 else 0x86DD if ppp == 0x57 else 0
    return off, et


def _v6_extensions(data: bytes, l4: int, nh: int) -> tuple[int, int]:
    """Walk IPv6 extension headers; next header -1 for a fragment that is not the first."""
    while nh in V6_EXTENSIONS:
        if nh == 44:
            if (data[l4 + 2] << 8 | data[l4 + 3]) & 0xFFF8:
                return l4, -1
            nh, l4 = data[l4], l4 + 8
        elif nh == 51:
            nh, l4 = data[l4], l4 + (data[l4 + 1] + 2) * 4
        else:
            nh, l4 = data[l4], l4 + (data[l4 + 1] + 1) * 8
    return l4, nh


class Decoder:
    """Feeds decoded packets to a flow table (``tcp``, ``udp``, ``icmp`` methods)."""

    def __init__(self, flows):
        self.flows = flows
        self.stats = DecodeStats()
        self.packets = 0

    def run(self, linktype: int, stamps: list[int], packets: list[bytes]) -> None:
        if linktype not in SUPPORTED:
            unsupported = self.stats.unsupported_link
            unsupported[linktype] = unsupported.get(linktype, 0) + len(packets)
            self.packets += len(packets)
            return
        tcp, udp, icmp = self.flows.tcp, self.flows.udp, self.flows.icmp
        stats = self.stats
        n = self.packets
        for ts, data in zip(stamps, packets):
            n += 1
            try:
                if linktype == ETH:
                    off, et = 14, data[12] << 8 | data[13]
                    if et != 0x0800 and et != 0x86DD:
                        off, et = _ether_tail(data, 14, et)
                else:
                    off, et = _link(linktype, data)
                if et == 0x0800:
                    ihl = (data[off] & 15) << 2
                    if (data[off + 6] & 0x1F) or data[off + 7]:
                        stats.fragments += 1
                        continue
                    proto = data[off + 9]
                    total = data[off + 2] << 8 | data[off + 3]
                    end = off + total if total else len(data)  # 0: segmentation offload
                    l4 = off + ihl
                    if ihl == 20:
                        key = data[off + 12:off + 24]
                    else:
                        key = data[off + 12:off + 20] + data[l4:l4 + 4]
                    v6 = False
                elif et == 0x86DD:
                    proto = data[off + 6]
                    plen = data[off + 4] << 8 | data[off + 5]
                    end = off + 40 + plen if plen else len(data)
                    l4 = off + 40
                    if proto != 6 and proto != 17 and proto != 58:
                        l4, proto = _v6_extensions(data, l4, proto)
                        if proto < 0:
                            stats.fragments += 1
                            continue
                    key = data[off + 8:off + 40] + data[l4:l4 + 4]
                    v6 = True
                else:
                    stats.non_ip += 1
                    continue
                if proto == 6:
                    tcp(ts, key, data, l4, end)
                elif proto == 17:
                    udp(ts, key, data, l4, end)
                elif proto == 1 or proto == 58:
                    icmp(ts, key, data, l4, end, v6)
                else:
                    stats.other_proto += 1
            except IndexError:
                stats.short_count += 1
                if len(stats.short) < 10_000:
                    stats.short.append(n)
        self.packets = n
