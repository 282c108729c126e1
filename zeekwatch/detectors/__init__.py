"""Detectors: each behaviour declared once, as data plus one SQL query (``base.py`` has the
contract and the Dialect hooks that let another engine run the same SQL).

Importing this package registers every detector in ``REGISTRY`` (id -> Detector): ``scan``
(worms), ``mail`` (mass mailers), ``bot`` and ``backdoor`` (C2, tunnels, rare and new
services), ``ids`` (Suricata alerts). Imports only the core modules; never the engine.
"""

from zeekwatch.detectors import (  # noqa: F401
    backdoor,  # noqa: F401
    beacon,  # noqa: F401
    bot,  # noqa: F401
    ids,
    mail,
    scan,  # noqa: F401  (registers)
)
from zeekwatch.detectors.base import REGISTRY, Context, Detector, Dialect  # noqa: F401
from zeekwatch.params import Param  # noqa: F401

__all__ = ["REGISTRY", "Context", "Detector", "Dialect", "Param"]


def validate(config) -> None:
    """Refuse unknown detector sections and unknown parameters before a run writes anything."""
    from zeekwatch.errors import ConfigError

    unknown = set(config.detectors) - set(REGISTRY)
    if unknown:
        raise ConfigError(f"detectors: unknown detector(s) {', '.join(sorted(unknown))} "
                          f"(known: {', '.join(REGISTRY)})")
    for det in REGISTRY.values():
        config.params(det.id, det.params)
