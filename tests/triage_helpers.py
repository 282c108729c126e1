"""Test helpers for the triage stages: run detect -> app usage -> suppress -> score -> store
exactly as ``pipeline.analyze`` does after ingest, on records given as dicts and/or real files
read by the readers."""

from __future__ import annotations

from helpers import conn, engine_with

from zeekwatch.config import Config, from_dict
from zeekwatch.engine.core import Engine
from zeekwatch.readers import sniff
from zeekwatch.readers.base import IngestLog
from zeekwatch.store.db import Store
from zeekwatch.triage.stage import TriageStage

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def config_of(config: Config | dict | None) -> Config:
    return from_dict(config) if isinstance(config, dict) else (config or Config())


def sweep(host, n=25, port=445, start=T0, step=1.0, prefix="203.0.113."):
    """A horizontal scan: ``n`` failed attempts on one port to distinct hosts."""
    return [conn(start + i * step, host, f"{prefix}{i + 1}", port, conn_state="S0")
            for i in range(n)]


def engine_from(paths=(), config=None, **tables) -> Engine:
    """An engine holding real files (through the readers) plus records given as dicts."""
    eng = engine_with(config_of(config), **tables)
    if paths:
        eng.ingest([(str(p), sniff(str(p))) for p in paths], IngestLog())
    return eng


def run_stages(db: str, eng: Engine, only=None) -> list[dict]:
    """detect -> app usage -> suppress -> score -> store -> settle; closes the engine."""
    cfg = eng.config
    stage = TriageStage(cfg)
    store = Store(db)
    try:
        run_id = store.start_run(["test"], "analyze", "test")
        cands = eng.detect(only=only, known_services=store.known_services())
        stage.run(eng, store, cands, run_id)
        store.upsert_findings(cands, run_id, cfg.store.merge_gap)
        stage.settle(store, cands)
        return cands
    finally:
        eng.close()
        store.close()


def analyze_tables(db: str, config: Config | dict | None = None, only=None, **tables) -> list[dict]:
    return run_stages(db, engine_from((), config, **tables), only=only)
