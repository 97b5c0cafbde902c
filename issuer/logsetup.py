"""Logging setup for the ``sa-issuer`` process and its uvicorn workers (no other issuer imports).

Both the CLI (:mod:`issuer.cli`, in the parent process) and the worker factory
(:func:`issuer.app.app_from_env`, in spawned workers, which do not inherit the parent's handlers)
call :func:`setup_logging`, so it lives below both of them.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["setup_logging"]

#: Lines read ``sa-issuer: LEVEL: message`` on stderr.
LOG_FORMAT = "sa-issuer: %(levelname)s: %(message)s"


def setup_logging(level: str = "info") -> None:
    """Send the root logger to stderr at ``level`` (debug, info, warning, error); idempotent.

    uvicorn's own start-up chatter ("Started server process", "Uvicorn running on") would repeat
    the serve banner: it is kept to warnings unless ``level`` is debug.
    """
    root = logging.getLogger()
    if not any(getattr(h, "_sa_issuer", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler._sa_issuer = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    uv_level = logging.DEBUG if level == "debug" else logging.WARNING
    logging.getLogger("uvicorn").setLevel(uv_level)
    logging.getLogger("uvicorn.error").setLevel(uv_level)
