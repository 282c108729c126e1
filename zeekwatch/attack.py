"""MITRE ATT&CK (Enterprise) techniques that zeekwatch's detectors are evidence of.

Each detector declares its technique ids (``Detector.attack``); this table gives each id its
name and tactics, which the exports need (ECS ``threat.technique.*`` / ``threat.tactic.*``,
OCSF ``finding_info.attacks``). Names and tactics are those of ATT&CK Enterprise v15-v17
(https://attack.mitre.org/techniques/<id>/). A detector that names an id missing here fails
the test that checks the declarations (tests/unit/detectors/test_attack.py).
"""

from __future__ import annotations

import re

TECHNIQUE_ID = re.compile(r"^T\d{4}(\.\d{3})?$")
ATTACK_URL = "https://attack.mitre.org/techniques/{}/"
VERSION = "17"

# tactic id -> name
TACTICS = {
    "TA0001": "Initial Access", "TA0003": "Persistence", "TA0007": "Discovery",
    "TA0010": "Exfiltration", "TA0011": "Command and Control",
}

# technique id -> (name, tactic ids); a sub-technique's name is "<parent>: <sub>"
TECHNIQUES: dict[str, tuple[str, tuple[str, ...]]] = {
    "T1001": ("Data Obfuscation", ("TA0011",)),
    "T1001.003": ("Data Obfuscation: Protocol Impersonation", ("TA0011",)),
    "T1016": ("System Network Configuration Discovery", ("TA0007",)),
    "T1016.001": ("System Network Configuration Discovery: Internet Connection Discovery",
                  ("TA0007",)),
    "T1018": ("Remote System Discovery", ("TA0007",)),
    "T1029": ("Scheduled Transfer", ("TA0010",)),
    "T1046": ("Network Service Discovery", ("TA0007",)),
    "T1071": ("Application Layer Protocol", ("TA0011",)),
    "T1071.001": ("Application Layer Protocol: Web Protocols", ("TA0011",)),
    "T1071.003": ("Application Layer Protocol: Mail Protocols", ("TA0011",)),
    "T1071.004": ("Application Layer Protocol: DNS", ("TA0011",)),
    "T1095": ("Non-Application Layer Protocol", ("TA0011",)),
    "T1133": ("External Remote Services", ("TA0001", "TA0003")),
    "T1190": ("Exploit Public-Facing Application", ("TA0001",)),
    "T1566": ("Phishing", ("TA0001",)),
    "T1571": ("Non-Standard Port", ("TA0011",)),
    "T1572": ("Protocol Tunneling", ("TA0011",)),
    "T1573": ("Encrypted Channel", ("TA0011",)),
}


def technique(tid: str) -> dict:
    """``{"id", "name", "reference", "tactics": [{"id", "name"}]}`` of a known technique id."""
    name, tactics = TECHNIQUES[tid]
    return {"id": tid, "name": name, "reference": ATTACK_URL.format(tid.replace(".", "/")),
            "tactics": [{"id": t, "name": TACTICS[t]} for t in tactics]}


def techniques(ids) -> list[dict]:
    """``technique`` of each id, unknown ids kept with their id only (never dropped)."""
    out = []
    for tid in ids:
        if tid in TECHNIQUES:
            out.append(technique(tid))
        else:
            out.append({"id": tid, "name": None, "reference": ATTACK_URL.format(tid.replace(".", "/")),
                        "tactics": []})
    return out
