"""Findings are merged, compared with the stored ones, suppressed and written set-wise
(issue 17): the database must end exactly as the per-finding flow of before left it
(``reference_findings``: ids, every column, evidence, audit, suppression hits), on real shared
data and on generated data, over several runs into the same database (new, continued and
identical findings; an allowlist rule; an analyst's status change in between).
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import reference_findings as ref
from conftest import ROOT, shared_file
from triage_helpers import config_of

from zeekwatch.config import load as load_config
from zeekwatch.engine.core import Engine
from zeekwatch.finding import Finding
from zeekwatch.readers import sniff
from zeekwatch.readers.base import IngestLog
from zeekwatch.store.db import Store
from zeekwatch.store.triage import TriageStore
from zeekwatch.triage import stage as stage_mod
from zeekwatch.triage import suppress

VOLATILE = {"created_at", "updated_at", "at", "released_at", "id_"}


def _run(db: str, paths, config, oracle: bool) -> list[Finding]:
    """One analysis run of ``paths`` into ``db``, stored by today's code or by the oracle."""
    eng = Engine(config)
    store = Store(db)
    try:
        eng.ingest([(str(p), sniff(str(p))) for p in paths], IngestLog())
        triage = stage_mod.TriageStage(config)
        run_id = store.start_run([str(p) for p in paths], "analyze", "test")
        cands = eng.detect(known_services=store.known_services())
        triage.run(eng, store, cands, run_id)
        if oracle:
            ref.upsert_findings(store, cands, run_id, config.store.merge_gap)
            ref.settle(triage, store, cands)
        else:
            store.upsert_findings(cands, run_id, config.store.merge_gap)
            triage.settle(store, cands)
        store.learn_services(eng.learned_services())
        return cands
    finally:
        eng.close()
        store.close()


def dump(db: str) -> dict:
    """Everything the finding flow writes, without wall-clock times and row ids."""
    store = Store(db)
    try:
        q = lambda sql: [{k: v for k, v in r.items() if k not in VOLATILE}  # noqa: E731
                         for r in store.db.query(sql)]
        return {
            "findings": q("SELECT * FROM findings ORDER BY id"),
            "evidence": q("SELECT * FROM evidence ORDER BY finding_id, kind, value"),
            "audit": q("SELECT finding_id, who, action, old_status, new_status, note FROM audit "
                       "ORDER BY finding_id, id"),
            "hits": q("SELECT finding_id, suppression_id, kind, reason, prior_status, prior_reason, "
                      "who, released_how FROM suppression_hits ORDER BY finding_id, id"),
        }
    finally:
        store.close()


def marks(cands: list[Finding]) -> list[tuple]:
    return sorted((c.detector, c.host, c.peer or "", c.key or "", c.first_seen, c.id, c.stored)
                  for c in cands)


def check_runs(tmp_path: Path, runs: list[list[str]], config, between=None) -> dict:
    """The same runs into two databases, one per flow; both must end the same."""
    dbs = {which: str(tmp_path / f"{which}.db") for which in ("bulk", "oracle")}
    for i, paths in enumerate(runs):
        got = {which: marks(_run(db, paths, copy.deepcopy(config), which == "oracle"))
               for which, db in dbs.items()}
        assert got["bulk"] == got["oracle"], f"run {i + 1}: candidates' ids / stored marks differ"
        if between is not None:
            for db in dbs.values():
                between(i, db)
    a, b = dump(dbs["bulk"]), dump(dbs["oracle"])
    for table in a:
        assert a[table] == b[table], f"{table} differs"
    assert a["findings"], "the scenario made no findings: it proves nothing"
    return a


def _analyst(i: int, db: str) -> None:
    """After the first run: an analyst takes a finding, and a rule suppresses a host's."""
    if i != 0:
        return
    store = Store(db)
    try:
        ts = TriageStore(store)
        rows = store.findings(order="id")
        stage_mod.change_status(ts, rows[0]["id"], "investigating", "ana", "looking")
        rule = suppress.make_rule({"cidr": rows[-1]["host"] + "/32"}, owner="ana", reason="lab",
                                  expires=None, who="ana", origin="test", now="2000-01-01T00:00:00.000000Z")
        suppress.add_rule(ts, rule, "ana")
    finally:
        store.close()


def test_real_zeek_logs_over_two_runs(tmp_path):
    """rita's three days of hourly logs: day 1, then days 1-2 (continued and same findings),
    with an analyst's changes in between."""
    base = Path(shared_file("rita/missing_host"))
    day1 = sorted(str(p) for p in (base / "2024-04-19").iterdir())
    day2 = sorted(str(p) for p in (base / "2024-04-20").iterdir())
    out = check_runs(tmp_path, [day1, day1 + day2], config_of(None), between=_analyst)
    assert {f["first_run"] for f in out["findings"]} == {1, 2}


def test_real_eve_alerts(tmp_path):
    eve = shared_file("frank-suricata/wrccdc-2018/alerts-only.eve.ndjson")
    out = check_runs(tmp_path, [[eve], [eve]], config_of(None), between=_analyst)
    assert len(out["findings"]) > 50


@pytest.fixture(scope="module")
def noisy(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("noisy") / "d"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_logs.py"), str(out), "--small", "--noisy",
                    "-q"], check=True)
    return out


def _head(src: Path, dst: Path, share: float) -> str:
    """The first ``share`` of a Zeek TSV log's records (a sensor that wrote less so far)."""
    lines = src.read_text().splitlines(keepends=True)
    header = [x for x in lines if x.startswith("#") and not x.startswith("#close")]
    body = [x for x in lines if not x.startswith("#")]
    dst.write_text("".join(header + body[:int(len(body) * share)]))
    return str(dst)


@pytest.mark.slow
def test_generated_noisy_data_grows(tmp_path, noisy):
    """~3 k findings of a busy network: 60 % of the logs, then all of them (continued episodes,
    new ones), then the same again (nothing changes)."""
    config = load_config(str(noisy / "zeekwatch.toml"))
    part = [_head(noisy / n, tmp_path / n, 0.6) for n in ("conn.log", "dns.log")]
    whole = [str(noisy / "conn.log"), str(noisy / "dns.log")]
    out = check_runs(tmp_path, [part, whole, whole], config, between=_analyst)
    assert len(out["findings"]) > 2000
    assert any(f["first_run"] == 1 and f["last_run"] == 2 for f in out["findings"])
    assert {f["status"] for f in out["findings"]} >= {"new", "suppressed", "investigating"}
