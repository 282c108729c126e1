"""What every reader shares: opening files (gzip transparently) and the ingest log.

A reader is a function ``read(path, log) -> Iterator[tuple[str, pyarrow.Table]]`` that yields
(normalized table name, chunk conforming to ``schema.TABLES[name]``). Chunks are bounded in
size so memory does not grow with the file. A reader never raises for a bad *line*: it calls
``log.reject(...)`` and goes on. It raises ``InputError`` only when the whole file is unusable.
"""

from __future__ import annotations

import gzip
import io
import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterator

import pyarrow as pa

RAW_LIMIT = 2048  # bytes of a rejected line kept in the ``rejects`` table

Chunk = tuple[str, pa.Table]
Reader = Callable[[str, "IngestLog"], Iterator[Chunk]]


@dataclass
class Reject:
    path: str
    line: int | None  # 1-based physical line (decompressed), or packet number for captures
    reason: str
    raw: str


@dataclass
class IngestLog:
    """Everything a run learns about its inputs besides the records themselves."""

    rejects: list[Reject] = field(default_factory=list)
    reject_count: int = 0
    max_kept: int = 100_000  # rejects kept verbatim; beyond this only counted
    records: Counter = field(default_factory=Counter)  # table -> rows
    notes: list[str] = field(default_factory=list)  # e.g. "x.log: 12 masked timestamps (NULL)"
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    files: list[str] = field(default_factory=list)
    progress: Callable[[int], None] | None = None  # called with bytes of input consumed
    # readers of two files may run at once (``read_inputs`` starts the next one early)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def reject(self, path: str, line: int | None, reason: str, raw: bytes | str = "") -> None:
        if isinstance(raw, bytes):
            raw = raw[:RAW_LIMIT].decode("utf-8", "replace")
        with self._lock:
            self.reject_count += 1
            if len(self.rejects) < self.max_kept:
                self.rejects.append(Reject(str(path), line, reason, raw[:RAW_LIMIT]))

    def count_rejects(self, n: int) -> None:
        """Count ``n`` more rejected records that are not kept one by one."""
        with self._lock:
            self.reject_count += n

    def note(self, message: str) -> None:
        self.notes.append(message)

    def advance(self, nbytes: int) -> None:
        if self.progress is not None and nbytes:
            self.progress(nbytes)


GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


class _CountingFile(io.RawIOBase):
    """Wraps the on-disk file so progress counts compressed bytes actually read."""

    def __init__(self, raw, log: IngestLog | None):
        self._raw = raw
        self._log = log

    def readable(self):
        return True

    def readinto(self, b):
        n = self._raw.readinto(b)
        if self._log is not None and n:
            self._log.advance(n)
        return n

    def close(self):
        self._raw.close()
        super().close()


def open_binary(path: str, log: IngestLog | None = None):
    """Open ``path`` for binary reading, decompressing gzip (multi-member too) transparently.

    Progress (``log.advance``) counts bytes of the file on disk, so a bar over the sum of
    file sizes is exact for compressed and plain files alike.
    """
    raw = _CountingFile(open(path, "rb", buffering=0), log)
    buffered = io.BufferedReader(raw, buffer_size=1 << 20)
    if buffered.peek(2)[:2] == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=buffered, mode="rb")
    return buffered


def head(path: str, nbytes: int = 65536) -> bytes:
    """The first ``nbytes`` of the (decompressed) file, for sniffing. Never raises on bad gzip."""
    try:
        with open_binary(path) as f:
            return f.read(nbytes)
    except (OSError, EOFError, gzip.BadGzipFile):
        with open(path, "rb") as f:
            return f.read(nbytes)


def file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
