"""Triage commands: findings (queue, show, set-status, export), suppress, assets, tune.

Attached to the ``zeekwatch`` group by ``cli.main`` (``COMMANDS``). Output is plain text with fixed
columns (stable for scripts and tests); library errors become ``click.ClickException`` here
with the library's exit code.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import getpass
import io
import json
import os

import click

from zeekwatch.errors import ZeekwatchError
from zeekwatch.text import printable
from zeekwatch.store.db import OPEN_STATUSES, STATUSES, now_iso
from zeekwatch.store.triage import TriageStore, open_store
from zeekwatch.triage import stage as triage
from zeekwatch.triage import suppress as suppressmod
from zeekwatch.triage.score import read_inventory
from zeekwatch.triage.tune import suricata_lines

DB_DEFAULT = "findings.db"
EXPORT_COLUMNS = ("id", "detector", "threat", "host", "peer", "key", "first_seen", "last_seen",
                  "observed", "threshold", "urgency", "tier", "due_at", "status", "summary",
                  "suppressed_reason", "title", "evidence_total", "details", "score_terms")
CSV_DANGEROUS = ("=", "+", "-", "@", "\t", "\r")


class Failure(click.ClickException):
    def __init__(self, exc: ZeekwatchError):
        super().__init__(printable(exc))
        self.exit_code = exc.exit_code


def say(text: str, err: bool = False) -> None:
    """A line for the terminal: values from the network are data, so control characters are
    shown escaped (``text.printable``), never sent raw. Exports do not use this."""
    click.echo(printable(text), err=err)


def guarded(fn):
    """Library errors -> click errors with the same exit code (message on stderr)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ZeekwatchError as exc:
            raise Failure(exc) from None
    return wrapper


def _who(who: str | None) -> str:
    if who:
        return who
    try:
        return os.environ.get("USER") or getpass.getuser()
    except Exception:
        return "unknown"


def _open(db: str, write: bool = False) -> TriageStore:
    """The database for a command: read-only unless the command changes it."""
    return TriageStore(open_store(db, write=write))


def _t(text: str | None, seconds: bool = True) -> str:
    """Stored ISO UTC text as ``2024-01-01 10:00:00Z`` (or to the minute)."""
    if not text:
        return "-"
    return text[:19].replace("T", " ") + "Z" if seconds else text[:16].replace("T", " ")


def csv_cell(value):
    """A CSV cell that a spreadsheet will not run as a formula: text starting with
    = + - @ TAB or CR gets a leading single quote. Numbers stay numbers."""
    if isinstance(value, str) and value.startswith(CSV_DANGEROUS):
        return "'" + value
    return value


db_option = click.option("--db", default=None, help=f"SQLite database of findings (default {DB_DEFAULT}).")
who_option = click.option("--who", help="Who does this (default: $USER).")


def _db(ctx, db):
    return db or (ctx.obj or {}).get("findings_db") or DB_DEFAULT


# -- findings ---------------------------------------------------------------------------------
def _filters(fn):
    fn = click.option("--since", help="Last seen at or after: ISO date/time, or 30m / 24h / 7d / 2w back.")(fn)
    fn = click.option("--host", help="Host address or CIDR.")(fn)
    fn = click.option("--detector", "detectors", multiple=True, help="Detector id (repeatable).")(fn)
    fn = click.option("--tier", "tiers", multiple=True, type=click.IntRange(1, 3),
                      help="Tier 1, 2 or 3 (repeatable).")(fn)
    fn = click.option("--status", "statuses", multiple=True,
                      type=click.Choice(STATUSES + ("open", "all")),
                      help="Status (repeatable); open = new, investigating, contained.")(fn)
    return fn


def _one_detector(value):
    if value:
        _known_detectors([value])
    return value


def _known_detectors(detectors) -> None:
    """Refuse a --detector that no detector has (a typo would silently match nothing)."""
    from zeekwatch.detectors import REGISTRY

    unknown = [d for d in detectors or () if d not in REGISTRY]
    if unknown:
        raise click.BadParameter(f"unknown detector {unknown[0]!r} (known: "
                                 f"{', '.join(sorted(REGISTRY))})", param_hint="--detector")


def _select(ts: TriageStore, statuses, tiers, detectors, host, since, default_open: bool):
    _known_detectors(detectors)
    chosen = set()
    for s in statuses or (("open",) if default_open else ("all",)):
        chosen |= set(OPEN_STATUSES if s == "open" else STATUSES if s == "all" else (s,))
    since_iso = triage.parse_since(since, dt.datetime.now(dt.timezone.utc)) if since else None
    return ts.filter_findings([s for s in STATUSES if s in chosen], tiers, detectors, host, since_iso)


@click.group(invoke_without_command=True)
@db_option
@_filters
@click.pass_context
@guarded
def findings(ctx, db, statuses, tiers, detectors, host, since):
    """The triage queue: open findings by urgency (highest first), then due time.

    Without a subcommand, lists findings; --status all (or any status) widens the list.
    Times are UTC.
    """
    ctx.ensure_object(dict)
    if db:  # `findings --db X show ID`: the group's --db reaches the subcommand
        ctx.obj["findings_db"] = db
    if ctx.invoked_subcommand is not None:
        return
    ts = _open(_db(ctx, db))
    rows = _select(ts, statuses, tiers, detectors, host, since, default_open=True)
    if not rows:
        say("No findings match.")
        return
    say(f"{'ID':<16} {'URG':>3} {'TIER':>4}  {'DUE (UTC)':<16}  {'STATUS':<14} "
               f"{'DETECTOR':<18} {'HOST':<15} SUMMARY")
    for r in rows:
        say(f"{r['id']:<16} {r['urgency'] or 0:>3} {r['tier'] or 0:>4}  "
                   f"{_t(r['due_at'], False):<16}  {r['status']:<14} {r['detector']:<18} "
                   f"{r['host']:<15} {r['summary'] or ''}")
    say(f"{len(rows)} finding{'s' if len(rows) != 1 else ''}")


@findings.command("show")
@click.argument("finding_id")
@db_option
@click.pass_context
@guarded
def show(ctx, finding_id, db):
    """Explain one finding: what, the score term by term, evidence, details, history.

    FINDING_ID may be a unique prefix of the id.
    """
    ts = _open(_db(ctx, db))
    f = ts.store.get(ts.resolve_id(finding_id))
    for line in _explain(ts, f):
        say(line)


def _explain(ts: TriageStore, f: dict) -> list[str]:
    terms = json.loads(f["score_terms"] or "{}")
    lines = [f"{f['id']}  {f['title'] or f['detector']}",
             f"status      {f['status']}"]
    if f["suppressed_reason"]:
        lines.append(f"reason      {f['suppressed_reason']}")
    asset = f" (asset class {terms['asset_class']}, from {terms.get('asset_source', '?')})" if terms else ""
    observed = "-" if f["observed"] is None else f"{f['observed']:g}"
    threshold = "" if f["threshold"] is None else f" (threshold {f['threshold']:g})"
    lines += [f"detector    {f['detector']} (threat {f['threat']})",
              f"host        {f['host']}{asset}",
              f"peer        {f['peer'] or '-'}",
              f"key         {f['key'] or '-'}",
              f"seen        {_t(f['first_seen'])} → {_t(f['last_seen'])}",
              f"observed    {observed}{threshold}",
              f"summary     {f['summary'] or ''}", "", "score"]
    lines += _score_lines(f, terms)
    ev = ts.evidence(f["id"])
    n = f["evidence_total"] or 0
    lines += ["", f"evidence ({n} event{'s' if n != 1 else ''})"]
    for kind in sorted({e["kind"] for e in ev}):
        lines.append(f"  {kind:<6} {', '.join(e['value'] for e in ev if e['kind'] == kind)}")
    details = json.loads(f["details"] or "{}")
    if details:
        lines += ["", "details"]
        lines += [f"  {k} = {json.dumps(v, default=str)}" for k, v in sorted(details.items())]
    lines += ["", "history"]
    audit = ts.audit(f["id"])
    if not audit:
        lines.append("  (no status changes)")
    for a in audit:
        lines.append(f"  {_t(a['at'])}  {a['who']}  {a['old_status']} → {a['new_status']}  "
                     f"{a['action']}: {a['note'] or ''}".rstrip())
    return lines


def _score_lines(f: dict, terms: dict) -> list[str]:
    if not terms:
        return ["  (not scored)"]
    items = terms.get("terms", [])
    width = max(len(t["term"]) for t in items) + 2
    out = []
    for i, t in enumerate(items):
        value = f"{t['value']}" if i == 0 else f"{t['value']:+d}"
        out.append(f"  {t['term']:<{width}}{value:>3}")
    hours = terms.get("sla_hours")
    out.append(f"  = urgency {f['urgency']} → tier {f['tier']} \"{terms.get('tier')}\", "
               f"owner {terms.get('owner')}, due {_t(f['due_at'])} (first_seen + {hours:g} h)")
    return out


@findings.command("set-status")
@click.argument("finding_id")
@click.argument("status", type=click.Choice(STATUSES))
@click.option("--note", required=True, help="Why (kept in the audit trail).")
@who_option
@click.option("--suppress", "suppress_as", type=click.Choice(["host", "signature"]),
              help="With false_positive: also suppress this detector for this host, or this "
                   "Suricata signature everywhere (an allowlist rule owned by --who).")
@click.option("--expires", help="Expiry of the --suppress rule (ISO date/time).")
@db_option
@click.pass_context
@guarded
def set_status(ctx, finding_id, status, note, who, suppress_as, expires, db):
    """Move a finding along new → investigating → contained → resolved (or false_positive,
    or suppressed). Every change is an audit row: who, when, old → new, note."""
    ts = _open(_db(ctx, db), write=True)
    who = _who(who)
    old = ts.store.get(ts.resolve_id(finding_id))
    res = triage.change_status(ts, finding_id, status, who, note, suppress_as, expires)
    say(f"{old['id']}: {old['status']} → {res['finding']['status']} ({who})")
    if res["rule_id"] is not None:
        n = len(res["suppressed"])
        say(f"suppression {res['rule_id']} added; it suppressed {n} other stored "
                   f"finding{'s' if n != 1 else ''}")


@findings.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl",
              show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="File (default: stdout).")
@_filters
@db_option
@click.pass_context
@guarded
def export(ctx, fmt, output, statuses, tiers, detectors, host, since, db):
    """Export findings (all statuses unless filtered) as JSON lines or CSV.

    CSV cells that start with = + - @ TAB or CR get a leading ' so that spreadsheets do not
    run them as formulas.
    """
    ts = _open(_db(ctx, db))
    rows = _select(ts, statuses, tiers, detectors, host, since, default_open=False)
    buf = io.StringIO()
    if fmt == "jsonl":
        for r in rows:
            rec = {k: r.get(k) for k in EXPORT_COLUMNS}
            for k in ("details", "score_terms"):
                rec[k] = json.loads(rec[k]) if rec[k] else None
            buf.write(json.dumps(rec, sort_keys=False) + "\n")
    else:
        w = csv.writer(buf)  # RFC 4180: CRLF, so a CR inside a cell is quoted
        w.writerow(EXPORT_COLUMNS)
        for r in rows:
            w.writerow([csv_cell(r.get(k)) for k in EXPORT_COLUMNS])
    if output:
        with open(output, "w", newline="", encoding="utf-8") as fh:
            fh.write(buf.getvalue())
        say(f"wrote {len(rows)} finding{'s' if len(rows) != 1 else ''} to {output}", err=True)
    else:
        # the exact data: click.echo would strip ANSI sequences from a pipe; bytes are kept
        stdout = click.get_binary_stream("stdout")
        stdout.write(buf.getvalue().encode("utf-8", "surrogateescape"))
        stdout.flush()


# -- suppress ------------------------------------------------------------------------------
@click.group("suppress")
def suppress_group():
    """Allowlist rules: suppress matching findings (kept, with the reason), retroactively."""


@suppress_group.command("add")
@click.option("--cidr", help="Host (the finding's entity) address or CIDR.")
@click.option("--peer", help="Peer address or CIDR.")
@click.option("--domain", help="Domain pattern: example.com, *.example.com, .example.com, label.*")
@click.option("--port", type=click.IntRange(0, 65535), help="Destination port.")
@click.option("--detector", help="Detector id.", callback=lambda ctx, p, v: _one_detector(v))
@click.option("--sid", type=click.IntRange(1, 2**32 - 1),
              help="Suricata signature id (ids_alert).")
@click.option("--start", help="Only findings seen at or after (ISO date/time, UTC).")
@click.option("--end", help="Only findings seen at or before (ISO date/time, UTC).")
@click.option("--owner", required=True, help="Who answers for this rule.")
@click.option("--reason", required=True, help="Why these findings are expected.")
@click.option("--expires", help="When the rule stops applying to new findings (ISO date/time).")
@who_option
@db_option
@click.pass_context
@guarded
def suppress_add(ctx, owner, reason, expires, who, db, **fields):
    """Add an allowlist rule; it also suppresses matching stored open findings.

    Every condition given must hold. Nothing is deleted: suppressed findings keep their row
    and name the rule in suppressed_reason; `suppress remove` restores them.
    """
    ts = _open(_db(ctx, db), write=True)
    who = _who(who)
    rule = suppressmod.make_rule(fields, owner, reason, expires, who, "cli", now_iso())
    rid, done = suppressmod.add_rule(ts, rule, who)
    n = len(done)
    say(f"suppression {rid} added: {suppressmod.describe(rule)}")
    say(f"suppressed {n} stored finding{'s' if n != 1 else ''}")


@suppress_group.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include removed rules.")
@db_option
@click.pass_context
@guarded
def suppress_list(ctx, show_all, db):
    """List allowlist rules (active and expired; --all adds removed ones)."""
    ts = _open(_db(ctx, db))
    rules = ts.suppressions(include_inactive=show_all)
    if not rules:
        say("No suppressions.")
        return
    now = now_iso()
    say(f"{'ID':>4}  {'STATE':<8} {'EXPIRES':<16}  {'HITS':>4}  {'OWNER':<12} MATCH — REASON")
    for r in rules:
        state = "removed" if r["removed_at"] else ("active" if suppressmod.active(r, now) else "expired")
        say(f"{r['id']:>4}  {state:<8} {_t(r['expires'], False) if r['expires'] else 'never':<16}  "
                   f"{r['active_hits']:>4}  {r['owner']:<12} {suppressmod.describe(r)} — {r['reason']}")


@suppress_group.command("remove")
@click.argument("rule_id", type=click.IntRange(1, 2**63 - 1))
@who_option
@db_option
@click.pass_context
@guarded
def suppress_remove(ctx, rule_id, who, db):
    """Retire a rule (kept as removed) and restore the findings it suppressed to their
    previous status."""
    ts = _open(_db(ctx, db), write=True)
    who = _who(who)
    restored, again = suppressmod.remove_rule(ts, rule_id, who, now_iso())
    n = len(restored)
    say(f"suppression {rule_id} removed; restored {n} finding{'s' if n != 1 else ''} "
               f"to {'its' if n == 1 else 'their'} previous status")
    if again:
        say(f"{len(again)} of them are suppressed again by another active rule")


# -- assets ----------------------------------------------------------------------------------
@click.group("assets")
def assets_group():
    """The asset inventory that scoring uses (class per address or CIDR)."""


@assets_group.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@db_option
@click.pass_context
@guarded
def assets_import(ctx, path, db):
    """Import an inventory CSV: header address (or cidr), class, name, owner.

    Classes: client, vip_client, server, confidential_server, core_server. Rows replace
    earlier ones with the same address. Used by the next analysis.
    """
    rows = read_inventory(path)
    ts = TriageStore(open_store(_db(ctx, db), must_exist=False))
    added, replaced = ts.import_assets(rows, os.path.basename(path))
    say(f"imported {len(rows)} asset{'s' if len(rows) != 1 else ''} "
               f"({added} new, {replaced} replaced)")


@assets_group.command("list")
@db_option
@click.pass_context
@guarded
def assets_list(ctx, db):
    """List the asset inventory."""
    rows = _open(_db(ctx, db)).assets()
    if not rows:
        say("No assets.")
        return
    say(f"{'ADDRESS':<20} {'CLASS':<20} {'NAME':<20} OWNER")
    for r in rows:
        say(f"{r['address']:<20} {r['class']:<20} {r['name'] or '-':<20} {r['owner'] or '-'}")


# -- tune ------------------------------------------------------------------------------------
@click.group("tune")
def tune_group():
    """Turn analysts' verdicts into sensor configuration."""


@tune_group.command("suricata")
@db_option
@click.pass_context
@guarded
def tune_suricata(ctx, db):
    """Print threshold.config suppress lines for ids_alert false positives and sid rules."""
    ts = _open(_db(ctx, db))
    fps = ts.filter_findings(["false_positive"], (), ["ids_alert"])
    verdicts = {}
    for f in fps:
        rows = [a for a in ts.audit(f["id"]) if a["new_status"] == "false_positive"]
        if rows:
            verdicts[f["id"]] = rows[-1]
    lines = suricata_lines(fps, ts.suppressions(), verdicts, now_iso())
    say("# zeekwatch tune suricata: add to threshold.config (suppress lines)")
    for line in lines:
        say(line)
    if not any(not x.startswith("#") for x in lines):
        say("# nothing to suppress: no ids_alert finding is marked false_positive")


COMMANDS = (findings, suppress_group, assets_group, tune_group)
