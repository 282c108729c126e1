"""``follow --enrich-dir DIR``: each followed log's new lines, enriched, appended to ``DIR/<name>``.

After a batch has been committed, the lines it read are written enriched (``tsv``/``jsonlog``)
with the findings stored so far, so a record is annotated with the findings of its own batch
and of earlier ones; a finding that a later batch raises about an earlier record does not
reach the line already written (``zeekwatch enrich --no-analyze`` rewrites a closed log with
everything). The output is plain text, one file per followed file name; a rotated input's next
file continues it with its own header block. Lines are written after their batch commits: a
crash between the two loses those lines from DIR (never doubles them).
"""

from __future__ import annotations

import io
import os

from zeekwatch.app.enrich.annotate import Annotator
from zeekwatch.app.enrich.jsonlog import JsonEnricher
from zeekwatch.app.enrich.tsv import Counts, TsvEnricher
from zeekwatch.config import Config
from zeekwatch.store.db import Store


class FollowEnricher:
    def __init__(self, out_dir: str, config: Config, db_path: str):
        self.out_dir, self.config, self.db_path = out_dir, config, db_path
        os.makedirs(out_dir, exist_ok=True)
        self.ann: Annotator | None = None
        self.counts = Counts()

    def _annotator(self, refresh: bool) -> Annotator:
        if self.ann is None or refresh:
            store = Store(self.db_path)
            try:
                self.ann = Annotator(store, self.config)
            finally:
                store.close()
        return self.ann

    def batch(self, report) -> None:
        """Append the enriched lines of a committed batch (``BatchReport``)."""
        reads = [r for r in report.reads if r.data and r.stream.kind in ("zeek_tsv", "zeek_json", "eve")]
        if not reads:
            return
        ann = self._annotator(refresh=bool(report.new or report.updated))
        for read in reads:
            path = os.path.join(self.out_dir, os.path.basename(read.stream.path))
            with open(path, "ab") as out:
                if read.stream.kind == "zeek_tsv":
                    enricher = TsvEnricher(ann, io.BytesIO(), self.counts)
                    for line in read.header:  # the header block in force, without output
                        enricher._header_line(line.encode() + b"\n")
                    enricher.flush()
                    enricher.out = out
                    enricher.first_data = not read.header
                    enricher.seen_header = bool(read.header)
                    enricher._block(read.data, len(read.data))
                    enricher.flush()
                else:
                    JsonEnricher(ann, out, self.counts, read.stream.kind).run(io.BytesIO(read.data))
