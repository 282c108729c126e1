"""Rewrite the parameter table and the ATT&CK line of every docs/detectors/<id>.md from the
declarations.

    .venv/bin/python scripts/detector_docs.py          # rewrite
    .venv/bin/python scripts/detector_docs.py --check  # exit 1 if a page is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

from zeekwatch.detectors import REGISTRY
from zeekwatch.detectors.reference import replace_attack, replace_table

DOCS = Path(__file__).resolve().parent.parent / "docs" / "detectors"


def main(check: bool) -> int:
    stale = []
    for det in REGISTRY.values():
        page = DOCS / f"{det.id}.md"
        old = page.read_text() if page.exists() else f"# {det.id} — {det.title}\n"
        new = replace_attack(replace_table(old, det), det)
        if new != old:
            stale.append(page.name)
            if not check:
                page.write_text(new)
    if stale:
        print(("out of date: " if check else "rewrote: ") + ", ".join(stale))
    return 1 if (check and stale) else 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv[1:]))
