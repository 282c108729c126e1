"""New complete lines of a followed file → normalized chunks, through the existing readers.

Follow mode writes no parser of its own. ``BufferParser.parse`` puts the lines into an
in-memory file (``memfd``; a temporary file where there is none) and hands its path to the
reader of the file's kind (``readers.reader_for``: Zeek TSV, Zeek JSON, EVE), so every rule of
those readers applies unchanged: header blocks, unset/empty values, bad-line policy,
timestamps. For a Zeek TSV file the header block in force (``#separator`` … ``#types``) is
put in front of the new lines, so the reader parses them under the right layout even after a
restart in the middle of the file.

What the reader records about the buffer is mapped back to the real file: rejects get the
real path and physical line numbers (the buffer's line ``n`` is line ``n + line_offset`` of
the file), notes and skipped entries name the real file, and the ``source`` column of every
chunk is the real path (as ``analyze`` writes it).
"""

from __future__ import annotations

import os
import tempfile

import pyarrow as pa

from zeekwatch import schema
from zeekwatch.errors import ZeekwatchError
from zeekwatch.readers import reader_for, sniff
from zeekwatch.readers.base import Chunk, IngestLog

# Directives that shape the data lines after them (zeek_header.Header.apply); #open, #close
# and comments are left out of the carried header block.
DIRECTIVES = (b"#separator", b"#set_separator", b"#empty_field", b"#unset_field", b"#path",
              b"#fields", b"#types")


def header_after(header: list[str], data: bytes) -> list[str]:
    """The TSV header block in force after ``data`` (whole lines), given the one before it.

    A ``#separator`` line starts a new block; a repeated directive replaces the earlier one.
    This only tracks which directive lines are in force; the reader interprets them.
    """
    if b"#" not in data:
        return header
    out = list(header)
    pos = 0 if data[:1] == b"#" else _next_directive(data, 0)
    while pos >= 0:
        end = data.find(b"\n", pos)
        raw = data[pos:len(data) if end < 0 else end].rstrip(b"\r")
        name = raw.split(None, 1)[0]
        if name.startswith(b"#separator"):
            out = [raw.decode("utf-8", "replace")]
        elif name in DIRECTIVES:
            out = [h for h in out if h.split(None, 1)[0] != name.decode()]
            out.append(raw.decode("utf-8", "replace"))
        if end < 0:
            break
        pos = _next_directive(data, end)
    return out


def _next_directive(data: bytes, start: int) -> int:
    i = data.find(b"\n#", start)
    return -1 if i < 0 else i + 1


class _Buffer:
    """A reusable in-memory file with a path the readers can open."""

    def __init__(self):
        if hasattr(os, "memfd_create"):
            self.fd = os.memfd_create("zeekwatch-follow")
            self.path = f"/proc/self/fd/{self.fd}"
            self._tmp = None
        else:  # pragma: no cover - non-Linux
            self._tmp = tempfile.NamedTemporaryFile(prefix="zeekwatch-follow-", delete=False)
            self.fd, self.path = self._tmp.fileno(), self._tmp.name

    def write(self, *parts: bytes) -> None:
        os.ftruncate(self.fd, 0)
        pos = 0
        for p in parts:
            view = memoryview(p)
            while view:
                n = os.pwrite(self.fd, view, pos)
                pos += n
                view = view[n:]

    def close(self) -> None:
        os.ftruncate(self.fd, 0)
        if self._tmp is not None:  # pragma: no cover
            self._tmp.close()
            os.unlink(self.path)
        else:
            os.close(self.fd)


class BufferParser:
    """Parses whole lines of followed files with the existing readers."""

    def __init__(self):
        self.buf = _Buffer()
        self.seen_notes: set[str] = set()
        self.seen_skipped: set[tuple[str, str]] = set()

    def sniff(self, data: bytes) -> str:
        """The reader kind of a file from its first complete lines (``readers.sniff``)."""
        self.buf.write(data)
        return sniff(self.buf.path)

    def parse(self, kind: str, path: str, data: bytes, first_line: int, header: list[str],
              log: IngestLog) -> list[Chunk]:
        """Chunks from ``data`` (whole lines of ``path`` starting at physical ``first_line``).

        When the reader refuses or fails on the lines, they are split in halves and each half
        is parsed again, down to single lines: only the lines the reader cannot take become
        rejects, their neighbours are processed (a poison line costs itself, not its batch)."""
        try:
            return self._parse_once(kind, path, data, first_line, header, log)
        except Exception as exc:  # noqa: BLE001 - a refused (or crashing) buffer: see below
            failure = exc
        half = _middle(data)
        if half is None:  # one line: it is the reject, so it cannot stop a follower
            reason = (getattr(failure, "reason", str(failure)) if isinstance(failure, ZeekwatchError)
                      else f"reader failed on this data ({type(failure).__name__}: {failure})")
            if data.strip() and not data.startswith(b"#"):
                log.reject(path, first_line, reason, data.rstrip(b"\n"))
            return []
        head, tail = data[:half], data[half:]
        later = header_after(header, head) if kind == "zeek_tsv" else header
        return (self.parse(kind, path, head, first_line, header, log)
                + self.parse(kind, path, tail, first_line + head.count(b"\n"), later, log))

    def _parse_once(self, kind: str, path: str, data: bytes, first_line: int,
                    header: list[str], log: IngestLog) -> list[Chunk]:
        prefix = b""
        if kind == "zeek_tsv" and header:
            prefix = ("\n".join(header) + "\n").encode("utf-8")
        self.buf.write(prefix, data)
        offset = first_line - 1 - (prefix.count(b"\n"))
        scratch = IngestLog(max_kept=log.max_kept)
        chunks = [(t, _with_source(c, path)) for t, c in reader_for(kind)(self.buf.path, scratch)]
        self._transfer(scratch, log, path, offset)
        return chunks

    def _transfer(self, scratch: IngestLog, log: IngestLog, path: str, offset: int) -> None:
        fake = self.buf.path
        for r in scratch.rejects:
            line = r.line if r.line is None or r.path != fake else r.line + offset
            if r.path == fake and r.line is not None and line < 1:
                line = None
            log.reject(path, line, r.reason.replace(fake, path), r.raw)
        log.count_rejects(scratch.reject_count - len(scratch.rejects))
        for note in scratch.notes:
            note = note.replace(fake, path)
            if note not in self.seen_notes and len(self.seen_notes) < 1000:
                self.seen_notes.add(note)
                log.note(note)
        for p, reason in scratch.skipped:
            item = (path if p == fake else p, reason.replace(fake, path))
            if item not in self.seen_skipped:
                self.seen_skipped.add(item)
                log.skipped.append(item)

    def close(self) -> None:
        self.buf.close()


def _middle(data: bytes) -> int | None:
    """Where to cut ``data`` (whole lines) in two halves of whole lines; None for one line."""
    body = data.rstrip(b"\n")
    if b"\n" not in body:
        return None
    cut = data.find(b"\n", len(data) // 2)
    if cut < 0 or cut + 1 >= len(body):
        cut = data.rfind(b"\n", 0, len(body))
    return cut + 1


def _with_source(chunk: pa.Table, path: str) -> pa.Table:
    i = chunk.schema.get_field_index("source")
    if i < 0:
        return chunk
    return chunk.set_column(i, chunk.schema.field(i), schema.source_column(path, chunk.num_rows))
