"""Stored findings in the formats SIEMs read (layer ``export``: above the store and triage,
below the app and the CLI). See docs/integrations.md.

- ``record``: one record per finding with every exported field (the JSON lines format);
- ``ecs``: Elastic Common Schema alert documents;
- ``ocsf``: OCSF Detection Finding (class 2004) events;
- ``syslog``: RFC 5424 messages over UDP, TCP or a unix socket;
- ``formats``: ``write`` one of jsonl, csv, ecs, ocsf to a text stream.
"""

from zeekwatch.export.formats import FORMATS, line, write  # noqa: F401
from zeekwatch.export.record import records  # noqa: F401

__all__ = ["FORMATS", "line", "records", "write"]
