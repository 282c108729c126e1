"""Readers: the only code that knows a file format.

``sniff(path)`` decides what a file is from its content (never from its name alone);
``expand(paths)`` walks directories; ``read_inputs`` yields normalized chunks (Arrow, the
tables of zeekwatch.schema) from all of them, recording malformed lines in an ``IngestLog``.
Subpackages per format: ``zeek``, ``eve``, ``pcap``. Imports only the core modules.
"""

from __future__ import annotations

import importlib
import os
from typing import Iterable, Iterator

import orjson

from zeekwatch.errors import InputError, NotALogError
from zeekwatch.readers.base import Chunk, IngestLog, head

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4",  # pcap, microseconds (LE, BE)
    b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d",  # pcap, nanoseconds
    b"\x0a\x0d\x0d\x0a",  # pcapng section header block
}

# kind -> module implementing ``read(path, log)``
READERS = {
    "zeek_tsv": "zeekwatch.readers.zeek.tsv",
    "zeek_json": "zeekwatch.readers.zeek.jsonl",
    "eve": "zeekwatch.readers.eve.reader",
    "pcap": "zeekwatch.readers.pcap.reader",
}


def _preview(data: bytes) -> str:
    line = data.split(b"\n", 1)[0][:60].decode("utf-8", "replace")
    return line + ("..." if len(line) == 60 else "")


def _json_kind(data: bytes) -> str | None:
    text = data.lstrip()
    if text.startswith(b"["):
        return "eve"  # Zeek never writes JSON arrays; EVE exports sometimes do
    obj = None
    for line in text.split(b"\n", 20)[:20]:  # a malformed first line is the reader's reject
        try:
            obj = orjson.loads(line)
            break
        except orjson.JSONDecodeError:
            continue
    if not isinstance(obj, dict):
        return None
    if "event_type" in obj:
        return "eve"
    if "_path" in obj or "id.orig_h" in obj or ("uid" in obj and "ts" in obj):
        return "zeek_json"
    return None


def _looks_like_headerless_tsv(data: bytes) -> bool:
    first = data.split(b"\n", 1)[0]
    fields = first.split(b"\t")
    if len(fields) < 8:
        return False
    try:
        float(fields[0])
    except ValueError:
        return False
    return True


def sniff(path: str) -> str:
    """Return the reader kind for ``path``, ``"empty"``, or raise ``NotALogError``."""
    try:
        data = head(path)
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror or exc}") from exc
    if not data.strip():
        return "empty"
    if data[:4] in PCAP_MAGICS:
        return "pcap"
    # a log's own structure decides first: binary damage after a valid header or a valid
    # first record is the reader's business (rejected lines), not a reason to refuse the file
    for line in data.split(b"\n", 20)[:20]:
        if line.startswith((b"#separator", b"#fields")):
            return "zeek_tsv"
    json_like = data.lstrip()[:1] in (b"{", b"[")
    kind = _json_kind(data) if json_like else None
    if kind:
        return kind
    if b"\x00" in data[:4096]:
        raise NotALogError(path, "binary data that is not a pcap/pcapng capture; not a log")
    if json_like:
        raise NotALogError(path, "JSON that is neither Zeek JSON (no _path/id.orig_h/uid) nor Suricata EVE (no event_type)")
    if _looks_like_headerless_tsv(data):
        return "zeek_tsv"
    raise NotALogError(
        path,
        f"not a Zeek log, Suricata EVE file or capture (no #fields header, no JSON records; "
        f"starts with {_preview(data)!r})",
    )


def expand(paths: Iterable[str], log: IngestLog | None = None) -> list[tuple[str, bool]]:
    """Files to read, as (path, explicit). Directories are walked recursively in sorted order;
    a subdirectory that cannot be listed is recorded in ``log.skipped``."""
    out: list[tuple[str, bool]] = []

    def unlistable(exc: OSError) -> None:
        if log is not None:
            log.skipped.append((str(exc.filename or p), f"cannot list directory: {exc.strerror or exc}"))

    for p in paths:
        p = str(p)
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p, onerror=unlistable):
                dirs.sort()
                for name in sorted(files):
                    if not name.startswith("."):
                        out.append((os.path.join(root, name), False))
        elif os.path.exists(p):
            out.append((p, True))
        else:
            raise InputError(p, "no such file or directory")
    return out


def plan(paths: Iterable[str], log: IngestLog) -> list[tuple[str, str]]:
    """Sniff every input before reading anything: (path, kind) pairs.

    A file named on the command line that is not a log (or cannot be read) is refused
    (``InputError``); one met while walking a directory (a README beside the logs, a dangling
    symlink, an unreadable file) is skipped and recorded in ``log``, as is a file found there
    that its reader then cannot read (``read_inputs``).
    """
    todo = []
    for path, explicit in expand(paths, log):
        if explicit:
            log.explicit.add(path)
        try:
            kind = sniff(path)
        except InputError as exc:
            if explicit:
                raise
            log.skipped.append((path, exc.reason))
            continue
        if kind == "empty":
            log.skipped.append((path, "empty file"))
            continue
        todo.append((path, kind))
    return todo


def reader_for(kind: str):
    return importlib.import_module(READERS[kind]).read


def read_inputs(todo: list[tuple[str, str]], log: IngestLog,
                overrides: dict | None = None) -> Iterator[Chunk]:
    """Chunks of every planned input; ``overrides`` maps a kind to another reader function
    (``--pcap-labels`` plugs in the labelling pcap reader this way)."""
    overrides = overrides or {}

    def start(path: str, kind: str) -> Iterator[Chunk]:
        read = overrides.get(kind) or reader_for(kind)
        try:
            return read(path, log)
        except Exception as exc:  # noqa: BLE001 - raised at the file's turn, as if read then
            return _raise(exc)

    # The next file's reader is made while this one's chunks are consumed: a reader that works
    # ahead in a thread of its own (large Zeek logs: ``readahead``) then parses its first piece
    # meanwhile, and there is no pause between files. It holds at most that one piece.
    following = start(*todo[0]) if todo else None
    try:
        for i, (path, _kind) in enumerate(todo):
            current, following = following, (start(*todo[i + 1]) if i + 1 < len(todo) else None)
            log.files.append(path)
            rows = 0
            try:
                for table, chunk in current:
                    if chunk.num_rows:
                        rows += chunk.num_rows
                        log.records[table] += chunk.num_rows
                        yield table, chunk
            except Exception as exc:  # noqa: BLE001 - a file found in a directory is skipped
                if path in log.explicit:
                    raise
                log.files.remove(path)
                reason = (exc.reason if isinstance(exc, InputError)
                          else f"reader failed ({type(exc).__name__}: {exc})")
                kept = f"; kept the {rows} records read before it" if rows else ""
                log.skipped.append((path, reason + kept))
            finally:
                _close(current)
    finally:
        _close(following)


def _raise(exc: Exception) -> Iterator[Chunk]:
    raise exc
    yield  # a generator: raises when iterated


def _close(chunks) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()
