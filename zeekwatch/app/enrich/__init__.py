"""``zeekwatch enrich`` (imports the layers below app): each input log written back in its own
format (Zeek TSV with its header block, Zeek JSON, EVE JSON) with the ``zw.*`` fields.

- ``annotate``: what is added (address side and asset class, app usage, the findings citing
  the record), looked up in an index built once from the store and the config;
- ``tsv``: Zeek TSV, block by block (read ahead, rendered in a pool, written behind in threads);
- ``render``: a block of Zeek TSV data lines with their ``zw.*`` columns, with Arrow kernels;
- ``jsonlog``: Zeek JSON and EVE (lines or a JSON array), record by record;
- ``run``: the command's runner (analyse, then enrich every file; gzip in, gzip out).
"""

from zeekwatch.app.enrich.run import EnrichResult, FileResult, enrich  # noqa: F401

__all__ = ["EnrichResult", "FileResult", "enrich"]
