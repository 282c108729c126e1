"""Enriching JSON logs: Zeek JSON (one object per line, flat ``zw.*`` keys as Zeek names its
fields) and Suricata EVE (one object per line, or a JSON array; a nested ``"zw": {...}``
object as EVE nests its own).

Each record's bytes are kept as read: the added members are inserted before the object's
closing brace, nothing else is touched (no re-serialisation, so key order, spacing and number
formats stay). A line that is not a JSON object, or a record that has ``zw`` members already,
is written back untouched (rejects are counted).
"""

from __future__ import annotations

import datetime as dt
import json

import orjson

from zeekwatch.app.enrich.annotate import Annotator
from zeekwatch.app.enrich.tsv import BLOCK, Counts


def _epoch(value) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return None
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.timezone.utc)
        return t.timestamp()
    return None


def _text(v) -> str | None:
    return None if v is None else str(v)


class JsonEnricher:
    """``kind`` is ``zeek_json`` or ``eve``."""

    def __init__(self, ann: Annotator, out, counts: Counts, kind: str):
        self.ann, self.out, self.counts, self.eve = ann, out, counts, kind == "eve"

    def fields(self, obj: dict) -> dict | None:
        """The added members of one record (None: leave it as read)."""
        if self.eve:
            if "zw" in obj:
                return None
            orig, resp = obj.get("src_ip"), obj.get("dest_ip")
            keys = (_text(obj.get("flow_id")), obj.get("community_id"))
            ts = _epoch(obj.get("timestamp"))
        else:
            if any(k.startswith("zw.") for k in obj):
                return None
            ids = obj.get("id") if isinstance(obj.get("id"), dict) else {}
            orig = obj.get("id.orig_h", ids.get("orig_h"))
            resp = obj.get("id.resp_h", ids.get("resp_h"))
            keys = (obj.get("uid"), obj.get("community_id"))
            ts = _epoch(obj.get("ts"))
        orig, resp = _text(orig), _text(resp)
        out: dict = {}
        for end, addr in (("orig", orig), ("resp", resp)):
            side, asset = self.ann.address(addr)
            if side != "-":
                out[f"{end}_side"] = side
            if asset:
                out[f"{end}_asset"] = asset
        app = self.ann.app(orig, ts) or self.ann.app(resp, ts)
        if app:
            out["app"] = app
        cited = self.ann.citation(*(str(k) for k in keys if k is not None))
        if cited is not None:
            out.update(cited.values())
            self.counts.cited += 1
        return out

    def _member_bytes(self, added: dict) -> bytes:
        if self.eve:
            return b'"zw":' + orjson.dumps(added)
        return orjson.dumps({"zw." + k: v for k, v in added.items()})[1:-1]

    def record(self, raw: bytes) -> bytes:
        """One record (its bytes, without the newline) enriched, or as read."""
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict):
            if raw.strip():
                self.counts.rejects += 1
            return raw
        added = self.fields(obj)
        if added is None:
            self.counts.passed += 1
            return raw
        self.counts.records += 1
        if not added:
            return raw
        close = raw.rstrip().rfind(b"}")
        at = len(raw[:close].rstrip())  # right after the last member, before any layout
        comma = b"," if obj else b""
        return raw[:at] + comma + self._member_bytes(added) + raw[at:]

    # -- files ----------------------------------------------------------------------------
    def run(self, fin) -> None:
        first = fin.read(BLOCK)
        if first.lstrip()[:1] == b"[":
            self._array(first + fin.read())
            return
        carry = first
        while True:
            cut = carry.rfind(b"\n") + 1
            if cut:
                self.out.write(b"\n".join(self.record(x) for x in carry[:cut - 1].split(b"\n")) + b"\n")
                carry = carry[cut:]
            data = fin.read(BLOCK)
            if not data:
                if carry:
                    self.out.write(self.record(carry))
                return
            carry += data

    def _array(self, data: bytes) -> None:
        """A JSON array of records (EVE exports): every byte between the records as read."""
        text = data.decode("utf-8", "surrogateescape")
        dec = json.JSONDecoder()
        pos = text.index("[") + 1
        self.out.write(text[:pos].encode("utf-8", "surrogateescape"))
        while True:
            start = pos
            while pos < len(text) and text[pos] in " \t\r\n,":
                pos += 1
            self.out.write(text[start:pos].encode("utf-8", "surrogateescape"))
            if pos >= len(text) or text[pos] == "]":
                break
            try:
                _obj, end = dec.raw_decode(text, pos)
            except ValueError:  # damaged: the rest as read
                self.counts.rejects += 1
                break
            raw = text[pos:end].encode("utf-8", "surrogateescape")
            self.out.write(self.record(raw))
            pos = end
        self.out.write(text[pos:].encode("utf-8", "surrogateescape"))
