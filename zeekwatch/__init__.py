"""zeekwatch: find infected hosts in Zeek, Suricata and pcap data."""

__version__ = "0.1.0"
