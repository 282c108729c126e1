"""A finding as it travels from detection through triage to the store: one typed object.

Core module (it imports only other core modules). ``engine.core._candidate`` makes a
``Finding`` from a detector's query row; triage (``triage.stage``: enrichment, suppression,
scoring) reads and sets its attributes; the store (``store.upsert``) writes ``Finding.row()``.
``details`` stays a dict of JSON values all the way: it is serialized once, when the store
writes the row (``json.dumps(details, default=str, sort_keys=True)``), and ``score_terms``
likewise.

Rows read back from SQLite stay dicts where they are only shown or exported (CLI, console,
exports, incidents); where stored findings are judged again with the run's (corroboration,
rescoring, an allowlist rule applied to stored findings) ``Finding.from_row`` makes them
Findings, so triage has one type to read.
"""

from __future__ import annotations

import json
import operator
from json.encoder import encode_basestring_ascii
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

SCORE_COLUMNS = ("urgency", "tier", "due_at", "score_terms")  # machine-owned: rescoring writes them


def jsonable(value: Any) -> Any:
    """``value`` as the store will write and read it back: what ``json.dumps(value,
    default=str)`` then ``json.loads`` gives (tuples become lists, keys text, other objects
    their ``str``), without the text in between."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    # (values and keys of the plain types are taken as they are without a call: most are)
    if isinstance(value, dict):
        return {k if k.__class__ is str else _key(k): v if v.__class__ in _PLAIN else jsonable(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [v if v.__class__ in _PLAIN else jsonable(v) for v in value]
    return str(value)


_PLAIN = {str, bool, int, float, type(None)}  # what ``jsonable`` returns as it is


def _key(k: Any) -> str:
    """A dict key as JSON writes it (``json.dumps`` turns None, bools and numbers to text)."""
    if isinstance(k, str):
        return k
    if k is None or isinstance(k, bool):
        return json.dumps(k)
    if isinstance(k, int):
        return int.__repr__(k)
    if isinstance(k, float):
        return json.dumps(k)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(k).__name__}")


# One encoder each, made once: ``json.dumps`` with options makes one a call. They skip the
# cycle check (its bookkeeping of every container is a third of the time of these small
# dicts): the values are JSON values made by detectors and triage, and a cycle would fail
# anyway (RecursionError instead of ValueError). The text is what ``json.dumps`` writes.
_DETAILS = json.JSONEncoder(default=str, sort_keys=True, check_circular=False)
_TERMS = json.JSONEncoder(check_circular=False)  # json.dumps(score_terms)
_quote = encode_basestring_ascii  # a str as json.dumps writes it (the C function)


def dump_details(details: dict) -> str:
    """The ``details`` column: sorted keys, anything not JSON as its text (what
    ``json.dumps(details, default=str, sort_keys=True)`` writes)."""
    return _DETAILS.encode(details)


def dump_texts(values: list) -> str:
    """``json.dumps(values)``; a list of str (``Finding.values``, always so far) is joined
    directly, 4 times faster than the encoder."""
    if all(v.__class__ is str for v in values):
        return "[" + ", ".join(map(_quote, values)) + "]"
    return json.dumps(values)


def _loads(text: str | None, empty: Any) -> Any:
    if not text:
        return empty
    try:
        return json.loads(text)
    except ValueError:
        return empty


@dataclass(slots=True)
class Finding:
    """One finding of one detector about one entity (host, peer, key) over a time span."""

    detector: str
    """Id of the detector that found it (``horizontal_scan``, ``beacon``, ...)."""
    threat: str
    """Threat type: the row of the scoring matrix (c2, worm, recon, ...)."""
    title: str
    """The detector's title."""
    host: str
    """The acting address (the infected host, or the external scanner)."""
    first_seen: str
    """ISO-8601 UTC time of the first evidence (1970-01-01 when the input's times are masked)."""
    last_seen: str
    """ISO-8601 UTC time of the last evidence."""
    peer: str | None = None
    """The other side, when the finding is about one (a C2 server, a beacon target)."""
    key: str | None = None
    """What else tells the entity apart (a port ``tcp/4444``, a signature ``sid:2100498``)."""
    observed: float | None = None
    """The measured value the detector compared with its threshold."""
    threshold: float | None = None
    """The threshold in force."""
    distinct_total: int = 0
    """How many distinct values (targets, ports, names) the evidence held."""
    values: list[str] = field(default_factory=list)
    """Up to 20 of those distinct values, as text (the ``distinct_values`` column, and evidence)."""
    evidence_total: int = 0
    """How many records the evidence held."""
    uids: list[str] = field(default_factory=list)
    """Evidence: Zeek uids, Suricata flow ids or community ids (up to 20)."""
    community_ids: list[str] = field(default_factory=list)
    """Community ID v1 of the evidence flows (``engine.community.attach``)."""
    summary: str = ""
    """One sentence for the analyst (the detector's ``summary``)."""
    details: dict = field(default_factory=dict)
    """The detector's other columns and what triage adds (peer_names, host_role,
    answered_connections, time_unknown): JSON values, serialized when the store writes them."""
    status: str = "new"
    """Status: ``new``, or ``suppressed`` when analysis suppressed it (``triage.suppress``)."""
    suppressed_reason: str | None = None
    """What explained it (an allowlist rule, a look-alike, app usage) when suppressed."""
    suppression_hit: tuple[str, int | None] | None = None
    """(kind, rule id) of the suppression analysis decided (kind rule, lookalike or app), for
    the store to record once the finding has its id (``TriageStore.settle_hits``)."""
    urgency: int | None = None
    """Urgency 1..10 (``triage.score``)."""
    tier: int | None = None
    """Tier 1..3 of the urgency."""
    due_at: str | None = None
    """ISO-8601 deadline: first_seen (now, without times) plus the tier's hours."""
    score_terms: dict | None = None
    """How the urgency came about (matrix cell, modifiers, tier, owner): JSON values."""
    id: str | None = None
    """The stored finding's id, once the store has matched or inserted it (a stored row's id)."""
    stored: str | None = None
    """What the store did with it: ``new``, ``updated`` or ``same`` (None before the store)."""

    @property
    def distinct_values(self) -> str:
        """The ``distinct_values`` column: ``values`` as a JSON list."""
        return dump_texts(self.values)

    def row(self) -> dict:
        """The findings columns this finding fills, as the store writes them."""
        return {
            "id": self.id, "detector": self.detector, "threat": self.threat, "host": self.host,
            "peer": self.peer, "key": self.key, "first_seen": self.first_seen,
            "last_seen": self.last_seen, "observed": self.observed, "threshold": self.threshold,
            "urgency": self.urgency, "tier": self.tier, "due_at": self.due_at,
            "status": self.status, "summary": self.summary,
            "suppressed_reason": self.suppressed_reason, "title": self.title,
            "distinct_total": self.distinct_total, "distinct_values": self.distinct_values,
            "evidence_total": self.evidence_total, "details": dump_details(self.details),
            "score_terms": self._terms(),
        }

    def scores(self) -> dict:
        """The score columns (urgency, tier, due_at, score_terms as JSON text)."""
        return {"urgency": self.urgency, "tier": self.tier, "due_at": self.due_at,
                "score_terms": self._terms()}

    def _terms(self) -> str | None:
        """The ``score_terms`` column: the terms as JSON text (None without them)."""
        return None if self.score_terms is None else _TERMS.encode(self.score_terms)

    def mapping(self) -> dict:
        """Every field by name, and ``distinct_values`` (detector ``summary`` functions read
        a mapping; ``details`` is the dict)."""
        out = dict(zip(_NAMES, _FIELDS(self)))
        out["distinct_values"] = self.distinct_values
        return out

    @classmethod
    def from_row(cls, row: Mapping, explain: bool = True) -> "Finding":
        """A stored finding row (``SELECT * FROM findings``, with ``uids`` when
        ``TriageStore.with_uids`` added them) as a Finding.

        Without ``explain`` the JSON columns (details, distinct_values, score_terms) are not
        read: ``details`` and ``values`` stay empty, ``score_terms`` None. That is enough to
        corroborate another finding (entity, times, status, uids) and it is what the parsing
        costs: most of the time of reading 20 k stored neighbours of a run."""
        f = cls(
            detector=row["detector"], threat=row["threat"], title=row.get("title") or "",
            host=row["host"], first_seen=row["first_seen"], last_seen=row["last_seen"],
            peer=row.get("peer"), key=row.get("key"), observed=row.get("observed"),
            threshold=row.get("threshold"), distinct_total=int(row.get("distinct_total") or 0),
            evidence_total=int(row.get("evidence_total") or 0),
            uids=list(row.get("uids") or []), summary=row.get("summary") or "",
            status=row.get("status") or "new", suppressed_reason=row.get("suppressed_reason"),
            urgency=row.get("urgency"), tier=row.get("tier"), due_at=row.get("due_at"),
            id=row.get("id"))
        if explain:
            f.values = [str(v) for v in _loads(row.get("distinct_values"), [])]
            f.details = _loads(row.get("details"), {}) or {}
            f.score_terms = _loads(row.get("score_terms"), None)
        return f


_NAMES = tuple(f.name for f in fields(Finding))  # ``dataclasses.fields`` costs ~20 us a call
_FIELDS = operator.attrgetter(*_NAMES)  # every field's value, in ``_NAMES`` order
