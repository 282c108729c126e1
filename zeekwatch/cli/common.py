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
    if overrides.get("home_net"):
        from zeekwatch.nets import parse_home_net

        # with --internal too, both: e.g. --internal auto --home-net "[...]"
        nets.internal = list(overrides.get("internal") or ()) + parse_home_net(overrides["home_net"])
    if overrides.get("timezone"):
        cfg.time.timezone = overrides["timezone"]
    if overrides.get("memory_limit"):
        cfg.engine.memory_limit = overrides["memory_limit"]
    return cfg.validate()


def config_overrides(command):
    """The flags that override config keys (networks, time zone, memory), shared by commands."""
    for option in reversed([
        click.option("--internal", multiple=True, help="Internal network CIDR (repeatable; "
                     "overrides networks.internal), or 'auto': also every address the Zeek "
                     "logs mark local (local_orig/local_resp), per sensor; the run summary "
                     "names the networks learned."),
        click.option("--home-net", help="Internal networks in Suricata's HOME_NET syntax, e.g. "
                     "'[10.0.0.0/8,192.168.0.0/16,!192.168.5.0/24]' (negations and nested "
                     "groups; overrides networks.internal, adds to --internal)."),
        click.option("--mail-server", multiple=True, help="Address/CIDR of a legitimate mail "
                     "server (repeatable; overrides networks.mail_servers)."),
        click.option("--dns-server", multiple=True, help="Address/CIDR of a DNS server (repeatable)."),
        click.option("--timezone", help="Time zone for off-hours (overrides time.timezone)."),
        click.option("--memory-limit", help="Engine memory limit, e.g. 1GB "
                     "(overrides engine.memory_limit)."),
    ]):
        command = option(command)
    return command
