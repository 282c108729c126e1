"""The same events in two formats give the same normalized rows."""

from __future__ import annotations

import importlib.util

import pyarrow as pa
import pytest
from conftest import shared_file

from zeekwatch.readers.base import IngestLog
from zeekwatch.readers.eve import reader as eve
from zeekwatch.readers.zeek import jsonl as zeek_json


def read_table(reader, path, table) -> tuple[pa.Table, IngestLog]:
    log = IngestLog()
    chunks = [c for t, c in reader(str(path), log) if t == table]
    return pa.concat_tables(chunks).drop_columns(["source"]), log


def test_zeek_dns_json_equals_tsv():
    if importlib.util.find_spec("zeekwatch.readers.zeek.tsv") is None:
        pytest.skip("zeekwatch.readers.zeek.tsv (the TSV reader) is not in this checkout yet")
    from zeekwatch.readers.zeek import tsv as zeek_tsv

    json_rows, json_log = read_table(zeek_json.read, shared_file("zed-sample-data/zeek-json/dns.json.gz"), "dns")
    tsv_rows, tsv_log = read_table(zeek_tsv.read, shared_file("zed-sample-data/zeek-default/dns.log.gz"), "dns")
    assert json_rows.num_rows == tsv_rows.num_rows == 53_615
    assert json_log.reject_count == tsv_log.reject_count == 0
    for name in json_rows.column_names:  # column by column, so a failure names the column
        assert json_rows.column(name).to_pylist() == tsv_rows.column(name).to_pylist(), name


@pytest.mark.parametrize("sample, rows", [("wrccdc-2018", 207), ("honeypot-2018", 44)])
def test_eve_lines_equal_eve_array(sample, rows):
    lines, lines_log = read_table(eve.read, shared_file(f"frank-suricata/{sample}/alerts-only.eve.ndjson"), "alert")
    array, array_log = read_table(eve.read, shared_file(f"frank-suricata/{sample}/alerts-only.json"), "alert")
    assert lines.num_rows == rows
    assert lines.equals(array)
    assert lines_log.reject_count == array_log.reject_count == 0
    assert [n.split(": ", 1)[1] for n in lines_log.notes] == [n.split(": ", 1)[1] for n in array_log.notes]
