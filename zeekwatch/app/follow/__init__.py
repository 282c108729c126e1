"""Follow mode (imports the layers below app): tail live Zeek logs and Suricata EVE, detect in micro-batches (docs/follow.md).

- ``tail``: files by inode and offset (rotation, copytruncate, late files, partial lines);
- ``parse``: new whole lines through the existing readers, on an in-memory buffer;
- ``lookback``: the bounded look-back in the engine, and the slice each batch detects on;
- ``runner``: the loop, checkpoints committed with the findings they produced.
"""

from zeekwatch.app.follow.runner import (  # noqa: F401
    BatchReport,
    Follower,
    FollowOptions,
    FollowResult,
)

__all__ = ["BatchReport", "Follower", "FollowOptions", "FollowResult"]
