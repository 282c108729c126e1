"""One analysis run, end to end: plan -> read -> detect -> app usage -> suppress -> score -> store
-> incidents.

This is the library entry point behind ``zeekwatch analyze`` (and the bench script). It never
prints or exits; progress is reported through a callback.
"""

from __future__ import annotations

import gc
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

from zeekwatch import __version__
from zeekwatch.config import Config
from zeekwatch.detectors import validate as validate_detectors
from zeekwatch.engine import community
from zeekwatch.engine.core import Engine
from zeekwatch.finding import Finding
from zeekwatch.readers import plan
from zeekwatch.readers.base import IngestLog, file_size, is_gzip
from zeekwatch.store.db import Store
from zeekwatch.triage.incidents import Incidents
from zeekwatch.triage.stage import TriageStage


@dataclass
class RunResult:
    run_id: int
    log: IngestLog
    seconds: float
    findings: list[Finding] = field(default_factory=list)  # this run's, as stored (id, stored)
    new: int = 0
    updated: int = 0
    incidents: dict = field(default_factory=dict)  # counts and seconds of the incident step
    learned_networks: dict = field(default_factory=dict)  # networks.internal "auto", per sensor
    steps: dict = field(default_factory=dict)  # wall seconds of each step (read, detect, ...)
    detector_seconds: dict = field(default_factory=dict)  # wall seconds of each detector's query


JSON_TEXT_PER_ROW_BYTE = 3  # Zeek JSON / EVE text per byte of the normalized rows (keys repeated)


def table_bytes(path: str, kind: str) -> int:
    """A rough size of the normalized rows a file yields: TSV logs about their size (gzip
    about six times its size), JSON logs and EVE a third of it (every record repeats its
    keys: the bench's 2 M conn rows are 261 MB as TSV, 768 MB as Zeek JSON, and EVE's flow
    events are larger still), captures a fraction of theirs (one row per flow)."""
    size = file_size(path)
    if kind == "pcap":
        return size // 4
    text = size * 6 if is_gzip(path) else size
    return text // JSON_TEXT_PER_ROW_BYTE if kind in ("zeek_json", "eve") else text


def analyze(paths: list[str], config: Config, db_path: str,
            on_plan: Callable[[int], None] | None = None,
            progress: Callable[[int], None] | None = None,
            only: list[str] | None = None, pcap_labels: bool = False) -> RunResult:
    """Analyse ``paths`` into the database at ``db_path``.

    ``on_plan(total_bytes)`` is called once the inputs are known; ``progress(nbytes)`` as
    input is consumed. Inputs are sniffed before anything is written, so a refused file
    leaves the database untouched. ``pcap_labels`` labels capture flows with tshark's
    dissectors (``ToolMissingError`` without tshark, raised before anything is written).
    """
    started = time.monotonic()
    log = IngestLog(progress=progress)
    spark = config.engine.kind == "spark"
    if spark:  # reading happens in Spark's executors (docs/spark.md)
        from zeekwatch.engine.spark.engine import SparkEngine, plan_uris

        todo = plan_uris(paths, log, pcap_labels)
    else:
        todo = plan(paths, log)
    if on_plan is not None:
        on_plan(sum(file_size(p) for p, _ in todo))
    estimate = 0 if spark else sum(table_bytes(p, kind) for p, kind in todo)
    overrides = {}
    if pcap_labels and not spark:
        from zeekwatch.readers.pcap.reader import labelled_reader

        overrides["pcap"] = labelled_reader()
    validate_detectors(config)
    triage = TriageStage(config)  # validates [scoring] and [suppress] before any write
    incidents = Incidents(config)  # validates [incidents]
    store = Store(db_path)
    run_id = store.start_run([str(p) for p in paths], "analyze", __version__)
    engine = SparkEngine(config) if spark else Engine(config, table_bytes=estimate)
    status = "failed"
    result = RunResult(run_id, log, 0.0)
    with gc_paused():
        try:
            _run(result, _Parts(engine, store, triage, incidents), todo, overrides, only, config)
            status = "ok"
        finally:
            result.seconds = time.monotonic() - started
            store.finish_run(run_id, log, result.seconds, result.new, result.updated, status)
            engine.close()
            store.close()
    return result


@dataclass
class _Parts:
    engine: object  # Engine or SparkEngine
    store: Store
    triage: TriageStage
    incidents: Incidents


def _run(result: RunResult, p: _Parts, todo, overrides: dict, only, config: Config) -> None:
    """The steps of a run, each timed into ``result.steps``: read, detect, triage (app usage,
    suppression, scoring, evidence community ids), store, incidents, learn."""
    step = _Steps(result.steps)
    with step("read"):
        p.engine.ingest(todo, result.log, overrides)
    result.learned_networks = p.engine.learned_networks()
    with step("detect"):
        candidates = p.engine.detect(only=only, known_services=p.store.known_services())
    result.detector_seconds = p.engine.detector_seconds
    with step("triage"):
        p.triage.run(p.engine, p.store, candidates, result.run_id)  # app usage -> suppress -> score
        community.attach(p.engine.con, candidates)  # evidence community ids (exports, enrich)
    with step("store"):
        result.new, result.updated = p.store.upsert_findings(candidates, result.run_id,
                                                             config.store.merge_gap)
        p.triage.settle(p.store, candidates)
    c0 = time.process_time()
    with step("incidents"):
        result.incidents = p.incidents.build(p.store, [c.id for c in candidates]
                                             + [n.id for n in p.triage.neighbours])
    result.incidents.update(seconds=result.steps["incidents"], cpu_seconds=time.process_time() - c0)
    result.findings = candidates
    with step("learn"):
        p.store.learn_services(p.engine.learned_services(only=only))


class _Steps:
    """``with steps("name"):`` adds the block's wall seconds to ``into["name"]``."""

    def __init__(self, into: dict):
        self.into = into

    @contextmanager
    def __call__(self, name: str):
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.into[name] = self.into.get(name, 0.0) + time.monotonic() - t0


@contextmanager
def gc_paused():
    """Python's cyclic garbage collector paused for the block, its state restored after.

    A run makes millions of objects that live until it ends (query rows, findings, their
    rows and evidence tuples, incident members) and holds few cycles; every full collection
    walks all of them again, and a noisy run (20 k findings, 390 k evidence rows) triggers
    many: ~1 s of its ~9 s (+2 % peak memory without them). Garbage in cycles waits for the
    collector's next run after the block."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
