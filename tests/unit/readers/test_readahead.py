"""read_ahead: same items, errors raised in the consumer, the worker stops when the consumer does."""

from __future__ import annotations

import threading
import time

import pytest
from test_zeek_tsv import conn_line, header, write

from zeekwatch.errors import NotALogError
from zeekwatch.readers import plan, read_inputs
from zeekwatch.readers.base import IngestLog
from zeekwatch.readers.readahead import read_ahead
from zeekwatch.readers.zeek import tsv as zeek_tsv


def test_same_items_in_order():
    assert list(read_ahead(iter(range(1000)), depth=3)) == list(range(1000))


def test_reader_error_is_raised_in_the_consumer():
    def items():
        yield 1
        raise NotALogError("x.log", "not a log")

    out = []
    with pytest.raises(NotALogError, match=r"^x.log: not a log$"):
        for item in read_ahead(items()):
            out.append(item)
    assert out == [1]


def test_closing_early_stops_the_worker_and_closes_the_reader():
    closed = threading.Event()

    def items():
        try:
            for i in range(10**9):
                yield i
        finally:
            closed.set()

    ahead = read_ahead(items())
    assert next(ahead) == 0
    ahead.close()
    assert closed.wait(5)
    time.sleep(0.05)
    assert not [t for t in threading.enumerate() if t.name == "zeekwatch-read-ahead"]


def test_zeek_reader_with_read_ahead_gives_the_same_result(tmp_path, monkeypatch):
    text = header() + "".join(conn_line(i) for i in range(3000)) + conn_line(1, orig_bytes="x")
    path = write(tmp_path, text)
    results = []
    for minimum in (1 << 40, 0):
        monkeypatch.setattr(zeek_tsv, "READ_AHEAD_MIN", minimum)
        log = IngestLog()
        chunks = [c for _, c in zeek_tsv.read(path, log, piece_size=32 << 10)]
        results.append(([c.to_pylist() for c in chunks], [(r.line, r.reason) for r in log.rejects]))
    assert results[0] == results[1]
    assert results[0][1] == [(3009, "bad count value 'x' in field 'orig_bytes'")]


def test_zeek_reader_refusal_with_read_ahead(tmp_path, monkeypatch):
    monkeypatch.setattr(zeek_tsv, "READ_AHEAD_MIN", 0)
    path = write(tmp_path, "plain text\n", name="notes.log")
    with pytest.raises(NotALogError, match="notes.log: not a Zeek TSV log"):
        list(zeek_tsv.read(path, IngestLog()))


def _ahead_threads():
    time.sleep(0.05)
    return [t for t in threading.enumerate() if t.name == "zeekwatch-read-ahead"]


def test_read_inputs_starts_the_next_file_early_and_keeps_the_order(tmp_path, monkeypatch):
    # the next file's reader works ahead while this one's chunks are consumed; the chunks
    # still come file by file, in order, and every reader stops with the consumer
    monkeypatch.setattr(zeek_tsv, "READ_AHEAD_MIN", 0)
    paths = []
    for n, name in enumerate(("a", "b", "c")):
        d = tmp_path / name
        d.mkdir()
        paths.append(str(write(d, header() + "".join(conn_line(1000 * n + i) for i in range(50)))))
    log = IngestLog()
    todo = plan(paths, log)
    chunks = read_inputs(todo, log)
    first = next(chunks)[1]
    # a's worker has handed over its only chunk and ended; b's already runs (its first piece
    # parsed, waiting); c's is made when b's turn comes
    assert len(_ahead_threads()) == 1
    rest = [c for _, c in chunks]
    uids = [r["uid"] for c in [first, *rest] for r in c.to_pylist()]
    assert uids == [f"Cabcdef{i:06d}" for n in range(3) for i in range(1000 * n, 1000 * n + 50)]
    assert log.files == paths and log.records["conn"] == 150
    assert not _ahead_threads()
    early = read_inputs(plan(paths, IngestLog()), IngestLog())
    next(early)
    early.close()
    assert not _ahead_threads()
