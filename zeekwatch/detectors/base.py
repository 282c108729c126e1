"""How a detector is declared, and the shared SQL building blocks.

A detector is data: its id, title, threat type, the tables it needs, its default parameters,
its known false positives, a function that returns ONE SQL query over the normalized tables,
and a function that writes the one-line summary of a finding. The engine runs the query
(DuckDB, or Spark through the same dialect hooks); no detector loops over rows in Python.

Every detector query returns these columns (the *candidate* contract):

    host, peer, key            entity of the finding (peer/key may be NULL)
    t_first, t_last            epoch seconds of the first and last evidence event
    observed, threshold        the value seen and the threshold crossed (DOUBLE)
    distinct_total             number of distinct values in the evidence (BIGINT)
    distinct_values            bounded, sorted list of those values (VARCHAR[])
    uids                       bounded list of evidence uids (VARCHAR[])
    evidence_total             number of evidence events (BIGINT)

Any further columns are kept in the finding's ``details`` (e.g. ``mx_lookups``).

The queries read conn through ``cx``, the enriched conn rows (``zeekwatch/engine/enrich.py``: address
classes and ids, failed/established/initiated/answered/outbound), besides the normalized tables and the
engine's helper tables (``zw_addr``, ``zw_services``, ``resolved``, ``known_services``).

``extra`` may hold ``learn`` (a query of services to store in the baseline) and ``tables``
(name -> SQL of helper tables the engine makes once per run before the detector's queries, so
that the query and ``learn`` share one pass over the rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from zeekwatch.nets import Nets
from zeekwatch.params import Param
from zeekwatch.sql import in_list, sql_list, sql_text  # noqa: F401  (detectors import them from here)

VALUES_LIMIT = 20  # distinct values listed on a finding (the total is kept too)
UIDS_LIMIT = 20  # evidence uids listed on a finding

CANDIDATE_COLUMNS = ("host", "peer", "key", "t_first", "t_last", "observed", "threshold",
                     "distinct_total", "distinct_values", "uids", "evidence_total")


class Dialect:
    """SQL differences between engines, kept to a handful of functions."""

    name = "duckdb"

    def epoch(self, col: str) -> str:
        return f"epoch({col})"

    def distinct_list(self, expr: str, limit: int) -> str:
        return f"list_slice(list_sort(list_distinct(list({expr}))), 1, {limit})"

    def first_list(self, expr: str, limit: int) -> str:
        return f"list_slice(list({expr} ORDER BY {expr}), 1, {limit})"

    def materialized(self) -> str:
        """CTE keyword that computes a CTE once (DuckDB); Spark caches by itself."""
        return "MATERIALIZED"

    def utc_offset(self, epoch: str, tz: str) -> str:
        """Seconds that local time in zone ``tz`` is ahead of UTC at the instant ``epoch``
        (epoch seconds)."""
        return f"(epoch(timezone('{tz}', to_timestamp({epoch}))) - ({epoch}))"

    def date_text(self, days: str) -> str:
        """'YYYY-MM-DD' of the day ``days`` (an integer) after 1970-01-01."""
        return f"CAST(DATE '1970-01-01' + CAST({days} AS INTEGER) AS VARCHAR)"

    def ordered_list(self, expr: str, order_by: str, limit: int | None) -> str:
        """Aggregate: the first ``limit`` values (all when None) of ``expr`` ordered by
        ``order_by`` (a SQL ORDER BY list of ascending keys, e.g. ``"-n, v"``)."""
        whole = f"list({expr} ORDER BY {order_by})"
        return whole if limit is None else f"list_slice({whole}, 1, {int(limit)})"

    def record(self, fields: dict[str, str]) -> str:
        """A struct value from SQL expressions (name -> expression), e.g. one episode of a
        finding's ``episodes`` list (Spark: ``named_struct``)."""
        return "{" + ", ".join(f"'{k}': {v}" for k, v in fields.items()) + "}"

    def iso_epoch(self, epoch: str) -> str:
        """Epoch seconds as ISO-8601 UTC text to the second (``2024-03-12T10:02:10Z``)."""
        return f"strftime(timezone('UTC', to_timestamp({epoch})), '%Y-%m-%dT%H:%M:%SZ')"

    def quantile(self, expr: str, q: float) -> str:
        """Aggregate: the ``q`` quantile (0..1) of ``expr``, interpolated between the two
        nearest values (DuckDB ``quantile_cont``; a Spark dialect says
        ``percentile_approx(expr, q, 10000)`` or the exact ``percentile(expr, q)``). NULLs
        are ignored, so ``CASE WHEN ... THEN x END`` selects the values."""
        return f"quantile_cont({expr}, {float(q)})"

    def quantiles(self, expr: str, qs) -> str:
        """Aggregate: a list of the ``qs`` quantiles of ``expr`` from one sort (``quantile``'s
        interpolation; Spark: ``percentile_approx(expr, array(...), 10000)``); read one with
        ``item``."""
        return f"quantile_cont({expr}, [{', '.join(str(float(q)) for q in qs)}])"

    def item(self, array: str, i: int) -> str:
        """The ``i``-th element (1-based) of a list (DuckDB lists count from 1, Spark's
        arrays from 0)."""
        return f"{array}[{int(i)}]"

    def iso_utc(self, ts_col: str) -> str:
        """A UTC timestamp as ISO-8601 text with microseconds and ``Z`` (``store.iso``'s
        format, so stored times compare as text)."""
        return f"strftime(timezone('UTC', {ts_col}), '%Y-%m-%dT%H:%M:%S.%fZ')"

    def unnest(self, *exprs: str) -> str:
        """Select-list generator: one row per value of ``exprs`` (e.g. both ids of a row)."""
        return f"unnest([{', '.join(exprs)}])"

    def unnest_list(self, expr: str) -> str:
        """Select-list generator: one row per element of the list ``expr``."""
        return f"unnest({expr})"

    def unnest_range(self, lo: str, hi: str) -> str:
        """Select-list generator: one row per integer lo..hi (inclusive)."""
        return f"unnest(generate_series({lo}, {hi}))"

    def split_text(self, expr: str, sep: str) -> str:
        """The list of the pieces of ``expr`` between the (literal) separator ``sep``."""
        return f"string_split({expr}, {sql_text(sep)})"

    def list_item(self, expr: str, i: str) -> str:
        """Element ``i`` (1-based) of a list."""
        return f"{expr}[{i}]"

    def list_len(self, expr: str) -> str:
        return f"len({expr})"

    def list_join_from(self, expr: str, i: str, sep: str) -> str:
        """The elements of a list from ``i`` (1-based) on, joined with ``sep``."""
        return f"array_to_string({expr}[{i}:], {sql_text(sep)})"

    def regex_icase(self, expr: str, pattern: str) -> str:
        """SQL boolean: ``pattern`` (a regular expression, Python text) matches somewhere in
        ``expr``, ignoring case."""
        return f"regexp_matches({expr}, {sql_text(pattern)}, 'i')"

    def translate(self, sql: str) -> str:
        """The whole query as this engine spells type names (DuckDB: unchanged; Spark:
        ``engine.spark.dialect``)."""
        return sql


@dataclass
class Context:
    """What a detector's SQL may use besides its parameters."""

    nets: Nets
    dialect: Dialect
    config: Any  # zeekwatch.config.Config (time zone, business hours, networks)

    def internal(self, col: str) -> str:
        return self.nets.internal(col)

    def member(self, col: str, name: str) -> str:
        return self.nets.member(col, name)

    def epoch(self, col: str) -> str:
        return self.dialect.epoch(col)


@dataclass(frozen=True)
class Detector:
    """A behaviour, declared once. See the module docstring for the query contract.

    ``params`` are the typed, documented parameters (``zeekwatch.params.Param``); the config's
    ``[detectors.<id>]`` table overrides them and every value is checked before a run.
    ``windowed``: the query counts distinct values in a sliding ``window`` (follow runs it on
    every batch, over a look-back of at least the window); ``threshold`` names the parameter that
    is its smallest distinct count. ``whole_data``: the query compares against the whole data
    (a population or a baseline), so follow runs it periodically over its look-back.
    ``attack``: the MITRE ATT&CK technique ids (``T1046``, ``T1071.003``) the behaviour is
    evidence of; every export and ``findings show`` carries them (``zeekwatch.attack``).
    """

    id: str
    title: str
    threat: str
    needs: tuple[str, ...]
    params: tuple[Param, ...]
    false_positives: str
    query: Callable[[dict, Context], str]
    summary: Callable[[dict, dict], str]
    doc: str = ""
    windowed: bool = False
    threshold: str = ""
    whole_data: bool = False
    attack: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"detector {self.id!r}: a parameter is declared twice")
        if self.threshold and self.threshold not in names:
            raise ValueError(f"detector {self.id!r}: threshold {self.threshold!r} is not a parameter")
        if self.windowed and "window" not in names:
            raise ValueError(f"detector {self.id!r}: windowed but no 'window' parameter")

    @property
    def defaults(self) -> dict[str, Any]:
        """Parameter name -> declared default."""
        return {p.name: p.default for p in self.params}


REGISTRY: dict[str, Detector] = {}


def register(det: Detector) -> Detector:
    if det.id in REGISTRY:
        raise ValueError(f"detector {det.id!r} declared twice")
    REGISTRY[det.id] = det
    return det


def pair(host_id: str, addr_id: str) -> str:
    """SQL: two address ids (zw_addr, 32-bit) as one BIGINT key, e.g. a connection's
    ``pair('c.orig_id', 'c.resp_id')`` against the engine's ``resolved.pair`` (one integer
    join key costs about half of two)."""
    return f"(CAST({host_id} AS BIGINT) * 4294967296 + {addr_id})"


# -- conn.service tests ---------------------------------------------------------------------
# ``service`` is a comma-separated token list ("http,ssl"). Every test is decided once per
# distinct value (a semi-join against the engine's ``zw_services`` table), never by string
# functions on every connection: a per-row trim() over 2 M rows costs 50 ms, the semi-join 5.

def _tokens(col: str) -> str:
    return f"(',' || replace(lower({col}), ' ', '') || ',')"


def _lit(text: str) -> str:
    return sql_text(str(text).lower())


def _per_service(col: str, test: str) -> str:
    """``test`` (over ``s.s``) decided once per distinct service value — a semi-join against
    the engine's ``zw_services`` table — instead of string work on every connection."""
    return f"coalesce({col} IN (SELECT s.s FROM zw_services s WHERE {test}), FALSE)"


def service_token(col: str, names) -> str:
    """SQL boolean over one service value ``col`` (a ``zw_services`` row): one of its
    comma-separated tokens is in ``names``."""
    names = list(names)
    if not names:
        return "FALSE"
    toks = _tokens(col)
    return "(" + " OR ".join(f"instr({toks}, ',' || {_lit(n)} || ',') > 0" for n in names) + ")"


def has_service(col: str, names) -> str:
    """SQL boolean: one of the comma-separated tokens of ``col`` (conn.service) is in ``names``."""
    if not list(names):
        return "FALSE"
    return _per_service(col, service_token("s.s", names))


def only_services(col: str, names) -> str:
    """SQL boolean: every token of ``col`` (conn.service) is in ``names`` (non-empty)."""
    expr = _tokens("s.s")
    for _ in range(2):  # twice: a replace pass skips a token right after a replaced one
        for n in names:
            expr = f"replace({expr}, ',' || {_lit(n)} || ',', ',')"
    return _per_service(col, f"({expr} = ',')")


def service_known(col: str) -> str:
    """SQL boolean (never NULL): ``col`` (conn.service) names a service (not NULL, empty
    or '-'); decided once per distinct value, like every service test."""
    return _per_service(col, "trim(s.s) NOT IN ('', '-')")


def service_in(col: str, names) -> str:
    """SQL boolean (never NULL): ``col`` (conn.service) is exactly one of ``names``; NULL
    counts as '' (so it matches when '' is listed)."""
    names = [str(n) for n in names]
    if not names:
        return "FALSE"
    hit = _per_service(col, f"s.s IN {sql_list(names)}")
    return f"({hit} OR {col} IS NULL)" if "" in names else hit


def distinct_window(events: str, group: list[str], window: float, threshold: int | str,
                    dialect: Dialect, label: str = "v", lookup: str | None = None) -> str:
    """Episodes where some exact sliding window held ≥ ``threshold`` distinct values.

    ``events`` is SQL with columns ``<group...>, t (epoch seconds), v (value), uid`` (and
    ``label`` if given). A window is closed: values whose events lie within ``window`` seconds
    of each other (t_last - t_first <= window) count together. Per (group, value) the events
    are merged into islands [first, last + window]; a running sum of +1 at island starts and
    -1 at island ends (starts first on ties) is the distinct count of the window ending there.
    Maximal runs where it is ≥ threshold are episodes. Plain window functions only, so the
    same SQL runs on Spark (which has no count(DISTINCT) OVER).

    ``threshold`` is a number, or the name of an events column that holds each group's
    threshold (constant within a group). ``v`` is what is counted (an integer id is cheapest);
    ``label`` is what ``distinct_values`` lists (e.g. the address text of an address id), one
    label per value. With ``lookup`` (SQL with columns ``rid, uid`` and the label column),
    the events carry ``rid`` instead of ``uid`` and the label, and those are looked up for
    the evidence rows only: the heavy steps then move numbers, not text.

    Cost follows the evidence, not the traffic: a window that holds ``threshold`` distinct
    values starts at some event, in time slot k = floor(t / window), and ends before the end of
    slot k + 1; so only the (group, pair of adjacent slots) with that many distinct values can
    hold one. Those pairs are found by one hash aggregate over the events' distinct (group,
    slot, value) — first the pairs whose two slots' counts add up to the threshold, then their
    exact distinct counts — and only the events in their slots go on to the exact (sorting) steps. The
    result is the same as over all events: every window at or above the threshold, and every
    event of an episode's span, lies in such a pair. (A busy browser's hundreds of resolved
    destinations a day pass the old whole-day test; a few per minute do not pass this one.)

    Returns SQL with ``<group...>, t_first, t_last, observed, threshold, distinct_total,
    distinct_values, uids, evidence_total``.
    """
    g = ", ".join(group)
    on = " AND ".join(f"e.{c} IS NOT DISTINCT FROM p.{c}" for c in group)
    W = float(window)
    ref = "x" if lookup else "e0"  # where uid and the label come from
    per_group = isinstance(threshold, str)
    thr = "thr" if per_group else str(int(threshold))
    thr_col = f", {threshold} AS thr" if per_group else ""
    slot = f"CAST(floor(t / {W}) AS BIGINT)"
    match = lambda a, b: " AND ".join(f"{a}.{c} IS NOT DISTINCT FROM {b}.{c}" for c in group)  # noqa: E731
    return f"""
WITH ev_all AS ({events}),
slots AS {dialect.materialized()} (
  SELECT DISTINCT {g}, v, {slot} AS k{", thr" if per_group else ""}
  FROM (SELECT {g}, v, t{thr_col} FROM ev_all) x),
counts AS (SELECT {g}, k, count(*) AS n{", max(thr) AS thr" if per_group else ""} FROM slots GROUP BY {g}, k),
maybe AS (  -- a pair can hold the threshold only if its two slots' counts add up to it
  SELECT {", ".join(f"a.{c}" for c in group)}, a.k FROM counts a
  LEFT JOIN counts b ON {match("a", "b")} AND b.k = a.k + 1
  WHERE a.n + coalesce(b.n, 0) >= {"a.thr" if per_group else thr}
  UNION SELECT {", ".join(f"b.{c}" for c in group)}, b.k - 1 AS k FROM counts b
  WHERE b.n >= {"b.thr" if per_group else thr}),
pairs AS (
  SELECT {", ".join(f"m.{c}" for c in group)}, m.k{", max(s.thr) AS thr" if per_group else ""}
  FROM maybe m JOIN slots s ON {match("s", "m")} AND (s.k = m.k OR s.k = m.k + 1)
  GROUP BY {", ".join(f"m.{c}" for c in group)}, m.k
  HAVING count(DISTINCT s.v) >= {"max(s.thr)" if per_group else thr}),
hot AS (SELECT DISTINCT {g}, k FROM (SELECT {g}, k FROM pairs UNION ALL SELECT {g}, k + 1 FROM pairs) z),
busy AS (SELECT DISTINCT {g}{", thr" if per_group else ""} FROM pairs),
ev AS {dialect.materialized()} (
  SELECT e.*{", b.thr" if per_group else ""} FROM ev_all e
  JOIN hot h ON {match("e", "h")} AND h.k = CAST(floor(e.t / {W}) AS BIGINT)
  {("JOIN busy b ON " + match("e", "b")) if per_group else ""}),
gaps AS (
  SELECT {g}, v, t,
         CASE WHEN t - lag(t) OVER (PARTITION BY {g}, v ORDER BY t) <= {W} THEN 0 ELSE 1 END AS brk
  FROM ev),
numbered AS (
  SELECT {g}, v, t, sum(brk) OVER (PARTITION BY {g}, v ORDER BY t
                                   ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS isl
  FROM gaps),
islands AS (SELECT {g}, v, min(t) AS s, max(t) + {W} AS e FROM numbered GROUP BY {g}, v, isl),
pts AS (SELECT {g}, s AS t, 1 AS d FROM islands
        UNION ALL SELECT {g}, e AS t, -1 AS d FROM islands),
run AS (
  SELECT {g}, t, d, sum(d) OVER (PARTITION BY {g} ORDER BY t, d DESC
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS c
  FROM pts),
marked AS (
  SELECT r.*, {"b.thr" if per_group else thr} AS thr,
         sum(CASE WHEN c >= {"b.thr" if per_group else thr} THEN 0 ELSE 1 END) OVER (
           PARTITION BY {", ".join("r." + c for c in group)} ORDER BY r.t, r.d DESC
           ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS ep
  FROM run r{(" JOIN busy b ON " + " AND ".join(f"r.{c} IS NOT DISTINCT FROM b.{c}" for c in group)) if per_group else ""}),
eps AS (
  SELECT {g}, ep, thr, min(t) AS hot_start, max(t) AS hot_end, max(c) AS observed
  FROM marked WHERE c >= thr GROUP BY {g}, ep, thr)
SELECT {", ".join(f"p.{c}" for c in group)}, p.observed, p.thr AS threshold,
       min(e0.t) AS t_first, max(e0.t) AS t_last,
       count(DISTINCT e0.v) AS distinct_total,
       {dialect.distinct_list(f"{ref}.{label}", VALUES_LIMIT)} AS distinct_values,
       {dialect.first_list(f"{ref}.uid", UIDS_LIMIT)} AS uids,
       count(*) AS evidence_total
FROM eps p JOIN ev e0 ON {on.replace("e.", "e0.")} AND e0.t BETWEEN p.hot_start - {W} AND p.hot_end
{f"JOIN ({lookup}) x ON x.rid = e0.rid" if lookup else ""}
GROUP BY {", ".join(f"p.{c}" for c in group)}, p.ep, p.observed, p.thr
"""


def window_candidates(eps: str, key: str = "NULL", host: str = "x.host", peer: str = "NULL",
                      joins: str = "") -> str:
    """SQL: ``distinct_window``'s episodes (alias ``x``) as candidate rows. ``host``, ``peer``
    and ``key`` are SQL expressions; ``joins`` may add tables they read (e.g. ``zw_addr``
    to turn address ids back into text)."""
    return (f"SELECT {host} AS host, {peer} AS peer, {key} AS key, x.t_first, x.t_last, "
            f"x.observed, x.threshold, x.distinct_total, x.distinct_values, x.uids, "
            f"x.evidence_total FROM ({eps}) x {joins}")
