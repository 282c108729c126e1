"""Every registered detector declares the MITRE ATT&CK techniques it is evidence of, with ids
that exist in the technique table the exports use (names, tactics)."""

from __future__ import annotations

import pytest

from zeekwatch.attack import TACTICS, TECHNIQUE_ID, TECHNIQUES, technique, techniques
from zeekwatch.detectors import REGISTRY


@pytest.mark.parametrize("det_id", sorted(REGISTRY))
def test_every_detector_declares_valid_attack_techniques(det_id):
    attack = REGISTRY[det_id].attack
    assert attack, f"{det_id}: no ATT&CK technique declared (Detector.attack)"
    assert len(set(attack)) == len(attack)
    for tid in attack:
        assert TECHNIQUE_ID.match(tid), f"{det_id}: {tid!r} is not a technique id"
        assert tid in TECHNIQUES, f"{det_id}: {tid} has no name/tactics in zeekwatch.attack"
        if "." in tid:  # a sub-technique's parent is a technique too
            assert tid.split(".")[0] in TECHNIQUES


def test_table_is_consistent():
    for tid, (name, tactics) in TECHNIQUES.items():
        assert TECHNIQUE_ID.match(tid) and name and tactics
        assert set(tactics) <= set(TACTICS)
        if "." in tid:
            assert name.startswith(TECHNIQUES[tid.split(".")[0]][0] + ": ")
    t = technique("T1071.003")
    assert t["reference"] == "https://attack.mitre.org/techniques/T1071/003/"
    assert t["tactics"] == [{"id": "TA0011", "name": "Command and Control"}]
    assert techniques(["T9999"])[0]["name"] is None  # unknown ids are kept, never dropped


@pytest.mark.parametrize("det_id", sorted(REGISTRY))
def test_detector_page_names_its_attack_techniques(det_id):
    from pathlib import Path

    from zeekwatch.detectors.reference import attack_line

    page = Path(__file__).resolve().parents[3] / "docs" / "detectors" / f"{det_id}.md"
    assert attack_line(REGISTRY[det_id]) in page.read_text().splitlines(), (
        f"{page.name}: ATT&CK line out of date; run scripts/detector_docs.py")
