"""``enrich`` of Zeek TSV against a line-by-line reference: every line comes back byte for byte,
a record with its ``zw.*`` columns, whatever the block boundaries (tiny blocks cut lines and
header blocks anywhere), several header blocks, unset and empty fields, damaged lines, CRLF, no
trailing newline, gzip in and out; and the pieces around it (reading ahead, writing behind)."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys

import pytest

from zeekwatch.app.enrich import run, tsv
from zeekwatch.app.enrich.annotate import Annotator, Citation
from zeekwatch.app.enrich.render import escape

USAGE = {"10.0.0.7": "p2p:bittorrent"}  # host -> label, in use from ts 100 to 200
CITED = {"Cu1": Citation(("F1",), ("scan",), ("T1046",), 5, 2, ()),
         "Cu2": Citation(("F1", "F2"), ("a", "b"), (), None, 3, ("known\tscanner", "x\\y")),
         "1:cid=": Citation(("F3",), ("c",), ("T1",), 1, None, ())}


class StubAnnotator:
    """The Annotator's interface: addresses by prefix, one host with app usage, three keys."""

    cited = CITED
    usage = {h: ([100.0], [(100.0, 200.0, label)]) for h, label in USAGE.items()}

    def address(self, addr):
        if not addr:
            return "-", None
        if addr.startswith("10."):
            return "internal", "server" if addr.endswith(".1") else "client"
        return "external", None

    def app(self, host, ts):
        return USAGE.get(host) if ts is not None and 100 <= ts <= 200 else None

    citation = Annotator.citation  # the findings of every cited key (uid, community id) together


def header(fields, sep="\t", unset="-"):
    return ("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n"
            f"#unset_field\t{unset}\n#path\tconn\n#open\t2024-01-01-00-00-00\n"
            "#fields\t" + "\t".join(fields) + "\n#types\t" + "\t".join("string" for _ in fields)
            + "\n")


F1 = ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "service"]
F2 = ["uid", "community_id", "id.resp_h", "id.orig_h", "ts"]  # another order, no orig_p
LOG = (header(F1) + "150.5\tCu1\t10.0.0.7\t1\t8.8.8.8\thttp\n"
       "99\tCx\t10.0.0.7\t2\t10.0.0.1\t-\n"
       "abc\tCu2\t10.0.0.7\t3\t(empty)\t(empty)\n"
       "\n"
       "150\tCshort\t10.0.0.2\n"
       "150\tClong\t10.0.0.2\t4\t1.1.1.1\tdns\textra\n"
       "1_5_0\t-\t-\t-\t-\t-\r\n"
       "#close\t2024\n# a comment\n"
       + header(F2, unset="?") + "Cu2\t1:cid=\t10.0.0.1\t 10.0.0.7 \t150\n"
       "Cz\t1:cid=\tfe80::1\t10.0.0.7\t-\n"
       "Cz\t-\t\t\t160")  # no trailing newline


def reference(text: str) -> bytes:
    """The enriched log, line by line in plain Python."""
    ann, out, fields, unset = StubAnnotator(), [], None, "-"
    for line in text.split("\n"):
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
            line += "".join("\tzw." + n for n, _ in tsv.FIELDS)
        elif line.startswith("#types"):
            line += "".join("\t" + t for _, t in tsv.FIELDS)
        elif line.startswith("#unset_field"):
            unset = line.split("\t")[1]
        elif not line.startswith("#") and fields and line.count("\t") == len(fields) - 1:
            line += "\t" + "\t".join(_added(dict(zip(fields, line.split("\t"))), ann, unset))
        out.append(line)
    return "\n".join(out).encode()


def _added(row: dict, ann, unset: str) -> list[str]:
    sides, assets = [], []
    for key in ("id.orig_h", "id.resp_h"):
        side, asset = ann.address(row.get(key, "").strip() or None)
        sides.append(unset if side == "-" else side)
        assets.append(asset or unset)
    try:
        ts = float(row.get("ts", ""))
    except ValueError:
        ts = None
    label = ann.app(row["id.orig_h"], ts) if row.get("id.orig_h") in ann.usage else None
    cite = ann.citation(row.get("uid"), row.get("community_id"))
    if cite is None:
        cited = [unset] * 6
    else:
        h = type("H", (), {"unset_field": unset, "set_separator": ",", "empty_field": "(empty)"})
        cited = tsv._cited_bytes(cite, h, "\t").decode().split("\t")
    return sides + assets + [escape(label, "\t") if label else unset] + cited


def enriched(data: bytes, monkeypatch, block: int) -> tuple[bytes, tsv.Counts]:
    monkeypatch.setattr(tsv, "BLOCK", block)
    out, counts = io.BytesIO(), tsv.Counts()
    tsv.TsvEnricher(StubAnnotator(), out, counts).run(io.BytesIO(data))
    return out.getvalue(), counts


@pytest.mark.parametrize("block", [7, 64, 1000, 8 << 20])
def test_every_line_as_the_line_by_line_reference(block, monkeypatch):
    got, counts = enriched(LOG.encode(), monkeypatch, block)
    assert got == reference(LOG)
    assert (counts.records, counts.rejects) == (7, 2)  # rejects: short, long (CRLF: a record)
    assert counts.cited == 4  # Cu1, Cu2 (by uid), Cu2 and the 1:cid= lines of the second block


def test_many_blocks_of_records(monkeypatch):
    rows = [f"{90 + i % 30}.5\tC{i}\t10.0.{i % 3}.{i % 9}\t{i}\t{i % 7}.8.8.8\t-" for i in range(3000)]
    rows[1234] = rows[1234].replace("\t-", "")  # one short line among them
    text = header(F1) + "\n".join(rows) + "\n"
    assert enriched(text.encode(), monkeypatch, 4096)[0] == reference(text)


def test_gzip_in_gzip_out_same_content(tmp_path):
    src = tmp_path / "in" / "conn.log.gz"
    src.parent.mkdir()
    src.write_bytes(gzip.compress(LOG.encode(), 6))
    res = run.enrich_file(StubAnnotator(), str(src), str(tmp_path / "out" / "conn.log.gz"),
                          "zeek_tsv")
    data = (tmp_path / "out" / "conn.log.gz").read_bytes()
    assert data[:2] == b"\x1f\x8b" and gzip.decompress(data) == reference(LOG)
    assert (res.records, res.rejects) == (7, 2)
    assert not (tmp_path / "out" / "conn.log.gz.part").exists()


def test_a_line_longer_than_max_line_is_passed_on(monkeypatch):
    monkeypatch.setattr(tsv, "MAX_LINE", 100)
    text = header(F1) + "150.5\tCu1\t10.0.0.7\t1\t8.8.8.8\thttp\n" + "x" * 250 + "\n1\tC\t-\t-\t-\t-\n"
    got, counts = enriched(text.encode(), monkeypatch, 64)
    assert got.split(b"\n")[9:] == [b"x" * 250, reference(text).split(b"\n")[10], b""]
    assert counts.rejects >= 2  # its pieces without a newline, then its last piece (a line)


def test_a_write_error_is_raised_and_stops_the_run(monkeypatch):
    class Full(io.BytesIO):
        def write(self, b):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(tsv, "BLOCK", 64)
    with pytest.raises(OSError, match="No space"):
        tsv.TsvEnricher(StubAnnotator(), Full(), tsv.Counts()).run(io.BytesIO(LOG.encode() * 50))


def test_a_read_error_is_raised_in_the_caller():
    class Broken(io.BytesIO):
        def readinto(self, b):
            raise EOFError("Compressed file ended before the end-of-stream marker was reached")

    with pytest.raises(EOFError):
        tsv.TsvEnricher(StubAnnotator(), io.BytesIO(), tsv.Counts()).run(Broken())


def test_enriching_does_not_import_pandas():
    """pa.array / pa.scalar / to_numpy import pandas (~0.2 s of every run); the TSV path
    builds its arrays from buffers."""
    code = ("import io, sys; sys.path.insert(0, 'tests/unit'); import test_enrich_tsv as t; "
            "from zeekwatch.app.enrich import tsv; out = io.BytesIO(); "
            "tsv.TsvEnricher(t.StubAnnotator(), out, tsv.Counts()).run(io.BytesIO(t.LOG.encode())); "
            "assert out.getvalue() == t.reference(t.LOG); print('pandas' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(run.__file__).rsplit("/zeekwatch/", 1)[0], timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"
