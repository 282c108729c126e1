"""The Spark engine's pieces that need no Spark: type spellings, --spark-conf, refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PCAPS

from zeekwatch.config import from_dict
from zeekwatch.engine.spark.dialect import SparkDialect
from zeekwatch.engine.spark.session import defaults, parse_conf
from zeekwatch.errors import ConfigError


def test_type_names_are_spelled_for_spark():
    d = SparkDialect()
    assert d.translate("SELECT CAST(x AS VARCHAR), CAST(y AS INTEGER), CAST(z AS VARCHAR(8))") == \
        "SELECT CAST(x AS STRING), CAST(y AS INT), CAST(z AS VARCHAR(8))"


def test_spark_conf_pairs():
    assert parse_conf(["spark.executor.memory=4g", " a.b = c=d "]) == {
        "spark.executor.memory": "4g", "a.b": "c=d"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_conf(["spark.executor.memory"])


def test_local_cores_size_the_shuffle():
    assert defaults("local[2]")["spark.sql.shuffle.partitions"] == "8"
    assert defaults("local")["spark.sql.shuffle.partitions"] == "4"
    assert defaults("local[2]")["spark.sql.session.timeZone"] == "UTC"


def test_engine_kind_is_a_checked_key():
    assert from_dict({"engine": {"kind": "spark"}}).validate().engine.kind == "spark"
    with pytest.raises(ConfigError, match="engine.kind"):
        from_dict({"engine": {"kind": "hadoop"}}).validate()
    with pytest.raises(ConfigError, match="engine.spark_conf"):
        from_dict({"engine": {"spark_conf": {"spark.executor.memory": 4}}}).validate()


@pytest.mark.parametrize("args, message", [
    (["--spark-conf", "nokey"], "KEY=VALUE"),
    (["--pcap-labels"], "DuckDB engine"),
])
def test_bad_spark_flags_exit_4_before_spark_starts(tmp_path, args, message):
    exe = Path(sys.executable).parent / "zeekwatch"
    res = subprocess.run([str(exe), "analyze", "--engine", "spark", *args, str(PCAPS / "irc_bot.pcap"),
                          "--db", str(tmp_path / "f.db")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 4, res.stderr
    assert message in res.stderr
    assert not (tmp_path / "f.db").exists()
