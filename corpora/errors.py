"""The one error type raised for bad or missing input data."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Input data that cannot be used as it is.

    The message always names the file and the item inside it, so a user with
    123,000 COCO images knows which one to look at.
    """

    def __init__(self, path: str | Path, item: str, problem: str):
        self.path = str(path)
        self.item = item
        self.problem = problem
        super().__init__(f"{self.path}: {item}: {problem}")
