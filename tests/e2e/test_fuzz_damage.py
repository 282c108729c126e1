"""Fuzzing with real damage (issue 11): real shared files with bytes flipped, lines cut or the
gzip stream truncated. ``zeekwatch analyze`` (the command's own ``main``, in process) never
exits 1, and never loses a record that lies wholly before the damage."""

from __future__ import annotations

import gzip
import sqlite3
import zlib
from pathlib import Path

import pytest
from conftest import shared_file
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zeekwatch.cli.main import main

# (shared file, runs column, header lines that are not records)
FILES = [
    ("frank-suricata/wrccdc-2018/alerts-only.eve.ndjson", "alert_records"),
    ("zat/json/conn.log", "conn_records"),
    ("rita/proxy/conn.log", "conn_records"),
]
GZ_FILES = FILES + [("zed-sample-data/zeek-default/smtp.log.gz", "smtp_records")]
pytestmark = pytest.mark.slow  # ~80 in-process analyses
SETTINGS = settings(max_examples=8, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def analyze(path: Path, db: Path) -> tuple[int, dict]:
    try:
        main(["analyze", "-q", "--json", str(path), "--db", str(db)])
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    row = {}
    if db.exists():
        con = sqlite3.connect(db)
        con.row_factory = sqlite3.Row
        got = con.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        row = dict(got) if got else {}
        con.close()
    return code, row


def records_before(data: bytes, offset: int) -> int:
    """Record lines that end (newline included) before byte ``offset``: whole, undamaged."""
    whole = data[:offset]
    lines = whole[:whole.rfind(b"\n") + 1].split(b"\n")[:-1]
    return sum(1 for x in lines if x.strip() and not x.startswith(b"#"))


def check(code: int, row: dict, column: str, floor: int) -> None:
    assert code != 1, "analyze exited 1 (internal error) on damaged input"
    if code == 0:
        assert row.get("status") == "ok"
        assert (row.get(column) or 0) >= floor, f"{column}: {row.get(column)} < {floor} before the damage"
    else:  # refused as a whole (exit 3: e.g. the damage hit the header): nothing was lost
        assert code == 3 and floor == 0, f"exit {code} with {floor} good records before the damage"


@pytest.mark.parametrize("rel,column", FILES)
@SETTINGS
@given(data=st.data())
def test_flipped_bytes(tmp_path_factory, rel, column, data):
    raw = Path(shared_file(rel)).read_bytes()
    offsets = sorted(data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=8)))
    damaged = bytearray(raw)
    for at in offsets:
        damaged[at] = data.draw(st.integers(0, 255))
    tmp = tmp_path_factory.mktemp("flip")
    path = tmp / Path(rel).name
    path.write_bytes(bytes(damaged))
    code, row = analyze(path, tmp / "f.db")
    check(code, row, column, records_before(raw, offsets[0]))


@pytest.mark.parametrize("rel,column", FILES)
@SETTINGS
@given(data=st.data())
def test_cut_lines(tmp_path_factory, rel, column, data):
    raw = Path(shared_file(rel)).read_bytes()
    lines = raw.split(b"\n")
    i = data.draw(st.integers(0, len(lines) - 1))
    keep = data.draw(st.integers(0, max(0, len(lines[i]) - 1)))
    lines[i] = lines[i][:keep]  # a line cut short; the file goes on after it
    tail = data.draw(st.booleans())  # ... or the file ends there
    damaged = b"\n".join(lines[:i + 1] if tail else lines)
    tmp = tmp_path_factory.mktemp("cut")
    path = tmp / Path(rel).name
    path.write_bytes(damaged)
    code, row = analyze(path, tmp / "f.db")
    check(code, row, column, records_before(raw, len(b"\n".join(lines[:i])) + 1 if i else 0))


@pytest.mark.parametrize("rel,column", GZ_FILES)
@SETTINGS
@given(fraction=st.floats(0.05, 0.98))
def test_truncated_gzip(tmp_path_factory, rel, column, fraction):
    raw = Path(shared_file(rel)).read_bytes()
    packed = raw if raw[:2] == b"\x1f\x8b" else gzip.compress(raw)
    plain = gzip.decompress(packed)
    cut = packed[:max(20, int(len(packed) * fraction))]
    decoded = zlib.decompressobj(31).decompress(cut)  # what any reader could decode
    tmp = tmp_path_factory.mktemp("gz")
    path = tmp / (Path(rel).name.removesuffix(".gz") + ".gz")
    path.write_bytes(cut)
    code, row = analyze(path, tmp / "f.db")
    assert plain.startswith(decoded)
    check(code, row, column, records_before(decoded, len(decoded)))
