"""Engine: the normalized tables in DuckDB and the detectors' queries over them.

``core.Engine`` loads the readers' Arrow chunks (in memory, or a scratch DuckDB file when
large), enriches conn rows once (``enrich``: address classes and ids, failed/established/
outbound flags) and runs each enabled detector's single SQL query, returning candidate
rows. May import readers, detectors and the core modules; never store, triage, app or cli.
"""
