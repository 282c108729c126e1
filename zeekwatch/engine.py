"""The engine: normalized tables in an embedded DuckDB, and the detectors run over them.

Readers yield Arrow chunks; the engine appends them to DuckDB tables (zero-copy scan of the
Arrow data), so the bulk path never loops per row in Python. DuckDB's memory limit and temp
directory let large inputs spill to disk instead of growing the process.
"""

from __future__ import annotations

import tempfile

import duckdb

from . import schema
from .config import Config
from .readers import read_inputs
from .readers.base import IngestLog


class Engine:
    def __init__(self, config: Config):
        self.config = config
        self._tmp = None
        temp_dir = config.engine.temp_directory
        if not temp_dir:
            self._tmp = tempfile.TemporaryDirectory(prefix="zeekwatch-")
            temp_dir = self._tmp.name
        self.con = duckdb.connect(":memory:", config={
            "memory_limit": config.engine.memory_limit,
            "threads": config.engine.threads,
            "temp_directory": temp_dir,
            "preserve_insertion_order": False,
        })
        self.con.execute("SET TimeZone = 'UTC'")
        for name, sch in schema.TABLES.items():
            empty = sch.empty_table()  # noqa: F841  (scanned by name below)
            self.con.execute(f"CREATE TABLE {name} AS SELECT * FROM empty")

    def ingest(self, todo: list[tuple[str, str]], log: IngestLog) -> None:
        """Read every planned input into the normalized tables."""
        for table, chunk in read_inputs(todo, log):
            self.con.execute(f"INSERT INTO {table} SELECT * FROM chunk")

    def count(self, table: str) -> int:
        return self.con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]

    def close(self) -> None:
        self.con.close()
        if self._tmp is not None:
            self._tmp.cleanup()
