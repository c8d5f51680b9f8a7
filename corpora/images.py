"""Image files opened with errors that name the file and the item."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from corpora.errors import DataError

_DECODE_ERRORS = (OSError, UnidentifiedImageError, SyntaxError, ValueError)


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


def check_image(path: str | Path, item: str) -> None:
    """Cheap check that ``path`` exists and has a readable image header."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, item, "image file is missing")
    try:
        with Image.open(path) as image:
            image.verify()
    except _DECODE_ERRORS as error:
        raise DataError(path, item, f"image cannot be decoded ({error})") from None
