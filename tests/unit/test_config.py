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
    assert cfg.params("horizontal_scan", REGISTRY["horizontal_scan"].params)["min_hosts"] == 30
    assert cfg.time.business_end == "22:00"  # untouched defaults stay


@pytest.mark.parametrize("text, message", [
    ("[networks]\ninternal = ['10.0.0.0/33']\n", r"networks.internal: '10.0.0.0/33' is not valid here: expected \"auto\", or a list of addresses"),
    ("[networks]\nintranet = []\n", r"networks.intranet: unknown key"),
    ("[time]\ntimezone = 'Mars/Olympus'\n", r"unknown time zone 'Mars/Olympus'"),
    ("[time]\nbusiness_start = '25:00'\n", r"time.business_start: '25:00' is not HH:MM"),
    ("[networks\n", r"invalid TOML"),
    ("[engine]\nstorage = 'disk'\n", r"engine.storage: 'disk' is not one of 'auto', 'memory', 'file'"),
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
        cfg.params("horizontal_scan", REGISTRY["horizontal_scan"].params)


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


@pytest.mark.parametrize("text, message", [
    # detector parameters are typed: nothing but a validated number reaches SQL
    ("[detectors.mass_mailer]\nmin_servers = 'twenty'\n",
     r"detectors.mass_mailer.min_servers: 'twenty' is not an integer >= 1"),
    ("[detectors.mass_mailer]\nmin_servers = \"(SELECT 1 FROM read_text('/etc/passwd'))\"\n",
     r"detectors.mass_mailer.min_servers: .* is not an integer"),
    ("[detectors.mx_burst]\nmin_queries = true\n", r"min_queries: True is not an integer"),
    ("[detectors.vertical_scan]\nmin_ports = 0\n", r"min_ports: 0 is not an integer >= 1"),
    ("[detectors.ids_alert]\ngroup_window = '1 hour'\n", r"group_window: '1 hour' is not an integer"),
    ("[detectors.c2_port]\nextra_ports = [4444, 'http']\n", r"extra_ports: 'http' is not valid here"),
    ("[detectors.c2_port]\nextra_ports = [70000]\n", r"extra_ports: 70000 is not valid here"),
    ("[detectors.off_hours]\nexclude_hosts = ['10.0.0.300']\n", r"exclude_hosts: '10.0.0.300' is not valid here"),
    ("[detectors.ping_sweep]\nenabled = 'false'\n", r"detectors.ping_sweep.enabled: 'false' is not true or false"),
    ("[detectors.rare_destination]\nmax_percent = 150\n", r"max_percent: 150 is not a number from 0 to 100"),
    # the sections' own keys
    ("[engine]\nthreads = 'two'\n", r"engine.threads: 'two' is not an integer from 1"),
    ("[engine]\nthreads = 0\n", r"engine.threads: 0 is not an integer from 1"),
    ("[engine]\nthreads = -1\n", r"engine.threads: -1 is not"),
    ("[engine]\nmemory_limit = 'lots'\n", r"engine.memory_limit: 'lots' is not a size with a unit"),
    ("[engine]\nmemory_limit = 5\n", r"engine.memory_limit: 5 is not a size"),
    ("[store]\nmerge_gap = '5m'\n", r"store.merge_gap: '5m' is not an integer from 0"),
    ("[store]\nmerge_gap = -100\n", r"store.merge_gap: -100 is not an integer from 0"),
    ("[time]\nweekends_off = 'no'\n", r"time.weekends_off: 'no' is not true or false"),
    ("[networks]\ninternal = [10]\n", r"networks.internal: 10 is not valid here"),
])
def test_typed_values_are_checked_naming_the_key(tmp_path, text, message):
    from zeekwatch.detectors import validate

    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message):
        validate(config.load(str(p)))


def test_temp_directory_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(ConfigError, match=r"engine.temp_directory: .* is not a writable directory"):
        config.from_dict({"engine": {"temp_directory": str(f / "sub")}})


def test_every_parameter_default_satisfies_its_own_declaration():
    for det in REGISTRY.values():
        for p in det.params:
            assert p.check(p.default, f"{det.id}.{p.name}") == p.default
            assert p.doc, f"{det.id}.{p.name} has no doc"


def test_follow_plan_comes_from_declared_metadata():
    from zeekwatch.app.follow.runner import detector_plan

    plan = detector_plan(config.Config(), None)
    assert set(plan.whole) == {d for d, det in REGISTRY.items() if det.whole_data}
    assert "horizontal_scan" in plan.batch and "unusual_port" in plan.whole
    # the gate is the smallest declared threshold of the windowed detectors
    assert plan.gate == min(det.defaults[det.threshold] for det in REGISTRY.values()
                            if det.windowed and det.threshold)
    cfg = config.from_dict({"detectors": {"ping_sweep": {"min_hosts": 3}}})
    assert detector_plan(cfg, None).gate == 3
