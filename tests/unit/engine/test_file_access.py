"""The engine's DuckDB reads only what the run gives it (issue 11, item 8): no SQL, from a
detector, a config value or a future slip, can read, write or attach local files."""

from __future__ import annotations

import duckdb
import pytest
from helpers import conn, engine_with

from zeekwatch.config import Config

ATTEMPTS = [
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM read_csv('/etc/passwd')",
    "COPY (SELECT 1) TO '/tmp/zeekwatch-should-not-exist.csv'",
    "ATTACH '/tmp/zeekwatch-should-not-exist.duckdb' AS other",
    "SET enable_external_access = true",
]


@pytest.mark.parametrize("storage", ["memory", "file"])
@pytest.mark.parametrize("sql", ATTEMPTS)
def test_engine_sql_cannot_reach_local_files(storage, sql):
    cfg = Config()
    cfg.engine.storage = storage
    eng = engine_with(cfg, conn=[conn(1_700_000_000 + i, "10.0.0.5", f"203.0.113.{i}", 445,
                                      conn_state="S0") for i in range(30)])
    try:
        with pytest.raises((duckdb.PermissionException, duckdb.InvalidInputException)):
            eng.con.execute(sql).fetchall()
        # what the run reads still works: its tables, and detection over them
        assert eng.count("conn") == 30
        assert any(f.detector == "horizontal_scan" for f in eng.detect())
    finally:
        eng.close()
