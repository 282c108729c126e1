"""Configuration: defaults -> TOML file -> flags, errors pinned."""

from __future__ import annotations

import tomllib

import pytest

from zeekwatch import config
from zeekwatch.detectors import REGISTRY
from zeekwatch.errors import ConfigError


def test_defaults_are_rfc1918_and_ula():
    cfg = config.load(None)
    assert cfg.networks.internal == ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]
    assert cfg.time.timezone == "UTC"


def test_file_overrides_defaults(tmp_path):
    p = tmp_path / "z.toml"
    p.write_text('[networks]\ninternal = ["10.1.0.0/16"]\nmail_servers = ["10.1.0.25"]\n'
                 '[detectors.horizontal_scan]\nmin_hosts = 30\n')
    cfg = config.load(str(p))
    assert cfg.networks.internal == ["10.1.0.0/16"]
    assert cfg.networks.mail_servers == ["10.1.0.25"]
    assert cfg.params("horizontal_scan", REGISTRY["horizontal_scan"].defaults)["min_hosts"] == 30
    assert cfg.time.business_end == "22:00"  # untouched defaults stay


@pytest.mark.parametrize("text, message", [
    ("[networks]\ninternal = ['10.0.0.0/33']\n", r"networks.internal: '10.0.0.0/33' is not an address"),
    ("[networks]\nintranet = []\n", r"networks.intranet: unknown key"),
    ("[time]\ntimezone = 'Mars/Olympus'\n", r"unknown time zone 'Mars/Olympus'"),
    ("[time]\nbusiness_start = '25:00'\n", r"time.business_start: '25:00' is not HH:MM"),
    ("[networks\n", r"invalid TOML"),
    ("[engine]\nstorage = 'disk'\n", r"engine.storage: 'disk' is not one of auto, memory, file"),
])
def test_bad_config_is_refused_with_the_key(tmp_path, text, message):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message):
        config.load(str(p))


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match=r"no such config file .*zeekwatch config init"):
        config.load(str(tmp_path / "nope.toml"))


def test_unknown_detector_parameter_is_refused():
    cfg = config.from_dict({"detectors": {"horizontal_scan": {"min_host": 3}}})
    with pytest.raises(ConfigError, match=r"detectors.horizontal_scan: unknown key\(s\) min_host"):
        cfg.params("horizontal_scan", REGISTRY["horizontal_scan"].defaults)


def test_sample_config_loads_and_documents_every_detector():
    text = config.sample()
    data = tomllib.loads(text)
    cfg = config.from_dict(data)
    assert cfg.networks.internal == config.Config().networks.internal
    for det_id, det in REGISTRY.items():
        assert det_id in data.get("detectors", {}), f"sample config lacks [detectors.{det_id}]"
        assert set(data["detectors"][det_id]) - {"enabled"} == set(det.defaults), det_id
        for key, value in det.defaults.items():
            assert data["detectors"][det_id][key] == value, f"{det_id}.{key} default differs"


def test_unknown_detector_section_is_refused_before_a_run(tmp_path):
    from zeekwatch.detectors import validate

    cfg = config.from_dict({"detectors": {"horizontal_scn": {"window": 5}}})
    with pytest.raises(ConfigError, match=r"unknown detector\(s\) horizontal_scn"):
        validate(cfg)
