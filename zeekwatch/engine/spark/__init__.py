"""The Spark engine (``engine.kind = "spark"``; docs/spark.md): the DuckDB engine's contract on
Apache Spark. It owns reading in the executors (``reader``: zeekwatch's readers inside
``mapInArrow``), the session settings (``session``), the Spark spellings of the detector SQL
(``dialect``), the engine (``engine``) and a DuckDB-connection-shaped handle for the triage
stage (``con``). It may import the core modules, readers, detectors and the DuckDB engine's
shared pieces (enrichment, episode merging); pyspark is imported only when it runs.
"""
