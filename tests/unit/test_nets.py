"""Internal networks: networks.internal = "auto" (Zeek's local_orig/local_resp) and HOME_NET."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from helpers import CONN_FIELDS, conn, detect_files
from helpers import zeek_tsv as _zeek_tsv

from zeekwatch.cli.main import cli, main
from zeekwatch.config import from_dict
from zeekwatch.errors import ConfigError
from zeekwatch.nets import parse_home_net

SCANNER = "2001:db8:5::17"  # a global IPv6 address: internal only because Zeek says so


def _scan_rows(local: str = "T") -> list[dict]:
    """SCANNER tries 25 ports of an external server in 25 s (refused), with Zeek's local
    flags as a sensor with Site::local_nets = 2001:db8:5::/48 writes them."""
    return [conn(1_700_000_000 + i, SCANNER, "2001:db8:99::1", 1000 + i, conn_state="REJ",
                 local_orig=local, local_resp="F", _node_name="edge") for i in range(25)]


def zeek_tsv(path, log_path, rows):
    """A conn log as a named sensor writes it (``_node_name``, Zeek's cluster node)."""
    return _zeek_tsv(path, log_path, rows, fields=[("_node_name", "string")] + CONN_FIELDS)


def test_auto_learns_a_global_ipv6_prefix_from_local_orig(tmp_path):
    path = zeek_tsv(tmp_path / "conn.log", "conn", _scan_rows())
    cfg = from_dict({"networks": {"internal": "auto"},
                     "detectors": {"vertical_scan": {"internal_only": True}}})
    found = detect_files([path], only=["vertical_scan"], config=cfg)
    assert [(f.host, f.peer) for f in found] == [(SCANNER, "2001:db8:99::1")]
    # without "auto" the same log makes SCANNER external: no internal scanner
    plain = from_dict({"detectors": {"vertical_scan": {"internal_only": True}}})
    assert detect_files([path], only=["vertical_scan"], config=plain) == []


def test_auto_with_listed_networks_and_unmarked_logs(tmp_path):
    path = zeek_tsv(tmp_path / "conn.log", "conn", _scan_rows(local="F"))
    cfg = from_dict({"networks": {"internal": ["auto", "2001:db8:5::/48"]},
                     "detectors": {"vertical_scan": {"internal_only": True}}})
    assert len(detect_files([path], only=["vertical_scan"], config=cfg)) == 1
    cfg = from_dict({"networks": {"internal": "auto"},
                     "detectors": {"vertical_scan": {"internal_only": True}}})
    assert detect_files([path], only=["vertical_scan"], config=cfg) == []


def test_address_learned_after_its_rows_were_enriched(tmp_path):
    """A file without local flags first, then one that marks the scanner local: the earlier
    rows are reclassified (both storages: detect_files compares them)."""
    rows = _scan_rows()
    first = zeek_tsv(tmp_path / "a.log", "conn", [dict(r, local_orig=None) for r in rows[:20]])
    second = zeek_tsv(tmp_path / "b.log", "conn", rows[20:])
    cfg = from_dict({"networks": {"internal": "auto"},
                     "detectors": {"vertical_scan": {"internal_only": True}}})
    (f,) = detect_files([first, second], only=["vertical_scan"], config=cfg)
    assert f.observed == 25


def test_cli_auto_names_the_learned_networks(tmp_path, capsys):
    path = zeek_tsv(tmp_path / "conn.log", "conn", _scan_rows())
    res = CliRunner().invoke(cli, ["analyze", "--internal", "auto", "--db", str(tmp_path / "f.db"),
                                   "--json", path])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["learned_networks"] == {"edge": ["2001:db8:5::/64 (1 address)"]}
    capsys.readouterr()
    main(["analyze", "--internal", "auto", "--db", str(tmp_path / "g.db"), path])
    err = " ".join(capsys.readouterr().err.split())
    assert "learned from sensor edge's local_orig/local_resp: 2001:db8:5::/64 (1 address)" in err


def test_internal_auto_is_checked():
    assert from_dict({"networks": {"internal": "auto"}}).networks.internal == ["auto"]
    with pytest.raises(ConfigError, match="networks.internal"):
        from_dict({"networks": {"internal": "automatic"}})
    with pytest.raises(ConfigError, match="mail_servers"):
        from_dict({"networks": {"mail_servers": "auto"}})


@pytest.mark.parametrize("text, nets", [
    ("10.0.0.0/8", ["10.0.0.0/8"]),
    ("[192.168.0.0/16, 2001:db8::/32]", ["192.168.0.0/16", "2001:db8::/32"]),
    ("[10.0.0.0/8,!10.128.0.0/9]", ["10.0.0.0/9"]),
    # a negated group with its own negation: 10.1.2.0/24 stays in
    ("[10.0.0.0/8,![10.1.0.0/16,!10.1.2.0/24]]",
     ["10.0.0.0/16", "10.1.2.0/24", "10.2.0.0/15", "10.4.0.0/14", "10.8.0.0/13", "10.16.0.0/12",
      "10.32.0.0/11", "10.64.0.0/10", "10.128.0.0/9"]),
    ("[192.168.1.5,192.168.1.4/31]", ["192.168.1.4/31"]),
])
def test_home_net_syntax(text, nets):
    assert parse_home_net(text) == nets


@pytest.mark.parametrize("text, msg", [
    ("[10.0.0.0/8", "missing"), ("10.0.0.0/8]", "unbalanced"), ("[$HOME_NET]", "variables"),
    ("[10.0.0.0/8,!10.0.0.0/8]", "no network left"), ("[10.0.0.300]", "not an address"),
])
def test_home_net_errors(text, msg):
    with pytest.raises(ConfigError, match=msg):
        parse_home_net(text)


def test_cli_home_net(tmp_path, capsys):
    """--home-net with a negation: the scanner's /64 is carved out, so it is not internal."""
    path = zeek_tsv(tmp_path / "conn.log", "conn", _scan_rows())
    cfg = tmp_path / "z.toml"
    cfg.write_text("[detectors.vertical_scan]\ninternal_only = true\n")
    db = tmp_path / "f.db"
    base = ["--config", str(cfg), "analyze", "-q", "--json", "--detector", "vertical_scan",
            "--db", str(db), path]
    res = CliRunner().invoke(cli, base[:2] + base[2:] + ["--home-net", "[2001:db8::/32,!2001:db8:5::/64]"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["findings_new"] == 0
    res = CliRunner().invoke(cli, base + ["--home-net", "[2001:db8::/32]"])
    assert json.loads(res.stdout)["findings_new"] == 1
    with pytest.raises(SystemExit) as exc:
        main(base + ["--home-net", "[2001:db8::/32"])
    assert exc.value.code == 4 and "missing ']'" in capsys.readouterr().err
