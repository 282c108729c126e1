"""Shared test fixtures.

``SHARED`` is the real-data folder beside the checkout (``../shared/data``). Tests that use it
take the ``shared`` fixture or call ``shared_file(...)``: both skip with a clear reason when the
folder is absent (a fresh clone on a user's machine).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "setup.cfg").exists())
SHARED = Path(os.environ.get("ZEEKWATCH_SHARED_DATA", ROOT.parent / "shared" / "data"))
PCAPS = ROOT / "pcaps"


def shared_file(rel: str) -> str:
    p = SHARED / rel
    if not SHARED.is_dir():
        pytest.skip(f"real-data folder {SHARED} is absent (clone ../shared beside the checkout)")
    if not p.exists():
        pytest.skip(f"{p} is absent from the real-data folder")
    return str(p)


@pytest.fixture
def shared():
    if not SHARED.is_dir():
        pytest.skip(f"real-data folder {SHARED} is absent (clone ../shared beside the checkout)")
    return SHARED


def shared_files(pattern_suffixes: tuple[str, ...]) -> list[str]:
    """All files under SHARED whose name ends with one of the suffixes (for parametrising)."""
    if not SHARED.is_dir():
        return []
    out = []
    for root, _, files in os.walk(SHARED):
        for f in sorted(files):
            if f.endswith(pattern_suffixes):
                out.append(os.path.relpath(os.path.join(root, f), SHARED))
    return sorted(out)
