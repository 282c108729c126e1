"""zeekwatch: find infected hosts in Zeek, Suricata and pcap data.

The package is layered; imports only go downward (tests/unit/test_layers.py checks it):
core modules here (errors, params, config, nets, schema, sql, timefmt) -> ``readers`` ->
``detectors`` -> ``engine`` -> ``store`` -> ``triage`` -> ``app`` -> ``cli``.
docs/architecture.md describes the flow, the tables and how to add a detector.
"""

__version__ = "0.1.0"
