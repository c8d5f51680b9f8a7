"""Logging of the stages: a command-line entry point's to stderr, which its rule redirects to its ``log:`` file."""

from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_to_stderr() -> None:
    """INFO and up to stderr, for a stage's command-line entry point (the rule redirects it to its log)."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
