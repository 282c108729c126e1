"""Exports of stored findings: ECS documents validate against the ECS field reference, OCSF
events against the OCSF 1.7.0 Detection Finding schema, and every format (and follow --jsonl)
carries the same fields: ATT&CK, evidence uids, community ids, score terms."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from functools import lru_cache
from pathlib import Path

import jsonschema
import pytest
from conftest import shared_file

from zeekwatch.detectors import REGISTRY
from zeekwatch.export import ecs, ocsf

ROOT = Path(__file__).resolve().parents[3]
EXE = ROOT / ".venv" / "bin" / "zeekwatch"
ECS_FLAT = ROOT / "tests" / "schemas" / "ecs" / "ecs_flat-9.4.0.json"
ISO = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
NUMERIC = {"long": "integer", "integer": "integer", "short": "integer", "byte": "integer",
           "unsigned_long": "integer", "float": "number", "double": "number",
           "scaled_float": "number", "half_float": "number"}


def _leaf(spec: dict) -> dict:
    t = spec["type"]
    if t in NUMERIC:
        leaf = {"type": NUMERIC[t]}
    elif t == "boolean":
        leaf = {"type": "boolean"}
    elif t == "date":
        leaf = {"type": "string", "pattern": ISO}
    elif t == "ip":
        leaf = {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}
    elif t in ("object", "flattened", "nested", "geo_point"):
        leaf = {"type": "object"}
    else:  # keyword, constant_keyword, wildcard, match_only_text, text
        leaf = {"type": "string"}
    if spec.get("allowed_values"):
        leaf["enum"] = spec["allowed_values"]
    if "array" in spec.get("normalize", []):
        return {"type": "array", "items": leaf}
    return {"anyOf": [leaf, {"type": "array", "items": leaf}]}  # any ES field may hold a list


@lru_cache(maxsize=1)
def ecs_schema() -> dict:
    """A strict JSON Schema from ECS's own field reference (ecs_flat): every field we write
    must be an ECS field of the right type and allowed value; custom fields only under
    ``zeekwatch.*`` (ECS's advice for custom fields)."""
    fields = json.loads(ECS_FLAT.read_text())["fields"]
    root = {"type": "object", "properties": {}, "additionalProperties": False,
            "required": ["@timestamp", "ecs", "event", "message"]}
    for name, spec in sorted(fields.items()):
        node = root
        parts = name.split(".") if name != "@timestamp" else ["@timestamp"]
        for p in parts[:-1]:
            child = node["properties"].setdefault(p, {"type": "object", "properties": {},
                                                      "additionalProperties": False})
            child.setdefault("properties", {})
            node = child
        node["properties"].setdefault(parts[-1], _leaf(spec))
    root["properties"]["zeekwatch"] = {"type": "object"}
    return root


def _strict(schema):
    """pydantic's schema of the OCSF models, with unknown attributes refused."""
    if isinstance(schema, dict):
        if schema.get("properties"):  # OCSF's free-form ``object`` type stays open
            schema["additionalProperties"] = False
        for v in schema.values():
            _strict(v)
    elif isinstance(schema, list):
        for v in schema:
            _strict(v)
    return schema


@lru_cache(maxsize=1)
def ocsf_model():
    from ocsf.v1_7_0.events import DetectionFinding

    return DetectionFinding


@lru_cache(maxsize=1)
def ocsf_schema() -> dict:
    schema = _strict(ocsf_model().model_json_schema())
    # what the Detection Finding class requires in the published schema must be required here
    assert {"class_uid", "category_uid", "severity_id", "time", "metadata",
            "finding_info"} <= set(schema["required"])
    return schema


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """Findings of several detectors: a horizontal scan (Zeek TSV), Suricata alerts (EVE),
    a SYN scan and IRC from captures (community ids computed, pcap flows have none)."""
    d = tmp_path_factory.mktemp("exports")
    path = str(d / "f.db")
    inputs = [shared_file("slips/port-scans/horizontal/conn.log"),
              shared_file("frank-suricata/honeypot-2018/alerts-only.eve.ndjson"),
              shared_file("malcolm-pcap/plugins/bro-simple-scan/port_scan.pcap"),
              shared_file("zeek/traces/irc-basic.pcap")]
    r = subprocess.run([str(EXE), "analyze", *inputs, "--db", path, "--json", "-q",
                        "--internal", "10.0.0.0/8", "--internal", "192.168.0.0/16",
                        "--internal", "172.16.0.0/12"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return path


def export(db: str, fmt: str) -> str:
    r = subprocess.run([str(EXE), "findings", "export", "--format", fmt, "--db", db],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_ecs_documents_validate_against_the_ecs_field_reference(db):
    docs = [json.loads(x) for x in export(db, "ecs").splitlines()]
    assert len({d["rule"]["id"] for d in docs}) >= 3
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    validator = jsonschema.Draft202012Validator(ecs_schema(), format_checker=checker)
    for d in docs:
        errors = sorted(validator.iter_errors(d), key=str)
        assert not errors, [f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors[:5]]
        assert d["event"]["kind"] == "alert"
        assert d["event"]["category"] == ["network", "intrusion_detection"]
        assert d["source"]["ip"] in d["related"]["ip"]
        assert 1 <= d["event"]["severity"] <= 10
        techniques = d["threat"]["technique"]["id"] + d["threat"]["technique"].get(
            "subtechnique", {}).get("id", [])
        declared = REGISTRY[d["rule"]["id"]].attack
        # a sub-technique comes with its technique, as ECS nests them
        assert set(techniques) == set(declared) | {t.split(".")[0] for t in declared}
    # the validator does refuse what ECS does not define
    bad = dict(docs[0], event=dict(docs[0]["event"], kind="finding"))
    assert list(validator.iter_errors(bad))
    bad = dict(docs[0], sourceip="10.0.0.1")
    assert list(validator.iter_errors(bad))


def test_ocsf_events_validate_against_the_detection_finding_schema(db):
    events = [json.loads(x) for x in export(db, "ocsf").splitlines()]
    validator = jsonschema.Draft202012Validator(ocsf_schema())
    for e in events:
        errors = sorted(validator.iter_errors(e), key=str)
        assert not errors, [f"{'.'.join(map(str, x.path))}: {x.message}" for x in errors[:5]]
        ocsf_model().model_validate(e)  # enums and types by the published schema's models
        assert (e["class_uid"], e["category_uid"], e["type_uid"]) == (2004, 2, 200401)
        assert 1 <= e["severity_id"] <= 5
        attacks = e["finding_info"]["attacks"]
        assert {a.get("sub_technique", a["technique"])["uid"] for a in attacks} == \
            set(REGISTRY[e["finding_info"]["analytic"]["uid"]].attack)
    bad = dict(events[0], finding_info=dict(events[0]["finding_info"], titel="x"))
    assert list(validator.iter_errors(bad))


def test_every_format_carries_the_same_fields(db):
    recs = {r["id"]: r for r in map(json.loads, export(db, "jsonl").splitlines())}
    docs = {d["event"]["id"]: d for d in map(json.loads, export(db, "ecs").splitlines())}
    events = {e["finding_info"]["uid"]: e for e in map(json.loads, export(db, "ocsf").splitlines())}
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(export(db, "csv"), newline=""))}
    assert set(recs) == set(docs) == set(events) == set(rows)
    with_cids = 0
    for fid, rec in recs.items():
        ev = rec["evidence"]
        assert ev["uids"], fid
        with_cids += bool(ev["community_ids"])
        assert all(re.match(r"^1:[A-Za-z0-9+/]{27}=$", c) for c in ev["community_ids"])
        z = docs[fid]["zeekwatch"]
        assert z["evidence"]["uids"] == ev["uids"]
        assert docs[fid]["network"].get("community_id", []) == ev["community_ids"]
        u = events[fid]["unmapped"]["zeekwatch"]
        assert u["evidence_uids"] == ev["uids"]
        assert u.get("community_ids", []) == ev["community_ids"]
        assert z["score_terms"] == u["score_terms"] == rec["score_terms"]["terms"]
        assert rows[fid]["evidence_uids"].split() == ev["uids"]
        assert rows[fid]["community_ids"].split() == ev["community_ids"]
        assert rows[fid]["attack_techniques"].split() == [t["id"] for t in rec["attack"]]
    assert with_cids == len(recs)  # Zeek, EVE and capture evidence all get community ids


def test_mapping_of_urgency_and_status():
    assert [ocsf.severity_id(u) for u in (1, 3, 4, 5, 6, 7, 8, 10)] == [2, 2, 3, 3, 4, 4, 5, 5]
    rec = {"id": "F1", "detector": "horizontal_scan", "threat": "worm", "host": "10.0.0.1",
           "peer": None, "key": "80/tcp", "first_seen": "2024-01-01T00:00:00.000000Z",
           "last_seen": "2024-01-01T00:01:00.000000Z", "urgency": 9, "tier": 3,
           "status": "false_positive", "summary": "s", "title": "t", "attack": [],
           "evidence": {"uids": [], "community_ids": [], "values": []}, "score_terms": None,
           "incident": {"id": "I1", "playbook": ["isolate the host", "reimage"]}}
    e = ocsf.event(rec)
    assert (e["activity_id"], e["status_id"], e["status_detail"]) == (3, 4, "false_positive")
    assert e["remediation"]["desc"] == "isolate the host\nreimage"
    d = ecs.document(rec)
    assert d["zeekwatch"]["incident"]["playbook"] == ["isolate the host", "reimage"]
    assert "destination" not in d and d["related"]["ip"] == ["10.0.0.1"]


def test_incident_and_playbook_reach_every_format(db, tmp_path):
    """The incidents that analyze built (incidents, incident_findings): a finding's incident and
    its playbook steps are in every export."""
    import sqlite3

    from zeekwatch.export.record import playbook_steps

    con = sqlite3.connect(db)
    fid, iid, text = con.execute(
        "SELECT f.finding_id, i.id, i.playbook FROM incident_findings f "
        "JOIN incidents i ON i.id = f.incident_id WHERE i.playbook <> '' "
        "ORDER BY f.finding_id LIMIT 1").fetchone()
    con.close()
    steps = playbook_steps(text)
    assert len(steps) >= 2
    copy = db
    rec = next(r for r in map(json.loads, export(copy, "jsonl").splitlines()) if r["id"] == fid)
    assert rec["incident"]["id"] == iid and rec["incident"]["playbook"] == steps
    doc = next(d for d in map(json.loads, export(copy, "ecs").splitlines()) if d["event"]["id"] == fid)
    assert doc["zeekwatch"]["incident"]["playbook"] == steps
    ev = next(e for e in map(json.loads, export(copy, "ocsf").splitlines())
              if e["finding_info"]["uid"] == fid)
    assert ev["remediation"]["desc"] == "\n".join(steps)
    row = next(r for r in csv.DictReader(io.StringIO(export(copy, "csv"), newline=""))
               if r["id"] == fid)
    assert row["incident_id"] == iid and row["playbook"].splitlines() == steps
    jsonschema.Draft202012Validator(ocsf_schema()).validate(ev)
