"""Common table expressions computed once on Spark.

Spark SQL inlines every CTE at each place it is used, so a detector query whose CTEs build
on each other several times over (the tiered windows, the sweep episodes) becomes a plan of
hundreds of shuffles: a 100-line query over 500 rows ran 103 jobs and 227 stages. DuckDB
computes such CTEs once (``MATERIALIZED``). Here the top-level CTEs that are used more than
once are computed first, each into a checkpointed temporary view, and the query reads the views.
The SQL text of each CTE is unchanged; only where its rows come from.

``split`` is a small scanner for the one shape the detectors write (``WITH name AS
[MATERIALIZED] (...), ... SELECT ...``, at the top or as the first subquery): it keeps
quotes and comments intact and returns None for anything else, which then runs as it is.
"""

from __future__ import annotations

import itertools
import re
from typing import Callable

_QUERY_SEQ = itertools.count(1)  # names of the computed CTE views

_NAME = re.compile(r"\s*(?:--[^\n]*\n\s*)*([A-Za-z_][A-Za-z0-9_]*)\s+AS\s+(?:NOT\s+)?(?:MATERIALIZED\s+)?\(",
                   re.I)


def _code(sql: str, i: int = 0):
    """Index of each character of ``sql`` from ``i`` that is SQL code: quoted text
    ('', "", ``), ``--`` and ``/* */`` comments are stepped over."""
    n = len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"`":
            end = sql.find(c, i + 1)
            while end != -1 and end + 1 < n and sql[end + 1] == c:  # '' inside a string
                end = sql.find(c, end + 2)
            i = n if end == -1 else end + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end == -1 else end + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end == -1 else end + 2
        else:
            yield i
            i += 1


def _close(sql: str, i: int) -> int | None:
    """Index just past the parenthesis that closes the one open before ``i``."""
    depth = 1
    for k in _code(sql, i):
        if sql[k] == "(":
            depth += 1
        elif sql[k] == ")":
            depth -= 1
            if depth == 0:
                return k + 1
    return None


def _with(sql: str) -> int | None:
    """Where the first ``WITH`` keyword of the statement starts (at the top, or opening a
    subquery: ``SELECT ... FROM (WITH ...) x``)."""
    for k in _code(sql):
        if (sql[k] in "wW" and sql[k:k + 4].upper() == "WITH" and (k == 0 or not _word(sql[k - 1]))
                and (k + 4 == len(sql) or not _word(sql[k + 4]))):
            return k
    return None


def _word(c: str) -> bool:
    return c.isalnum() or c == "_"


def split(sql: str) -> tuple[str, list[tuple[str, str]], str] | None:
    """``(text before WITH, [(name, body), ...], text after the last CTE)`` of the
    statement's first ``WITH``, or None."""
    at = _with(sql)
    if at is None:
        return None
    i, ctes = at + 4, []
    while True:
        m = _NAME.match(sql, i)
        if not m:
            return None
        end = _close(sql, m.end())
        if end is None:
            return None
        ctes.append((m.group(1), sql[m.end():end - 1]))
        rest = re.match(r"\s*,", sql[end:])
        if not rest:
            return sql[:at], ctes, sql[end:]
        i = end + rest.end()


def shared(ctes: list[tuple[str, str]], final: str) -> set[str]:
    """The CTEs named more than once in the text that follows their definition."""
    out = set()
    for k, (name, _body) in enumerate(ctes):
        later = " ".join(b for _n, b in ctes[k + 1:]) + " " + final
        if len(re.findall(rf"(?<![\w.]){re.escape(name)}(?!\w)", later)) > 1:
            out.add(name)
    return out


def statement(ctes: list[tuple[str, str]], final: str, prefix: str = "") -> str:
    if not ctes:
        return prefix + final
    return prefix + "WITH " + ",\n".join(f"{n} AS ({b})" for n, b in ctes) + "\n" + final


def collect(spark, translate: Callable[[str], str], sql: str):
    """``(rows, column names)`` of ``sql`` run on ``spark`` (spelled by ``translate``), its
    shared CTEs computed once first. The detectors (``SparkEngine``) and the triage stage's
    queries (``SparkCon``) both run through here."""
    parts = split(sql)
    made: list = []
    try:
        if parts is not None:
            sql = _computed(spark, translate, *parts, made)
        df = spark.sql(translate(sql))
        return df.collect(), df.columns
    finally:
        for view, df in made:
            spark.catalog.dropTempView(view)
            df.unpersist()


def _computed(spark, translate, prefix: str, defs: list[tuple[str, str]], final: str,
              made: list) -> str:
    """Each shared CTE computed into a view ``zw_q<n>_<name>`` (unique per query, so
    queries run side by side); the statement that reads them. ``localCheckpoint`` keeps
    the rows in the executors (memory, then disk) and cuts the plan there: a view over a
    merely cached DataFrame still carries the whole plan before it, and analysing the
    later CTEs grows with it until the driver runs out of memory."""
    names, done = shared(defs, final), []
    for name, body in defs:
        if name in names:
            view = f"zw_q{next(_QUERY_SEQ)}_{name}"
            df = spark.sql(translate(statement(done, f"SELECT * FROM ({body}) zw_t")))
            df = df.localCheckpoint(eager=True)
            made.append((view, df))
            df.createOrReplaceTempView(view)
            body = f"SELECT * FROM {view}"
        done.append((name, body))
    return statement(done, final, prefix)
