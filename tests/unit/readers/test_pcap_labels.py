"""Wireshark dissector labels for pcap flows (readers/pcap_labels.py)."""

from __future__ import annotations

import collections

import pytest
from conftest import PCAPS, shared_file
from pcap_helpers import TSHARK, conn_rows

from zeekwatch.errors import InputError, ToolMissingError
from zeekwatch.readers.base import IngestLog
from zeekwatch.readers.pcap import reader as pcap
from zeekwatch.readers.pcap.labels import label_flows

needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (make tshark)")


@needs_tshark
@pytest.mark.shared
@pytest.mark.parametrize("rel,label,flows", [
    ("ndpi/pcap/bittorrent.pcap", "bittorrent", 24),
    ("suricata-verify/bittorrent-dht/input.pcap", "bittorrent", 2),
    ("ndpi/pcap/jabber.pcap", "xmpp", 7),
    ("ndpi/pcap/skype-conference-call.pcap", "stun", 1),
    ("zeek/traces/irc-basic.pcap", "irc", 1),
])
def test_labels_name_the_application(rel, label, flows):
    labels = label_flows(shared_file(rel))
    assert collections.Counter(labels.values())[label] == flows


@needs_tshark
def test_labels_join_conn_rows_by_community_id():
    path = str(PCAPS / "bittorrent.pcap")
    labels = label_flows(path)
    rows = conn_rows(path)
    assert {labels[r["community_id"]] for r in rows if r["service"] == "bittorrent"} == {"bittorrent"}


@needs_tshark
def test_port_based_guesses_are_not_labels():
    """Wireshark calls any payload on 443 'tls'; the tunnel's is not, so it gets no label."""
    path = str(PCAPS / "tunnel.pcap")
    assert label_flows(path) == {}
    conn = [c for n, c in pcap.read(path, IngestLog(), labels=label_flows(path)) if n == "conn"][0]
    assert conn.column("service").to_pylist() == [None]


def test_labels_fill_only_missing_services():
    path = str(PCAPS / "office.pcap")
    row = conn_rows(path)[0]
    labels = {row["community_id"]: "something-else"}
    conn = [c for n, c in pcap.read(path, IngestLog(), labels=labels) if n == "conn"][0].to_pylist()
    assert conn[0]["service"] == row["service"] != "something-else"


def test_missing_tshark_is_a_tool_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissingError, match="needs tshark.*apt-get install tshark"):
        label_flows(str(PCAPS / "office.pcap"))
    with pytest.raises(ToolMissingError, match="tshark not found at '/nowhere/tshark'"):
        label_flows(str(PCAPS / "office.pcap"), tshark="/nowhere/tshark")


@needs_tshark
def test_unreadable_file_is_an_input_error(tmp_path):
    path = tmp_path / "x.pcap"
    path.write_bytes(b"not a capture at all")
    with pytest.raises(InputError, match="tshark cannot read the capture"):
        label_flows(str(path))


@needs_tshark
def test_labelled_reader_is_a_drop_in_reader():
    read = pcap.labelled_reader()
    log = IngestLog()
    conn = [c for n, c in read(str(PCAPS / "skype_stun.pcap"), log) if n == "conn"][0]
    assert set(conn.column("service").to_pylist()) == {"stun"} and log.reject_count == 0


def test_labelled_reader_fails_early_without_tshark(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissingError):
        pcap.labelled_reader()
