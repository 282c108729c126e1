"""The Spark session of a run: master and settings from the config, UTC, DuckDB-like SQL.

Settings zeekwatch sets (``engine.spark_conf`` / ``--spark-conf K=V`` override any of them):

    spark.sql.session.timeZone        UTC (timestamps are UTC microseconds, like DuckDB's)
    spark.sql.ansi.enabled            false: x / 0 is NULL and casts of bad text are NULL, as
                                      in the detector SQL's DuckDB semantics
    spark.sql.shuffle.partitions      4 per local core (adaptive execution coalesces them);
                                      on a cluster set it to 2-3x the executor cores
    spark.sql.files.maxPartitionBytes 32 MB: input files packed into one reading task (a task
                                      holds its files' bytes while it parses them)
    spark.driver.memory               2g with a local[N] master, whose JVM is the executor too
    spark.pyspark.python              this interpreter, so local and loopback-cluster workers
                                      import the same zeekwatch (on a cluster: a Python with
                                      zeekwatch installed on every node)
"""

from __future__ import annotations

import os
import re
import sys

from zeekwatch.errors import ConfigError

APP_NAME = "zeekwatch"


def parse_conf(items) -> dict[str, str]:
    """``K=V`` texts (``--spark-conf``) as a dict; a malformed one is a ConfigError."""
    out = {}
    for item in items or ():
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--spark-conf: expected KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _cores(master: str) -> int:
    m = re.fullmatch(r"local\[(\d+|\*)(?:,\d+)?\]", master)
    if m is None:
        return 4 if master != "local" else 1
    return (os.cpu_count() or 2) if m.group(1) == "*" else int(m.group(1))


def defaults(master: str) -> dict[str, str]:
    local = {  # local[N]: the driver's JVM is the executor too
        "spark.driver.memory": "2g",
    } if master.startswith("local") else {}
    return {
        **local,
        "spark.sql.files.maxPartitionBytes": str(32 * 1024 * 1024),  # ~one hourly log per task
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.ansi.enabled": "false",
        "spark.sql.shuffle.partitions": str(4 * _cores(master)),
        "spark.sql.adaptive.enabled": "true",
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        "spark.scheduler.mode": "FAIR",  # detector queries run side by side (engine.detect)
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
    }


def running() -> bool:
    """A SparkSession is already active in this process."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        return False
    return SparkSession.getActiveSession() is not None


def start(master: str, conf: dict[str, str]):
    """A SparkSession on ``master`` (``getOrCreate``: a session already running in this
    process, e.g. under spark-submit, is reused with these settings applied)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError("engine kind 'spark' needs pyspark: pip install 'zeekwatch[spark]'") from None
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(APP_NAME).master(master or "local[*]")
    for k, v in {**defaults(master or "local[*]"), **conf}.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    for k, v in conf.items():
        if k.startswith("spark.sql."):
            spark.conf.set(k, v)
    return spark
