"""Incident commands: the queue (one line per host), show, set-status, assign, note, export;
``rescore``; ``host ADDR`` (the timeline of one host).

Attached to the ``zeekwatch`` group by ``cli.main`` (``COMMANDS``). Text from the network
(summaries, signatures) is printed with control characters replaced, never interpreted.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import click

from zeekwatch.cli.common import load_config
from zeekwatch.cli.triage import _db, _t, _who, csv_cell, db_option, guarded, who_option
from zeekwatch.store.db import OPEN_STATUSES, iso
from zeekwatch.store.incidents import INCIDENT_STATUSES, IncidentStore
from zeekwatch.store.triage import TriageStore, open_store
from zeekwatch.text import printable
from zeekwatch.triage import incident_workflow as workflow
from zeekwatch.triage.incidents import Incidents

EXPORT_COLUMNS = ("id", "host", "direction", "first_seen", "last_seen", "urgency", "tier",
                  "due_at", "owner", "status", "assignee", "threat", "queued",
                  "findings_counted", "findings_listed", "detectors", "families", "sources",
                  "summary", "score_terms", "playbook", "closed_at")


def _inc(ctx) -> Incidents:
    return Incidents(load_config(ctx.obj or {}, None, {}))


def _stores(ctx, db):
    store = open_store(_db(ctx, db))
    return store, IncidentStore(store)


def _counts(detectors: str | None) -> str:
    d = json.loads(detectors or "{}")
    return ", ".join(f"{k}×{v}" if v > 1 else k for k, v in d.items()) or "-"


@click.group(invoke_without_command=True)
@click.option("--all", "show_all", is_flag=True,
              help="Also incidents of weak signals only (waiting for a strong detector) and "
                   "incidents without counted findings.")
@click.option("--status", "statuses", multiple=True,
              type=click.Choice(INCIDENT_STATUSES + ("open", "all")),
              help="Status (repeatable; default open = new, investigating, contained).")
@click.option("--overdue", is_flag=True, help="Only open incidents past their due time.")
@click.option("--tier", "tiers", multiple=True, type=click.IntRange(1, 3), help="Tier (repeatable).")
@click.option("--host", help="Every incident of this host (one line each).")
@db_option
@click.pass_context
@guarded
def incidents(ctx, show_all, statuses, overdue, tiers, host, db):
    """The incident queue: one line per host (its most urgent open incident), most urgent
    first, with the findings by detector and the story. Times are UTC.

    Weak signals alone (outbound_ping, off_hours, unusual_port, rare_destination, or what
    incidents.weak_detectors lists) wait for a detector that is not weak: --all shows them.
    """
    ctx.ensure_object(dict)
    if db:
        ctx.obj["findings_db"] = db
    if ctx.invoked_subcommand is not None:
        return
    _, ist = _stores(ctx, db)
    chosen = set()
    for s in statuses or ("open",):
        chosen |= set(OPEN_STATUSES if s == "open" else INCIDENT_STATUSES if s == "all" else (s,))
    if overdue:
        chosen &= set(OPEN_STATUSES)
    now = iso(dt.datetime.now(dt.timezone.utc)) if overdue else None
    pick = [s for s in INCIDENT_STATUSES if s in chosen]
    rows = ist.select(pick, not show_all, host, now, tiers, per_host=not host)
    hidden = 0 if show_all else len(ist.select(pick, False, host, now, tiers, per_host=not host)) - len(rows)
    if not rows:
        click.echo("No incidents match." + (f" ({hidden} more without --all)" if hidden else ""))
        return
    click.echo(f"{'ID':<16} {'URG':>3} {'TIER':>4}  {'DUE (UTC)':<16}  {'OWNER':<14} {'STATUS':<14} "
               f"{'ASSIGNEE':<10} {'HOST':<15} {'DIR':<8} FINDINGS — STORY")
    for r in rows:
        more = f" (+{r['host_incidents'] - 1} more)" if r["host_incidents"] > 1 and not host else ""
        click.echo(f"{r['id']:<16} {r['urgency'] or 0:>3} {r['tier'] or 0:>4}  "
                   f"{_t(r['due_at'], False):<16}  {printable(r['owner'] or '-'):<14} {r['status']:<14} "
                   f"{printable(r['assignee'] or '-'):<10} {printable(r['host']):<15} {r['direction'] or '-':<8} "
                   f"{printable(_counts(r['detectors']))}{more} — {printable(r['summary'])}")
    n = len(rows)
    unit = "incident" if host else "host"
    tail = f"; {hidden} more wait for company (weak signals only): --all" if hidden else ""
    click.echo(f"{n} line{'s' if n != 1 else ''} ({n} {unit}{'s' if n != 1 else ''}){tail}")


@incidents.command("show")
@click.argument("incident_id")
@db_option
@click.pass_context
@guarded
def show(ctx, incident_id, db):
    """Tell one incident's story in time order: each finding with its explanation, the score
    term by term, the playbook for its level, and the history. A unique id prefix is enough."""
    store, ist = _stores(ctx, db)
    i = workflow.resolve(ist, incident_id)
    for line in explain(ist, i):
        click.echo(printable(line))


def explain(ist: IncidentStore, i: dict) -> list[str]:
    st = json.loads(i["score_terms"] or "{}")
    lines = [f"{i['id']}  {i['host']} ({i['direction']})  {i['summary'] or ''}",
             f"status      {i['status']}   assignee {i['assignee'] or '-'}",
             f"seen        {_t(i['first_seen'])} → {_t(i['last_seen'])}",
             f"findings    {i['findings_counted']} counted of {i['findings_listed']} "
             f"({_counts(i['detectors'])}); families {', '.join(json.loads(i['families'] or '[]')) or '-'}",
             f"queue       {st.get('queued', '-')}", "", "score"]
    terms = st.get("terms") or []
    for k, t in enumerate(terms):
        lines.append(f"  {t['value'] if k == 0 else format(t['value'], '+d'):>3}  {t['term']}")
    if terms:
        lines.append(f"  = urgency {i['urgency']} → tier {i['tier']} \"{st.get('tier')}\", owner "
                     f"{i['owner']}, due {_t(i['due_at'])} (first_seen + {st.get('sla_hours'):g} h)")
    lines += ["", f"playbook ({i['threat']}, tier {i['tier']})"]
    lines += [f"  {x}" for x in (i["playbook"] or "").splitlines()]
    lines += ["", "story (time order)"]
    for f in ist.members([i["id"]]):
        mark = "" if f["status"] not in ("suppressed", "false_positive") else "  [not counted]"
        lines.append(f"  {_t(f['first_seen'])}  {f['id']}  {f['detector']:<18} urgency "
                     f"{f['urgency']}  {f['status']}{mark}")
        lines.append(f"      {f['summary'] or ''}")
        if f["suppressed_reason"]:
            lines.append(f"      reason: {f['suppressed_reason']}")
    lines += ["", "history"]
    audit = ist.audit(i["id"])
    if not audit:
        lines.append("  (no changes)")
    for a in audit:
        move = f"{a['old_status']} → {a['new_status']}  " if a["old_status"] != a["new_status"] else ""
        lines.append(f"  {_t(a['at'])}  {a['who']}  {move}{a['action']}: {a['note'] or ''}".rstrip())
    return lines


@incidents.command("set-status")
@click.argument("incident_id")
@click.argument("status", type=click.Choice(INCIDENT_STATUSES))
@click.option("--note", required=True, help="Why (kept in the audit trail).")
@who_option
@db_option
@click.pass_context
@guarded
def set_status(ctx, incident_id, status, note, who, db):
    """Move an incident along new → investigating → contained → resolved (or
    false_positive); resolved and false_positive reopen to investigating. Closing closes its
    open findings, reopening reopens them; all audited."""
    store, _ = _stores(ctx, db)
    who = _who(who)
    res = workflow.set_status(_inc(ctx), store, incident_id, status, who, note)
    i, n = res["incident"], len(res["findings"])
    click.echo(f"{i['id']}: → {i['status']} ({who}); {n} finding{'s' if n != 1 else ''} changed with it")


@incidents.command("assign")
@click.argument("incident_id")
@click.argument("assignee")
@who_option
@db_option
@click.pass_context
@guarded
def assign(ctx, incident_id, assignee, who, db):
    """Give an incident to ASSIGNEE ('' to unassign); audited."""
    store, _ = _stores(ctx, db)
    i = workflow.assign(store, incident_id, assignee, _who(who))
    click.echo(f"{i['id']}: assigned to {printable(i['assignee'] or '-')}")


@incidents.command("note")
@click.argument("incident_id")
@click.argument("text")
@who_option
@db_option
@click.pass_context
@guarded
def note(ctx, incident_id, text, who, db):
    """Add a note to an incident's history."""
    store, _ = _stores(ctx, db)
    i = workflow.add_note(store, incident_id, text, _who(who))
    click.echo(f"{i['id']}: note added")


@incidents.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="File (default: stdout).")
@click.option("--status", "statuses", multiple=True, type=click.Choice(INCIDENT_STATUSES),
              help="Status (repeatable; default all).")
@db_option
@click.pass_context
@guarded
def export(ctx, fmt, output, statuses, db):
    """Export incidents (every one, or by status) with their score terms, playbook and
    finding ids, as JSON lines or CSV (formula-safe cells)."""
    _, ist = _stores(ctx, db)
    rows = ist.select(statuses or INCIDENT_STATUSES, False, per_host=False)
    members: dict[str, list[str]] = {}
    for m in ist.members(r["id"] for r in rows):
        members.setdefault(m["incident_id"], []).append(m["id"])
    buf = io.StringIO()
    if fmt == "jsonl":
        for r in rows:
            rec = {k: r.get(k) for k in EXPORT_COLUMNS}
            for k in ("detectors", "families", "score_terms"):
                rec[k] = json.loads(rec[k]) if rec[k] else None
            rec["findings"] = members.get(r["id"], [])
            buf.write(json.dumps(rec) + "\n")
    else:
        w = csv.writer(buf)
        w.writerow(EXPORT_COLUMNS + ("findings",))
        for r in rows:
            w.writerow([csv_cell(r.get(k)) for k in EXPORT_COLUMNS] + [" ".join(members.get(r["id"], []))])
    if output:
        with open(output, "w", newline="", encoding="utf-8") as fh:
            fh.write(buf.getvalue())
        click.echo(f"wrote {len(rows)} incident{'s' if len(rows) != 1 else ''} to {output}", err=True)
    else:
        click.echo(buf.getvalue(), nl=False)


@click.command("rescore")
@who_option
@db_option
@click.pass_context
@guarded
def rescore(ctx, who, db):
    """Rescore every stored open finding (asset inventory, config) and every open incident;
    urgency changes are audited."""
    store, _ = _stores(ctx, db)
    res = workflow.rescore(_inc(ctx), store, _who(who), "zeekwatch rescore")
    click.echo(f"rescored: {res['findings']} finding(s) and {res['incidents']} incident(s) changed")


def rescore_after(ctx, db, who: str, why: str, hosts=None, finding_ids=None) -> dict:
    """After an analyst's change (assets, suppressions, statuses): rescore what it touches."""
    store = open_store(_db(ctx, db))
    if finding_ids is not None:
        ids = list(finding_ids)
        hosts = {r["host"] for r in store.findings(
            f"id IN ({', '.join('?' * len(ids))})", ids)} if ids else set()
    res = workflow.rescore(_inc(ctx), store, who, why, hosts)
    if res["findings"] or res["incidents"]:
        click.echo(f"rescored: {res['findings']} finding(s) and {res['incidents']} incident(s) changed")
    return res


@click.command("host")
@click.argument("address")
@db_option
@click.pass_context
@guarded
def host(ctx, address, db):
    """Everything known about one host, in time order: asset class, incidents, findings
    (with status) and app usage."""
    store, ist = _stores(ctx, db)
    ts = TriageStore(store)
    scorer = _inc(ctx).scorer
    scorer.load_inventory(ts.assets())
    cls, source = scorer.asset_class(address)
    inside = scorer.internal.contains(address)
    click.echo(printable(f"{address}: {'internal' if inside else 'external'}; asset class "
                     f"{cls if inside else 'external'} (from {source if inside else 'networks.internal'})"))
    events = []
    for i in ist.select(INCIDENT_STATUSES, False, address, per_host=False):
        events.append((i["first_seen"], "incident", f"{i['id']}  urgency {i['urgency']} tier {i['tier']} "
                       f"{i['status']}  {i['summary']}"))
    for f in store.findings("host = ? OR peer = ?", [address, address], order="first_seen"):
        role = "" if f["host"] == address else f" (as peer of {f['host']})"
        events.append((f["first_seen"], "finding", f"{f['id']}  {f['detector']} urgency {f['urgency']} "
                       f"{f['status']}{role}  {f['summary']}"))
    for u in ts.app_usage([address]):
        events.append((u["first_seen"], "app", f"{u['app']} ({u['category']}) until {_t(u['last_seen'])}: "
                       f"{u['evidence']} ×{u['count']}"))
    if not events:
        click.echo("Nothing stored about this host.")
    for t, kind, text in sorted(events, key=lambda e: (e[0] or "", e[1])):
        click.echo(printable(f"{_t(t)}  {kind:<8} {text}"))


COMMANDS = (incidents, rescore, host)
