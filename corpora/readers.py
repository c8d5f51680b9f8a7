"""Readers of the small structured files datasets and prepared folders hold (JSON, .npy).

Each one turns whatever goes wrong (missing, truncated, not the format, wrong
shape) into a ``DataError`` that names the file, so no stage fails with a bare
``JSONDecodeError`` or numpy's pickle message.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from corpora.errors import DataError


def read_json(path: str | Path, keys: tuple[str, ...] = ()) -> dict | list:
    """A JSON document (an object with ``keys`` at its top level, when given), or a DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file", "not found")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(path, "file", f"not valid JSON ({error})") from None
    except OSError as error:
        raise DataError(path, "file", f"cannot be read ({error})") from None
    for key in keys:
        if not isinstance(content, dict) or key not in content:
            raise DataError(path, "top level", f"has no {key!r} (not the file this stage expects?)")
    return content


def read_npy(path: str | Path, ndim: int | None = None, kind: str | None = None) -> np.ndarray:
    """A .npy array (no pickles), optionally checked for its number of dimensions and its dtype kind
    (``"i"`` integer, ``"f"`` float); anything else is a DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file", "not found")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise DataError(path, "file", f"not a readable numeric .npy array ({error})") from None
    if not isinstance(array, np.ndarray):
        raise DataError(path, "file", "holds an archive of arrays, not one array")
    if ndim is not None and array.ndim != ndim:
        raise DataError(path, "file", f"expected a {ndim}-D array, found shape {array.shape}")
    if kind == "i" and not np.issubdtype(array.dtype, np.integer):
        raise DataError(path, "file", f"expected integers, found {array.dtype}")
    if kind == "f" and not np.issubdtype(array.dtype, np.floating):
        raise DataError(path, "file", f"expected floating-point numbers, found {array.dtype}")
    return array
