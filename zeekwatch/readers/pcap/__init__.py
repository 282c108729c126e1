"""Raw captures (pcap, pcapng, gzip) into the same tables a Zeek sensor would have written.

``capture`` opens and iterates packets, ``decode`` parses headers, ``flows`` assembles
connections like Zeek's conn.log (states, history, bytes), ``dns`` decodes DNS, ``apps``
labels application protocols, ``labels`` asks tshark for Wireshark's dissector labels
(optional), ``reader`` is the entry point. Imports only ``readers`` basics and the core.
"""
