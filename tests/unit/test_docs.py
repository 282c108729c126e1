"""Docs are part of the feature: a page per detector, naming every parameter."""

from __future__ import annotations

from pathlib import Path

import pytest

from zeekwatch.detectors import REGISTRY

DOCS = next(p for p in Path(__file__).resolve().parents if (p / "setup.cfg").exists()) / "docs"


@pytest.mark.parametrize("det_id", sorted(REGISTRY))
def test_every_detector_has_a_page_naming_its_parameters(det_id):
    page = DOCS / "detectors" / f"{det_id}.md"
    assert page.exists(), f"docs/detectors/{det_id}.md is missing"
    text = page.read_text()
    assert text.startswith(f"# {det_id}")
    for key in REGISTRY[det_id].defaults:
        assert f"`{key}`" in text, f"{page.name} does not document `{key}`"
    assert "false positive" in text.lower()


@pytest.mark.parametrize("det_id", sorted(REGISTRY))
def test_every_detector_declares_its_metadata(det_id):
    det = REGISTRY[det_id]
    assert det.title and det.threat and det.needs and det.false_positives


@pytest.mark.parametrize("det_id", sorted(REGISTRY))
def test_detector_page_parameter_table_matches_the_declaration(det_id):
    from zeekwatch.detectors.reference import param_table

    text = (DOCS / "detectors" / f"{det_id}.md").read_text()
    assert param_table(REGISTRY[det_id]) in text, (
        f"docs/detectors/{det_id}.md: parameter table out of date; run scripts/detector_docs.py")


def test_the_architecture_page_worked_example_runs():
    """docs/architecture.md's "Adding a detector" example registers and fires as written."""
    import re
    import textwrap

    from helpers import conn, detect

    from zeekwatch.detectors import base

    text = (DOCS / "architecture.md").read_text()
    code = textwrap.dedent(re.search(r"```python\n(.*?)```", text, re.S).group(1))
    scope = {name: getattr(base, name) for name in
             ("Context", "Detector", "Param", "register", "UIDS_LIMIT", "VALUES_LIMIT")}
    try:
        exec(compile(code, "docs/architecture.md", "exec"), scope)
        rows = [conn(1000, "10.0.0.5", "198.51.100.9", 69, proto="udp", conn_state="SF"),
                conn(1001, "10.0.0.5", "10.0.0.9", 69, proto="udp", conn_state="SF")]
        found = detect("tftp_out", conn=rows)
        assert [(f.host, f.peer, f.key) for f in found] == [("10.0.0.5", "198.51.100.9", "udp/69")]
        assert "sent TFTP" in found[0].summary
    finally:
        base.REGISTRY.pop("tftp_out", None)
