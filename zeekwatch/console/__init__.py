"""The console: people read the findings database here, never write it.

Owns the panels (SQL over the store's contract tables plus a vega-lite spec each, ``panels``),
the read-only Datasette dashboard with zeekwatch's plugin and pages (``server``, ``plugin``,
``pages``), and the self-contained HTML report (``report``). Opens SQLite read-only itself
(Datasette's ``mode=ro``, ``report.connect_ro``); may import core modules only. The ``cli``
layer above starts it (``zeekwatch dashboard``, ``zeekwatch report``).
"""
