"""Helpers for the pcap reader tests: tiny captures written with scapy, and reading them back."""

from __future__ import annotations

import collections
import importlib.util
import shutil
import struct
import subprocess
from pathlib import Path

import pyarrow as pa
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from zeekwatch.readers.base import IngestLog
from zeekwatch.readers.pcap import reader as pcap

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "setup.cfg").exists())
TSHARK = shutil.which("tshark")
CLIENT, SERVER = "10.0.0.1", "192.0.2.9"
T0 = 1_710_000_000.0


def make_pcaps_module():
    """scripts/make_pcaps.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("make_pcaps", ROOT / "scripts" / "make_pcaps.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(path, packets, linktype: int = 1) -> str:
    """Write ``packets`` ((time, scapy packet or frame bytes) pairs) as a pcap of ``linktype``."""
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))
        for t, pkt in packets:
            frame = bytes(pkt)
            usec = int(round(t * 1e6))
            out.write(struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(frame), len(frame)) + frame)
    return str(path)


def eth(l3):
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / l3


def c2s(flags: str, data: bytes = b"", sport: int = 40000, dport: int = 80):
    return eth(IP(src=CLIENT, dst=SERVER) / TCP(sport=sport, dport=dport, flags=flags) / data)


def s2c(flags: str, data: bytes = b"", sport: int = 40000, dport: int = 80):
    return eth(IP(src=SERVER, dst=CLIENT) / TCP(sport=dport, dport=sport, flags=flags) / data)


def udp(src: str, dst: str, sport: int, dport: int, data: bytes = b"x"):
    return eth(IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / data)


def timed(packets, step: float = 0.01):
    return [(T0 + i * step, p) for i, p in enumerate(packets)]


def read_tables(path) -> tuple[dict[str, pa.Table], IngestLog]:
    log = IngestLog()
    chunks = collections.defaultdict(list)
    for name, chunk in pcap.read(str(path), log):
        chunks[name].append(chunk)
    return {name: pa.concat_tables(c) for name, c in chunks.items()}, log


def conn_rows(path) -> list[dict]:
    tables, _ = read_tables(path)
    return tables["conn"].to_pylist() if "conn" in tables else []


def tshark_conversations(path: str, proto: str) -> collections.Counter:
    """tshark's conversation table: {frozenset of the two (address, port)}: frames."""
    out = subprocess.run([TSHARK, "-n", "-q", "-r", path, "-z", f"conv,{proto}"],
                         capture_output=True, text=True, check=False).stdout
    conv = collections.Counter()
    for line in out.splitlines():
        if "<->" not in line:
            continue
        left, right = line.split("<->")
        fields = right.split()
        a_host, a_port = left.strip().rsplit(":", 1)
        b_host, b_port = fields[0].rsplit(":", 1)
        conv[frozenset([(a_host, int(a_port)), (b_host, int(b_port))])] += int(fields[7].replace(",", ""))
    return conv


def our_conversations(rows: list[dict], proto: str) -> collections.Counter:
    conv = collections.Counter()
    for r in rows:
        if r["proto"] == proto:
            conv[frozenset([(r["orig_h"], r["orig_p"]), (r["resp_h"], r["resp_p"])])] += r["orig_pkts"] + r["resp_pkts"]
    return conv


def tshark_packet_count(path: str) -> int:
    out = subprocess.run([TSHARK, "-n", "-r", path, "-T", "fields", "-e", "frame.number"],
                         capture_output=True, text=True, check=False).stdout
    return len(out.split())
