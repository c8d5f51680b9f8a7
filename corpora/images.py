"""Image files opened with errors that name the file and the item."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from corpora.errors import DataError

_DECODE_ERRORS = (OSError, UnidentifiedImageError, SyntaxError, ValueError)
# A JPEG is checked at 1/8 of its size: libjpeg still entropy-decodes every block (so a truncated
# or corrupt stream fails) but skips most of the inverse DCT, several times faster than a full decode.
CHECK_SCALE = 8


def load_rgb(path: str | Path, item: str) -> Image.Image:
    """Decode the image at ``path`` into RGB; ``item`` says which dataset item it is."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, item, "image file is missing")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except _DECODE_ERRORS as error:
        raise DataError(path, item, f"image cannot be decoded ({error})") from None


def image_problem(path: str | Path) -> str | None:
    """What stops the image at ``path`` from decoding whole (missing, truncated, corrupt), or None."""
    path = Path(path)
    if not path.is_file():
        return "image file is missing"
    try:
        with Image.open(path) as image:
            if image.format == "JPEG":
                image.draft("RGB", (max(1, image.width // CHECK_SCALE), max(1, image.height // CHECK_SCALE)))
            image.load()
    except _DECODE_ERRORS as error:
        return f"image cannot be decoded ({error})"
    return None


def check_image(path: str | Path, item: str) -> None:
    """Decode the image at ``path`` to its last byte; a DataError names a missing, truncated or corrupt file."""
    problem = image_problem(path)
    if problem is not None:
        raise DataError(path, item, problem)


def verify_images(images: Sequence[tuple[str | Path, str]], workers: int = 1, description: str = "checking images") -> None:
    """Decode every ``(path, item)`` image, on ``workers`` processes, with a progress bar on stderr.

    Raises the DataError of the first bad image in the order given (whichever worker finds it).
    """
    paths = [str(path) for path, _ in images]
    workers = max(1, min(workers, os.cpu_count() or 1, len(paths) // 256 + 1))
    bar = {"total": len(paths), "desc": description, "unit": "image", "mininterval": 10, "disable": len(paths) < 1000}
    if workers == 1:
        problems = map(image_problem, paths)
        pool = None
    else:
        pool = ProcessPoolExecutor(workers)
        problems = pool.map(image_problem, paths, chunksize=64)
    try:
        for (path, item), problem in zip(images, tqdm(problems, **bar), strict=True):
            if problem is not None:
                raise DataError(path, item, problem)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
