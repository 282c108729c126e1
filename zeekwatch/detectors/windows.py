"""Distinct counts in several sliding windows at once, and the roll-up of their episodes.

The scan detectors count distinct values (hosts, ports) per group in an exact sliding window
(``base.distinct_window``'s algorithm). A fast scan fills a short window (20 ports in 60 s); a
slow one never does, however long it runs (500 ports over a day at 1-4 per minute), so the
detectors also count in a long window (100 distinct values in 24 h, as Zeek's scan policy and
Slips count over minutes to hours). Each window is a ``Tier``; every tier's episodes are found
over the same events in one query, and the episodes of one group that lie less than ``gap``
seconds apart (short-tier bursts inside a long-tier episode, or bursts an hour apart) are
rolled up into one finding, whose details list them (``episodes``: first, last, observed,
threshold, window; ``episode_count``). One scanner over one day is then one finding, not one
per burst. The candidate's ``observed``, ``threshold`` and ``window`` are those of its
strongest episode (largest observed / threshold; the longer window on ties).

Plain window functions and joins, engine differences through the ``Dialect``, so Spark runs
the same SQL.
"""

from __future__ import annotations

from dataclasses import dataclass

from zeekwatch.detectors.base import UIDS_LIMIT, VALUES_LIMIT, Dialect

EPISODES_LIMIT = 20  # episodes listed in a finding's details (episode_count has them all)


@dataclass(frozen=True)
class Tier:
    """One window: its length (seconds) and the threshold of each event's group, as SQL over
    the events' columns (a number, or e.g. a CASE on the port). NULL: the event does not count
    in this tier (e.g. external scanners in the long tier); ``window`` 0: the tier is off."""

    name: str
    window: float
    threshold: str


def _eq(a: str, b: str, group: list[str]) -> str:
    return " AND ".join(f"{a}.{c} IS NOT DISTINCT FROM {b}.{c}" for c in group)


def _dense_ctes(k: int, W: float, group: list[str]) -> str:
    """CTE ``dense{k}``: the groups of tier ``k`` that can hold a window at its threshold.

    A window [x - W, x] lies in two adjacent time slots floor(t / W), so it can hold the
    threshold of distinct values only where the distinct counts of some slot and the next
    add up to it. The groups where no pair does are dropped before the sorting steps: the
    result is the same, and the cost follows the scans, not the busy hosts (noisy data:
    2,915 groups pass the whole-data count, 4 pass this one). A group with events without a
    time is kept (its slot is NULL)."""
    cols = lambda a: ", ".join(f"{a}.{c}" for c in group)  # noqa: E731
    g = ", ".join(group)
    return f"""
slots{k} AS (
  SELECT DISTINCT {g}, v, CAST(floor(t / {W}) AS BIGINT) AS k FROM ev WHERE hot{k} AND thr{k} IS NOT NULL),
cnt{k} AS (SELECT {g}, k, count(*) AS n FROM slots{k} GROUP BY {g}, k),
dense{k} AS (
  SELECT DISTINCT {cols("a")} FROM cnt{k} a
  LEFT JOIN cnt{k} c ON {_eq("a", "c", group)} AND c.k = a.k + 1
  JOIN busy b ON {_eq("a", "b", group)}
  WHERE a.k IS NULL OR a.n + coalesce(c.n, 0) >= b.bt{k}),"""


def _tier_ctes(k: int, tier: Tier, group: list[str], dialect: Dialect) -> str:
    """CTEs ``isl{k}`` .. ``eps{k}``: the episodes of tier ``k`` (``distinct_window``'s
    islands and running count) over the materialized events ``ev``."""
    g, W = ", ".join(group), float(tier.window)
    cols = lambda a: ", ".join(f"{a}.{c}" for c in group)  # noqa: E731
    return f"""{_dense_ctes(k, W, group)}
gaps{k} AS (
  SELECT {cols("e")}, e.v, e.t,
         CASE WHEN e.t - lag(e.t) OVER (PARTITION BY {cols("e")}, e.v ORDER BY e.t) <= {W} THEN 0 ELSE 1 END
           AS brk
  FROM ev e JOIN dense{k} d ON {_eq("e", "d", group)} WHERE e.hot{k} AND e.thr{k} IS NOT NULL),
num{k} AS (
  SELECT {g}, v, t, sum(brk) OVER (PARTITION BY {g}, v ORDER BY t
                                   ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS isl
  FROM gaps{k}),
isl{k} AS (SELECT {g}, v, min(t) AS s, max(t) + {W} AS e FROM num{k} GROUP BY {g}, v, isl),
pts{k} AS (SELECT {g}, s AS t, 1 AS d FROM isl{k} UNION ALL SELECT {g}, e AS t, -1 AS d FROM isl{k}),
run{k} AS (
  SELECT {g}, t, d, sum(d) OVER (PARTITION BY {g} ORDER BY t, d DESC
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS c
  FROM pts{k}),
mark{k} AS (
  SELECT r.*, b.bt{k} AS thr,
         sum(CASE WHEN r.c >= b.bt{k} THEN 0 ELSE 1 END) OVER (
           PARTITION BY {", ".join("r." + c for c in group)} ORDER BY r.t, r.d DESC
           ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS ep
  FROM run{k} r JOIN busy b ON {_eq("r", "b", group)} WHERE b.hot{k}),
eps{k} AS (
  SELECT {g}, min(t) - {W} AS span_start, max(t) AS span_end, max(c) AS observed,
         max(thr) AS thr, CAST({W} AS DOUBLE) AS win
  FROM mark{k} WHERE c >= thr GROUP BY {g}, ep),"""


def tiered_window(events: str, group: list[str], tiers: list[Tier], gap: float,
                  dialect: Dialect, label: str = "v", lookup: str | None = None) -> str:
    """Episodes where some exact sliding window of some tier held ≥ its threshold of distinct
    values, rolled up per group when less than ``gap`` seconds apart.

    ``events``: SQL with ``<group...>, t, v, uid`` (and ``label``), as for
    ``base.distinct_window``; with ``lookup`` (``rid, uid, <label>``) the events carry ``rid``
    and the text is fetched for the evidence only. Groups whose data holds fewer distinct values
    than a tier's threshold are dropped for that tier before any window work.

    Returns SQL with ``<group...>, t_first, t_last, observed, threshold, window,
    distinct_total, distinct_values, uids, evidence_total, episode_count, episodes``.
    """
    tiers = [t for t in tiers if float(t.window) > 0]
    g = ", ".join(group)
    thr = ", ".join(f"CAST({t.threshold} AS BIGINT) AS thr{k}" for k, t in enumerate(tiers))
    # distinct values per tier by two plain aggregations (per value, then per group): cheaper
    # than a count(DISTINCT) per tier over every event
    per_v = ", ".join(f"max(thr{k}) AS t{k}" for k in range(len(tiers)))
    hot = [f"count(t{k}) >= max(t{k})" for k in range(len(tiers))]
    busy_cols = ", ".join(f"max(t{k}) AS bt{k}, coalesce({h}, FALSE) AS hot{k}"
                          for k, h in enumerate(hot))
    ctes = "".join(_tier_ctes(k, t, group, dialect) for k, t in enumerate(tiers))
    eps = " UNION ALL ".join(f"SELECT * FROM eps{k}" for k in range(len(tiers)))
    ref = "x" if lookup else "e0"
    join_lookup = f"JOIN ({lookup}) x ON x.rid = e0.rid" if lookup else ""
    episode = dialect.record({
        "first": dialect.iso_epoch("q.first"), "last": dialect.iso_epoch("q.last"),
        "observed": "q.observed", "threshold": "q.thr", "window": "q.win"})
    return f"""
WITH ev_all AS ({events}),
ev_thr AS (SELECT e.*, {thr} FROM ev_all e),
per_v AS (SELECT {g}, v, {per_v} FROM ev_thr GROUP BY {g}, v),
busy AS (SELECT {g}, {busy_cols} FROM per_v GROUP BY {g} HAVING {" OR ".join(hot)}),
ev AS {dialect.materialized()} (
  SELECT e.*, {", ".join(f"b.hot{k}" for k in range(len(tiers)))}
  FROM ev_thr e JOIN busy b ON {_eq("e", "b", group)}),{ctes}
eps AS ({eps}),
ord AS (
  SELECT p.*, max(span_end) OVER (PARTITION BY {g} ORDER BY span_start, span_end
                                  ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
  FROM eps p),
sess AS (
  SELECT o.*, sum(CASE WHEN span_start <= prev_end + {float(gap)} THEN 0 ELSE 1 END) OVER (
           PARTITION BY {g} ORDER BY span_start, span_end
           ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS s
  FROM ord o),
ranked AS (
  SELECT q.*, row_number() OVER (PARTITION BY {", ".join("q." + c for c in group)}, q.s
                                 ORDER BY q.observed / q.thr DESC, q.win DESC, q.span_start) AS rn
  FROM sess q),
epi AS (  -- each episode's evidence times
  SELECT {", ".join("q." + c for c in group)}, q.s, q.span_start, q.observed, q.thr, q.win,
         min(e.t) AS first, max(e.t) AS last
  FROM sess q JOIN ev e ON {_eq("e", "q", group)} AND e.t BETWEEN q.span_start AND q.span_end
  GROUP BY {", ".join("q." + c for c in group)}, q.s, q.span_start, q.span_end, q.observed,
           q.thr, q.win),
spans AS (
  SELECT {", ".join("q." + c for c in group)}, q.s, min(q.first) AS s_first, max(q.last) AS s_last,
         count(*) AS episode_count,
         {dialect.ordered_list(episode, "q.first, q.win", EPISODES_LIMIT)} AS episodes
  FROM epi q GROUP BY {", ".join("q." + c for c in group)}, q.s),
evid AS (
  SELECT {", ".join("p." + c for c in group)}, p.s,
         min(e0.t) AS t_first, max(e0.t) AS t_last, count(DISTINCT e0.v) AS distinct_total,
         {dialect.distinct_list(f"{ref}.{label}", VALUES_LIMIT)} AS distinct_values,
         {dialect.first_list(f"{ref}.uid", UIDS_LIMIT)} AS uids, count(*) AS evidence_total
  FROM spans p JOIN ev e0 ON {_eq("e0", "p", group)} AND e0.t BETWEEN p.s_first AND p.s_last
  {join_lookup}
  GROUP BY {", ".join("p." + c for c in group)}, p.s)
SELECT {", ".join("d." + c for c in group)}, d.t_first, d.t_last,
       CAST(b.observed AS DOUBLE) AS observed, CAST(b.thr AS DOUBLE) AS threshold,
       b.win AS window, d.distinct_total, d.distinct_values, d.uids, d.evidence_total,
       p.episode_count, p.episodes
FROM evid d
JOIN spans p ON {_eq("p", "d", group)} AND p.s = d.s
JOIN ranked b ON {_eq("b", "d", group)} AND b.s = d.s AND b.rn = 1
"""


def tier_candidates(eps: str, key: str = "NULL", host: str = "x.host", peer: str = "NULL",
                    joins: str = "", more: str = "") -> str:
    """SQL: ``tiered_window``'s rows (alias ``x``) as candidate rows, with ``window``,
    ``episode_count`` and ``episodes`` for the details (``more``: further columns)."""
    return (f"SELECT {host} AS host, {peer} AS peer, {key} AS key, x.t_first, x.t_last, "
            f"x.observed, x.threshold, x.distinct_total, x.distinct_values, x.uids, "
            f"x.evidence_total, x.window, x.episode_count, x.episodes{more} FROM ({eps}) x {joins}")
