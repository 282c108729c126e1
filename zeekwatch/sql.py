"""SQL text helpers shared by the engine's enrichment and the detectors (plain SQL that
DuckDB and Spark both accept)."""

from __future__ import annotations


def sql_text(value) -> str:
    """A SQL string literal of ``value`` (quotes doubled)."""
    return "'" + str(value).replace("'", "''") + "'"


def sql_list(values) -> str:
    """A SQL IN-list of literals (ints or strings)."""
    out = [str(v) if isinstance(v, (int, float)) else sql_text(v) for v in values]
    return "(" + ", ".join(out or ["NULL"]) + ")"


def in_list(col: str, values, negate: bool = False) -> str:
    """SQL: ``col IN (...)`` that stays correct for an empty list (FALSE, or TRUE negated)."""
    values = list(values)
    if not values:
        return "TRUE" if negate else "FALSE"
    return f"{col} {'NOT IN' if negate else 'IN'} {sql_list(values)}"
