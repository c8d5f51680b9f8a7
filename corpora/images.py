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
# The prepare stage's resized copies (training.stored_shorter_side): near-lossless, 4:2:0 like COCO's own files.
STORED_QUALITY = 95


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


def verify_images(images: Sequence[tuple[str | Path, str]], workers: int = 1, description: str = "checking images") -> None:
    """Decode every ``(path, item)`` image, on ``workers`` processes, with a progress bar on stderr.

    Raises the DataError of the first bad image in the order given (whichever worker finds it).
    """
    _raise_first_problem(image_problem, [(str(path),) for path, _ in images], images, workers, description)


def store_resized(source: str | Path, target: str | Path, shorter_side: int) -> str | None:
    """Decode ``source`` whole and write it to ``target`` as an RGB JPEG (quality ``STORED_QUALITY``),
    resized as torchvision's ``Resize(shorter_side)`` resizes a uint8 tensor (bilinear, antialiased;
    the longer side scaled in proportion, rounded down) when its shorter side is longer, else at its
    own size. Returns what stops the image from decoding (missing, truncated, corrupt), or None.
    """
    from torchvision.transforms.functional import pil_to_tensor, resize

    source = Path(source)
    if not source.is_file():
        return "image file is missing"
    try:
        with Image.open(source) as image:
            pixels = image.convert("RGB")
    except _DECODE_ERRORS as error:
        return f"image cannot be decoded ({error})"
    if min(pixels.size) > shorter_side:
        resized = resize(pil_to_tensor(pixels), [shorter_side], antialias=True)
        pixels = Image.fromarray(resized.permute(1, 2, 0).numpy())
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    pixels.save(target, "JPEG", quality=STORED_QUALITY)
    return None


def store_images(
    images: Sequence[tuple[str | Path, str | Path, str]], shorter_side: int, workers: int = 1, description: str = "storing images"
) -> None:
    """``store_resized`` every ``(source, target, item)``, on ``workers`` processes, with a progress bar.

    Every image is decoded whole on the way, so the first bad one (in the order given) raises its DataError.
    """
    jobs = [(str(source), str(target), shorter_side) for source, target, _ in images]
    items = [(source, item) for source, _, item in images]
    _raise_first_problem(store_resized, jobs, items, workers, description, initializer=_one_torch_thread)


def _one_torch_thread() -> None:
    """A worker process's torch runs on one thread: the pool already has one process per core."""
    import torch

    torch.set_num_threads(1)


def _raise_first_problem(
    function, jobs: list[tuple], items: Sequence[tuple[str | Path, str]], workers: int, description: str, initializer=None
) -> None:
    """Run ``function(*job)`` for every job (a problem string or None), on up to ``workers`` processes
    (each first running ``initializer``); raise the DataError of the first problem, naming the
    ``(path, item)`` of its job."""
    workers = max(1, min(workers, os.cpu_count() or 1, len(jobs) // 256 + 1))
    bar = {"total": len(jobs), "desc": description, "unit": "image", "mininterval": 10, "disable": len(jobs) < 1000}
    if workers == 1:
        problems = (function(*job) for job in jobs)
        pool = None
    else:
        pool = ProcessPoolExecutor(workers, initializer=initializer)
        problems = pool.map(function, *zip(*jobs), chunksize=64)
    try:
        for (path, item), problem in zip(items, tqdm(problems, **bar), strict=True):
            if problem is not None:
                raise DataError(path, item, problem)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
