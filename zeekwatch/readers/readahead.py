"""Run a reader a chunk ahead of its consumer, in a worker thread.

pyarrow's CSV/JSON parsers and DuckDB's inserts release the GIL, so while the consumer inserts
chunk *n* the worker parses chunk *n + 1*: on two cores the parse and the insert overlap
instead of taking turns. At most ``depth`` finished chunks wait in the queue, so memory stays
bounded. An exception in the reader is raised in the consumer; a consumer that stops early
(``close()``, ``break``) stops the worker after the piece it is working on.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator, TypeVar

T = TypeVar("T")
_POLL = 0.1  # seconds between checks of the stop flag while the queue is full


def _offer(q: queue.Queue, stop: threading.Event, message) -> bool:
    while not stop.is_set():
        try:
            q.put(message, timeout=_POLL)
            return True
        except queue.Full:
            continue
    return False


def _work(items: Iterator, q: queue.Queue, stop: threading.Event) -> None:
    try:
        for item in items:
            if not _offer(q, stop, ("item", item)):
                return
        _offer(q, stop, ("end", None))
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
        _offer(q, stop, ("error", exc))
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()


def read_ahead(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Yield what ``items`` yields, produced by a worker thread up to ``depth`` items ahead."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    worker = threading.Thread(target=_work, args=(items, q, stop), name="zeekwatch-read-ahead",
                              daemon=True)
    worker.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()
        worker.join()
