"""The console: a read-only Datasette dashboard over the findings database (``dashboard``) and a
self-contained HTML report (``report``), built from the same panels (``panels``)."""
