"""``zeekwatch follow``: tail live sensor logs into the findings database.

Attached to the ``zeekwatch`` group by ``cli.main`` (``COMMANDS``). Library errors propagate to
``cli.main``, which turns them into messages and exit codes. stdout carries only the JSON
lines of ``--jsonl`` (one per new or grown finding); the status line and the final summary go
to stderr, the status line only on a terminal.
"""

from __future__ import annotations

import signal
import time

import click
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from zeekwatch.cli.common import DB_HELP, config_overrides, err, load_config
from zeekwatch.detectors import REGISTRY
from zeekwatch.text import printable

POPULATION_INTERVAL = 300.0  # = app.follow.runner.POPULATION_INTERVAL (not imported: CLI start-up)


def _status(report, total: dict) -> Text:
    rows = sum(total["records"].values())
    lag = "-" if report.lag is None else f"{report.lag:,.1f} s"
    return Text.from_markup(
        f"[bold]following[/] {report.files} file(s) · {rows:,} rows · look-back "
        f"{report.lookback_rows:,} rows · findings {total['new']} new / {total['updated']} "
        f"updated · data lag {lag} · batch {report.seconds:.2f} s")


def _trace(report) -> str:
    phases = " ".join(f"{k}={v:.3f}" for k, v in report.timing.items())
    lag = "-" if report.lag is None else f"{report.lag:.2f}"
    return (f"batch {report.number} at {time.time():.3f}: {sum(report.records.values())} rows, "
            f"{report.seconds:.3f} s ({phases}), findings +{report.new} ~{report.updated}, "
            f"look-back {report.lookback_rows} rows, lag {lag} s")


@click.command("follow")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--db", help=DB_HELP + " Default: store.db of the config, else findings.db.")
@click.option("--interval", default=1.0, show_default=True, type=click.FloatRange(min=0.01),
              help="Seconds between micro-batches.")
@click.option("--lookback", default=300.0, show_default=True, type=click.FloatRange(min=1),
              help="Seconds of data time kept for windows that cross batches and late rows.")
@click.option("--once", is_flag=True, help="Process what is there now (rotated files to their "
              "end), then exit.")
@click.option("--jsonl", is_flag=True, help="Print each new or grown finding as one JSON line "
              "on stdout (for a SIEM), with the fields of `findings export`.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "ecs", "ocsf"]), default="jsonl",
              show_default=True, help="Document of --jsonl and --syslog: zeekwatch's record, an "
              "ECS alert or an OCSF Detection Finding (docs/integrations.md).")
@click.option("--syslog", "syslog_url", metavar="URL", help="Also send each new or grown finding "
              "as an RFC 5424 syslog message: udp://HOST:PORT, tcp://HOST:PORT or unix:///PATH.")
@click.option("--enrich-dir", type=click.Path(file_okay=False), help="Append each followed log's "
              "lines, with zw.* fields, to a file of the same name in this directory.")
@click.option("--population-interval", default=POPULATION_INTERVAL, show_default=True,
              type=click.FloatRange(min=0),
              help="Seconds between runs of the whole-data detectors (" + ", ".join(
                  d.id for d in REGISTRY.values() if d.whole_data) + ") over the look-back "
              "(and once at the end with --once); 0: never. Every other detector runs live, on "
              "each micro-batch. The summary names both groups.")
@click.option("--detector", "detectors", multiple=True, help="Run only this detector (repeatable).")
@config_overrides
@click.option("-q", "--quiet", is_flag=True, help="No status line and no summary.")
@click.option("-v", "--verbose", is_flag=True, help="One line per batch on stderr: rows, "
              "seconds per phase, findings, data lag.")
@click.pass_obj
def follow(obj, paths, db, interval, lookback, once, jsonl, fmt, syslog_url, enrich_dir,
           population_interval, detectors, quiet, verbose, **overrides):
    """Follow live Zeek logs and Suricata EVE files into DB, detecting in micro-batches.

    PATHS are Zeek's current log directory or log files (TSV or JSON) and/or Suricata's
    eve.json; a file may not exist yet. Files are tailed by inode and offset through
    rotation and copytruncate; checkpoints are committed with the findings they produced,
    so a restart (even after kill -9) resumes without losing or doubling a line. SIGINT or
    SIGTERM finishes the current batch, commits it and exits 0. See docs/follow.md.
    """
    from zeekwatch.app.follow import Follower, FollowOptions

    cfg = load_config(obj, None, overrides)
    db = db or cfg.store.db
    options = FollowOptions(interval=interval, lookback=lookback, once=once,
                            population_interval=population_interval,
                            only=list(detectors) or None)
    handoff = _Handoff(db, fmt, jsonl, syslog_url, enrich_dir, cfg)
    output = _Output(handoff, verbose, live=not quiet and err.is_terminal)
    follower = Follower(list(paths), cfg, db, options, on_batch=output.batch)
    previous = {s: signal.signal(s, lambda *_: follower.stop()) for s in (signal.SIGINT, signal.SIGTERM)}
    output.start()
    try:
        result = follower.run()
    finally:
        output.stop()
        handoff.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if not quiet:
        records = ", ".join(f"{t} {n:,}" for t, n in sorted(result.records.items())) or "no rows"
        err.print(f"follow run {result.run_id}: {result.batches} batch(es), {records}, "
                  f"{result.rejects} rejected line(s), findings {result.new} new / "
                  f"{result.updated} updated in {escape(printable(db))}", highlight=False)
        err.print(_plan_line(result), highlight=False)


def _plan_line(result) -> str:
    """Which detectors ran live and which periodically (the summary's last line)."""
    live = ", ".join(result.live) or "none"
    if not result.periodic:
        return f"detectors live on every batch: {live}"
    if not result.population_interval:
        return (f"detectors live on every batch: {live}; not run (--population-interval 0): "
                f"{', '.join(result.periodic)}")
    return (f"detectors live on every batch: {live}; over the look-back every "
            f"{result.population_interval:g} s ({result.population_runs} run(s)): "
            f"{', '.join(result.periodic)}")


class _Output:
    """Where each committed batch goes: JSON lines, trace lines, the status line."""

    def __init__(self, handoff: "_Handoff", verbose: bool, live: bool):
        self.handoff, self.verbose = handoff, verbose
        self.live = Live(console=err, transient=True, auto_refresh=False) if live else None
        self.total = {"records": {}, "new": 0, "updated": 0}

    def batch(self, report) -> None:
        for k, v in report.records.items():
            self.total["records"][k] = self.total["records"].get(k, 0) + v
        self.total["new"] += report.new
        self.total["updated"] += report.updated
        self.handoff.batch(report)
        if self.verbose:
            err.print(_trace(report), highlight=False, soft_wrap=True)
        if self.live is not None:
            self.live.update(_status(report, self.total), refresh=True)

    def start(self) -> None:
        if self.live is not None:
            self.live.start()

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()


class _Handoff:
    """Where a committed batch's findings and lines go besides the database: JSON lines on
    stdout, syslog messages, enriched logs."""

    def __init__(self, db: str, fmt: str, jsonl: bool, syslog_url: str | None,
                 enrich_dir: str | None, cfg):
        from zeekwatch.export import syslog

        self.db, self.fmt, self.jsonl = db, fmt, jsonl
        self.sender = syslog.Sender(syslog_url) if syslog_url else None
        self.enricher = None
        if enrich_dir:
            from zeekwatch.app.enrich.follow import FollowEnricher

            self.enricher = FollowEnricher(enrich_dir, cfg, db)
        self.store = None

    def batch(self, report) -> None:
        if report.changed and (self.jsonl or self.sender):
            from zeekwatch.export import formats, records, syslog
            from zeekwatch.store.db import Store

            if self.store is None:
                self.store = Store(self.db)
            recs = records(self.store, report.changed)
            for row, rec in zip(report.changed, recs):
                text = formats.line(rec, self.fmt, row.get("change"))  # "new" or "updated"
                if self.jsonl:
                    click.echo(text)
                if self.sender:
                    self.sender.send(syslog.message(rec, text, row.get("change")))
        if self.enricher is not None:
            self.enricher.batch(report)

    def close(self) -> None:
        if self.sender:
            self.sender.close()
        if self.store is not None:
            self.store.close()


COMMANDS = (follow,)
