"""Logging of the stages: a workflow script's output to its rule's ``log:`` file, or an entry point's to stderr."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_to_stderr() -> None:
    """INFO and up to stderr, for a stage's command-line entry point (the rule redirects it to its log)."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)


@contextlib.contextmanager
def log_to(path: str | Path):
    """Within the block, stdout, stderr and ``logging`` (INFO and up) go to ``path``.

    An exception is written there too before it propagates, so Snakemake's
    "see log" points at the traceback.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", buffering=1) as stream, contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            yield
        except BaseException:
            logging.getLogger("pcmebench").exception("failed")
            raise
        finally:
            root.removeHandler(handler)
