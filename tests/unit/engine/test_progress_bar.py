"""DuckDB draws a progress bar on stdout for a query of over 2 s; zeekwatch's stdout is the
user's (``analyze --json`` is parsed by scripts: a 3 M-event eve.json put a bar before the
JSON), so every DuckDB connection it makes has the bar off: the engine's and the JSON
readers'."""

import json

import pyarrow as pa

from zeekwatch.config import load
from zeekwatch.engine.core import Engine
from zeekwatch.readers import base
from zeekwatch.readers.eve import columnar
from zeekwatch.readers.zeek import jsonl


def _bar(con) -> bool:
    return con.execute("SELECT current_setting('enable_progress_bar')").fetchone()[0]


def test_engine_connection_has_no_progress_bar(tmp_path):
    config = tmp_path / "zeekwatch.toml"
    config.write_text("")
    engine = Engine(load(str(config)))
    try:
        assert _bar(engine.con) is False
    finally:
        engine.close()


def test_reader_connection_has_no_progress_bar():
    con = base.duckdb_reader()
    assert _bar(con) is False
    con.close()


def test_json_readers_read_through_it(tmp_path, monkeypatch):
    made = []

    def reader():
        made.append(base.duckdb_reader())
        return made[-1]

    monkeypatch.setattr(columnar, "duckdb_reader", reader)
    monkeypatch.setattr(jsonl, "duckdb_reader", reader)
    eve = tmp_path / "eve.json"
    eve.write_text(json.dumps({"timestamp": "2024-03-12T10:00:00.000000+0000", "event_type": "flow",
                               "src_ip": "10.0.0.1", "src_port": 1, "dest_ip": "8.8.8.8",
                               "dest_port": 53, "proto": "UDP"}) + "\n")
    zeek = tmp_path / "conn.json"
    zeek.write_text(json.dumps({"ts": 1710237600.0, "uid": "C1", "id.orig_h": "10.0.0.1"}) + "\n")
    assert sum(len(t) for t in columnar.duckdb_batches(str(eve), False)) == 1
    assert sum(len(t) for t in jsonl._duckdb_batches(str(zeek), pa.float64())) == 1
    assert len(made) == 2
