"""Times as the store writes them: ISO-8601 UTC text with microseconds and a ``Z``.

Kept apart from ``store`` so that code which only formats times (the engine, scoring) does
not import SQLite and sqlite-utils.
"""

from __future__ import annotations

import datetime as dt
import functools

_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime(_FORMAT)


def iso(ts) -> str | None:
    """ISO-8601 UTC text for a datetime (aware or naive-UTC) or epoch seconds."""
    if ts is None:
        return None
    if isinstance(ts, (int, float)):  # UTC already
        t = dt.datetime.fromtimestamp(ts, dt.timezone.utc)
    elif ts.tzinfo is None:
        t = ts.replace(tzinfo=dt.timezone.utc)
    else:
        t = ts.astimezone(dt.timezone.utc)
    if t.year >= 1000:  # the same text by isoformat, 1.5-5x faster (20 k findings: 40 k calls)
        return t.isoformat(timespec="microseconds")[:-6] + "Z"
    return t.strftime(_FORMAT)  # (strftime writes years before 1000 unpadded)


def parse_iso(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


# triage reads each finding's times in several steps (enrich, suppression, neighbours,
# scoring, corroboration against every finding of its host): each text parsed once
parse_iso_cached = functools.lru_cache(maxsize=1 << 16)(parse_iso)
