"""IDS tuning: analysts' false-positive verdicts as Suricata ``threshold.config`` lines.

Sources, both from the store:

- ids_alert findings marked ``false_positive``: ``suppress gen_id G, sig_id N, track T, ip A``
  with A the finding's host and T from details ``host_role`` — ``by_src`` when the host was
  the alerts' source, ``by_dst`` when it was their destination, ``by_either`` when both or
  unknown (always correct, if broader);
- active allowlist rules with a ``sid``: without ``cidr``, ``suppress gen_id G, sig_id N``
  (the whole signature); with ``cidr``, ``track by_either, ip CIDR``. A rule with a condition
  threshold.config cannot express (peer, domain, port, time span) is listed as a comment and
  not emitted: a broader suppression than the analyst asked for would hide real alerts.

Grammar (Suricata "Global-Thresholds"):
``suppress gen_id <gid>, sig_id <sid>[, track <by_src|by_dst|by_either>, ip <ip|subnet>]``.
Free text (signatures, notes) only ever appears in ``#`` comments, on one line.
"""

from __future__ import annotations

import ipaddress
import json

from zeekwatch.triage.suppress import active

TRACKS = {"src": "by_src", "dst": "by_dst"}


def _one_line(text) -> str:
    return " ".join(str(text or "").split())


def _sid_gids(f: dict) -> list[tuple[int, int, str]]:
    """(sid, gid, signature) of every signature of an ids_alert finding (a finding rolls up
    the signatures of one alert category; ``details.signatures``)."""
    d = json.loads(f.get("details") or "{}")
    sigs = d.get("signatures") or [{"sid": d.get("sid") if d.get("sid") is not None else
                                    ((f.get("key") or "")[4:] if (f.get("key") or "").startswith("sid:") else None),
                                    "gid": d.get("gid"), "signature": d.get("signature")}]
    out = []
    for s in sigs:
        try:
            out.append((int(s["sid"]), int(s.get("gid") or 1), s.get("signature") or f.get("title")))
        except (TypeError, ValueError):
            continue
    return out


def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_network(text, strict=False)).removesuffix("/32").removesuffix("/128")
    except (TypeError, ValueError):
        return None


def _expressible(r: dict, now: str) -> bool:
    return (r.get("sid") is not None and active(r, now)
            and not any(r.get(k) not in (None, "") for k in ("peer", "domain", "port", "start", "end")))


def suricata_lines(false_positives: list[dict], rules: list[dict], verdicts: dict[str, dict],
                   now: str) -> list[str]:
    """threshold.config text lines (comments included), deduplicated, in a stable order.

    ``verdicts`` maps a finding id to its false_positive audit row (who, at, note). A verdict
    already covered by a whole-signature rule, and a rule made from a verdict that is emitted
    itself (``--suppress host``), give no second line."""
    out: list[str] = []
    seen: set[str] = set()

    def emit(comment: str, line: str) -> None:
        if line not in seen:
            seen.add(line)
            out.extend([f"# {_one_line(comment)}", line])

    whole = {int(r["sid"]) for r in rules if _expressible(r, now) and not r.get("cidr")}
    gids: dict[int, int] = {}
    emitted: set[str] = set()
    for f in sorted(false_positives, key=lambda f: (f["host"], f.get("key") or "", f["id"])):
        sigs, ip = _sid_gids(f), _ip(f["host"])
        if not sigs or ip is None:
            out.append(f"# {f['id']}: no sid or no host address; skipped")
            continue
        d = json.loads(f.get("details") or "{}")
        v = verdicts.get(f["id"]) or {}
        wrote = False
        for sid, gid, signature in sigs:
            gids.setdefault(sid, gid)
            if sid in whole:
                continue
            wrote = True
            emit(f"{f['id']} \"{signature}\" {f['host']}: false_positive by "
                 f"{v.get('who', '?')} ({(v.get('at') or '')[:10]}): {v.get('note') or ''}",
                 f"suppress gen_id {gid}, sig_id {sid}, track "
                 f"{TRACKS.get(d.get('host_role'), 'by_either')}, ip {ip}")
        if wrote:
            emitted.add(f"false_positive {f['id']}")
    for r in rules:
        if r.get("sid") is None or not active(r, now) or r.get("origin") in emitted:
            continue
        if not _expressible(r, now):
            extra = [k for k in ("peer", "domain", "port", "start", "end") if r.get(k) not in (None, "")]
            out.append(f"# rule {r['id']} (sid {r['sid']}) not expressible in threshold.config "
                       f"({', '.join(extra)} condition); skipped")
            continue
        gid = gids.get(int(r["sid"]), 1)
        comment = f"rule {r['id']} owner {r['owner']}: {r['reason']}"
        if r.get("expires"):
            comment += f" (expires {r['expires'][:16]}: remove this line then)"
        if r.get("cidr"):
            emit(comment, f"suppress gen_id {gid}, sig_id {r['sid']}, track by_either, ip {_ip(r['cidr'])}")
        else:
            emit(comment, f"suppress gen_id {gid}, sig_id {r['sid']}")
    return out
