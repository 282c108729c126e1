"""Suricata EVE JSON: alert, flow, dns (v1/v2/v3), http, tls and smtp events into the
normalized tables. ``reader`` is the entry point (JSON lines or a JSON array, gzip or not);
``flow`` maps flow events to conn rows (states, history), ``dns`` merges query and answer
events, ``values`` converts typed values. Imports only ``readers`` basics and the core.
"""
