"""The typed Finding (zeekwatch.finding): what detection makes, triage reads and the store writes.

The store row of a Finding must be byte-identical to what the dict pipeline wrote before
issue 12 (``details`` as ``json.dumps(details, default=str, sort_keys=True)``, the distinct
values as a JSON list, the score terms as ``json.dumps``), and ``jsonable`` must give the
values a JSON round trip gives, so triage reads in a run what it reads from a stored row.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import sqlite3

import pytest
from conftest import shared_file

from zeekwatch.app.analyze import analyze
from zeekwatch.config import Config
from zeekwatch.finding import SCORE_COLUMNS, Finding, dump_details, dump_texts, jsonable
from zeekwatch.store.db import FINDINGS_COLUMNS

BOOKKEEPING = {"first_run", "last_run", "created_at", "updated_at"}

# the horizontal scan in slips' port-scans/horizontal/conn.log, as the dict pipeline stored it
# (zeekwatch d3eeb82, before the Finding): the columns detection and the store own
GOLDEN = {
    "id": "F58ef5cf6bd590be", "detector": "horizontal_scan", "threat": "worm",
    "title": "Horizontal scan (one port, many hosts)", "host": "10.0.2.112", "peer": None,
    "key": "tcp/80", "first_seen": "1970-01-01T00:15:28.943457Z",
    "last_seen": "1970-01-01T00:16:00.869113Z", "observed": 25.0, "threshold": 20.0,
    "distinct_total": 25, "evidence_total": 30, "status": "new", "suppressed_reason": None,
    "summary": "10.0.2.112 tried 25 distinct hosts on tcp/80 within 60 s (failed or "
               "never-resolved; threshold 20)",
    "details": '{"episode_count": 1, "episodes": [{"first": "1970-01-01T00:15:28Z", "last": '
               '"1970-01-01T00:16:00Z", "observed": 25, "threshold": 20, "window": 60.0}], '
               '"window": 60.0}',
    "distinct_values": '["108.162.206.115", "121.83.133.146", "173.247.243.173", '
                       '"174.123.154.194", "188.252.27.130", "188.252.28.130", "188.252.30.130", '
                       '"195.113.214.219", "195.113.214.221", "204.213.246.4", "211.13.204.89", '
                       '"212.67.194.161", "218.150.78.243", "49.212.198.76", "49.50.8.93", '
                       '"54.227.239.237", "62.193.227.35", "63.143.39.130", "64.34.168.92", '
                       '"69.167.173.15"]',
}


def stored_rows(db: str) -> dict[str, dict]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return {r["id"]: dict(r) for r in con.execute("SELECT * FROM findings")}
    finally:
        con.close()


@pytest.fixture(scope="module")
def horizontal(tmp_path_factory):
    """A real run: the slips horizontal scan analysed into a database (result, rows)."""
    db = str(tmp_path_factory.mktemp("finding") / "f.db")
    result = analyze([shared_file("slips/port-scans/horizontal/conn.log")], Config(), db,
                     only=["horizontal_scan"])
    return result, stored_rows(db)


def test_a_real_candidate_is_a_finding_whose_details_stay_a_dict(horizontal):
    result, _ = horizontal
    (f,) = result.findings
    assert isinstance(f, Finding) and f.stored == "new" and f.id == GOLDEN["id"]
    assert f.details == json.loads(GOLDEN["details"])  # a dict, never JSON text in the run
    assert f.values == json.loads(GOLDEN["distinct_values"])
    assert isinstance(f.score_terms, dict) and f.score_terms["threat"] == "worm"
    assert f.uids and f.community_ids  # evidence: conn uids and their flows' community ids


def test_the_store_row_is_byte_identical_to_the_dict_pipeline(horizontal):
    result, rows = horizontal
    (f,) = result.findings
    row = f.row()
    stored = rows[f.id]
    assert set(row) | BOOKKEEPING == set(FINDINGS_COLUMNS)
    for column, value in GOLDEN.items():
        assert row[column] == value, column
        assert stored[column] == value, column
    assert {k: stored[k] for k in row} == row  # what the store wrote is the Finding's row
    assert row["score_terms"] == json.dumps(f.score_terms)  # json.dumps' layout (incidents reads it)
    assert {k: stored[k] for k in SCORE_COLUMNS} == f.scores()


def test_a_stored_row_read_back_is_the_same_finding(horizontal):
    result, rows = horizontal
    (f,) = result.findings
    back = Finding.from_row({**rows[f.id], "uids": f.uids})
    assert back.row() == f.row()
    assert dataclasses.replace(back, community_ids=f.community_ids, stored=f.stored) == f


def test_a_neighbour_read_to_corroborate_skips_the_json_columns(horizontal):
    result, rows = horizontal
    (f,) = result.findings
    light = Finding.from_row({**rows[f.id], "uids": f.uids}, explain=False)
    assert (light.details, light.values, light.score_terms) == ({}, [], None)
    assert dataclasses.replace(light, details=f.details, values=f.values,
                               score_terms=f.score_terms) == Finding.from_row(
        {**rows[f.id], "uids": f.uids})


def test_a_row_with_broken_or_empty_json_reads_as_empty():
    row = {"detector": "beacon", "threat": "c2", "host": "10.0.0.5",
           "first_seen": "2024-01-01T00:00:00.000000Z", "last_seen": "2024-01-01T00:00:00.000000Z",
           "details": "{not json", "distinct_values": None, "score_terms": "", "status": None}
    f = Finding.from_row(row)
    assert (f.details, f.values, f.score_terms, f.status, f.title) == ({}, [], None, "new", "")


def test_detail_values_are_serialized_as_before_when_written():
    when = dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.timezone.utc)
    raw = {"b": (1, 2), "a": decimal.Decimal("1.5"), "when": when, "nested": {"z": {3, 3}}}
    f = Finding(detector="d", threat="c2", title="t", host="10.0.0.5",
                first_seen="2024-05-01T10:00:00.000000Z", last_seen="2024-05-01T10:00:00.000000Z",
                details=jsonable(raw))
    assert f.row()["details"] == json.dumps(raw, default=str, sort_keys=True)
    assert f.row()["details"] == dump_details(f.details)


TEXTS = [[], ["203.0.113.1"], ["a\"b", "back\\slash", "x\u00e9\u2603", "tab\tnew\nline\x00", ""],
         ["mixed", 7, None, 1.5], ["\U0001f600 beyond the BMP"]]


@pytest.mark.parametrize("values", TEXTS)
def test_texts_and_score_terms_are_written_as_json_dumps_writes_them(values):
    """The store's own encoders (``dump_texts`` of str lists, one shared encoder without the
    cycle check) write what ``json.dumps`` writes, byte for byte."""
    assert dump_texts(values) == json.dumps(values)
    terms = {"terms": [{"term": "matrix[c2][server]", "value": 4}], "names": values,
             "ratio": 0.1, "tier": "act now", "\u00e9": None}
    f = Finding(detector="d", threat="c2", title="t", host="10.0.0.5", values=values,
                first_seen="2024-05-01T10:00:00.000000Z", last_seen="2024-05-01T10:00:00.000000Z",
                score_terms=terms)
    assert f.row()["score_terms"] == f.scores()["score_terms"] == json.dumps(terms)
    assert f.row()["distinct_values"] == f.distinct_values == json.dumps(values)


CASES = [
    {"sids": (2100498, 2013028), "severity": 1, "ratio": 0.25, "name": "x\u00e9"},
    {1: "int key", 2.5: "float key"}, {True: "bool key"}, {None: "null key"},
    {"categories": {"A Network Trojan was detected": 3}, "empty": [], "none": None},
    {"odd": decimal.Decimal("7"), "day": dt.date(2024, 5, 1), "set": frozenset(),
     "big": 2**70, "neg": -0.0, "inf": float("inf")},
]


@pytest.mark.parametrize("value", CASES)
def test_jsonable_is_what_a_json_round_trip_gives(value):
    text = json.dumps(value, default=str)
    assert jsonable(value) == json.loads(text)
    assert json.dumps(jsonable(value), default=str, sort_keys=True) == \
        json.dumps(value, default=str, sort_keys=True)


def test_jsonable_refuses_keys_json_refuses():
    with pytest.raises(TypeError):
        json.dumps({(1, 2): "x"})
    with pytest.raises(TypeError, match="keys must be"):
        jsonable({(1, 2): "x"})


def test_a_run_pauses_the_garbage_collector_and_restores_it(tmp_path, monkeypatch):
    """``analyze`` runs its steps with Python's cyclic collector paused (a noisy run's
    millions of live objects were walked again by every full collection) and leaves the
    collector as it found it, on success and on failure."""
    import gc

    from zeekwatch.store.db import Store

    seen = []
    upsert = Store.upsert_findings

    def spy(self, *args, **kwargs):
        seen.append(gc.isenabled())
        return upsert(self, *args, **kwargs)

    monkeypatch.setattr(Store, "upsert_findings", spy)
    log = shared_file("slips/port-scans/horizontal/conn.log")
    assert gc.isenabled()
    analyze([log], Config(), str(tmp_path / "a.db"))
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:
        analyze([log], Config(), str(tmp_path / "b.db"))
        assert not gc.isenabled()  # a caller's choice stays
    finally:
        gc.enable()

    def fail(self, *args, **kwargs):
        raise RuntimeError("store down")

    monkeypatch.setattr(Store, "upsert_findings", fail)
    with pytest.raises(RuntimeError):
        analyze([log], Config(), str(tmp_path / "c.db"))
    assert gc.isenabled()
