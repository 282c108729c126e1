"""The engine: the normalized tables in an embedded DuckDB, and the detectors run over them.

Readers yield Arrow chunks. Conn chunks are enriched as they arrive (``enrich``: address
classes and ids, failed/established/initiated/answered/outbound, a row id; Arrow kernels, no
Python loop per row) into ``cx``, and ``conn`` is a view of its normalized columns; detectors
read ``cx``.

Small inputs (tables of at most half ``memory_limit``, as ``app.analyze`` estimates them)
stay in memory as the readers' Arrow chunks themselves, registered with DuckDB, which scans them
in place: no copy into DuckDB's storage (for 2 M conn rows that copy cost more than the
enrichment). Larger inputs, and callers that do not say, go to a scratch DuckDB *database file*
(``tables.duckdb`` in a private temporary directory, under ``engine.temp_directory`` if set;
a ``pid`` file lets the next engine remove the directory of a killed run): it holds the rows
compressed, and its blocks can leave the buffer pool and be re-read from the file (the OS page
cache) without temp writes, so ``memory_limit`` bounds the engine. Each chunk is committed on its
own: DuckDB keeps a transaction's appended rows in memory until it commits (20 M conn rows in one
transaction: 6 GB RSS). The file is scratch: no fsync, no checkpoint at close; it goes with the
directory. Follow mode (``raw_conn``) lays out its own tables and enriches the rows it appends.

What stays above ``memory_limit`` is the interpreter, the imports and the readers' chunks in
flight; the measured figures are in README.md ("Measured speed") and docs/architecture.md.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import duckdb
import pyarrow as pa

from zeekwatch import schema
from zeekwatch.config import Config
from zeekwatch.errors import ConfigError
from zeekwatch.finding import Finding, jsonable
from zeekwatch.detectors import REGISTRY, Context, Dialect
from zeekwatch.detectors.base import CANDIDATE_COLUMNS, pair
from zeekwatch.engine import enrich
from zeekwatch.nets import Nets
from zeekwatch.nets import summarize as nets_summary
from zeekwatch.readers import read_inputs
from zeekwatch.readers.base import IngestLog
from zeekwatch.timefmt import iso

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def memory_bytes(text: str) -> int | None:
    """DuckDB's memory_limit text ("1GB", "512MiB") in bytes; None if it cannot be read."""
    t = str(text).strip().upper().replace(" ", "")
    num = t.rstrip("KMGTIB")
    try:
        return int(float(num) * _UNITS[t[len(num):]])
    except (ValueError, KeyError):
        return None


def in_memory_fits(config: Config, table_bytes: int | None) -> bool:
    """Keep the tables in memory when they fill at most half the memory limit (or always /
    never, with ``engine.storage`` "memory" / "file").

    In memory the readers' Arrow chunks are the tables: nothing is copied or compressed, but
    they are held by Python, outside DuckDB's ``memory_limit``, so only inputs well below it
    stay there; larger ones go to the scratch database file, where the limit bounds them.
    """
    if config.engine.storage != "auto":
        return config.engine.storage == "memory"
    limit = memory_bytes(config.engine.memory_limit)
    return table_bytes is not None and limit is not None and table_bytes <= limit // 2


def _scratch_directory(parent: str) -> tempfile.TemporaryDirectory:
    """A private temporary directory (under ``parent`` when set): a ConfigError if it cannot be
    made, so engines sharing a configured temp_directory never share files."""
    try:
        if parent:
            os.makedirs(parent, exist_ok=True)
        return tempfile.TemporaryDirectory(prefix="zeekwatch-", dir=parent or None)
    except OSError as exc:
        raise ConfigError(f"engine.temp_directory: {parent!r}: {exc.strerror or exc}") from None


def resolved_sql(dialect: Dialect) -> str:
    """The ``resolved`` table, for every engine: (host_id, addr_id) where the host got the
    address in a DNS answer, as zw_addr ids; ``pair`` both ids in one BIGINT
    (``detectors.base.pair``); ``name`` the smallest query (as written) whose answer held the
    address (beacon)."""
    return (f"SELECT h.id AS host_id, a.id AS addr_id, {pair('h.id', 'a.id')} AS pair, "
            "min(d.query) AS name FROM (SELECT orig_h, query, "
            f"{dialect.unnest_list('answers')} AS addr FROM dns WHERE answers IS NOT NULL) d "
            "JOIN zw_addr h ON h.a = d.orig_h JOIN zw_addr a ON a.a = d.addr GROUP BY h.id, a.id")


class Learning:
    """What every engine (DuckDB here, Spark in ``engine.spark``) does the same way over its own
    ``context``, ``_tables`` and ``_rows``: the services the detectors learn."""

    def learned_services(self, only: list[str] | None = None) -> list[dict]:
        """Services observed in this run, from detectors that declare ``extra['learn']``."""
        ctx = self.context()
        rows: list[dict] = []
        for det in REGISTRY.values():
            learn = det.extra.get("learn")
            if learn is None or (only and det.id not in only) or not self.config.enabled(det.id):
                continue
            params = self.config.params(det.id, det.params)
            self._tables(det, params, ctx)
            rows.extend(self._rows(learn(params, ctx)))
        return rows


class Engine(Learning):
    def __init__(self, config: Config, table_bytes: int | None = None, raw_conn: bool = False):
        """``table_bytes``: the expected size of the normalized tables, when the caller knows
        it (``app.analyze`` estimates it from the inputs); small inputs stay in memory,
        as the readers' Arrow chunks that DuckDB scans in place (no copy).

        Conn rows are enriched as they are loaded (``enrich``) into ``cx``, and ``conn`` is a
        view of its normalized columns. With ``raw_conn`` (follow mode, which lays out its
        tables itself and enriches the conn rows it appends: ``enrich``), ``conn`` is a
        table of the enriched schema and ``cx`` a view of it."""
        self.config = config
        self._tmp = _scratch_directory(config.engine.temp_directory)
        _claim(self._tmp.name)
        self.in_memory = in_memory_fits(config, table_bytes)
        target = ":memory:" if self.in_memory else os.path.join(self._tmp.name, "tables.duckdb")
        self.con = duckdb.connect(target, config={
            "memory_limit": config.engine.memory_limit,
            "threads": config.engine.threads,
            "temp_directory": self._tmp.name,
            "preserve_insertion_order": False,
            "fsync_mode": "NONE",  # scratch data: a crash loses the run anyway
        })
        # SQL reads only the tables registered here (Arrow) and its own scratch files: no
        # read_text('/etc/...'), COPY, ATTACH or extension load, whatever a query says (set
        # once connected: DuckDB refuses it together with temp_directory in the config)
        self.con.execute("SET enable_external_access = false")
        if not self.in_memory:
            self.con.execute("PRAGMA disable_checkpoint_on_shutdown")  # deleted at close
        self.con.execute("SET TimeZone = 'UTC'")
        # DuckDB draws a progress bar on stdout for a query of over 2 s: it broke
        # ``analyze --json`` (a bar before the JSON) and ``-q``
        self.con.execute("SET enable_progress_bar = false")
        self.nets = Nets(config)
        self.book = enrich.AddressBook(self.con, self.nets)
        self.raw_conn = raw_conn
        # in memory: the Arrow chunks themselves are the tables (DuckDB scans them in place)
        self.arrow = self.in_memory and not raw_conn
        self._chunks: dict[str, list[pa.Table]] = {}
        for name in schema.TABLES:
            store = self._store(name)
            if self.arrow:
                self._chunks[store] = []
            else:
                self.con.register("zw_empty", self._schema(name).empty_table())
                self.con.execute(f"CREATE TABLE {store} AS SELECT * FROM zw_empty")
                self.con.unregister("zw_empty")
        self._sync()
        if raw_conn:
            self.con.execute("CREATE VIEW cx AS SELECT * FROM conn")
        else:
            self.con.execute("CREATE VIEW conn AS SELECT "
                             f"{', '.join(f.name for f in schema.CONN)} FROM cx")

    def _store(self, table: str) -> str:
        """Where a normalized table's rows are kept: conn's in the enriched ``cx``."""
        return "cx" if table == "conn" and not self.raw_conn else table

    def _schema(self, table: str) -> pa.Schema:
        return enrich.schema_for(self.nets) if table == "conn" else schema.TABLES[table]

    def enrich(self, conn: pa.Table) -> pa.Table:
        """Conn rows (normalized schema) with the enrichment columns (``enrich``)."""
        return enrich.enrich(conn, self.book)

    def ingest(self, todo: list[tuple[str, str]], log: IngestLog,
               overrides: dict | None = None) -> None:
        """Read every planned input into the normalized tables.

        In memory the chunks are kept as they come; into the scratch file each chunk is its own
        transaction: DuckDB holds a transaction's appended rows in memory until it commits
        (20 M conn rows in one transaction: 6 GB RSS; a commit per chunk: 1.5 GB, and faster).
        Rows read before a reader's error stay."""
        batch = _SmallChunks(self._insert)
        try:
            for table, chunk in read_inputs(todo, log, overrides):
                batch.add(table, chunk)
                del chunk  # not held while the reader makes the next one
            batch.flush()
        finally:
            self._relearn()
            self._sync()
        if self.nets.auto:
            log.notes.extend(learned_notes(self.book.learned))

    def _relearn(self) -> None:
        """networks.internal "auto": rows enriched before one of their addresses was learned
        internal (another file marked it local later) get their address flags again."""
        late, self.book.late = sorted(self.book.late), set()
        if not late:
            return
        if self.arrow:
            ids = pa.array(late, pa.int32())
            self._chunks["cx"] = [enrich.relearn(c, ids) for c in self._chunks["cx"]]
            return
        store = self._store("conn")
        in_late = f"IN ({', '.join(str(i) for i in late)})"
        self.con.execute(f"""UPDATE {store} SET
            orig_internal = orig_internal OR coalesce(orig_id {in_late}, FALSE),
            resp_internal = resp_internal OR coalesce(resp_id {in_late}, FALSE)
            WHERE orig_id {in_late} OR resp_id {in_late}""")
        self.con.execute(f"""UPDATE {store} SET outbound = proto IN ('tcp', 'udp')
            AND resp_p IS NOT NULL AND resp_h IS NOT NULL AND orig_internal
            AND NOT resp_internal AND NOT resp_special AND initiated
            WHERE orig_id {in_late} OR resp_id {in_late}""")

    def learned_networks(self) -> dict[str, list[str]]:
        """networks.internal "auto": per sensor ('' unnamed), the networks (/24, /64) of the
        addresses the logs marked local."""
        return {s: nets_summary(a) for s, a in sorted(self.book.learned.items())}

    def load(self, table: str, data: pa.Table) -> None:
        """Append an Arrow table of the normalized schema (tests, small batches)."""
        self._insert(table, schema.conform(table, data))
        self._sync()

    def _insert(self, table: str, chunk: pa.Table) -> None:
        if table == "conn":
            chunk = self.enrich(chunk)
        store = self._store(table)
        if self.arrow:
            self._chunks[store].append(chunk)
            return
        self.con.register("zw_chunk", chunk)
        try:
            self.con.execute(f"INSERT INTO {store} SELECT * FROM zw_chunk")
        finally:
            self.con.unregister("zw_chunk")

    def _sync(self) -> None:
        """Point DuckDB at the Arrow chunks of each table (in memory; zero-copy)."""
        for store, chunks in self._chunks.items():
            table = self._schema("conn" if store == "cx" else store)
            self.con.register(store, pa.concat_tables(chunks) if chunks else table.empty_table())

    def context(self) -> Context:
        """What detector SQL may use. Builds the helper tables (address and service classes,
        DNS resolutions) if no ``detect`` has built them yet; ``detect`` rebuilds them."""
        ctx = Context(self.nets, Dialect(), self.config)
        exists = self.con.execute("SELECT count(*) FROM duckdb_tables() "
                                  "WHERE table_name = 'resolved'").fetchall()[0][0]
        if not exists:
            self._prepare([])
        return ctx

    def detect(self, only: list[str] | None = None,
               known_services: list[dict] | None = None) -> list[Finding]:
        """Run every enabled detector; return candidate findings, episodes merged.

        ``known_services`` (host, port, proto) is the stored baseline of listening services
        from earlier runs; it is visible to detectors as the table ``known_services``.
        """
        ctx = Context(self.nets, Dialect(), self.config)
        self._prepare(known_services or [])
        self.detector_seconds: dict[str, float] = {}  # wall seconds of each query (run summary)
        present = {t for t in schema.TABLES if self.count(t)}
        out: list[Finding] = []
        for det in REGISTRY.values():
            if (only and det.id not in only) or not self.config.enabled(det.id):
                continue
            if not set(det.needs) & present:
                continue
            params = self.config.params(det.id, det.params)
            t0 = time.perf_counter()
            self._tables(det, params, ctx)
            rows = self._rows(det.query(params, ctx))
            self.detector_seconds[det.id] = time.perf_counter() - t0
            out.extend(_candidate(det, params, r) for r in merge_episodes(rows, self.config.store.merge_gap))
        return out

    def _rows(self, sql: str) -> list[dict]:
        cur = self.con.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def _tables(self, det, params: dict, ctx: Context) -> None:
        """The detector's own helper tables (``extra['tables']``: name -> SQL), made once per
        ``_prepare``, for its query and its ``learn`` query to share."""
        make = det.extra.get("tables")
        if make is None or det.id in self._made:
            return
        for name, sql in make(params, ctx).items():
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")
        self._made.add(det.id)

    def _prepare(self, known_services: list[dict]) -> None:
        """Helper tables every detector may use: address classes of every table's addresses,
        services, DNS resolutions, and the stored baseline of known services."""
        con = self.con
        self._made: set[str] = set()
        con.execute("CREATE OR REPLACE TABLE known_services "
                    "(host VARCHAR, port INTEGER, proto VARCHAR)")
        if known_services:
            con.executemany("INSERT INTO known_services VALUES (?, ?, ?)",
                            [[r["host"], r["port"], r["proto"]] for r in known_services])
        for t in ("alert", "dns"):  # conn's addresses were classified as its rows came in
            if self.count(t):
                found = con.sql(f"SELECT DISTINCT a FROM (SELECT orig_h AS a FROM {t} UNION ALL "
                                f"SELECT resp_h FROM {t}) x").to_arrow_table()
                self.book.add(found.column("a").combine_chunks())
        con.execute("CREATE OR REPLACE TABLE zw_services AS SELECT DISTINCT service AS s FROM cx "
                    "WHERE service IS NOT NULL")
        # (host_id, addr_id): the host got the address in a DNS answer, as zw_addr ids (only
        # addresses the tables hold matter); ``pair`` is both ids in one BIGINT
        # (``detectors.base.pair``), the cheapest key to test a connection's ids against;
        # ``name``: the smallest query (as written) whose answer held the address (beacon)
        con.execute("CREATE OR REPLACE TABLE resolved AS " + resolved_sql(Dialect()))

    def count(self, table: str) -> int:
        return self.con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]

    def close(self) -> None:
        self.con.close()
        self._tmp.cleanup()


def learned_notes(learned: dict[str, set[str]]) -> list[str]:
    """The run summary's lines about networks.internal = "auto"."""
    if not learned:
        return ['networks.internal = "auto": no log marks addresses local (local_orig / '
                'local_resp); the internal networks are the configured ones only']
    return [f'networks.internal = "auto": learned from sensor {s or "(unnamed)"}\'s '
            f"local_orig/local_resp: {', '.join(nets_summary(a)[:12])}"
            + (" ..." if len(nets_summary(a)) > 12 else "") for s, a in sorted(learned.items())]


class _SmallChunks:
    """Collects small chunks (many small files: one row each) into one insert of at least
    ``ROWS`` rows, so the per-insert work (enrichment, a DuckDB statement, an Arrow chunk to
    scan) is paid per batch, not per file. Large chunks go through as they are; the order
    of a table's rows is kept."""

    ROWS = 65_536

    def __init__(self, insert):
        self.insert = insert
        self.pending: dict[str, list[pa.Table]] = {}
        self.rows: dict[str, int] = {}

    def add(self, table: str, chunk: pa.Table) -> None:
        if chunk.num_rows >= self.ROWS:
            self._flush(table)
            self.insert(table, chunk)
            return
        self.pending.setdefault(table, []).append(chunk)
        self.rows[table] = self.rows.get(table, 0) + chunk.num_rows
        if self.rows[table] >= self.ROWS:
            self._flush(table)

    def _flush(self, table: str) -> None:
        chunks = self.pending.pop(table, [])
        self.rows.pop(table, None)
        if len(chunks) == 1:
            self.insert(table, chunks[0])
        elif chunks:
            self.insert(table, pa.concat_tables(chunks).unify_dictionaries().combine_chunks())

    def flush(self) -> None:
        for table in list(self.pending):
            self._flush(table)


def _claim(scratch: str) -> None:
    """Mark ``scratch`` with our pid and remove sibling scratch directories whose process is
    gone (a run killed with SIGKILL cannot clean up its tables file itself)."""
    with open(os.path.join(scratch, "pid"), "w") as f:
        f.write(str(os.getpid()))
    parent = os.path.dirname(scratch)
    for name in os.listdir(parent):
        other = os.path.join(parent, name)
        if not name.startswith("zeekwatch-") or other == scratch:
            continue
        try:
            with open(os.path.join(other, "pid")) as f:
                pid = int(f.read().strip())
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(other, ignore_errors=True)
        except (OSError, ValueError):
            continue  # not ours to judge: no pid file, or another user's process


def _entity_of(r: dict) -> tuple:
    return r["host"], r.get("peer"), r.get("key")


def merge_episodes(rows: list[dict], gap: float) -> list[dict]:
    """Join episodes of one entity (host, peer, key) that lie within ``gap`` seconds."""
    rows = sorted(rows, key=lambda r: (r["host"] or "", r.get("peer") or "", r.get("key") or "",
                                       r["t_first"]))
    merged: list[dict] = []
    for r in rows:
        prev = merged[-1] if merged else None
        same = prev is not None and _entity_of(prev) == _entity_of(r)
        if same and r["t_first"] <= prev["t_last"] + gap:
            prev["t_last"] = max(prev["t_last"], r["t_last"])
            prev["observed"] = max(prev["observed"], r["observed"])
            prev["distinct_total"] = max(prev["distinct_total"] or 0, r["distinct_total"] or 0)
            prev["distinct_values"] = sorted(set(prev["distinct_values"] or []) |
                                             set(r["distinct_values"] or []))[:20]
            prev["uids"] = (list(prev["uids"] or []) + [u for u in r["uids"] or []
                                                      if u not in (prev["uids"] or [])])[:20]
            prev["evidence_total"] = (prev["evidence_total"] or 0) + (r["evidence_total"] or 0)
        else:
            merged.append(dict(r))
    return merged



_NOT_DETAILS = frozenset(CANDIDATE_COLUMNS) | {"threat"}  # a query's columns that are no details


def _candidate(det, params: dict, r: dict) -> Finding:
    """A query row as a finding candidate: contract columns, explanation, evidence.

    An optional ``threat`` column overrides the detector's declared threat type per row
    (ids_alert types each alert group by its category). The detector's ``summary`` reads the
    finding's fields and the query's other columns as they came (``details``, which the
    finding keeps as JSON values)."""
    details = {k: v for k, v in r.items() if k not in _NOT_DETAILS}
    peer, key = r.get("peer"), r.get("key")
    f = Finding(
        detector=det.id, threat=r.get("threat") or det.threat, title=det.title, host=r["host"],
        peer=None if peer is None else str(peer), key=None if key is None else str(key),
        # evidence without times (masked timestamps): a fixed sentinel keeps the id stable
        first_seen=iso(r["t_first"] if r["t_first"] is not None else 0.0),
        last_seen=iso(r["t_last"] if r["t_last"] is not None else 0.0),
        observed=float(r["observed"]) if r["observed"] is not None else None,
        threshold=float(r["threshold"]) if r["threshold"] is not None else None,
        distinct_total=int(r.get("distinct_total") or 0),
        values=[str(v) for v in (r.get("distinct_values") or []) if v is not None],
        evidence_total=int(r.get("evidence_total") or 0),
        uids=[u for u in (r.get("uids") or []) if u])
    view = f.mapping()
    del view["details"]  # the summary reads the query's own columns, as they came
    f.summary = det.summary({**view, **details}, params)
    f.details = jsonable(details)
    if r["t_first"] is None:
        f.summary = "(time unknown: the input's timestamps are masked) " + f.summary
        f.details["time_unknown"] = True
    return f
