"""Reading on the executors: every input file parsed by zeekwatch's own readers, in a task.

Spark lists the inputs of other file systems and reads their bytes (``binaryFile``: any file
system the installation reaches, ``hdfs://``, ``s3a://``), one row per file; local files (planned
and sniffed by the driver as the DuckDB engine does) are rows of their path, opened in place by
the executor (no copy through the JVM; Hadoop's paths cannot name files with ``:`` in them, as
Zeek's archives do: ``conn.07:00:00-08:00:00.log.gz``). ``parse_files`` runs in
the executors' Python workers (``mapInArrow``): it writes each file to a local scratch file and
reads it with the reader the DuckDB engine uses (``readers.sniff`` + ``readers.reader_for``),
so every format, header variant, gzip and several header blocks per file behave exactly alike.

Its output is one *wide* Arrow batch per reader chunk: a struct column per normalized table
(``conn``, ``dns``, ... exactly ``schema.TABLES``, with ``source`` as plain text) of which one
is set, plus ``rej`` (a bounded sample of malformed lines per file: path, line, reason, raw)
and ``meta`` (one row per file: kind, records per table, reject count, notes, or why it was
skipped or refused). The engine caches it once and selects each table from it, so a file is
parsed once. A file is the unit of parallelism (Zeek rotates its logs hourly, so a day is
many files); one file is held whole in a task's memory (``binaryFile`` reads it as one value).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Iterator

import pyarrow as pa

from zeekwatch import schema
from zeekwatch.errors import InputError, NotALogError
from zeekwatch.readers import reader_for, sniff
from zeekwatch.readers.base import IngestLog

REJECT_SAMPLE = 1000  # malformed lines kept verbatim per file (all are counted)

REJ = pa.struct([("path", pa.string()), ("line", pa.int64()), ("reason", pa.string()),
                 ("raw", pa.string())])
META = pa.struct([("path", pa.string()), ("kind", pa.string()), ("records", pa.string()),
                  ("reject_count", pa.int64()), ("notes", pa.list_(pa.string())),
                  ("skipped", pa.string()), ("refused", pa.bool_()), ("error", pa.string())])


def plain(table_schema: pa.Schema) -> pa.Schema:
    """``table_schema`` with dictionary columns as their value type (Spark has no dictionaries)."""
    return pa.schema([pa.field(f.name, f.type.value_type) if pa.types.is_dictionary(f.type)
                      else f for f in table_schema])


def wide_schema() -> pa.Schema:
    fields = [pa.field(t, pa.struct(list(plain(s)))) for t, s in schema.TABLES.items()]
    return pa.schema(fields + [pa.field("rej", REJ), pa.field("meta", META)])


WIDE = wide_schema()


def decode(table: pa.Table | pa.RecordBatch, target: pa.Schema) -> list[pa.Array]:
    """The columns of ``table`` cast to ``target`` (dictionaries decoded), one array each."""
    out = []
    for f in target:
        col = table.column(f.name)
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        out.append(col.cast(f.type) if col.type != f.type else col)
    return out


def _batch(name: str, values: pa.Array) -> pa.RecordBatch:
    """A wide batch whose column ``name`` holds ``values`` and whose others are NULL."""
    n = len(values)
    cols = [values if f.name == name else pa.nulls(n, f.type) for f in WIDE]
    return pa.RecordBatch.from_arrays(cols, schema=WIDE)


def _table_batch(table: str, chunk: pa.Table) -> pa.RecordBatch:
    target = WIDE.field(table).type
    arrays = decode(chunk, pa.schema(list(target)))
    return _batch(table, pa.StructArray.from_arrays(arrays, fields=list(target)))


def display_path(uri: str) -> str:
    """A ``file:`` URI as the local path it names (what the DuckDB engine records)."""
    if uri.startswith("file://"):
        return uri[len("file://"):]
    if uri.startswith("file:"):
        return uri[len("file:"):]
    return uri


def read_file(uri: str, content: bytes | str, scratch: str) -> Iterator[pa.RecordBatch]:
    """Wide batches of one input file: its tables' chunks, a sample of its rejects, its meta.
    ``content``: the file's bytes (read by Spark), or text: the absolute local path to open."""
    path = display_path(uri)
    if isinstance(content, str):
        yield from _read_local(content, path)
        return
    local = os.path.join(scratch, "input")
    with open(local, "wb") as f:
        f.write(content)
    try:
        yield from _read_local(local, path)
    finally:
        os.unlink(local)


def _read_local(local: str, path: str) -> Iterator[pa.RecordBatch]:
    """``read_file`` of a file at ``local`` that the run calls ``path``."""
    log = IngestLog(max_kept=REJECT_SAMPLE)
    meta = {"path": path, "kind": None, "records": "{}", "reject_count": 0, "notes": [],
            "skipped": None, "refused": False, "error": None}
    try:
        kind = sniff(local)
        meta["kind"] = kind
        if kind == "empty":
            meta["skipped"] = "empty file"
        else:
            for table, chunk in reader_for(kind)(local, log):
                if chunk.num_rows:
                    log.records[table] += chunk.num_rows
                    yield _table_batch(table, chunk)
    except NotALogError as exc:
        meta["skipped"], meta["refused"] = exc.reason, True
    except InputError as exc:
        meta["error"] = exc.reason
    meta["records"] = json.dumps(dict(log.records))
    meta["reject_count"] = log.reject_count
    meta["notes"] = [n.replace(local, path) for n in log.notes]
    if log.rejects:
        rows = [{"path": path, "line": r.line, "reason": r.reason.replace(local, path),
                 "raw": r.raw} for r in log.rejects]
        yield _batch("rej", pa.array(rows, REJ))
    yield _batch("meta", pa.array([meta], META))


def parse_files(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` function over ``binaryFile`` rows (path, content), or rows of local
    files (path as the run names it, local: its absolute path, which every executor must
    see; opened in place): the wide batches."""
    scratch = tempfile.mkdtemp(prefix="zeekwatch-spark-")
    try:
        for batch in batches:
            paths = batch.column("path")
            where = "content" if "content" in batch.schema.names else "local"
            contents = batch.column(where)
            for i in range(batch.num_rows):
                yield from read_file(paths[i].as_py(), contents[i].as_py(), scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
