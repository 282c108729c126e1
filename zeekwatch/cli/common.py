"""What every command module shares: the consoles, config loading, the override flags."""

from __future__ import annotations

import click
from rich.console import Console

from zeekwatch import config as configmod

DB_HELP = "SQLite database of findings (created if missing)."
err = Console(stderr=True)
out = Console()


def load_config(ctx_obj: dict, path: str | None, overrides: dict) -> configmod.Config:
    """Defaults -> TOML file -> command-line flags."""
    cfg = configmod.load(path or ctx_obj.get("config"))
    nets = cfg.networks
    for flag, attr in (("internal", "internal"), ("mail_server", "mail_servers"),
                       ("dns_server", "dns_servers")):
        if overrides.get(flag):
            setattr(nets, attr, list(overrides[flag]))
    if overrides.get("timezone"):
        cfg.time.timezone = overrides["timezone"]
    if overrides.get("memory_limit"):
        cfg.engine.memory_limit = overrides["memory_limit"]
    return cfg.validate()


def config_overrides(command):
    """The flags that override config keys (networks, time zone, memory), shared by commands."""
    for option in reversed([
        click.option("--internal", multiple=True, help="Internal network CIDR (repeatable; "
                     "overrides networks.internal)."),
        click.option("--mail-server", multiple=True, help="Address/CIDR of a legitimate mail "
                     "server (repeatable; overrides networks.mail_servers)."),
        click.option("--dns-server", multiple=True, help="Address/CIDR of a DNS server (repeatable)."),
        click.option("--timezone", help="Time zone for off-hours (overrides time.timezone)."),
        click.option("--memory-limit", help="Engine memory limit, e.g. 1GB "
                     "(overrides engine.memory_limit)."),
    ]):
        command = option(command)
    return command
