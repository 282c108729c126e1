"""The parameter reference of each detector, rendered from its declaration.

``docs/detectors/<id>.md`` carries this table (``scripts/detector_docs.py`` rewrites it; a test
checks the page against the declaration), so the docs cannot drift from the code.
"""

from __future__ import annotations

import json

from zeekwatch.attack import technique
from zeekwatch.detectors.base import Detector

HEADER = "| key | default | allowed | meaning |"


def param_table(det: Detector) -> str:
    """Markdown table: one row per parameter (name, default, allowed values, meaning)."""
    rows = [HEADER, "|---|---|---|---|"]
    for p in det.params:
        default = json.dumps(p.default, ensure_ascii=False)
        rows.append(f"| `{p.name}` | {default} | {p.allowed()} | {p.doc} |".replace("\n", " "))
    if not det.params:
        rows.append("| (none) | | | |")
    return "\n".join(rows)


def replace_table(page: str, det: Detector) -> str:
    """``page`` with its parameter table (the block starting at ``| key |``) replaced by the
    declared one; appended under a "Parameters" heading when the page has none."""
    lines = page.split("\n")
    start = next((i for i, line in enumerate(lines) if line.startswith("| key |")), None)
    if start is None:
        return page.rstrip("\n") + "\n\n## Parameters\n\n" + param_table(det) + "\n"
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "\n".join(lines[:start] + [param_table(det)] + lines[end:])


ATTACK_PREFIX = "**ATT&CK**"


def attack_line(det: Detector) -> str:
    """The page's ATT&CK line: each declared technique with its name, link and tactics."""
    items = []
    for tid in det.attack:
        t = technique(tid)
        tactics = ", ".join(x["name"] for x in t["tactics"])
        items.append(f"[{tid} {t['name']}]({t['reference']}) ({tactics})")
    return f"{ATTACK_PREFIX} " + "; ".join(items) + "."


def replace_attack(page: str, det: Detector) -> str:
    """``page`` with its ATT&CK line replaced by the declared one; inserted before the
    "**Needs**" paragraph (else before the parameter table) when the page has none."""
    lines = page.split("\n")
    for i, line in enumerate(lines):
        if line.startswith(ATTACK_PREFIX):
            lines[i] = attack_line(det)
            return "\n".join(lines)
    at = next((i for i, line in enumerate(lines) if line.startswith("**Needs**")), None)
    if at is None:
        at = next((i for i, line in enumerate(lines) if line.startswith("| key |")), len(lines))
    return "\n".join(lines[:at] + [attack_line(det), ""] + lines[at:])
