"""Errors and exit codes: the one place both are defined.

Library code raises these; only ``cli.py`` turns them into messages and exit codes.

Exit codes (documented in README and ``zeekwatch --help``):

====  =====================================================================
 0    success
 1    internal error (a bug: please report it with ``--debug`` output)
 2    usage error (bad command line; click's own code)
 3    input refused (a file that is not a log, a capture that cannot be read)
 4    configuration error (bad TOML, unknown key, bad CIDR)
 5    store error (the SQLite database cannot be opened or written)
 6    missing external tool (e.g. tshark for ``--pcap-labels``)
====  =====================================================================
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_CONFIG = 4
EXIT_STORE = 5
EXIT_TOOL = 6


class ZeekwatchError(Exception):
    """Base of every error zeekwatch raises on purpose."""

    exit_code = EXIT_INTERNAL


class InputError(ZeekwatchError):
    """Input that cannot be used. Carries the file and, when known, the line or byte offset."""

    exit_code = EXIT_INPUT

    def __init__(self, path, reason: str, line: int | None = None, offset: int | None = None):
        self.path = str(path)
        self.reason = reason
        self.line = line
        self.offset = offset
        where = self.path
        if line is not None:
            where += f":{line}"
        elif offset is not None:
            where += f" (byte offset {offset})"
        super().__init__(f"{where}: {reason}")


class NotALogError(InputError):
    """A file that is not a Zeek log, an EVE file or a capture."""


class ConfigError(ZeekwatchError):
    exit_code = EXIT_CONFIG


class StoreError(ZeekwatchError):
    exit_code = EXIT_STORE


class ToolMissingError(ZeekwatchError):
    exit_code = EXIT_TOOL
