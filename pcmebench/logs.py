"""Send a workflow script's output and Python logging to its rule's ``log:`` file."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path


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
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
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
