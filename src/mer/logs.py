"""Logging set-up and error reporting for stage entry points (the library itself only uses
``logging.getLogger`` and raises)."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable

#: What mer raises for a person to act on: ParamsError, MetadataError, MediaError (ValueError),
#: LayoutError / a missing file (OSError), ExtractionError and an unavailable device
#: (RuntimeError). Anything else is a bug and keeps its traceback.
ACTIONABLE = (ValueError, OSError, RuntimeError)


def setup_logging() -> None:
    """INFO-level logging to stderr with the module name; ``MER_LOG_LEVEL`` overrides the level."""
    logging.basicConfig(
        level=os.environ.get("MER_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def error_line(exc: BaseException, stage: str) -> str:
    """The one line a failed stage prints: mer's message, which names the key or path and the fix.

    >>> print(error_line(ValueError("corpora.iemocap.root: /x not found;\\nset it"), "metadata"))
    mer: metadata failed: corpora.iemocap.root: /x not found; set it (MER_DEBUG=1 shows the traceback)
    """
    message = " ".join(str(exc).split()) or type(exc).__name__
    return f"mer: {stage} failed: {message} (MER_DEBUG=1 shows the traceback)"


def run_stage(main: Callable[[], None], stage: str | None = None) -> None:
    """Run a stage script's ``main``; an :data:`ACTIONABLE` error ends it with :func:`error_line`
    on stderr and exit status 1 (DVC's own lines follow), with the traceback under ``MER_DEBUG=1``."""
    stage = stage or os.path.splitext(os.path.basename(sys.argv[0]))[0]
    try:
        main()
    except ACTIONABLE as exc:
        if os.environ.get("MER_DEBUG", "") not in ("", "0"):
            traceback.print_exc()
        print(error_line(exc, stage), file=sys.stderr)
        raise SystemExit(1) from None
