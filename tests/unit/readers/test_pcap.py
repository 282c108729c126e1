"""The pcap reader (readers/pcap.py and pcap_io.py): real captures against tshark, the
scenario captures in pcaps/, damaged and truncated files, and the packet rate."""

from __future__ import annotations

import gzip
import random
import shutil
import struct

import pytest
from conftest import PCAPS, shared_file, shared_files
from pcap_helpers import (
    TSHARK,
    conn_rows,
    make_pcaps_module,
    our_conversations,
    read_tables,
    tshark_conversations,
    tshark_packet_count,
)

from zeekwatch import schema
from zeekwatch.errors import InputError
from zeekwatch.readers import plan, read_inputs, sniff
from zeekwatch.readers.base import IngestLog
from zeekwatch.readers.pcap import reader as pcap
from zeekwatch.readers.pcap.capture import open_capture

needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (make tshark)")
CAPTURES = shared_files((".pcap", ".pcapng"))
SCENARIOS = sorted(p.name for p in PCAPS.glob("*.pcap"))


def packet_count(path: str) -> int:
    with open_capture(path) as capture:
        return sum(len(batch[2]) for batch in capture.batches())


# -- real captures against tshark ------------------------------------------------------------

@needs_tshark
@pytest.mark.shared
@pytest.mark.parametrize("rel", CAPTURES or ["(none)"])
def test_real_capture_matches_tshark(rel):
    path = shared_file(rel)
    assert packet_count(path) == tshark_packet_count(path)
    rows = conn_rows(path)
    for proto in ("tcp", "udp"):
        assert our_conversations(rows, proto) == tshark_conversations(path, proto), proto


@pytest.mark.shared
@pytest.mark.parametrize("rel", CAPTURES or ["(none)"])
def test_real_capture_reads_without_rejects_and_conforms(rel):
    tables, log = read_tables(shared_file(rel))
    assert log.reject_count == 0, log.rejects[:3]
    for name, table in tables.items():
        assert table.schema == schema.TABLES[name]
        assert table.column("source").to_pylist() == ["pcap"] * table.num_rows


@pytest.mark.shared
def test_dns_mx_query_and_answers():
    tables, _ = read_tables(shared_file("suricata-verify/dns-mx/dns-udp-google.com-a-aaaa-mx.pcap"))
    rows = {r["qtype_name"]: r for r in tables["dns"].to_pylist()}
    assert set(rows) == {"A", "AAAA", "MX"}
    mx = rows["MX"]
    assert (mx["query"], mx["rcode_name"], mx["orig_h"], mx["resp_h"]) == ("google.com", "NOERROR", "10.16.1.11", "8.8.8.8")
    assert mx["answers"][:2] == ["aspmx.l.google.com", "alt1.aspmx.l.google.com"] and len(mx["answers"]) == 5
    assert rows["AAAA"]["answers"] == ["2607:f8b0:400f:801::200e"]


@pytest.mark.shared
def test_synscan_is_the_same_in_pcap_and_pcapng():
    a = conn_rows(shared_file("chrissanders-packets/synscan.pcapng"))
    b = conn_rows(shared_file("ndpi/pcap/synscan.pcap"))
    assert sorted(a, key=lambda r: r["uid"]) == sorted(b, key=lambda r: r["uid"])
    scan = [r for r in a if (r["orig_h"], r["resp_h"]) == ("172.16.0.8", "64.13.134.52")]
    assert len({r["resp_p"] for r in scan}) == 1000
    states = {(r["conn_state"], r["history"]) for r in scan}
    assert states == {("S0", "S"), ("REJ", "Sr"), ("S1", "Sh")}  # unanswered, closed, open


@pytest.mark.shared
@pytest.mark.parametrize("rel", ["zeek/traces/irc-basic.pcap", "zeek/traces/irc-more-commands.pcap",
                                 "zeek/traces/tls_irc-starttls.pcap"])
def test_irc_captures_give_service_irc(rel):
    rows = [r for r in conn_rows(shared_file(rel)) if r["resp_p"] == 6667]
    assert rows and all(r["service"] == "irc" for r in rows)


@pytest.mark.shared
def test_linux_cooked_capture_is_decoded():
    with open_capture(shared_file("zeek/traces/tls_irc-starttls.pcap")) as capture:
        assert {batch[0] for batch in capture.batches()} == {113}


@pytest.mark.shared
def test_application_rows_from_real_traffic():
    tables, _ = read_tables(shared_file("zeek/traces/smtp-multi-addr.pcap"))
    smtp = tables["smtp"].to_pylist()[0]
    assert (smtp["helo"], smtp["mail_from"], smtp["rcpt_to"]) == (
        "gras-os-desk.cern.ch", "<root@gras-os-desk.cern.ch>", ["<jan.grashofer@cern.ch>"])
    tables, _ = read_tables(shared_file("zeek/traces/wikipedia.pcap"))
    http = tables["http"].to_pylist()
    assert ("GET", "www.wikipedia.org", "/") in {(h["method"], h["host"], h["uri"]) for h in http}
    assert len(http) == 15 and {h["status"] for h in http} == {304}  # as tshark: 15 responses, all 304


@pytest.mark.shared
def test_gzipped_capture_reads_like_the_plain_one(tmp_path):
    plain = shared_file("zeek/traces/irc-more-commands.pcap")
    packed = tmp_path / "irc.pcap.gz"
    packed.write_bytes(gzip.compress(open(plain, "rb").read()))
    assert sniff(str(packed)) == "pcap"
    assert conn_rows(str(packed)) == conn_rows(plain)


# -- damaged and truncated captures ----------------------------------------------------------

def pcap_record_offsets(data: bytes) -> list[int]:
    offsets, pos = [], 24
    while pos + 16 <= len(data):
        offsets.append(pos)
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
    return offsets


@pytest.mark.shared
def test_truncated_pcap_keeps_earlier_packets_and_reports_the_offset(tmp_path):
    data = open(shared_file("zeek/traces/irc-basic.pcap"), "rb").read()
    offsets = pcap_record_offsets(data)
    cut_packet = 20  # 1-based: packets 1..19 are whole
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[:offsets[cut_packet - 1] + 16 + 7])
    tables, log = read_tables(path)
    rows = tables["conn"].to_pylist()
    assert sum(r["orig_pkts"] + r["resp_pkts"] for r in rows) == cut_packet - 1
    assert [r.line for r in log.rejects] == [cut_packet]
    expected = f"{path}: truncated at packet {cut_packet} (byte offset {offsets[cut_packet - 1]})"
    assert log.rejects[0].reason.startswith(expected)
    assert any(n.startswith(expected) and "19 packets before it were read" in n for n in log.notes)


@pytest.mark.shared
def test_truncated_pcapng_reports_the_block_offset(tmp_path):
    data = open(shared_file("chrissanders-packets/synscan.pcapng"), "rb").read()
    pos, packets, target = 0, 0, None
    while pos + 8 <= len(data):
        btype, blen = struct.unpack_from("<II", data, pos)
        if btype == 6:
            packets += 1
            if packets == 500:
                target = pos
                break
        pos += blen
    path = tmp_path / "cut.pcapng"
    path.write_bytes(data[:target + 40])
    tables, log = read_tables(path)
    assert sum(r["orig_pkts"] + r["resp_pkts"] for r in tables["conn"].to_pylist()) == 499
    assert log.rejects[0].reason.startswith(f"{path}: truncated at packet 500 (byte offset {target})")


@pytest.mark.shared
def test_damaged_record_stops_reading_with_what_came_before(tmp_path):
    data = bytearray(open(shared_file("zeek/traces/irc-basic.pcap"), "rb").read())
    offset = pcap_record_offsets(bytes(data))[9]
    struct.pack_into("<I", data, offset + 8, 0x7FFFFFF0)  # an impossible captured length
    path = tmp_path / "bad.pcap"
    path.write_bytes(bytes(data))
    tables, log = read_tables(path)
    assert sum(r["orig_pkts"] + r["resp_pkts"] for r in tables["conn"].to_pylist()) == 9
    assert log.rejects[0].reason.startswith(f"{path}: damaged at packet 10 (byte offset {offset})")


@pytest.mark.parametrize("content", [b"\xd4\xc3\xb2\xa1\x02\x00", b"\x0a\x0d\x0d\x0a" + b"\xff" * 40,
                                     b"\xd4\xc3\xb2\xa1" + b"\x00" * 20])
def test_unusable_capture_header_is_an_input_error(tmp_path, content):
    path = tmp_path / "junk.pcap"
    path.write_bytes(content)
    try:
        tables, log = read_tables(path)
    except InputError as exc:
        assert str(path) in str(exc)
    else:
        assert not tables  # a header and nothing else: a capture without packets


def _as_pcapng(path, out) -> bytes:
    import scapy.layers.l2  # noqa: F401  (registers Ethernet for rdpcap)
    from scapy.utils import PcapNgWriter, rdpcap

    with PcapNgWriter(str(out)) as writer:
        for pkt in rdpcap(str(path)):
            writer.write(pkt)
    return out.read_bytes()


def test_pcapng_reads_like_pcap(tmp_path):
    _as_pcapng(PCAPS / "office.pcap", tmp_path / "office.pcapng")
    assert conn_rows(tmp_path / "office.pcapng") == conn_rows(PCAPS / "office.pcap")


def test_garbage_never_crashes_the_reader(tmp_path):
    """Seeded mutations of a capture (pcap and pcapng): results or InputError, nothing else."""
    originals = [(PCAPS / "office.pcap").read_bytes(), _as_pcapng(PCAPS / "office.pcap", tmp_path / "o.pcapng")]
    rnd = random.Random(7)
    for i in range(300):
        data = bytearray(originals[i % 2])
        for _ in range(rnd.randrange(1, 40)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        if i % 3 == 0:
            data = data[:rnd.randrange(len(data))]
        path = tmp_path / f"m{i}.pcap"
        path.write_bytes(bytes(data))
        try:
            read_tables(path)
        except InputError:
            pass


# -- scenario captures -----------------------------------------------------------------------

@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_reads_without_rejects(name):
    tables, log = read_tables(PCAPS / name)
    assert log.reject_count == 0 and not log.notes
    assert tables["conn"].num_rows > 0


@pytest.mark.slow
def test_make_pcaps_writes_the_committed_files_byte_for_byte(tmp_path):
    written = make_pcaps_module().make_all(str(tmp_path))
    assert sorted(p.split("/")[-1] for p in written) == SCENARIOS
    for path in written:
        name = path.split("/")[-1]
        assert open(path, "rb").read() == (PCAPS / name).read_bytes(), f"{name} differs: run `make pcaps`"


def _conn(name: str) -> list[dict]:
    return conn_rows(PCAPS / name)


def test_scenario_mass_mailer():
    tables, _ = read_tables(PCAPS / "mass_mailer.pcap")
    conn = tables["conn"].to_pylist()
    for host in ("10.2.0.66", "10.2.0.25"):
        smtp = [r for r in conn if r["orig_h"] == host and r["resp_p"] == 25]
        assert len({r["resp_h"] for r in smtp}) == 35
        span = (max(r["ts"] for r in smtp) - min(r["ts"] for r in smtp)).total_seconds()
        assert span < 60
        mx = [d for d in tables["dns"].to_pylist() if d["orig_h"] == host and d["qtype_name"] == "MX"]
        assert len({d["query"] for d in mx}) == 35
    assert tables["smtp"].num_rows == 31 + 35 and all(r["rcpt_to"] for r in tables["smtp"].to_pylist())


def test_scenario_scans_and_sweeps():
    horizontal = [r for r in _conn("horizontal_scan.pcap") if r["orig_h"] == "10.3.0.99"]
    assert len({r["resp_h"] for r in horizontal}) == 40 and {r["resp_p"] for r in horizontal} == {445}
    vertical = _conn("vertical_scan.pcap")
    assert len({r["resp_p"] for r in vertical}) == 100 and {r["resp_h"] for r in vertical} == {"10.4.0.200"}
    ping = _conn("ping_sweep.pcap")
    assert len({r["resp_h"] for r in ping}) == 30 and {(r["proto"], r["orig_p"]) for r in ping} == {("icmp", 8)}


def test_scenario_apps_and_tunnel():
    assert {(r["service"], r["resp_p"]) for r in _conn("irc_bot.pcap")} == {("irc", 6667)}
    assert sum(r["service"] == "bittorrent" for r in _conn("bittorrent.pcap")) == 30
    assert {r["service"] for r in _conn("skype_stun.pcap")} == {"stun"}
    (tunnel,) = _conn("tunnel.pcap")
    assert tunnel["duration"] > 3600 and tunnel["resp_p"] == 443 and tunnel["service"] is None


def test_scenario_office_connects_only_to_resolved_addresses():
    tables, _ = read_tables(PCAPS / "office.pcap")
    answers = {a for d in tables["dns"].to_pylist() for a in d["answers"] or []}
    tcp = [r for r in tables["conn"].to_pylist() if r["proto"] == "tcp"]
    assert tcp and {r["resp_h"] for r in tcp} <= answers
    assert {r["service"] for r in tcp} == {"http", "ssl"}
    assert all(t["server_name"] for t in tables["tls"].to_pylist())


def test_pcaps_folder_through_plan_and_read_inputs():
    log = IngestLog()
    todo = plan([str(PCAPS)], log)
    assert {kind for _, kind in todo} == {"pcap"}
    assert str(PCAPS / "README.md") in [p for p, _ in log.skipped]
    assert sorted(p.split("/")[-1] for p, _ in todo) == SCENARIOS
    counts = {}
    for name, chunk in read_inputs(todo, log):
        counts[name] = counts.get(name, 0) + chunk.num_rows
    assert counts["conn"] == 498 and log.records["conn"] == 498


def test_chunks_are_bounded(monkeypatch):
    monkeypatch.setattr(pcap, "CHUNK_ROWS", 10)
    sizes = [c.num_rows for name, c in pcap.read(str(PCAPS / "vertical_scan.pcap"), IngestLog()) if name == "conn"]
    assert sum(sizes) == 100 and len(sizes) > 1


# -- speed -----------------------------------------------------------------------------------



def test_bulk_capture_is_deterministic_and_valid(tmp_path):
    mk = make_pcaps_module()
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    mk.write_bulk(str(a), 5_000, 50)
    mk.write_bulk(str(b), 5_000, 50)
    assert a.read_bytes() == b.read_bytes()
    tables, log = read_tables(a)
    conn = tables["conn"].to_pylist()
    assert log.reject_count == 0 and len(conn) == 50
    assert sum(r["orig_pkts"] + r["resp_pkts"] for r in conn) == 5_000
    assert {r["conn_state"] for r in conn if r["proto"] == "tcp"} == {"SF"}
    if shutil.which("tshark"):
        assert tshark_packet_count(str(a)) == 5_000


@pytest.mark.shared
def test_damaged_pcapng_block_is_located(tmp_path):
    data = bytearray(open(shared_file("chrissanders-packets/synscan.pcapng"), "rb").read())
    pos, packets = 0, 0
    while True:
        btype, blen = struct.unpack_from("<II", data, pos)
        if btype == 6:
            packets += 1
            if packets == 100:
                break
        pos += blen
    struct.pack_into("<I", data, pos + 4, 8)  # a block length below the minimum of 12
    path = tmp_path / "bad.pcapng"
    path.write_bytes(bytes(data))
    tables, log = read_tables(path)
    assert sum(r["orig_pkts"] + r["resp_pkts"] for r in tables["conn"].to_pylist()) == 99
    assert log.rejects[0].reason.startswith(f"{path}: damaged at packet 100 (byte offset {pos})")
