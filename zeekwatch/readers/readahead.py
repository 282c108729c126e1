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


class read_ahead(Iterator[T]):
    """Yield what ``items`` yields, produced by a worker thread up to ``depth`` items ahead.

    The worker starts at once (not at the first ``next``), so a reader made before its turn
    (``read_inputs`` makes the next file's) parses meanwhile. ``close()`` stops the worker,
    also when iteration never began; it runs by itself at the end or on an error."""

    def __init__(self, items: Iterator[T], depth: int = 1):
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._worker = threading.Thread(target=_work, args=(items, self._q, self._stop),
                                        name="zeekwatch-read-ahead", daemon=True)
        self._worker.start()
        self._done = False

    def __iter__(self) -> "read_ahead[T]":
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        kind, value = self._q.get()
        if kind == "item":
            return value
        self.close()
        if kind == "error":
            raise value
        raise StopIteration

    def close(self) -> None:
        self._done = True
        self._stop.set()
        if self._worker is not threading.current_thread():
            self._worker.join()

    def __del__(self) -> None:  # dropped unfinished without close(): let the worker end
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()
