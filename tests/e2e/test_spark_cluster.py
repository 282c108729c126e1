"""`zeekwatch analyze --engine spark` against a real Spark standalone cluster on loopback.

A master and two workers (one core each) are started with Spark's own launcher
(``spark-class org.apache.spark.deploy.master.Master`` / ``...worker.Worker`` from the
installed pyspark), and the CLI runs as a separate process with ``--spark-master
spark://127.0.0.1:PORT``: its executors live in the workers' JVMs. Its findings must be the
DuckDB engine's (same ids).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import PCAPS

from zeekwatch.app.analyze import analyze
from zeekwatch.config import load

pyspark = pytest.importorskip("pyspark")
pytestmark = [pytest.mark.spark, pytest.mark.xdist_group("spark-cluster"), pytest.mark.slow, pytest.mark.timeout(1500)]

BIN = Path(sys.executable).parent
CAPS = ["horizontal_scan.pcap", "irc_bot.pcap", "skype_stun.pcap"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spark_class(*args: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "SPARK_HOME": os.path.dirname(pyspark.__file__),
           "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_NO_DAEMONIZE": "1"}
    return subprocess.Popen([str(BIN / "spark-class"), *args], env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)


def wait_workers(ui: int, n: int, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=5) as r:
                if json.load(r).get("aliveworkers", 0) >= n:
                    return
        except OSError:
            pass
        time.sleep(2)
    raise AssertionError(f"the standalone cluster did not get {n} workers in {timeout} s")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    logs = tmp_path_factory.mktemp("spark-cluster")
    port, ui = free_port(), free_port()
    procs = [spark_class("org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                         "--port", str(port), "--webui-port", str(ui), log=logs / "master.log")]
    try:
        for i in range(2):
            procs.append(spark_class("org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                                     "--cores", "1", "--memory", "1g", "--webui-port", str(free_port()),
                                     "--work-dir", str(logs / f"work{i}"), f"spark://127.0.0.1:{port}",
                                     log=logs / f"worker{i}.log"))
        wait_workers(ui, 2)
        yield f"spark://127.0.0.1:{port}", ui
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def test_analyze_on_standalone_cluster(cluster, tmp_path):
    master, ui = cluster
    caps = [str(PCAPS / c) for c in CAPS]
    cfg_path = str(PCAPS / "zeekwatch.toml")
    db = tmp_path / "spark.db"
    res = subprocess.run(
        [str(BIN / "zeekwatch"), "--config", cfg_path, "analyze", "--engine", "spark",
         "--spark-master", master, "--spark-conf", "spark.executor.memory=512m",
         "--spark-conf", "spark.driver.host=127.0.0.1", "--spark-conf", "spark.driver.bindAddress=127.0.0.1",
         *caps, "--db", str(db), "--json"], capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout)
    assert summary["findings_new"] > 0 and summary["rejects"] == 0
    duck = analyze(caps, load(cfg_path), str(tmp_path / "duck.db"))
    got = sqlite3.connect(db).execute(
        "SELECT id, detector, host, peer, key, first_seen, last_seen, observed FROM findings").fetchall()
    want = sqlite3.connect(tmp_path / "duck.db").execute(
        "SELECT id, detector, host, peer, key, first_seen, last_seen, observed FROM findings").fetchall()
    assert sorted(got) == sorted(want) and len(got) == summary["findings_new"]
    # the application ran on the cluster (the master lists it as completed)
    with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=10) as r:
        apps = json.load(r)
    assert [a["name"] for a in apps.get("completedapps", []) + apps.get("activeapps", [])] == ["zeekwatch"]
