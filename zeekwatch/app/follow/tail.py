"""Tailing files by inode and offset: rotation, copytruncate, late files, partial lines.

A *watch* is a path given to ``zeekwatch follow``: a file (which may not exist yet) or a
directory (its ``*.log`` and ``eve*.json`` files, new ones included). A *stream* is one file
version, known by (device, inode), read from a byte offset through its own descriptor:

- **rotation** (Zeek renames ``conn.log`` and opens a new one): the name now has another
  inode. The old stream is *drained* — read to its end through the descriptor it already
  holds, whatever its new name or even if deleted — and closed once it has not grown for
  ``grace`` seconds (its unterminated last line, if any, is then read as the file's last
  line). The new file is read from offset 0.
- **copytruncate** (the file shrinks below the offset, or its first bytes change): read again
  from offset 0 with a fresh header.
- **a file that does not exist yet**: polled until it appears.
- **a partial last line**: never consumed until its newline arrives.

Only whole lines leave this module (``Read``); what they mean is the readers' business.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterator

from zeekwatch.app.follow.parse import header_after
from zeekwatch.errors import InputError

PATTERNS = ("*.log", "eve*.json")
FP_BYTES = 1024  # first bytes hashed to recognise a file version
MAX_READ = 32 << 20  # bytes read from one stream per poll (a backlog takes several batches)
IDLE_CLOSE = 300.0  # seconds without growth after which a directory's file is closed (reopened on growth)


@dataclass
class Mark:
    """Where one batch's bytes of a stream started, and the newest timestamp they held."""

    offset: int
    line: int
    header: list[str]
    max_ts: float | None


@dataclass
class Stream:
    watch: str
    path: str
    dev: int
    inode: int
    kind: str | None = None  # reader kind; "ignored" for a file that is not a followable log
    offset: int = 0  # bytes of whole lines consumed
    line: int = 1  # physical line number of the next line
    header: list[str] = field(default_factory=list)  # Zeek TSV header block in force at offset
    fp_len: int = 0
    fp: str = ""
    state: str = "active"  # active, draining (rotated away), done
    max_ts: float | None = None
    marks: deque = field(default_factory=deque)
    fd: int | None = None
    grown_at: float = field(default_factory=time.monotonic)
    skipping: bool = False  # inside an over-long line

    @property
    def key(self) -> tuple[int, int]:
        return self.dev, self.inode

    def reset(self) -> None:
        """Start over at offset 0 (copytruncate or a rewritten file)."""
        self.offset, self.line, self.header = 0, 1, []
        self.fp_len, self.fp, self.kind, self.skipping = 0, "", None, False
        self.marks.clear()

    def replay(self) -> Mark:
        return self.marks[0] if self.marks else Mark(self.offset, self.line, self.header, self.max_ts)

    def expire(self, horizon: float | None) -> None:
        """Forget marks whose rows are all older than the look-back ``horizon``."""
        while self.marks and (self.marks[0].max_ts is None
                              or (horizon is not None and self.marks[0].max_ts < horizon)):
            self.marks.popleft()

    def checkpoint(self) -> dict:
        r = self.replay()
        return {"dev": self.dev, "inode": self.inode, "watch": self.watch, "path": self.path,
                "kind": self.kind, "offset": self.offset, "line": self.line,
                "header": json.dumps(self.header), "fp_len": self.fp_len, "fp": self.fp,
                "replay_offset": r.offset, "replay_line": r.line,
                "replay_header": json.dumps(r.header), "max_ts": self.max_ts,
                "state": "done" if self.state == "done" else "active"}

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@dataclass
class Read:
    """Whole lines read from a stream in one poll."""

    stream: Stream
    data: bytes
    offset: int  # file offset of data
    first_line: int  # physical line number of data's first line
    header: list[str]  # TSV header block in force before data (an unterminated last line
    # of a file that is done is passed as it is: the reader tells a cut line from a bad one)
    overlong: int = 0  # an over-long line was skipped before data (its line number)


def fingerprint(fd: int, n: int) -> str:
    return hashlib.sha1(os.pread(fd, n, 0)).hexdigest()


def _open(path: str, key: tuple[int, int]) -> int | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != key:  # the name moved on between stat and open
        os.close(fd)
        return None
    return fd


def _size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def _key(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class Tailer:
    """The watches, their streams, and one ``poll`` per micro-batch."""

    def __init__(self, watches: list[str], sniff: Callable[[bytes], str], grace: float = 2.0,
                 max_read: int = MAX_READ, patterns=PATTERNS):
        """``sniff(first whole lines) -> reader kind`` ("empty" to wait; raises ``InputError``
        for a file that is not a followable log)."""
        self.sniff = sniff
        self.watches = [os.path.abspath(w) for w in watches]
        self.is_dir = {w: os.path.isdir(w) for w in self.watches}
        self.grace, self.max_read, self.patterns = grace, max_read, patterns
        self.streams: dict[tuple[int, int], Stream] = {}
        self.dropped: set[tuple[int, int]] = set()  # checkpoints to delete at the next commit
        self.events: list[str] = []  # rotations, truncations: for notes and the status line
        self.skipped: list[tuple[str, str]] = []  # (path, reason) of files that are not logs

    # -- which files ------------------------------------------------------------------------
    def _listing(self, watch: str) -> dict[tuple[int, int], str]:
        """(dev, inode) -> path of the files the watch names right now."""
        if not self.is_dir[watch]:
            key = _key(watch)
            return {key: watch} if key else {}
        out = {}
        try:
            entries = list(os.scandir(watch))
        except OSError:
            return out
        for e in sorted(entries, key=lambda e: e.name):
            if e.name.startswith(".") or not any(fnmatch.fnmatch(e.name, p) for p in self.patterns):
                continue
            try:
                st = e.stat()
            except OSError:
                continue
            if e.is_file():
                out[(st.st_dev, st.st_ino)] = e.path
        return out

    def _locate(self, row: dict) -> str | None:
        """Where the file of a checkpoint is now: its old path, or another name in the same
        directory (a rotated file); None when it is gone or the inode holds another file."""
        key = (row["dev"], row["inode"])
        candidates = [row["path"]]
        folder = row["watch"] if self.is_dir.get(row["watch"]) else os.path.dirname(row["watch"])
        try:
            candidates += [e.path for e in os.scandir(folder) if e.is_file()]
        except OSError:
            pass
        for path in candidates:
            if _key(path) == key:
                fd = _open(path, key)
                if fd is None:
                    continue
                try:
                    same = not row["fp_len"] or (os.fstat(fd).st_size >= row["fp_len"]
                                                 and fingerprint(fd, row["fp_len"]) == row["fp"])
                finally:
                    os.close(fd)
                return path if same else None
        return None

    # -- restart ----------------------------------------------------------------------------
    def restore(self, rows: list[dict]) -> list[Stream]:
        """Streams from stored checkpoints; returns those to replay (``replay_reads``) to
        rebuild the look-back.

        A checkpoint of another watch (the same files followed under another path) is taken
        over when one of our watches lists its file now; others are left alone."""
        listed = {k: (w, p) for w in self.watches for k, p in self._listing(w).items()}
        replays = []
        for row in rows:
            key = (row["dev"], row["inode"])
            if row["watch"] not in self.watches:
                if key not in listed:
                    continue
                row = dict(row, watch=listed[key][0], path=listed[key][1])
            path = self._locate(row)
            if path is None:
                self.dropped.add(key)
                self.events.append(f"{row['path']}: gone while zeekwatch was stopped (rotated "
                                   f"away or deleted); its checkpoint at byte {row['offset']} is dropped")
                continue
            s = Stream(row["watch"], path, row["dev"], row["inode"], row["kind"], row["offset"],
                       row["line"], json.loads(row["header"] or "[]"), row["fp_len"] or 0,
                       row["fp"] or "", max_ts=row["max_ts"])
            s.state = "done" if row["state"] == "done" else "active"
            self.streams[key] = s
            if row["replay_offset"] is not None and row["replay_offset"] < row["offset"]:
                mark = Mark(row["replay_offset"], row["replay_line"],
                            json.loads(row["replay_header"] or "[]"), row["max_ts"])
                s.marks.append(mark)
                replays.append(s)
        return replays

    def replay_reads(self, s: Stream) -> Iterator[Read]:
        """The lines from a restored stream's replay mark up to its checkpoint, in pieces."""
        fd = _open(s.path, s.key)
        if fd is None:
            return
        mark = s.marks[0]
        pos, line, header = mark.offset, mark.line, mark.header
        try:
            while pos < s.offset:
                data = os.pread(fd, min(self.max_read, s.offset - pos), pos)
                cut = data.rfind(b"\n") + 1 if pos + len(data) < s.offset else len(data)
                if cut <= 0:
                    break
                data = data[:cut]
                yield Read(s, data, pos, line, header)
                if s.kind == "zeek_tsv":
                    header = header_after(header, data)
                pos, line = pos + cut, line + data.count(b"\n")
        finally:
            os.close(fd)

    # -- one poll ---------------------------------------------------------------------------
    def poll(self, final: bool = False) -> list[Read]:
        """Whole lines that arrived since the last poll, from every stream.

        ``final``: drain rotated files now instead of waiting ``grace`` (``--once``).
        """
        now = time.monotonic()
        seen: set[tuple[int, int]] = set()
        for watch in self.watches:
            listing = self._listing(watch)
            seen |= set(listing)
            for key, path in listing.items():
                s = self.streams.get(key)
                if s is None:
                    s = self.streams[key] = Stream(watch, path, *key)
                    self.dropped.discard(key)
                s.path, s.watch = path, watch
                if s.state == "done":
                    s.state = "active"
        for s in self.streams.values():
            if s.state == "active" and s.key not in seen:
                s.state = "draining"
                self.events.append(f"{s.path}: rotated (renamed or removed); reading it to its end")
        reads = []
        for s in list(self.streams.values()):
            if s.state == "done" or s.kind == "ignored":
                continue
            reads.extend(self._read(s, now, final))
        return reads

    def _read(self, s: Stream, now: float, final: bool) -> list[Read]:
        if s.fd is None:
            if s.state == "active" and _size(s.path) == s.offset:
                return []  # nothing new: stay closed
            s.fd = _open(s.path, s.key)
            if s.fd is None:
                if s.state == "draining":
                    self._finish(s)
                return []
        size = os.fstat(s.fd).st_size
        if size < s.offset or (s.fp_len and fingerprint(s.fd, s.fp_len) != s.fp):
            self.events.append(f"{s.path}: truncated or rewritten (copytruncate); reading it "
                               f"again from the start")
            s.reset()
        out = self._lines(s, size) if size > s.offset else []
        if out:
            s.grown_at = now
        if s.state == "draining" and not out and (final or now - s.grown_at >= self.grace):
            tail = self._tail(s, size)
            if tail is not None:
                out.append(tail)
            self._finish(s)
        elif s.fd is not None and s.fp_len < FP_BYTES and s.offset > s.fp_len:
            s.fp_len = min(FP_BYTES, s.offset)
            s.fp = fingerprint(s.fd, s.fp_len)
        if (s.state == "active" and not out and self.is_dir.get(s.watch)
                and now - s.grown_at > IDLE_CLOSE):
            s.close()
        return out

    def _kind(self, s: Stream, data: bytes) -> bool:
        """Decide what the file is from its first whole lines; False: wait for more."""
        try:
            kind = self.sniff(data)
        except InputError as exc:
            kind, reason = "ignored", exc.reason
        else:
            reason = {"pcap": "a capture; follow reads logs (use `zeekwatch analyze`)"}.get(kind)
        if kind == "empty":
            return False
        if reason:
            kind = "ignored"
            self.skipped.append((s.path, reason))
        s.kind = kind
        return kind != "ignored"

    def _lines(self, s: Stream, size: int) -> list[Read]:
        data = os.pread(s.fd, min(size - s.offset, self.max_read), s.offset)
        overlong = 0
        if s.skipping:  # the rest of an over-long line
            nl = data.find(b"\n")
            s.offset += len(data) if nl < 0 else nl + 1
            if nl < 0:
                return []
            s.skipping, s.line = False, s.line + 1
            data = data[nl + 1:]
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            if len(data) >= self.max_read:  # no newline in max_read bytes: skip the line
                overlong, s.skipping = s.line, True
                s.offset += len(data)
                return [Read(s, b"", s.offset, s.line, s.header, overlong=overlong)]
            return []  # a partial line: wait for its newline
        data = data[:cut]
        if s.kind is None and not self._kind(s, data):
            return []
        read = Read(s, data, s.offset, s.line, s.header)
        if s.kind == "zeek_tsv":
            s.header = header_after(s.header, data)
        s.offset += cut
        s.line += data.count(b"\n")
        return [read]

    def _tail(self, s: Stream, size: int) -> Read | None:
        """The unterminated last line of a file that is done."""
        if s.skipping or size <= s.offset or s.fd is None:
            return None
        data = os.pread(s.fd, size - s.offset, s.offset)
        if not data.strip() or (s.kind is None and not self._kind(s, data)):
            return None
        read = Read(s, data, s.offset, s.line, s.header)
        s.offset += len(data)
        s.line += 1
        return read

    def _finish(self, s: Stream) -> None:
        s.close()
        s.state = "done"
        self.events.append(f"{s.path}: read to its end after rotation")

    # -- bookkeeping -------------------------------------------------------------------------
    def checkpoints(self) -> list[dict]:
        return [s.checkpoint() for s in self.streams.values()]

    def forget_gone(self) -> None:
        """Done streams whose file no longer exists need no checkpoint."""
        for key, s in list(self.streams.items()):
            if s.state == "done" and _key(s.path) != key:
                del self.streams[key]
                self.dropped.add(key)

    def close(self) -> None:
        for s in self.streams.values():
            s.close()
