"""The command line: the group, analyze, config and detectors; the other command modules attach here.

Exit codes are defined in ``zeekwatch.errors`` (0 ok, 1 internal error, 2 usage, 3 input
refused, 4 configuration, 5 store, 6 missing external tool).
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import sys
import traceback

import click
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from zeekwatch import __version__
from zeekwatch import config as configmod
from zeekwatch.cli import console as console_commands
from zeekwatch.cli import enrich as enrich_commands
from zeekwatch.cli import follow as follow_commands
from zeekwatch.cli import incidents as incident_commands
from zeekwatch.cli import triage as triage_commands
from zeekwatch.cli.common import DB_HELP, config_overrides, err, load_config, out
from zeekwatch.errors import EXIT_INTERNAL, EXIT_STORE, ZeekwatchError
from zeekwatch.text import printable


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="zeekwatch")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              envvar="ZEEKWATCH_CONFIG", help="TOML config file (see `zeekwatch config init`).")
@click.option("--debug", is_flag=True, help="Show tracebacks for internal errors.")
@click.pass_context
def cli(ctx, config_path, debug):
    """zeekwatch: find infected hosts in Zeek, Suricata and pcap data.

    Reads Zeek logs (TSV and JSON), Suricata EVE JSON and pcap/pcapng captures, runs the
    behaviour detectors (mass mailers, scans, bots and backdoors, IDS alerts), scores each
    finding by threat and asset value, and keeps them in SQLite for triage.

    \b
    Exit codes: 0 ok, 1 internal error, 2 usage error, 3 input refused,
                4 configuration error, 5 database error, 6 missing external tool.
    """
    ctx.ensure_object(dict)
    ctx.obj["config"] = config_path
    ctx.obj["debug"] = debug
    if config_path and ctx.invoked_subcommand != "config":
        # every command refuses a missing or invalid config (exit 4), not only analyze
        from zeekwatch.detectors import validate

        cfg = configmod.load(config_path)
        validate(cfg)
        # the database commands use when --db is not given: store.db of the config
        ctx.obj["findings_db"] = cfg.store.db


def _progress_hooks(quiet: bool):
    """A rich progress bar over input bytes on a terminal; nothing otherwise."""
    if quiet or not err.is_terminal:
        return None, None, None
    progress = Progress(TextColumn("reading"), BarColumn(), DownloadColumn(),
                        TimeRemainingColumn(), console=err, transient=True)
    task = progress.add_task("read", total=None)
    return progress, (lambda total: progress.update(task, total=total)), \
        (lambda n: progress.advance(task, n))


def _summary(result, db: str) -> None:
    log = result.log
    table = Table(title=f"zeekwatch run {result.run_id} ({result.seconds:.2f} s)")
    table.add_column("table")
    table.add_column("records", justify="right")
    for name in ("conn", "dns", "alert", "http", "tls", "smtp"):
        if log.records.get(name):
            table.add_row(name, f"{log.records[name]:,}")
    table.add_row("rejected lines", f"{log.reject_count:,}")
    table.add_row("files read / skipped", f"{len(log.files)} / {len(log.skipped)}")
    table.add_row("findings new / updated", f"{result.new} / {result.updated}")
    out.print(table)
    for path, reason in log.skipped:
        err.print(f"[yellow]skipped[/] {escape(printable(path))}: {escape(printable(reason))}",
                  highlight=False, soft_wrap=True)
    for note in log.notes[:20]:
        err.print(f"[dim]note[/] {escape(printable(note))}", highlight=False, soft_wrap=True)
    if log.reject_count:
        err.print(f"{log.reject_count} malformed line(s) skipped; see the `rejects` table "
                  f"(run_id = {result.run_id}) in {escape(printable(db))}", highlight=False)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--db", help=DB_HELP + " Default: store.db of the config, else findings.db.")
@click.option("--detector", "detectors", multiple=True, help="Run only this detector (repeatable).")
@config_overrides
@click.option("--pcap-labels", is_flag=True, help="Label capture flows with Wireshark's "
              "dissectors via tshark (app usage: bittorrent, xmpp, stun...). Needs tshark.")
@click.option("--engine", "engine_kind", type=click.Choice(["duckdb", "spark"]),
              help="Engine that reads and runs the detectors (overrides engine.kind; spark: "
              "PATHS may be hdfs://, s3a://, file:// URIs; see docs/spark.md).")
@click.option("--spark-master", help="Spark master URL, e.g. spark://host:7077 or local[4] "
              "(overrides engine.spark_master; default local[*]).")
@click.option("--spark-conf", multiple=True, metavar="K=V", help="A Spark setting, e.g. "
              "spark.executor.memory=4g (repeatable; added to engine.spark_conf).")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.pass_obj
def analyze(obj, paths, db, detectors, pcap_labels, as_json, quiet, engine_kind, spark_master,
            spark_conf, **overrides):
    """Analyse logs, EVE files, captures or directories of them into DB.

    PATHS may be Zeek logs (TSV or JSON, gzip or not), Suricata EVE files, pcap/pcapng
    captures, or directories (walked recursively, Zeek's archive layout included). Re-running
    on the same input adds nothing.
    """
    from zeekwatch.app.analyze import analyze as run_analysis

    from zeekwatch.detectors import REGISTRY

    unknown = [d for d in detectors if d not in REGISTRY]
    if unknown:
        raise click.BadParameter(f"unknown detector {unknown[0]!r} (known: "
                                 f"{', '.join(sorted(REGISTRY))})", param_hint="--detector")
    cfg = load_config(obj, None, overrides)
    if engine_kind or spark_master or spark_conf:
        from zeekwatch.engine.spark.session import parse_conf

        cfg.engine.kind = engine_kind or cfg.engine.kind
        cfg.engine.spark_master = spark_master or cfg.engine.spark_master
        cfg.engine.spark_conf = {**cfg.engine.spark_conf, **parse_conf(spark_conf)}
        cfg.validate()
    db = db or cfg.store.db
    progress, on_plan, advance = _progress_hooks(quiet or as_json)
    if progress is not None:
        progress.start()
    try:
        result = run_analysis(list(paths), cfg, db, on_plan=on_plan, progress=advance,
                              only=list(detectors) or None, pcap_labels=pcap_labels)
    finally:
        if progress is not None:
            progress.stop()
    if as_json:
        click.echo(json.dumps({
            "run_id": result.run_id, "seconds": round(result.seconds, 3), "db": db,
            "records": dict(result.log.records), "rejects": result.log.reject_count,
            "skipped": [{"path": p, "reason": r} for p, r in result.log.skipped],
            "findings_new": result.new, "findings_updated": result.updated,
            "incidents": {k: round(v, 3) if isinstance(v, float) else v
                          for k, v in result.incidents.items()},
            "steps": {k: round(v, 3) for k, v in result.steps.items()},
            "detector_seconds": {k: round(v, 3) for k, v in sorted(result.detector_seconds.items())},
            **({"learned_networks": result.learned_networks} if cfg.networks.internal.count("auto") else {}),
        }))
    else:
        _summary(result, db)
        shown = escape(printable(db))
        out.print(f"Findings are in {shown}: `zeekwatch findings --db {shown}`", highlight=False)


@cli.group()
def config():
    """Write or check the configuration file."""


@config.command("init")
@click.argument("path", default="zeekwatch.toml", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def config_init(path, force):
    """Write the commented sample config to PATH (default zeekwatch.toml)."""
    if os.path.exists(path) and not force:
        raise click.ClickException(f"{path} exists; use --force to overwrite")
    with open(path, "w") as f:
        f.write(configmod.sample())
    click.echo(f"wrote {path}")


@config.command("check")
@click.argument("path", type=click.Path(dir_okay=False))
def config_check(path):
    """Validate the config file at PATH (networks, detectors, scoring, suppression, incidents)."""
    from zeekwatch.detectors import validate
    from zeekwatch.triage.stage import TriageStage

    cfg = configmod.load(path)
    validate(cfg)
    TriageStage(cfg)  # [scoring] and [suppress]
    from zeekwatch.triage.incidents import Incidents

    Incidents(cfg)  # [incidents]
    click.echo(f"{path}: ok")


@cli.command("detectors")
@click.argument("detector_id", required=False)
@click.pass_obj
def list_detectors(obj, detector_id):
    """List the detectors: threat type, how follow runs them, and their parameters.

    The values shown are those in effect: the defaults overlaid with `--config`. With
    DETECTOR_ID, every parameter of that detector with its type, allowed values and meaning.
    """
    from zeekwatch.detectors import REGISTRY

    cfg = configmod.load(obj.get("config"))
    if detector_id is not None:
        if detector_id not in REGISTRY:
            raise click.UsageError(f"unknown detector {detector_id!r} (known: {', '.join(REGISTRY)})")
        det = REGISTRY[detector_id]
        values = cfg.params(det.id, det.params)
        table = Table(title=f"{det.id}: {det.title} (threat {det.threat})")
        for col in ("key", "value", "default", "allowed", "meaning"):
            table.add_column(col)
        for p in det.params:
            table.add_row(p.name, json.dumps(values[p.name]), json.dumps(p.default), p.allowed(), p.doc)
        out.print(table)
        return
    table = Table()
    for col in ("id", "threat", "runs", "parameters (in effect)"):
        table.add_column(col)
    for det in REGISTRY.values():
        runs = "windowed" if det.windowed else "whole data" if det.whole_data else "per record"
        if not cfg.enabled(det.id):
            runs = "disabled"
        values = cfg.params(det.id, det.params)
        table.add_row(det.id, det.threat, runs, json.dumps(values))
    out.print(table)


DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def _db_arg(argv) -> str:
    """The --db of the command line, for messages (the database a store error is about)."""
    args = list(argv if argv is not None else sys.argv[1:])
    for i, a in enumerate(args):
        if a == "--db" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--db="):
            return a[5:]
    return "the database"


def main(argv=None) -> None:
    """Console entry point: errors become messages and exit codes here, nowhere else."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="zeekwatch", standalone_mode=False)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.message = printable(exc.message)
        exc.show()
        sys.exit(exc.exit_code)
    except ZeekwatchError as exc:
        click.echo(f"error: {printable(exc)}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except sqlite3.Error as exc:  # the store could not read or write (locked, full, read-only)
        from zeekwatch.store.db import store_message

        click.echo(f"error: {printable(store_message(_db_arg(argv), exc))}", err=True)
        sys.exit(EXIT_STORE)
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            _internal(exc, debug)
        click.echo(f"error: cannot write {printable(exc.filename or '')}: {exc.strerror} "
                   "(is the disk full?)", err=True)
        sys.exit(EXIT_STORE)
    except Exception as exc:
        _internal(exc, debug)


def _internal(exc: BaseException, debug: bool) -> None:
    """An internal error (a bug): exit 1 with the traceback under --debug."""
    try:
        raise exc
    except BaseException:
        if debug:
            traceback.print_exc()
        else:
            err.print(f"[red]internal error:[/] {escape(printable(repr(sys.exc_info()[1])))} (run with --debug for "
                      "the traceback and please report it)", highlight=False)
        sys.exit(EXIT_INTERNAL)


def entry() -> None:
    """The ``zeekwatch`` command: ``main``, then a hard exit.

    An analysis leaves a large heap (the engine's Arrow tables, DuckDB, imported modules);
    tearing it down object by object at interpreter exit takes ~0.06 s of a 2 s run and
    does nothing for the user: ``main`` has closed every file and committed the database
    before it returns. So, as mypy does, the process ends with ``os._exit`` once stdout and
    stderr are flushed. (``main`` stays an ordinary function for tests and embedding.)"""
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (zeekwatch ... | head): nothing to save
            pass
    os._exit(code)


for _command in (*triage_commands.COMMANDS, *follow_commands.COMMANDS, *console_commands.COMMANDS,
                 *incident_commands.COMMANDS, *enrich_commands.COMMANDS):
    cli.add_command(_command)
