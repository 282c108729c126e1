"""A DuckDB-connection-shaped handle on the Spark session, for the triage stage.

The triage stage (app usage, peer names, alert roles) runs its queries through ``con``;
with the Spark engine that is this object: ``execute(sql)`` runs Spark SQL (spelled by the
dialect) and returns a cursor with ``description`` and ``fetchall``; ``temp_table`` makes a
small rule or key table (never traffic) a temp view.
"""

from __future__ import annotations

import pyarrow as pa

from zeekwatch.engine.spark import ctes


class SparkCursor:
    def __init__(self, rows, names: list[str]):
        self._rows = rows
        self.description = [(n,) for n in names]

    def fetchall(self) -> list[tuple]:
        return [tuple(_plain(v) for v in r) for r in self._rows]


def _plain(v):
    """Spark rows hold Rows for structs; lists and scalars are already Python values."""
    if hasattr(v, "asDict"):
        return v.asDict(recursive=True)
    return v


class SparkCon:
    dialect_name = "spark"

    def __init__(self, spark, dialect):
        self.spark, self.dialect = spark, dialect

    def execute(self, sql: str, params=None) -> SparkCursor:
        if params:
            raise NotImplementedError("SparkCon.execute: inline values (rule tables) instead")
        return SparkCursor(*ctes.collect(self.spark, self.dialect.translate, sql))

    def register(self, name: str, data: pa.Table) -> None:
        """DuckDB's ``register`` (a small key table, e.g. evidence uids) as a temp view."""
        self.temp_table(name, data)

    def unregister(self, name: str) -> None:
        self.spark.catalog.dropTempView(name)

    def temp_table(self, name: str, data: pa.Table) -> None:
        from zeekwatch.engine.spark.engine import spark_schema

        if data.num_rows:
            df = self.spark.createDataFrame(data)
        else:
            df = self.spark.createDataFrame([], spark_schema(data.schema))
        df.createOrReplaceTempView(name)
