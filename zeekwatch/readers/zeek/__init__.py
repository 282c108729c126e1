"""Zeek logs, TSV and JSON, into the normalized tables.

``tsv`` parses the ASCII writer's format (header blocks, ``#types``, unset/empty fields,
several blocks per file, gzip) with pyarrow's CSV reader; ``header`` compiles a header into a
column layout; ``records`` converts parsed columns and checks them row by row when a block
fails; ``jsonl`` reads the JSON writer's lines. Imports only ``readers`` basics and the core.
"""
