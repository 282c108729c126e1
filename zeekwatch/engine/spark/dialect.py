"""Spark SQL spellings of the detector SQL (``detectors.base.Dialect`` hooks).

Every detector declares its query once; the engine asks the context's dialect for the few
constructs that DuckDB and Spark spell differently (list aggregates, epoch seconds, time-zone
offsets, date text). ``translate`` maps the remaining pure spellings of type names, which both
engines understand alike but write differently (``CAST(x AS VARCHAR)`` is ``STRING`` in Spark,
which wants a length after VARCHAR); it never rewrites logic.
"""

from __future__ import annotations

import re

from zeekwatch.detectors.base import Dialect
from zeekwatch.sql import sql_text

_TYPES = [(re.compile(r"\bAS\s+VARCHAR\b(?!\s*\()", re.I), "AS STRING"),
          (re.compile(r"\bAS\s+INTEGER\b", re.I), "AS INT")]


def _micros(epoch: str) -> str:
    """A timestamp from epoch seconds (DOUBLE) with microseconds, as DuckDB's to_timestamp."""
    return f"timestamp_micros(CAST(round(({epoch}) * 1000000) AS BIGINT))"


class SparkDialect(Dialect):
    """Spark SQL (3.5 / 4.x) forms of the dialect hooks; the session runs in UTC."""

    name = "spark"

    def epoch(self, col: str) -> str:
        return f"(CAST(unix_micros({col}) AS DOUBLE) / 1000000.0D)"

    def distinct_list(self, expr: str, limit: int) -> str:
        # collect_set drops NULLs, as DuckDB's list_distinct does
        return f"slice(array_sort(collect_set({expr})), 1, {int(limit)})"

    def first_list(self, expr: str, limit: int) -> str:
        # NULLs are dropped (DuckDB sorts them last; callers drop them from the lists)
        return f"slice(array_sort(collect_list({expr})), 1, {int(limit)})"

    def materialized(self) -> str:
        return ""

    def utc_offset(self, epoch: str, tz: str) -> str:
        local = f"from_utc_timestamp({_micros(epoch)}, '{tz}')"
        return f"({self.epoch(local)} - {self.epoch(_micros(epoch))})"

    def date_text(self, days: str) -> str:
        return f"CAST(date_add(DATE '1970-01-01', CAST({days} AS INT)) AS STRING)"

    def ordered_list(self, expr: str, order_by: str, limit: int | None) -> str:
        keys = [k.strip() for k in order_by.split(",") if k.strip()]
        if any(re.search(r"\s(ASC|DESC|NULLS)\b", k, re.I) for k in keys):
            raise NotImplementedError("SparkDialect.ordered_list: plain ascending keys only")
        fields = ", ".join(f"{k} AS k{i}" for i, k in enumerate(keys))
        ordered = f"array_sort(collect_list(struct({fields}, {expr} AS v)))"
        if limit is not None:
            ordered = f"slice({ordered}, 1, {int(limit)})"
        return f"transform({ordered}, x -> x.v)"

    def iso_utc(self, ts_col: str) -> str:
        return f"date_format({ts_col}, \"yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'\")"

    def unnest(self, *exprs: str) -> str:
        return f"explode(array({', '.join(exprs)}))"

    def unnest_list(self, expr: str) -> str:
        return f"explode({expr})"

    def unnest_range(self, lo: str, hi: str) -> str:
        return f"explode(sequence({lo}, {hi}))"

    def record(self, fields: dict[str, str]) -> str:
        return "named_struct(" + ", ".join(f"'{k}', {v}" for k, v in fields.items()) + ")"

    def iso_epoch(self, epoch: str) -> str:
        return (f"date_format(from_utc_timestamp(timestamp_seconds(CAST(floor({epoch}) AS BIGINT)), "
                f"'UTC'), \"yyyy-MM-dd'T'HH:mm:ss'Z'\")")

    def quantile(self, expr: str, q: float) -> str:
        # exact and interpolated like DuckDB's quantile_cont (percentile_approx is not)
        return f"percentile({expr}, {float(q)})"

    def quantiles(self, expr: str, qs) -> str:
        return f"percentile({expr}, array({', '.join(str(float(q)) for q in qs)}))"

    def item(self, array: str, i: int) -> str:
        return f"element_at({array}, {int(i)})"

    def split_text(self, expr: str, sep: str) -> str:
        # each character as a one-character class: no backslash, which Spark's string
        # literals would consume before the regex sees it
        return f"split({expr}, {sql_text(''.join(_char_class(c) for c in sep))}, -1)"

    def list_item(self, expr: str, i: str) -> str:
        return f"element_at({expr}, {i})"

    def list_len(self, expr: str) -> str:
        return f"size({expr})"

    def list_join_from(self, expr: str, i: str, sep: str) -> str:
        return f"array_join(slice({expr}, {i}, size({expr}) - ({i}) + 1), {sql_text(sep)})"

    def regex_icase(self, expr: str, pattern: str) -> str:
        # Spark's string literals consume backslashes ('\b' is a backspace): double them so
        # the regex gets the pattern as written (\b, \d, \.)
        literal = sql_text("(?i)" + pattern.replace("\\", "\\\\"))
        return f"({expr} RLIKE {literal})"

    def translate(self, sql: str) -> str:
        """Type-name spellings DuckDB accepts and Spark writes otherwise."""
        for pattern, repl in _TYPES:
            sql = pattern.sub(repl, sql)
        return sql


def _char_class(c: str) -> str:
    """A regex matching exactly ``c`` as a one-character class (``[.]``); ``^``, ``]`` and a
    backslash cannot be one, so they are spelled by code point with the backslash doubled for
    Spark's string literal (``\\\\x{5e}`` in SQL, ``\\x{5e}`` for the regex)."""
    return "\\\\" + f"x{{{ord(c):x}}}" if c in "^]\\" else f"[{c}]"
