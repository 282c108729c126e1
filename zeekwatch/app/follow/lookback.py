"""The engine's tables in follow mode: a bounded look-back, and the slice each batch detects on.

The look-back holds the rows of the last ``lookback`` seconds of *data* time (behind the
newest timestamp read), in segment tables of about ``lookback / 8`` seconds each; a segment is
dropped whole once all its rows are older than the look-back, so memory follows the window
(DuckDB frees a dropped table at once, where deleted rows would linger).

What the detectors see in one micro-batch (the normalized table names of ``schema.TABLES``):

- ``conn``: the *slice* — the batch's new rows and the look-back rows a window touching them
  can need. Exact sliding windows of ``window`` seconds (docs/architecture.md) are exact for every window
  that contains a new row when the slice reaches ``window`` seconds before the oldest new row.
  Rows arrive roughly in time order (Zeek writes a connection when it ends), so the slice is
  ``[oldest recent new row - window, ∞)`` — rows at most ``LATE`` seconds older than the newest
  count as recent — plus, per originating host, ``[its oldest late row - window, ∞)`` for
  the few rows that arrive later than that. Windows never touched by a new row were computed
  exactly in an earlier batch, so every window is evaluated exactly at least once.
  Older rows are kept only for hosts that could fire a windowed detector: those with at
  least ``gate`` distinct destination hosts or ports in the slice (``gate`` = the smallest
  ``min_*`` threshold of the windowed detectors, which count distinct hosts or ports).
  Every other host's windows stay below every threshold, so they need not be evaluated.
- ``dns``, ``alert``, ``http``, ``tls``, ``smtp``: the whole look-back (views), so DNS
  resolutions, MX lookups and app usage of the last ``lookback`` seconds are known.

``full()`` turns ``conn`` into the whole look-back too, for the detectors that rank over
all the data (prevalence).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from zeekwatch import schema
from zeekwatch.config import Config
from zeekwatch.engine.core import Engine

SLICED = ("conn",)
# (host, destination, proto/port, newest time) pairs of conn rows: what the gate counts
_PAIRS = ("SELECT orig_h AS host, coalesce(resp_h, '') AS resp_h, coalesce(proto, '') || '/' || "
          "coalesce(CAST(resp_p AS VARCHAR), '') AS key, max(epoch(ts)) AS t FROM {src} "
          "WHERE orig_h IS NOT NULL AND ts IS NOT NULL GROUP BY ALL")
LATE = 10.0  # seconds: new rows older than the newest new row minus this are "late"
SEGMENT_ROWS = 2_000_000
FUTURE = 86400.0  # timestamps further ahead of the wall clock do not move the look-back
BOOK_MIN = 200_000  # addresses the engine's address book may hold before it is pruned


@dataclass
class Segment:
    name: str
    summary: str | None = None  # conn: (host, resp_h, key, t) pairs, for the gate
    rows: int = 0
    min_ts: float | None = None
    max_ts: float | None = None
    opened: float | None = None  # the newest timestamp of its first rows


def max_epoch(table: pa.Table) -> float | None:
    if table.num_rows == 0:
        return None
    m = pc.max(table.column("ts")).as_py()
    return None if m is None else m.timestamp()


class Lookback:
    """Owns the ``Engine`` of a follow session and lays out its tables per batch."""

    def __init__(self, config: Config, lookback: float, window: float, gate: int = 1):
        self.engine = Engine(config, raw_conn=True)
        self.con = self.engine.con
        self.lookback, self.window, self.gate = float(lookback), float(window), int(gate)
        self.span = max(self.lookback / 8, 1.0)
        self.segments: dict[str, list[Segment]] = {t: [] for t in schema.TABLES}
        self.max_ts: float | None = None
        self._book_after_prune = 0
        self._seq = 0
        self._kind: dict[str, str] = {}
        for t in schema.TABLES:
            self.con.execute(f"ALTER TABLE {t} RENAME TO zw_empty_{t}")
            self.con.execute(f"CREATE TABLE zw_extra_{t} AS SELECT * FROM zw_empty_{t}")
        for t in schema.TABLES:
            self._layout(t)

    # -- time -------------------------------------------------------------------------------
    @property
    def horizon(self) -> float | None:
        return None if self.max_ts is None else self.max_ts - self.lookback

    def advance(self, new: dict[str, pa.Table]) -> None:
        """Move the data clock to the newest timestamp of ``new`` (bounded by the wall clock)."""
        limit = time.time() + FUTURE
        for table in new.values():
            m = max_epoch(table)
            if m is not None and m <= limit and (self.max_ts is None or m > self.max_ts):
                self.max_ts = m

    # -- batches ----------------------------------------------------------------------------
    def _enriched(self, new: dict[str, pa.Table]) -> dict[str, pa.Table]:
        """Conn rows get the engine's enrichment columns (``zeekwatch.engine.enrich``) once, as
        they enter the look-back."""
        if new.get("conn") is None:
            return new
        return {**new, "conn": self.engine.enrich(new["conn"])}

    def replay(self, new: dict[str, pa.Table]) -> None:
        """Rows re-read after a restart: into the look-back only, never detected again."""
        new = self._enriched(new)
        self.advance(new)
        for t, table in new.items():
            self._append(t, table)
        for t in schema.TABLES:
            self._layout(t)

    def stage(self, new: dict[str, pa.Table]) -> None:
        """Lay out the tables for detecting on a batch of ``new`` rows (see the module doc)."""
        new = self._enriched(new)
        self.advance(new)
        conn = new.get("conn")
        self.con.register("zw_new", conn if conn is not None else self.engine.enrich(schema.empty("conn")))
        try:
            self._slice()
        finally:
            self.con.unregister("zw_new")
        for t, table in new.items():
            self._append(t, table, extra=t not in SLICED)
        for t in schema.TABLES:
            if t not in SLICED:
                self._layout(t)
        for t in set(schema.TABLES) - set(new):
            self.con.execute(f"DELETE FROM zw_extra_{t}")

    def full(self) -> None:
        """``conn`` = the whole look-back (for the prevalence detectors)."""
        self._layout("conn")

    def evict(self) -> int:
        """Drop segments whose rows are all older than the look-back; returns rows dropped."""
        h, dropped = self.horizon, 0
        if h is None:
            return 0
        for t, segs in self.segments.items():
            keep = []
            for s in segs:
                if s.max_ts is not None and s.max_ts < h and s is not segs[-1]:
                    self.con.execute(f"DROP TABLE {s.name}")
                    if s.summary:
                        self.con.execute(f"DROP TABLE {s.summary}")
                    dropped += s.rows
                else:
                    keep.append(s)
            if len(keep) != len(segs):
                self.segments[t] = keep
                if t not in SLICED or self._kind.get(t) == "view":
                    self._layout(t)
        self._forget_addresses()
        return dropped

    def _forget_addresses(self) -> None:
        """Keep the engine's address book to the addresses the look-back still holds, once it
        has grown past twice what it held at the last pruning (and past BOOK_MIN): memory
        stays bounded however long the session runs."""
        book = self.engine.book
        if len(book) < max(BOOK_MIN, 2 * self._book_after_prune):
            return
        parts = [f"SELECT orig_h AS a FROM {s.name} UNION ALL SELECT resp_h FROM {s.name}"
                 for t in ("conn", "dns", "alert") for s in self.segments[t]]
        if parts:
            held = self.con.sql(f"SELECT DISTINCT a FROM ({' UNION ALL '.join(parts)}) x "
                                "WHERE a IS NOT NULL").to_arrow_table().column("a").combine_chunks()
        else:
            held = pa.array([], pa.string())
        book.retain(held)
        self._book_after_prune = len(book)

    def rows(self) -> int:
        return sum(s.rows for segs in self.segments.values() for s in segs)

    def close(self) -> None:
        self.engine.close()

    # -- layout -----------------------------------------------------------------------------
    def _slice(self) -> None:
        """``conn`` = the look-back rows the new rows' windows need, plus the new rows."""
        W, con = self.window, self.con
        newest = con.execute("SELECT max(epoch(ts)) FROM zw_new").fetchall()[0][0]
        if newest is None:  # no timed rows: only the new rows (per-connection detectors)
            self._replace("conn", "table", "SELECT * FROM zw_new")
            return
        start = con.execute(f"SELECT min(epoch(ts)) FROM zw_new WHERE epoch(ts) >= {newest - LATE!r}").fetchall()[0][0] - W
        con.execute(f"CREATE OR REPLACE TEMP TABLE zw_late AS SELECT orig_h AS host, min(epoch(ts)) - {W!r} AS lo "
                    f"FROM zw_new WHERE epoch(ts) < {newest - LATE!r} AND orig_h IS NOT NULL GROUP BY orig_h")
        lowest = con.execute("SELECT min(lo) FROM zw_late").fetchall()[0][0]
        floor = start if lowest is None else min(start, lowest)
        segs = [s for s in self.segments["conn"] if s.max_ts is not None and s.max_ts >= floor]
        if self.gate > 1 and segs:
            segs = segs if self._hot(segs, start) else []
        if not segs:
            self._replace("conn", "table", "SELECT * FROM zw_new")
            return
        if self.gate > 1:  # zw_hot(host, lo): the hosts that can fire, from when on
            pick = "SELECT c.* FROM {seg} c JOIN zw_hot h ON c.orig_h = h.host WHERE epoch(c.ts) >= h.lo"
        else:
            pick = ("SELECT c.* FROM {seg} c LEFT JOIN zw_late l ON c.orig_h = l.host "
                    f"WHERE c.ts >= to_timestamp({start!r}) OR epoch(c.ts) >= l.lo")
        old = " UNION ALL ".join(pick.format(seg=s.name) for s in segs)
        self._replace("conn", "table", f"{old} UNION ALL SELECT * FROM zw_new")

    def _hot(self, segs: list[Segment], start: float) -> bool:
        """``zw_hot(host, lo)``: hosts with at least ``gate`` distinct destination hosts or
        ports in the slice (from the segments' pair summaries), and where their slice starts;
        False when there is none."""
        pairs = " UNION ALL ".join(
            f"SELECT x.* FROM {s.summary} x LEFT JOIN zw_late l ON x.host = l.host "
            f"WHERE x.t >= {start!r} OR x.t >= l.lo" for s in segs)
        self.con.execute(f"""CREATE OR REPLACE TEMP TABLE zw_hot AS
SELECT p.host, least({start!r}, min(l.lo)) AS lo
FROM ({pairs} UNION ALL {_PAIRS.format(src="zw_new")}) p LEFT JOIN zw_late l ON l.host = p.host
GROUP BY p.host
HAVING count(DISTINCT p.resp_h) >= {self.gate} OR count(DISTINCT p.key) >= {self.gate}""")
        return self.con.execute("SELECT count(*) FROM zw_hot").fetchall()[0][0] > 0

    def _append(self, table: str, rows: pa.Table, extra: bool = False) -> None:
        """Rows inside the look-back go to the newest segment; with ``extra`` the rest (no
        timestamp, or older than the look-back) is visible for this batch only."""
        h = self.horizon
        if h is not None:
            keep = pc.fill_null(pc.greater_equal(rows.column("ts"), pa.scalar(
                int(h * 1e6), pa.int64()).cast(schema.TS)), False)
        else:
            keep = pc.is_valid(rows.column("ts"))
        inside, outside = rows.filter(keep), rows.filter(pc.invert(keep))
        if extra:
            self.con.execute(f"DELETE FROM zw_extra_{table}")
            if outside.num_rows:
                self._insert(f"zw_extra_{table}", outside)
        if not inside.num_rows:
            return
        seg = self._current(table, inside)
        self._insert(seg.name, inside, seg.summary)
        lo, hi = pc.min(inside.column("ts")).as_py(), pc.max(inside.column("ts")).as_py()
        seg.rows += inside.num_rows
        seg.min_ts = lo.timestamp() if seg.min_ts is None else min(seg.min_ts, lo.timestamp())
        seg.max_ts = hi.timestamp() if seg.max_ts is None else max(seg.max_ts, hi.timestamp())

    def _insert(self, name: str, rows: pa.Table, summary: str | None = None) -> None:
        self.con.register("zw_rows", rows)
        try:
            self.con.execute(f"INSERT INTO {name} SELECT * FROM zw_rows")
            if summary:
                self.con.execute(f"INSERT INTO {summary} {_PAIRS.format(src='zw_rows')} "
                                 "ON CONFLICT DO UPDATE SET t = greatest(t, EXCLUDED.t)")
        finally:
            self.con.unregister("zw_rows")

    def _current(self, table: str, rows: pa.Table) -> Segment:
        """The segment new rows go to; a new one once the data clock moved ``span`` on."""
        segs = self.segments[table]
        hi = max_epoch(rows)
        if segs:
            s = segs[-1]
            if s.rows + rows.num_rows <= SEGMENT_ROWS and (s.opened is None or hi - s.opened < self.span):
                return s
        self._seq += 1
        s = Segment(f"zw_seg_{table}_{self._seq}", opened=hi)
        self.con.execute(f"CREATE TABLE {s.name} AS SELECT * FROM zw_empty_{table}")
        if table == "conn" and self.gate > 1:
            s.summary = f"zw_sum_{self._seq}"
            self.con.execute(f"CREATE TABLE {s.summary} (host VARCHAR, resp_h VARCHAR, key VARCHAR, "
                             f"t DOUBLE, PRIMARY KEY (host, resp_h, key))")
        segs.append(s)
        return s

    def _layout(self, table: str) -> None:
        """``table`` as a view over its whole look-back (and this batch's extra rows)."""
        parts = [f"SELECT * FROM {s.name}" for s in self.segments[table]]
        parts.append(f"SELECT * FROM zw_extra_{table}")
        self._replace(table, "view", " UNION ALL ".join(parts))

    def _replace(self, name: str, kind: str, sql: str) -> None:
        old = self._kind.get(name)
        if old is not None and old != kind:
            self.con.execute(f"DROP {old.upper()} {name}")
        self.con.execute(f"CREATE OR REPLACE {kind.upper()} {name} AS {sql}")
        self._kind[name] = kind
