# zeekwatch: the two commands are `make demo` and `make test` (see README.md).
# Everything they need is installed here: the virtualenv, the Python packages, tshark
# (Debian package, used by the pcap tests and the optional --pcap-labels flag), and a Java
# runtime for pyspark (extra `spark`: the Spark engine, docs/spark.md).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DB     ?= findings.db
REPORT ?= report.html

.PHONY: demo test test-fast install tshark chromium java pcaps bench clean

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,pcap-labels,console,spark]'
	touch $@

install: $(BIN)/.installed

# tshark from Debian's packages, non-interactively (the package asks a debconf question otherwise).
tshark:
	@command -v tshark >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q tshark >/dev/null; } \
	  || echo "warning: tshark could not be installed; tshark-based tests will be skipped"

# Debian's chromium for the console's browser tests (Playwright drives it; its own browser
# download is not used).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } \
	  || echo "warning: chromium could not be installed; the console's browser tests will be skipped"

# A Java runtime for pyspark (the Spark engine and its tests), from Debian's packages.
java:
	@command -v java >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q default-jre-headless >/dev/null; } \
	  || echo "warning: java could not be installed; Spark tests will fail"

demo: install
	$(BIN)/zeekwatch --config pcaps/zeekwatch.toml analyze pcaps/*.pcap --db $(DB)
	$(BIN)/zeekwatch incidents --db $(DB)
	@echo
	$(BIN)/zeekwatch report --html $(REPORT) --db $(DB)
	@echo
	@echo "Incidents and findings are in $(DB). Next: $(BIN)/zeekwatch incidents show ID --db $(DB)"
	@echo "Report: $(abspath $(REPORT)) (open it in a browser; no network needed)"
	@echo "Console: $(BIN)/zeekwatch dashboard --db $(DB)   then open http://127.0.0.1:8001/-/dashboards/zeekwatch"

# the suite in parallel on every core (pytest-xdist); test-fast skips the tests marked slow
test: install tshark chromium java
	$(BIN)/python -m pytest -q -n auto --dist loadgroup --durations=25

test-fast: install
	$(BIN)/python -m pytest -q -n auto --dist loadgroup -m "not slow"

pcaps: install
	$(BIN)/python scripts/make_pcaps.py pcaps/

bench: install
	$(BIN)/python scripts/bench.py load analyze pcap

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache findings.db report.html
