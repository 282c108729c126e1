"""The detectors of DESIGN.md, declared once (see ``base.py`` for the contract).

Importing this package registers every detector in ``REGISTRY`` (id -> Detector).
"""

from .base import REGISTRY, Context, Detector, Dialect  # noqa: F401
from . import scan  # noqa: F401  (registers)
from . import backdoor  # noqa: F401
from . import mail, ids  # noqa: F401
from . import bot  # noqa: F401

__all__ = ["REGISTRY", "Context", "Detector", "Dialect"]
