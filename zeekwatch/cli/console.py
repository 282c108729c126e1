"""Console commands: ``dashboard`` (Datasette, read-only) and ``report --html`` (one file)."""

from __future__ import annotations

import datetime as dt
import os
import time

import click

from zeekwatch.cli.common import err, out
from zeekwatch.errors import EXIT_TOOL, ZeekwatchError

DB_HELP = "SQLite database of findings (read only). Default: store.db of the config, else findings.db."


class MissingConsole(ZeekwatchError):
    exit_code = EXIT_TOOL


def _need(*modules: str) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingConsole(f"the console needs {', '.join(missing)}: "
                             "pip install 'zeekwatch[console]' (make install does)")


def _check_bind(host: str, port: int) -> None:
    """A clear message (exit 2) when the address cannot be bound, before the server starts."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(infos[0][4])
    except OSError as exc:
        raise click.UsageError(f"cannot listen on {host} port {port}: {exc.strerror or exc} "
                               "(choose another with --port / --host)") from None


def _db(ctx, db):
    return db or ctx.obj.get("findings_db") or "findings.db"


@click.command()
@click.option("--db", help=DB_HELP)
@click.option("--port", default=8001, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback exposes the findings to the network "
                   "(there is no login): a warning is printed.")
@click.option("--enable-sql", is_flag=True,
              help="Also allow arbitrary read-only SQL queries (Datasette's SQL page and the "
                   "?sql= JSON API). Off by default: only the console's own queries run.")
@click.pass_context
def dashboard(ctx, db, port, host, enable_sql):
    """Serve the console: a read-only Datasette dashboard over the findings database.

    Panels: open findings (and incidents, when the database has them) by tier with due times,
    alarms over time by behaviour family, P2P/IM/VoIP app usage, top hosts by urgency,
    findings per detector, what suppression removed; a page per host and per finding; filters
    for time range, network, detector, status and tier. Safe to run while `zeekwatch follow`
    writes to the same database. Nothing is loaded from the Internet.
    """
    _need("datasette", "datasette_dashboards", "uvicorn")
    from zeekwatch.console.server import build, serve

    db = _db(ctx, db)
    build(db, enable_sql)  # fails early with a clear error on a missing or unreadable database
    _check_bind(host, port)
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[yellow]warning:[/] listening on {host}: anyone who can reach this address "
                  "can read the findings (the console has no login)")
    if enable_sql:
        err.print("[yellow]note:[/] arbitrary read-only SQL is enabled (--enable-sql)")
    shown = f"[{host}]" if ":" in host else host
    out.print(f"zeekwatch console on http://{shown}:{port}/-/dashboards/zeekwatch "
              f"(database {db}, read-only); Ctrl-C stops it", highlight=False)
    serve(db, host, port, enable_sql)


@click.command()
@click.option("--html", "html_path", required=True, type=click.Path(dir_okay=False),
              help="Write the report to this HTML file (self-contained: no network needed).")
@click.option("--since", help="Only findings last seen at or after: ISO date/time, or "
              "30m / 24h / 7d / 2w back from now. Default: everything.")
@click.option("--db", help=DB_HELP)
@click.pass_context
def report(ctx, html_path, since, db):
    """Write one self-contained, printable HTML report with the console's panels.

    The charts are static SVG rendered in Python (vl-convert, the same vega-lite specs as the
    dashboard); styles are inline; the file opens from disk with no network.
    """
    _need("vl_convert", "jinja2")
    from zeekwatch.console.report import write_report
    from zeekwatch.triage.stage import parse_since

    db = _db(ctx, db)
    since_iso = parse_since(since, dt.datetime.now(dt.timezone.utc)) if since else None
    start = time.perf_counter()
    info = write_report(db, html_path, since_iso)
    out.print(f"wrote {os.path.abspath(html_path)} ({info['bytes']:,} bytes, "
              f"{info['findings']:,} findings, {time.perf_counter() - start:.1f} s)",
              highlight=False)


COMMANDS = (dashboard, report)
