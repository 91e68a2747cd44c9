"""Logging set-up for stage entry points (the library itself only uses ``logging.getLogger``)."""

from __future__ import annotations

import logging
import os


def setup_logging() -> None:
    """INFO-level logging to stderr with the module name; ``MER_LOG_LEVEL`` overrides the level."""
    logging.basicConfig(
        level=os.environ.get("MER_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
