"""The follow loop: poll → parse → stage → detect → triage → commit, once per micro-batch.

``Follower.run`` is the library entry point behind ``zeekwatch follow``. It never prints or
exits: each committed batch is reported to ``on_batch``; ``stop()`` (from a signal handler)
ends the loop after the batch in progress has been committed.

Exactly-once: the offsets of the lines a batch read are committed with that batch's findings,
run counters and rejects in one SQLite transaction (``FollowStore.commit_batch``). A batch
that did not commit is read again after a restart; re-detection is idempotent (findings have
stable ids and merge by episode). After a restart the look-back is rebuilt from each file's
replay offset (the earliest line still inside the look-back) before the first new line is
read; replayed rows are neither counted nor detected on their own again.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import pyarrow as pa

from zeekwatch import __version__
from zeekwatch.app.follow.lookback import LATE, Lookback, max_epoch
from zeekwatch.app.follow.parse import BufferParser
from zeekwatch.app.follow.tail import MAX_READ, Mark, Read, Tailer
from zeekwatch.config import Config
from zeekwatch.detectors import REGISTRY
from zeekwatch.engine import community
from zeekwatch.errors import ConfigError, InputError, StoreError
from zeekwatch.finding import Finding
from zeekwatch.readers import sniff
from zeekwatch.readers.base import IngestLog
from zeekwatch.store.db import Store
from zeekwatch.store.follow import FollowStore
from zeekwatch.triage.incidents import Incidents
from zeekwatch.triage.stage import TriageStage

# Detectors declared ``whole_data`` (prevalence across hosts, a learned baseline, counts per
# night) run over the whole look-back every ``population_interval`` seconds (300 by default;
# 0: never); see docs/follow.md.
POPULATION_INTERVAL = 300.0
NOTES_KEPT = 200


@dataclass
class FollowOptions:
    interval: float = 1.0  # seconds between micro-batches
    lookback: float = 300.0  # seconds of data time kept for windows and late rows
    once: bool = False  # process what is there, then exit
    population_interval: float = POPULATION_INTERVAL  # seconds between whole-data passes; 0: never
    grace: float | None = None  # seconds a rotated file may stay idle before it is closed
    only: list[str] | None = None  # detector ids (default: every enabled one)
    max_read: int = MAX_READ


@dataclass
class BatchReport:
    number: int
    seconds: float
    records: Counter = field(default_factory=Counter)  # rows read in this batch, per table
    candidates: int = 0
    new: int = 0
    updated: int = 0
    changed: list[dict] = field(default_factory=list)  # stored rows of new or grown findings
    lag: float | None = None  # wall clock minus the newest data timestamp
    files: int = 0
    lookback_rows: int = 0
    population: bool = False
    events: list[str] = field(default_factory=list)
    timing: dict = field(default_factory=dict)  # seconds per phase: read, stage, detect, commit
    reads: list = field(default_factory=list)  # the committed reads (tail.Read), for --enrich-dir


@dataclass
class FollowResult:
    run_id: int
    batches: int = 0
    records: Counter = field(default_factory=Counter)
    rejects: int = 0
    new: int = 0
    updated: int = 0
    seconds: float = 0.0
    live: list[str] = field(default_factory=list)  # detectors run on every micro-batch
    periodic: list[str] = field(default_factory=list)  # whole-data detectors (population passes)
    population_interval: float = 0.0
    population_runs: int = 0  # whole-data passes made


@dataclass
class DetectorPlan:
    batch: list[str]  # run on every micro-batch's slice
    whole: list[str]  # run on the whole look-back every population_interval
    window: float  # longest window of the windowed detectors (seconds)
    gate: int  # smallest distinct-count threshold of the windowed detectors


def detector_plan(config: Config, only: list[str] | None) -> DetectorPlan:
    ids = [d for d in REGISTRY if config.enabled(d) and (not only or d in only)]
    unknown = sorted(set(only or ()) - set(REGISTRY))
    if unknown:
        raise ConfigError(f"unknown detector(s): {', '.join(unknown)}")
    windows, gates = [], []
    for d in ids:
        det = REGISTRY[d]
        if det.windowed:
            params = config.params(d, det.params)
            windows.append(float(params["window"]))
            if det.threshold:
                gates.append(int(params[det.threshold]))
    return DetectorPlan([d for d in ids if not REGISTRY[d].whole_data],
                        [d for d in ids if REGISTRY[d].whole_data],
                        max(windows, default=60.0), min(gates, default=1) if windows else 1)


class _Clock:
    """Adds the seconds since the previous call to ``timing[phase]``."""

    def __init__(self, timing: dict):
        self.timing, self.last = timing, time.monotonic()

    def __call__(self, phase: str) -> None:
        now = time.monotonic()
        self.timing[phase] = round(self.timing.get(phase, 0.0) + now - self.last, 4)
        self.last = now


class Follower:
    def __init__(self, paths: list[str], config: Config, db_path: str,
                 options: FollowOptions | None = None,
                 on_batch: Callable[[BatchReport], None] | None = None):
        self.paths = [str(p) for p in paths]
        self.config, self.db_path = config, str(db_path)
        self.opt = options or FollowOptions()
        self.on_batch = on_batch
        self.plan = detector_plan(config, self.opt.only)
        self.batch_ids, self.population_ids, self.window = self.plan.batch, self.plan.whole, self.plan.window
        if self.opt.lookback < self.window + LATE:
            raise ConfigError(f"--lookback {self.opt.lookback:g} s is shorter than the longest "
                              f"detector window ({self.window:g} s) plus {LATE:g} s")
        self.triage = TriageStage(config)  # validates [scoring] and [suppress] before any write
        self.incidents = Incidents(config)  # validates [incidents]
        self._stopping = False
        self.log = IngestLog()
        self.notes: list[str] = []

    def stop(self) -> None:
        """Finish the batch in progress, commit it, and return from ``run`` (signal-safe)."""
        self._stopping = True

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> FollowResult:
        """Follow until ``stop()`` (or, with ``once``, until everything there is read)."""
        self._check_inputs()
        lock = self._lock()
        try:
            self._open()
        except BaseException:
            lock.close()
            raise
        status = "failed"
        try:
            self._restore()
            self._loop()
            status = "ok"
        finally:
            self.result.seconds = time.monotonic() - self._started
            self.result.rejects = self.log.reject_count
            try:
                self.fstore.finish(self.result.run_id, self._run_values(), status)
            finally:
                self.tailer.close()
                self.parser.close()
                self.lookback.close()
                self.store.close()
                lock.close()
        return self.result

    def _open(self) -> None:
        """The store (a run row), the tailer, the parser and the look-back engine."""
        self._started = time.monotonic()
        self.store = Store(self.db_path)
        self.fstore = FollowStore(self.store)
        self.fstore.mark_interrupted()
        self.result = FollowResult(self.store.start_run(self.paths, "follow", __version__),
                                   live=list(self.batch_ids), periodic=list(self.population_ids),
                                   population_interval=self.opt.population_interval)
        self.parser = BufferParser()
        grace = self.opt.grace if self.opt.grace is not None else max(2.0, 3 * self.opt.interval)
        self.tailer = Tailer(self.paths, self.parser.sniff, grace=grace, max_read=self.opt.max_read)
        self.lookback = Lookback(self.config, self.opt.lookback, self.window, self.plan.gate)
        self._committed: dict[tuple[int, int], dict] = {}
        self._last_population = time.monotonic()
        self._rows_since_population = 0

    def _check_inputs(self) -> None:
        """A file named on the command line that exists and is not a log is refused before
        anything is written, as ``analyze`` does (a file that does not exist yet is awaited)."""
        for path in self.paths:
            if os.path.isfile(path) and os.path.getsize(path) and sniff(path) == "pcap":
                raise InputError(path, "a capture: follow reads logs (use `zeekwatch analyze`)")

    def _lock(self):
        lock = open(self.db_path + ".follow-lock", "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise StoreError(f"{self.db_path}: another `zeekwatch follow` is writing to this "
                             f"database") from None
        return lock

    def _loop(self) -> None:
        number = 0
        while not self._stopping:
            t0 = time.monotonic()
            reads = self.tailer.poll(final=self.opt.once)
            number += 1
            report = self._batch(number, reads)
            if self._population_due(t0):
                self._population(report)
            if report is not None and self.on_batch is not None:
                self.on_batch(report)
            if self.opt.once and not reads and not any(
                    s.state == "draining" for s in self.tailer.streams.values()):
                break
            if self.opt.once or any(len(r.data) >= self.opt.max_read // 2 for r in reads):
                continue  # a backlog, or --once: read on at once
            while not self._stopping and time.monotonic() - t0 < self.opt.interval:
                time.sleep(min(0.05, self.opt.interval))

    # -- restart ----------------------------------------------------------------------------
    def _restore(self) -> None:
        replays = self.tailer.restore(self.fstore.checkpoints())
        known = [s.max_ts for s in self.tailer.streams.values() if s.max_ts is not None]
        self.lookback.max_ts = max(known) if known else None
        scratch = IngestLog()
        for stream in replays:
            for read in self.tailer.replay_reads(stream):
                tables = self._parse(read, scratch)
                if tables:
                    self.lookback.replay(tables)
        self.lookback.evict()
        self.notes.extend(self.tailer.events)
        self.tailer.events.clear()
        self._committed = {(r["dev"], r["inode"]): r for r in
                           (s.checkpoint() for s in self.tailer.streams.values())}

    # -- one batch --------------------------------------------------------------------------
    def _parse(self, read: Read, log: IngestLog) -> dict[str, pa.Table]:
        s = read.stream
        if read.overlong:
            log.reject(s.path, read.overlong, f"line longer than {self.opt.max_read} bytes; skipped")
        if not read.data:
            return {}
        chunks = self.parser.parse(s.kind, s.path, read.data, read.first_line, read.header, log)
        out: dict[str, list] = {}
        for table, chunk in chunks:
            out.setdefault(table, []).append(chunk)
        return {t: pa.concat_tables(cs) if len(cs) > 1 else cs[0] for t, cs in out.items()}

    def _batch(self, number: int, reads: list[Read]) -> BatchReport | None:
        t0 = time.monotonic()
        report = BatchReport(number, 0.0)
        parts: dict[str, list] = {}
        clock = _Clock(report.timing)
        for read in reads:
            tables = self._parse(read, self.log)
            stamps = [m for m in (max_epoch(t) for t in tables.values()) if m is not None]
            self._mark(read, max(stamps) if stamps else None)
            for t, table in tables.items():
                parts.setdefault(t, []).append(table)
                report.records[t] += table.num_rows
        new = {t: pa.concat_tables(cs) if len(cs) > 1 else cs[0] for t, cs in parts.items()}
        clock("parse")
        candidates: list[Finding] = []
        if any(t.num_rows for t in new.values()):
            self.lookback.stage(new)
            clock("stage")
            candidates = self._detect(self.batch_ids, clock)
            self._rows_since_population += sum(t.num_rows for t in new.values())
        self._commit(candidates, report)
        clock("commit")
        self.lookback.evict()
        clock("evict")
        if not reads and not candidates and not report.events:
            return None
        report.seconds = time.monotonic() - t0
        report.reads = reads
        return report

    def _mark(self, read: Read, max_ts: float | None) -> None:
        s = read.stream
        s.marks.append(Mark(read.offset, read.first_line, read.header, max_ts))
        if max_ts is not None and (s.max_ts is None or max_ts > s.max_ts):
            s.max_ts = max_ts

    def _detect(self, ids: list[str], clock=None) -> list[Finding]:
        if not ids:
            return []
        engine = self.lookback.engine
        candidates = engine.detect(only=ids, known_services=self.store.known_services())
        if clock:
            clock("detect")
        if candidates:
            self.triage.run(engine, self.store, candidates, self.result.run_id)
            community.attach(engine.con, candidates)  # evidence community ids (exports, enrich)
            if clock:
                clock("triage")
        return candidates

    def _commit(self, candidates: list[Finding], report: BatchReport) -> None:
        horizon = self.lookback.horizon
        for s in self.tailer.streams.values():
            s.expire(horizon)
        self.tailer.forget_gone()
        rows = {(r["dev"], r["inode"]): r for r in self.tailer.checkpoints()}
        changed = [r for k, r in rows.items() if self._committed.get(k) != r]
        drop = set(self.tailer.dropped)
        report.events = list(self.tailer.events)
        self.notes = (self.notes + report.events)[-NOTES_KEPT:]
        self.tailer.events.clear()
        for t, n in report.records.items():
            self.result.records[t] += n
        if not (candidates or changed or drop or self.log.rejects):
            return
        new, updated = self.fstore.commit_batch(
            candidates, self.result.run_id, self.config.store.merge_gap, changed, drop,
            self._run_values(), self.log.rejects)
        self._committed = rows
        self.tailer.dropped -= drop
        self.log.rejects.clear()
        if candidates:
            self.triage.settle(self.store, candidates)
            self.incidents.build(self.store, [c.id for c in candidates]
                                 + [n.id for n in self.triage.neighbours])
        self.result.new += new
        self.result.updated += updated
        report.candidates, report.new, report.updated = len(candidates), new, updated
        report.changed = [dict(self.store.get(c.id), change=c.stored) for c in candidates
                          if c.stored in ("new", "updated") and c.id]
        self.result.batches += 1
        report.lag = None if self.lookback.max_ts is None else time.time() - self.lookback.max_ts
        report.files = sum(1 for s in self.tailer.streams.values() if s.state != "done")
        report.lookback_rows = self.lookback.rows()

    def _run_values(self) -> dict:
        """The run row's counters so far (``commit_batch`` adds the batch's findings)."""
        notes = list(dict.fromkeys(self.log.notes))[-NOTES_KEPT:] + self.notes[-NOTES_KEPT:]
        return {"records": self.result.records, "rejects": self.log.reject_count,
                "skipped": self.log.skipped + self.tailer.skipped, "notes": notes,
                "findings_new": self.result.new, "findings_updated": self.result.updated,
                "seconds": time.monotonic() - self._started}

    # -- whole-data detectors ---------------------------------------------------------------
    def _population_due(self, now: float) -> bool:
        every = self.opt.population_interval
        if not every or not self.population_ids or not self._rows_since_population:
            return False
        return now - self._last_population >= every or (self.opt.once and self._idle())

    def _idle(self) -> bool:
        return not any(s.state == "draining" for s in self.tailer.streams.values())

    def _population(self, report: BatchReport | None) -> None:
        self._last_population = time.monotonic()
        self._rows_since_population = 0
        self.result.population_runs += 1
        self.lookback.full()
        candidates = self._detect(self.population_ids)
        sub = BatchReport(report.number if report else 0, 0.0, population=True)
        self._commit(candidates, sub)
        self.store.learn_services(self.lookback.engine.learned_services(only=self.population_ids))
        if report is not None:
            report.changed += sub.changed
            report.new += sub.new
            report.updated += sub.updated
            report.population = True
