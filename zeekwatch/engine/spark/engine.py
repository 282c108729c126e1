"""The Spark engine: the normalized tables as Spark DataFrames, every detector run there.

It offers what ``app.analyze`` and the triage stage use of the DuckDB ``Engine`` (``ingest``,
``detect``, ``learned_services``, ``context``, ``count``, ``con``, ``close``), so a run's
triage, scoring and SQLite store are the same code and its findings the same ids.

Data flow (nothing but aggregates and candidates reaches the driver):

1. ``ingest``: Spark reads the input files (``binaryFile``) and the executors parse them with
   zeekwatch's readers (``reader.parse_files``); the result is cached once (memory and disk).
   The driver collects one meta row per file and a bounded sample of malformed lines.
2. The distinct addresses of conn, dns and alert (an aggregate) come to the driver, which
   classifies them and numbers them (``enrich.AddressBook``, as DuckDB's engine does) and
   broadcasts the book; the executors enrich the conn rows with the same ``enrich.enrich``
   into ``cx`` (cached). ``zw_addr`` is the book as a (small) DataFrame.
3. ``detect``: each detector's one query, spelled by ``SparkDialect``; Spark SQL shuffles by
   the PARTITION BY keys of its window functions (host, or host and port), so every row of a
   group is in one partition. Only the candidate rows are collected.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import pyarrow as pa

from zeekwatch import schema
from zeekwatch.config import Config
from zeekwatch.detectors import REGISTRY, Context
from zeekwatch.engine import enrich
from zeekwatch.engine.core import Learning, _candidate, merge_episodes, resolved_sql
from zeekwatch.engine.spark import ctes, reader, session
from zeekwatch.engine.spark.con import SparkCon
from zeekwatch.engine.spark.dialect import SparkDialect
from zeekwatch.errors import ConfigError, InputError, NotALogError
from zeekwatch.finding import Finding
from zeekwatch.nets import Nets
from zeekwatch.readers.base import IngestLog, Reject, file_size

PARALLEL_QUERIES = 2  # detector queries submitted to Spark at once


def spark_schema(arrow_schema: pa.Schema):
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(arrow_schema)


def enricher(nets: Nets, book_bc) -> callable:
    """``mapInArrow`` function: conn rows (normalized, plain text) -> enriched ``cx`` rows, by
    ``enrich.enrich`` with the driver's address book; ``rid`` numbers rows per partition from
    partition << 40, so they are unique across the cluster."""
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        book = enrich.AddressBook.from_table(nets, book_bc.value)
        book.rows = TaskContext.get().partitionId() << 40
        target = reader.plain(enrich.schema_for(nets))
        for batch in batches:
            if batch.num_rows:
                out = enrich.enrich(schema.conform("conn", pa.Table.from_batches([batch])), book)
                yield pa.RecordBatch.from_arrays(reader.decode(out, target), schema=target)
    return run


class SparkEngine(Learning):
    def __init__(self, config: Config, spark=None):
        eng = config.engine
        self.config = config
        # a session this engine starts it stops at close; one already running (a test's,
        # spark-submit's) is the caller's
        self._owned = spark is None and not session.running()
        self.spark = spark or session.start(eng.spark_master, dict(eng.spark_conf))
        self.dialect = SparkDialect()
        self.nets = Nets(config)
        if self.nets.auto:
            raise ConfigError('networks.internal = "auto" (learning from local_orig/local_resp) '
                              "runs on the DuckDB engine only; name the internal networks for "
                              "--engine spark (docs/spark.md)")
        self.book = enrich.AddressBook(None, self.nets)
        self.con = SparkCon(self.spark, self.dialect)
        self.counts: dict[str, int] = {t: 0 for t in schema.TABLES}
        self._cached: list = []
        self._made: set[str] = set()
        self._prepared = False
        for name in schema.TABLES:  # empty tables until ingest
            self._view(name, self.spark.createDataFrame([], spark_schema(reader.plain(schema.TABLES[name]))))
        self._enrich(self.spark.table("conn"))

    def learned_networks(self) -> dict[str, list[str]]:
        """Nothing is learned on Spark ("auto" is refused at start)."""
        return {}

    # -- reading ------------------------------------------------------------------------------
    def ingest(self, todo: list[tuple[str, str]], log: IngestLog,
               overrides: dict | None = None) -> None:
        """Read the planned inputs (``plan_uris``: files, or URIs of directories Spark walks)
        in the executors. ``overrides`` (other reader functions) are the DuckDB engine's."""
        if not todo:
            return
        from pyspark import StorageLevel

        parsed = self._parsed(todo).persist(StorageLevel.MEMORY_AND_DISK)
        self._collect_log(parsed, log, {reader.display_path(str(p)) for p, _kind in todo})
        for name in schema.TABLES:  # each table cached on its own, then the wide rows dropped
            cols = [f"`{name}`.`{f.name}` AS `{f.name}`" for f in schema.TABLES[name]]
            table = parsed.where(f"`{name}` IS NOT NULL").selectExpr(*cols)
            self._view(name, self._cache(table) if self.counts[name] else table)
            if self.counts[name]:
                table.count()
        parsed.unpersist()
        self._addresses()
        self._enrich(self.spark.table("conn"))
        conn = self.spark.table("conn")
        # conn is a view of cx's normalized columns (as in the DuckDB engine): one copy
        self._view("conn", self.spark.table("cx").select(*[f"`{f.name}`" for f in schema.CONN]))
        self.spark.table("cx").count()
        conn.unpersist()

    def _parsed(self, todo: list[tuple[str, str]]):
        """The wide parsed rows of every input: local files one task each (largest first),
        URIs through ``binaryFile`` (Spark lists directories, recursively)."""
        from pyspark.sql.types import StringType, StructField, StructType

        wide = spark_schema(reader.WIDE)
        local = sorted((p for p, kind in todo if kind != "uri"), key=file_size, reverse=True)
        remote = [p for p, kind in todo if kind == "uri"]
        parts = []
        if local:
            rows = self.spark.sparkContext.parallelize(
                [(p, os.path.abspath(p)) for p in local], len(local))
            paths = self.spark.createDataFrame(rows, StructType(
                [StructField("path", StringType()), StructField("local", StringType())]))
            parts.append(paths.mapInArrow(reader.parse_files, wide))
        if remote:
            files = (self.spark.read.format("binaryFile").option("recursiveFileLookup", "true")
                     .load(remote))
            parts.append(files.select("path", "content").mapInArrow(reader.parse_files, wide))
        return parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1])

    def _collect_log(self, parsed, log: IngestLog, explicit: set[str]) -> None:
        """The per-file meta rows and the rejects sample into ``log``; a named file that is
        not a log refuses the run, an unusable file fails it (as in the DuckDB engine)."""
        metas = sorted((r.asDict() for r in parsed.where("meta IS NOT NULL").select("meta.*").collect()),
                       key=lambda m: m["path"])
        for m in metas:
            if m["error"]:
                raise InputError(m["path"], m["error"])
            if m["refused"] and m["path"] in explicit:
                raise NotALogError(m["path"], m["skipped"])
            if m["skipped"]:
                log.skipped.append((m["path"], m["skipped"]))
                continue
            log.files.append(m["path"])
            for table, n in json.loads(m["records"]).items():
                log.records[table] += n
                self.counts[table] += n
            log.count_rejects(m["reject_count"])
            log.notes.extend(m["notes"] or [])
        kept = (parsed.where("rej IS NOT NULL").select("rej.*").orderBy("path", "line")
                .limit(log.max_kept).collect())
        log.rejects.extend(Reject(r["path"], r["line"], r["reason"], r["raw"]) for r in kept)

    def _addresses(self) -> None:
        """Classify and number every distinct address (an aggregate; the book is small)."""
        found = self.spark.sql(
            "SELECT DISTINCT a FROM (SELECT orig_h AS a FROM conn UNION ALL SELECT resp_h FROM conn "
            "UNION ALL SELECT orig_h FROM dns UNION ALL SELECT resp_h FROM dns "
            "UNION ALL SELECT orig_h FROM alert UNION ALL SELECT resp_h FROM alert) x "
            "WHERE a IS NOT NULL ORDER BY a")
        addrs = pa.array([r[0] for r in found.toLocalIterator()], pa.string())
        self.book.add(addrs)

    def _enrich(self, conn) -> None:
        table = self.book.table()
        bc = self.spark.sparkContext.broadcast(table)
        target = reader.plain(enrich.schema_for(self.nets))
        cx = conn.mapInArrow(enricher(self.nets, bc), spark_schema(target))
        self._view("cx", self._cache(cx) if self.counts["conn"] else cx)
        self._view("zw_addr", self.spark.createDataFrame(
            table.to_pandas() if table.num_rows else [],
            spark_schema(table.schema) if not table.num_rows else None))
        self._prepared = False

    def _cache(self, df):
        from pyspark import StorageLevel

        df = df.persist(StorageLevel.MEMORY_AND_DISK)
        self._cached.append(df)
        return df

    def _view(self, name: str, df) -> None:
        df.createOrReplaceTempView(name)

    # -- detecting ----------------------------------------------------------------------------
    def context(self) -> Context:
        if not self._prepared:
            self._prepare([])
        return Context(self.nets, self.dialect, self.config)

    def _prepare(self, known_services: list[dict]) -> None:
        """The helper tables every detector may use (as the DuckDB engine's ``_prepare``)."""
        from pyspark.sql.types import IntegerType, StringType, StructField, StructType

        self._made = set()
        ks = StructType([StructField("host", StringType()), StructField("port", IntegerType()),
                         StructField("proto", StringType())])
        rows = [(r["host"], r["port"], r["proto"]) for r in known_services]
        self._view("known_services", self.spark.createDataFrame(rows, ks))
        self._view("zw_services", self._cache(self.spark.sql(
            "SELECT DISTINCT service AS s FROM cx WHERE service IS NOT NULL")))
        self._view("resolved", self._cache(self.spark.sql(resolved_sql(self.dialect))))
        self._prepared = True

    def _sql(self, sql: str):
        return self.spark.sql(self.dialect.translate(sql))

    def _rows(self, sql: str) -> list[dict]:
        """The query's rows; its CTEs used more than once are computed once first (``ctes``)."""
        rows, _names = ctes.collect(self.spark, self.dialect.translate, sql)
        return [r.asDict(recursive=True) for r in rows]

    def _tables(self, det, params: dict, ctx: Context) -> None:
        make = det.extra.get("tables")
        if make is None or det.id in self._made:
            return
        for name, sql in make(params, ctx).items():
            self._view(name, self._cache(self._sql(sql)))
        self._made.add(det.id)

    def detect(self, only: list[str] | None = None,
               known_services: list[dict] | None = None) -> list[Finding]:
        """Every enabled detector's candidates, episodes merged (as ``Engine.detect``)."""
        ctx = Context(self.nets, self.dialect, self.config)
        self._prepare(known_services or [])
        present = {t for t, n in self.counts.items() if n}
        todo = []
        for det in REGISTRY.values():
            if (only and det.id not in only) or not self.config.enabled(det.id):
                continue
            if not set(det.needs) & present:
                continue
            params = self.config.params(det.id, det.params)
            self._tables(det, params, ctx)
            todo.append((det, params, det.query(params, ctx)))
        # the queries run side by side: each is a few small jobs, and one query's planning
        # (on the driver) overlaps another's tasks; results are taken in declaration order
        self.detector_seconds: dict[str, float] = {}  # wall seconds of each query (side by side)

        def rows(item) -> list[dict]:
            t0 = time.perf_counter()
            out = self._rows(item[2])
            self.detector_seconds[item[0].id] = time.perf_counter() - t0
            return out
        with ThreadPoolExecutor(max_workers=PARALLEL_QUERIES) as pool:
            results = list(pool.map(rows, todo))
        out: list[Finding] = []
        for (det, params, _sql), rows in zip(todo, results):
            out.extend(_candidate(det, params, r)
                       for r in merge_episodes(rows, self.config.store.merge_gap))
        return out

    def count(self, table: str) -> int:
        return self.counts.get(table, 0) if table in schema.TABLES else self.spark.table(table).count()

    def close(self) -> None:
        for df in self._cached:
            df.unpersist()
        self._cached.clear()
        if self._owned:
            self.spark.stop()


def plan_uris(paths: list[str], log: IngestLog, pcap_labels: bool = False) -> list[tuple[str, str]]:
    """What the executors read, checked before anything is written: local paths are walked
    and sniffed as the DuckDB engine does (``readers.plan``: a named file that is not a log
    is refused, one met in a directory skipped); URIs of other file systems (hdfs://, s3a://)
    go to Spark as given (Spark lists them; the executors sniff their files)."""
    from zeekwatch.errors import ConfigError
    from zeekwatch.readers import plan

    if pcap_labels:
        raise ConfigError("--pcap-labels needs the DuckDB engine (tshark runs beside the "
                          "reader); the Spark engine reads captures without labels")
    local, todo = [], []
    for p in map(str, paths):
        scheme = p.split("://", 1)[0] if "://" in p else ""
        if scheme and scheme != "file":
            todo.append((p, "uri"))
        else:
            local.append(reader.display_path(p))
    todo += plan(local, log)
    return todo
