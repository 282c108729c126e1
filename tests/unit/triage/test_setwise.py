"""The set-wise paths of triage and incidents give what the per-row code before them gave.

Each fast path is held against the code it replaced (kept here as the reference, or still
in the product as a fallback) on generated data shaped like a noisy run's: many findings per
host, a few detectors, overlapping evidence uids, suppressed findings, window boundaries.
"""

from __future__ import annotations

import datetime as dt
import json
import dataclasses
import random

import pytest

from zeekwatch.config import from_dict
from zeekwatch.finding import Finding
from zeekwatch.store.db import Store, iso, parse_iso
from zeekwatch.store.incidents import (ISLAND_ROWS, ISLANDS, MEMBER_COLUMNS, IncidentStore,
                                       islands)
from zeekwatch.triage.incidents import _CLAMPED, _CORROBORATED, own_urgency
from zeekwatch.triage.score import NO_CORROBORATION, Corroborators, Scorer, clamp

T0 = dt.datetime(2024, 5, 1, 8, 0, tzinfo=dt.timezone.utc)
DETECTORS = ("rare_destination", "unusual_port", "outbound_ping", "c2_port", "off_hours",
             "horizontal_scan")
OPEN = ", ".join(f"'{s}'" for s in ("new", "investigating", "contained"))


def _findings(rnd: random.Random, n: int, hosts: int) -> list[Finding]:
    out = []
    for i in range(n):
        start = T0 + dt.timedelta(seconds=rnd.choice([0, 600, 3000, 3600, 3601, 7200, 9000])
                                  + rnd.randrange(0, 4) * 1800)
        end = start + dt.timedelta(seconds=rnd.choice([0, 1, 60, 3599, 3600]))
        uids = [f"C{rnd.randrange(40)}" for _ in range(rnd.randrange(0, 4))]
        out.append(Finding(threat="c2", host=f"10.0.0.{rnd.randrange(hosts)}",
                           detector=rnd.choice(DETECTORS), title="t", first_seen=iso(start),
                           last_seen=iso(end), details={}, uids=uids,
                           status=rnd.choice(["new"] * 6 + list(NO_CORROBORATION))))
    return out


def _corroborating_per_pair(scorer: Scorer, f: Finding, others) -> set[str]:
    """``Scorer._corroborating`` as it was: every finding compared with every other."""
    f0, f1 = parse_iso(f.first_seen), parse_iso(f.last_seen)
    w = dt.timedelta(seconds=scorer.window)
    dets = set()
    for g in others:
        if (g.host != f.host or g.detector == f.detector or g.detector in scorer.weak
                or g.detector in dets or g.status in NO_CORROBORATION):
            continue
        if (parse_iso(g.first_seen) <= f1 + w and parse_iso(g.last_seen) >= f0 - w
                and not (f.uids and g.uids and not set(f.uids).isdisjoint(g.uids))):
            dets.add(g.detector)
    return dets


@pytest.mark.parametrize("seed", range(6))
def test_corroborators_equal_the_per_pair_comparison(seed):
    rnd = random.Random(seed)
    scorer = Scorer(from_dict({"scoring": {"corroboration_window": rnd.choice([600, 3600])}}))
    found = _findings(rnd, 300, hosts=6)
    stored = _findings(rnd, 100, hosts=8)
    pool = Corroborators(found + stored, scorer.weak)
    for f in found + stored:
        expected = _corroborating_per_pair(scorer, f, found + stored)
        assert scorer._corroborating(f, pool) == expected
        assert scorer._corroborating(f, found + stored) == expected  # a plain list still works
    # and score_all scores with them: every term as scoring each finding alone would give
    expected = {}
    for f in found:
        g = dataclasses.replace(f)
        scorer.score(g, scorer.modifiers(g, found + stored))
        expected[id(f)] = g.score_terms
    scorer.score_all(found, stored)
    assert {id(f): f.score_terms for f in found} == expected


def test_asset_class_is_remembered_until_the_inventory_changes():
    scorer = Scorer(from_dict({}))
    assert scorer.asset_class("10.0.0.7") == ("client", "default")
    scorer.load_inventory([{"address": "10.0.0.7", "class": "core_server", "name": "db"}])
    assert scorer.asset_class("10.0.0.7") == ("core_server", "inventory 10.0.0.7 db")
    assert scorer.asset_class(["not", "hashable"]) == ("client", "default")


# -- islands ----------------------------------------------------------------------------------
def _island_db(tmp_path, rnd: random.Random, odd: bool) -> IncidentStore:
    ist = IncidentStore(Store(str(tmp_path / "i.db")))
    db = ist.db
    db.execute("CREATE TEMP TABLE zi_pending (finding_id, host, first_seen, last_seen)")
    hosts = [f"10.0.0.{i}" for i in range(5)] + ["fd00::1", "10.0.0.10"]

    def when(k):
        return iso(T0 + dt.timedelta(seconds=k * 1800 + rnd.choice([0, 0, 1, 0.000001])))

    pending = []
    for i in range(400):
        a = rnd.randrange(0, 200)
        pending.append((f"F{i:04d}", rnd.choice(hosts), when(a), when(a + rnd.randrange(0, 3))))
    if odd:  # texts that are no time (julianday NULL), equal starts, an empty host
        pending += [("Fx1", hosts[0], "garbage", "garbage"), ("Fx2", hosts[0], when(5), "zz"),
                    ("Fx3", "", when(7), when(7)), ("Fx4", hosts[1], when(9), when(9)),
                    # exactly one day apart (noon: whole julian days): no break at 86400 s
                    ("Fx5", hosts[2], "2024-05-10T12:00:00.000000Z", "2024-05-10T12:00:00.000000Z"),
                    ("Fx6", hosts[2], "2024-05-11T12:00:00.000000Z", "2024-05-11T12:00:00.000000Z")]
    db.conn.executemany("INSERT INTO temp.zi_pending VALUES (?, ?, ?, ?)", pending)
    for i in range(30):
        a = rnd.randrange(0, 200)
        last = None if odd and i % 7 == 0 else when(a + rnd.randrange(0, 5))
        db.execute("INSERT INTO incidents (id, host, first_seen, last_seen, status) "
                   "VALUES (?, ?, ?, ?, ?)",
                   [f"I{i:03d}", rnd.choice(hosts), when(a), last,
                    rnd.choice(["new", "investigating", "resolved", "contained"])])
    return ist


@pytest.mark.parametrize("seed,odd", [(s, odd) for s in range(5) for odd in (False, True)])
@pytest.mark.parametrize("window", [1800.0, 3600.0, 86400.0])
def test_islands_equal_the_window_function_sql(tmp_path, seed, odd, window):
    ist = _island_db(tmp_path, random.Random(seed), odd)
    sql = sorted(ist.db.execute(ISLANDS.format(open=OPEN), {"w": window}).fetchall(), key=repr)
    py = islands(ist.db.execute(ISLAND_ROWS.format(open=OPEN)), window)
    assert py is not None
    assert sorted(py, key=repr) == sql


def test_islands_leave_times_that_are_not_text_to_the_sql(tmp_path):
    ist = _island_db(tmp_path, random.Random(1), False)
    ist.db.execute("UPDATE incidents SET last_seen = ? WHERE id = 'I000'", [b"\x00\x01"])
    ist.db.execute("UPDATE incidents SET status = 'new' WHERE id = 'I000'")
    assert islands(ist.db.execute(ISLAND_ROWS.format(open=OPEN)), 3600.0) is None
    ist._islands(OPEN, 3600.0)  # the SQL numbers them instead
    got = sorted(ist.db.execute("SELECT * FROM temp.zi_island").fetchall(), key=repr)
    assert got == sorted(ist.db.execute(ISLANDS.format(open=OPEN), {"w": 3600.0}).fetchall(),
                         key=repr)


# -- incident members and own urgency ---------------------------------------------------------
def test_scoring_members_and_uids_equal_the_general_reads(tmp_path):
    rnd = random.Random(3)
    store = Store(str(tmp_path / "m.db"))
    ist = IncidentStore(store)
    for i, f in enumerate(_findings(rnd, 200, hosts=5)):
        fid = f"F{i:04d}"
        terms = {"terms": [{"term": "matrix[c2][client]", "value": 7}]}
        if i % 3:
            terms.update(direction=rnd.choice(["inbound", "external", None]),
                         target=rnd.choice([f.host, None, 7, True]),
                         answered=rnd.choice(["1 connection", None, False, ["a", 1]]))
        if i % 4 == 1:
            terms["terms"].append({"term": "corroborated by c2_port within 1 h", "value": 1})
        elif i % 4 == 2:  # the words, not the term: no per-finding corroboration
            terms["terms"].append({"term": "not corroborated by c2_port", "value": 0})
        text = json.dumps(terms) if i % 10 else rnd.choice([None, ""])
        store.db.execute(
            "INSERT INTO findings (id, detector, host, status, first_seen, last_seen, urgency, "
            "score_terms, details, distinct_values) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [fid, f.detector, f.host, f.status, f.first_seen, f.last_seen, 7, text,
             rnd.choice(["{}", '{"time_unknown": true}', None]), json.dumps(["203.0.113.9"])])
        store.db.conn.executemany("INSERT OR IGNORE INTO evidence VALUES (?, 'uid', ?)",
                                  [(fid, u) for u in f.uids])
    ist.assign(3600)
    ids = ist.ids_where()
    general = ist.members(ids)
    lean = ist.scoring_members(ids)
    assert [m["incident_id"] for ms in lean.values() for m in ms] == \
        [m["incident_id"] for m in general]
    drop = {"summary", "suppressed_reason"}
    assert [m for ms in lean.values() for m in ms] == \
        [{k: v for k, v in m.items() if k not in drop} for m in general]
    assert drop <= set(MEMBER_COLUMNS)
    assert {m["direction"] for ms in lean.values() for m in ms} > {"outbound", "inbound"}
    assert any(m["corroborated"] for ms in lean.values() for m in ms)
    # a score_terms value that is no text: SQLite decodes every row, as before
    store.db.execute("UPDATE findings SET score_terms = ? WHERE id = 'F0003'",
                     [b'{"target": "10.0.0.1"}'])
    assert [m for ms in ist.scoring_members(ids).values() for m in ms] == \
        [{k: v for k, v in m.items() if k not in drop} for m in ist.members(ids)]
    fids = [m["id"] for m in general[::2]]
    per_row = sorted(r for fid in fids for r in store.db.execute(
        "SELECT finding_id, value FROM evidence WHERE finding_id = ? AND kind = 'uid'", [fid]))
    assert sorted(ist.uids(fids)) == per_row


def _own_by_pattern(f: dict) -> int:
    """``own_urgency`` as it was (no cache)."""
    text = f.get("corroborated")
    if not text:
        return int(f["urgency"] or 1)
    corr = _CORROBORATED.findall(text)
    if len(corr) == 1:
        total = int(f["urgency"]) - sum(int(c) for c in _CLAMPED.findall(text))
        return clamp(total - int(corr[0]))
    terms = json.loads(text).get("terms") or []
    return clamp(sum(int(t["value"]) for t in terms
                     if not str(t["term"]).startswith(("corroborated by", "clamped"))))


def test_own_urgency_once_per_text_equals_working_it_out_each_time():
    rnd = random.Random(5)
    for _ in range(500):
        base, corr = rnd.randrange(1, 11), rnd.choice([1, 2, 3])
        terms = [{"term": "matrix[c2][client]", "value": base},
                 {"term": "corroborated by c2_port within 1 h", "value": corr}]
        if rnd.random() < 0.3:
            terms.append({"term": "corroborated by x within 1 h", "value": 1})  # by JSON
        total = sum(t["value"] for t in terms)
        if clamp(total) != total:
            terms.append({"term": "clamped to 1..10", "value": clamp(total) - total})
        f = {"urgency": clamp(total), "corroborated": json.dumps({"terms": terms})}
        assert own_urgency(f) == own_urgency(dict(f)) == _own_by_pattern(f)
    assert own_urgency({"urgency": None, "corroborated": None}) == 1


def test_ids_that_look_like_sql_are_data(tmp_path):
    store = Store(str(tmp_path / "q.db"))
    ist = IncidentStore(store)
    evil = "x'); DROP TABLE findings; --"
    assert ist.scoring_members([evil]) == {}
    assert ist.uids([evil]) == []
    assert store.db.execute("SELECT count(*) FROM findings").fetchone()[0] == 0
