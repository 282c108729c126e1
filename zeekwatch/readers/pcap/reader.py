"""Raw captures (pcap, pcapng, gzipped or not) into the normalized tables.

``read(path, log)`` is the reader contract of ``readers.base``: it yields ``conn``, ``dns``,
``http``, ``tls`` and ``smtp`` chunks built from the packets, in bounded chunks, with memory
bounded by the number of active flows. The pieces:

- ``pcap_io``: the file, through scapy's raw readers, as batches of raw records;
- ``pcap_decode``: link, IP and transport headers with ``struct``-level indexing;
- ``flows``: flows with Zeek's meaning (uid, conn_state, history, timeouts);
- ``pcap_apps``: service hints and application rows from the first payload bytes, DNS by scapy;
- ``pcap_labels``: optional Wireshark dissector labels via tshark (``--pcap-labels``,
  ``labelled_reader()``).

A damaged or truncated capture keeps every packet before the damage; the cut is recorded as a
reject (packet number, byte offset) and a note. Packets too short for their own headers are
rejects too; frames that are not IP, IP fragments after the first, and transports other than
TCP/UDP/ICMP are counted in a note.
"""

from __future__ import annotations

from typing import Iterator

import pyarrow as pa

from zeekwatch.readers.base import Chunk, IngestLog, Reader
from zeekwatch.readers.pcap.capture import Capture, open_capture
from zeekwatch.readers.pcap.decode import Decoder
from zeekwatch.readers.pcap.flows import FlowTable
from zeekwatch.schema import TABLES, conform, source_column

CHUNK_ROWS = 8_192
SOURCE = "pcap"
SHORT_KEPT = 10_000  # packet numbers of short packets recorded individually

COLUMNS = {
    "conn": ["ts", "uid", "orig_h", "orig_p", "resp_h", "resp_p", "proto", "service", "duration",
             "orig_bytes", "resp_bytes", "conn_state", "history", "orig_pkts", "resp_pkts", "community_id"],
    "dns": ["ts", "uid", "orig_h", "resp_h", "query", "qtype_name", "rcode_name", "answers", "community_id"],
    "http": ["ts", "uid", "orig_h", "resp_h", "resp_p", "host", "uri", "user_agent", "method", "status"],
    "tls": ["ts", "uid", "orig_h", "resp_h", "resp_p", "server_name"],
    "smtp": ["ts", "uid", "orig_h", "resp_h", "resp_p", "helo", "mail_from", "rcpt_to"],
}


def read(path: str, log: IngestLog, labels: dict[str, str] | None = None) -> Iterator[Chunk]:
    """Yield normalized chunks from the capture at ``path``.

    ``labels`` (from ``pcap_labels.label_flows``) maps a flow's community_id to a protocol
    name; it fills ``conn.service`` where the payload hints found none.
    """
    capture = open_capture(path, log)
    flows = FlowTable(labels)
    decoder = Decoder(flows)
    with capture:
        for linktype, stamps, packets in capture.batches():
            decoder.run(linktype, stamps, packets)
            flows.sweep(stamps[-1], len(packets))
            yield from drain(flows, CHUNK_ROWS)
        flows.close_all()
        yield from drain(flows, 1)
    report(str(path), log, capture, decoder)


def labelled_reader(tshark: str | None = None) -> Reader:
    """A ``read(path, log)`` that first labels the capture's flows with Wireshark's dissectors
    (``pcap_labels.label_flows``; ``ToolMissingError`` without tshark) — what
    ``--pcap-labels`` plugs in for the ``pcap`` kind instead of ``read``."""
    from zeekwatch.readers.pcap.labels import find_tshark, label_flows

    exe = find_tshark(tshark)  # fail before reading anything

    def read_labelled(path: str, log: IngestLog) -> Iterator[Chunk]:
        return read(path, log, labels=label_flows(path, exe))

    return read_labelled


def drain(flows: FlowTable, at_least: int) -> Iterator[Chunk]:
    """Turn the finished rows waiting in ``flows`` into Arrow chunks once there are enough."""
    for name, rows in flows.rows.items():
        if len(rows) >= at_least:
            flows.rows[name] = []
            yield name, to_table(name, rows)


def to_table(name: str, rows: list[tuple]) -> pa.Table:
    schema = TABLES[name]
    columns = list(zip(*rows))
    arrays = [pa.array(col, type=schema.field(c).type) for c, col in zip(COLUMNS[name], columns)]
    table = pa.Table.from_arrays(arrays, names=COLUMNS[name])
    table = table.append_column("source", source_column(SOURCE, len(rows)))
    return conform(name, table)


def report(path: str, log: IngestLog, capture: Capture, decoder: Decoder) -> None:
    """Record what did not become rows: the cut, short packets, and what was skipped."""
    stats = decoder.stats
    if capture.damage is not None:
        message = capture.damage.message(path)
        log.reject(path, capture.damage.packet, message)
        log.note(f"{message}; the {capture.count} packets before it were read")
    for number in stats.short[:SHORT_KEPT]:
        log.reject(path, number, f"{path}: packet {number} is too short for its own headers")
    if stats.short_count > len(stats.short):
        log.count_rejects(stats.short_count - len(stats.short))
    skipped = []
    if stats.non_ip:
        skipped.append(f"{stats.non_ip} non-IP frames")
    if stats.fragments:
        skipped.append(f"{stats.fragments} IP fragments after the first")
    if stats.other_proto:
        skipped.append(f"{stats.other_proto} packets of IP protocols other than TCP/UDP/ICMP")
    for linktype, n in sorted(stats.unsupported_link.items()):
        skipped.append(f"{n} packets of unsupported link type {linktype}")
    if skipped:
        log.note(f"{path}: {capture.count} packets; not in flows: " + ", ".join(skipped))
