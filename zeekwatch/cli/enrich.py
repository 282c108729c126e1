"""``zeekwatch enrich``: the input logs written back in their own formats with ``zw.*`` fields.

Attached to the ``zeekwatch`` group by ``cli.main`` (``COMMANDS``).
"""

from __future__ import annotations

import json

import click
from rich.markup import escape
from rich.table import Table

from zeekwatch.cli.common import DB_HELP, config_overrides, err, load_config, out


@click.command("enrich")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for the enriched logs (created; file names kept, files under a "
                   "directory argument keep their path below it).")
@click.option("--db", help=DB_HELP + " Default: store.db of the config, else findings.db.")
@click.option("--no-analyze", is_flag=True, help="Do not analyse PATHS first: annotate with the "
              "findings already in DB (e.g. those `follow` or an earlier `analyze` stored).")
@click.option("--detector", "detectors", multiple=True,
              help="Analyse with this detector only (repeatable).")
@config_overrides
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
def enrich(obj, paths, out_dir, db, no_analyze, detectors, as_json, **overrides):
    """Write each input log back in its own format with zeekwatch's verdicts added.

    Zeek TSV logs keep their header block (with the new columns in #fields and #types), Zeek
    JSON gets flat zw.* keys, Suricata EVE a nested "zw" object. Added: zw.orig_side /
    zw.resp_side (internal or external), zw.orig_asset / zw.resp_asset (asset class),
    zw.app (app usage, e.g. p2p:bittorrent), zw.finding_ids, zw.detectors and zw.techniques
    of the findings that cite the record (by uid, flow_id or community_id), zw.urgency and
    zw.tier (the highest among them), zw.suppressed (suppression reasons). Everything else
    is byte for byte what was read; lines that do not parse are copied untouched and counted.
    gzip in, gzip out. PATHS are analysed into DB first (re-running adds nothing) unless
    --no-analyze. See docs/integrations.md.
    """
    from zeekwatch.app.enrich import enrich as run_enrich

    cfg = load_config(obj, None, overrides)
    db = db or cfg.store.db
    result = run_enrich(list(paths), out_dir, cfg, db, analyze=not no_analyze,
                        only=list(detectors) or None)
    if as_json:
        click.echo(json.dumps({
            "db": db, "seconds": round(result.seconds, 3),
            "files": [{"input": f.path, "output": f.output, "kind": f.kind, "records": f.records,
                       "cited": f.cited, "rejects": f.rejects, "passed": f.passed,
                       "seconds": round(f.seconds, 3)} for f in result.files],
            "skipped": [{"path": p, "reason": r} for p, r in result.skipped],
        }))
        return
    table = Table(title=f"zeekwatch enrich ({result.seconds:.2f} s)")
    for col in ("input", "output", "records", "cited", "rejects"):
        table.add_column(col, justify="right" if col in ("records", "cited", "rejects") else "left")
    for f in result.files:
        table.add_row(escape(f.path), escape(f.output), f"{f.records:,}", f"{f.cited:,}",
                      f"{f.rejects:,}")
    out.print(table)
    for path, reason in result.skipped:
        err.print(f"[yellow]skipped[/] {escape(path)}: {escape(reason)}")
    rejects = sum(f.rejects for f in result.files)
    if rejects:
        err.print(f"{rejects} line(s) did not parse; they were copied as read, without zw fields")


COMMANDS = (enrich,)
