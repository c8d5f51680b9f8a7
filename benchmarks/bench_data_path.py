"""Decode + augmentation throughput per CPU core: COCO's raw JPEGs against the prepare stage's stored copies.

    python benchmarks/bench_data_path.py                     # this CPU, 3 rounds, prints the table
    python benchmarks/bench_data_path.py --quick             # a few images, one round (a try-out)
    python benchmarks/bench_data_path.py --dataloader 15 --device cuda   # also a real DataLoader and GPU decode

It writes ``--images`` COCO-sized JPEGs (640 x 480, about 128 KB: 1/f-noise pictures, whose spectrum
is a photograph's, at the file size of an average COCO image) and their stored copies, made by the
prepare stage's own function (``corpora.images.store_resized``, ``training.stored_shorter_side``).
Then each path below turns every image into the training tensor (RandomResizedCrop(224) + flip,
normalised), on one thread as a DataLoader worker does, in rounds that take the paths in turn, and
reports images per CPU-second (the process's CPU time: on a CPU shared with other jobs, wall time
would measure their load too) and the ratio to the trainer's raw path in the same round:

- raw, PIL + transforms v1: the reference, the trainer's path before it moved to transforms v2
  (the same crops through float pixels), and the path the reference host's numbers were taken on;
- raw, PIL: the trainer's path (``corpora.batches``, transforms v2, on ``PreparedSplit.image``);
- raw, PIL draft: JPEG DCT-domain downscaling to the smallest scale whose shorter side still covers
  the crop size (640 x 480 decodes at 320 x 240): small crops lose resolution;
- raw, PIL draft per crop: the crop drawn first from the JPEG header's size, then decoded at the
  smallest DCT scale that keeps that crop at least 224 px: the same crops at the same resolution;
- raw, torchvision.io.decode_jpeg / simplejpeg / PyTurboJPEG (libjpeg-turbo without PIL; the last
  two where installed);
- stored, PIL / decode_jpeg / simplejpeg: the same transform on the stored copies;
- stored, PIL + transforms v1: the copies through the reference's transform.

From the per-core rates it projects the worker processes that feed 1,700 images/s (ResNet-152
fine-tuning, bf16, on an H100) and 4,000 images/s (its frozen-backbone phase), on this CPU and on
the reference host of the issue (226 images/s per worker with raw PIL: 1,812 images/s from 8 workers),
scaled there by each path's measured ratio. ``--dataloader N`` also times a real DataLoader (N
workers, batch 128, pinned memory on CUDA) raw against stored; ``--device cuda`` times
``decode_jpeg`` on the GPU (batches of 64) plus a per-image crop.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import io as tvio
from torchvision import transforms as v1
from torchvision.transforms import functional as F
from torchvision.transforms import v2
from torchvision.transforms.functional import pil_to_tensor

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from reporting import spread, write_json

from corpora.batches import IMAGENET_MEAN, IMAGENET_STD, image_transform
from corpora.images import load_rgb, store_resized

TARGETS = {"fine-tuning": 1700, "frozen phase": 4000}  # images/s of ResNet-152 bf16 on an H100 (issue 14)
REFERENCE_PER_WORKER = 1812 / 8  # raw PIL DataLoader on the H100 host, images/s per worker (issue 14)
# The ratios' reference: the reference host's path (PIL decode, transforms v1 through float pixels).
REFERENCE_PATH = "raw, PIL + transforms v1 (the reference)"
RAW_PATH = "raw, PIL (the trainer's path)"
STORED_PATH = "stored, PIL (the trainer's path)"
COCO_SIZE, COCO_KB = (640, 480), 128


def pink_noise_picture(rng: np.random.Generator, alpha: float, size=COCO_SIZE) -> np.ndarray:
    """An RGB picture whose amplitude spectrum falls as 1/f^alpha (photographs: about 1), channels correlated."""
    width, height = size
    fy, fx = np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :]
    frequency = np.hypot(fy, fx)
    frequency[0, 0] = 1
    channels = []
    for _ in range(3):
        spectrum = (rng.normal(size=frequency.shape) + 1j * rng.normal(size=frequency.shape)) / frequency**alpha
        channel = np.fft.irfft2(spectrum, s=(height, width))
        channels.append((channel - channel.mean()) / channel.std())
    picture = np.stack(channels, -1) @ np.array([[1, 0.6, 0.6], [0.6, 1, 0.6], [0.6, 0.6, 1]])
    return np.clip(128 + 50 * picture / picture.std(), 0, 255).astype(np.uint8)


def write_coco_sized_jpegs(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` 640 x 480 JPEGs (quality 90) of about 128 KB; alpha found by bisection on a few pictures."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:05d}.jpg" for i in range(count)]
    if all(p.is_file() for p in paths):
        return paths
    low, high = 0.9, 1.6  # file size falls as alpha grows
    for _ in range(8):
        alpha = (low + high) / 2
        rng = np.random.default_rng(seed)
        kb = np.mean([len(jpeg(pink_noise_picture(rng, alpha))) for _ in range(3)]) / 1024
        low, high = (alpha, high) if kb > COCO_KB else (low, alpha)
    rng = np.random.default_rng(seed)
    for path in paths:
        path.write_bytes(jpeg(pink_noise_picture(rng, alpha)))
    return paths


def jpeg(pixels: np.ndarray, quality: int = 90) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (pixels.float() / 255 - mean) / std


def draft_decode(path: Path, shorter: int) -> torch.Tensor:
    """PIL with JPEG draft mode: the smallest DCT scale (1/2, 1/4, 1/8) whose shorter side is still >= ``shorter``."""
    with Image.open(path) as image:
        width, height = image.size
        image.draft("RGB", (math.ceil(shorter * width / min(width, height)), math.ceil(shorter * height / min(width, height))))
        return pil_to_tensor(image.convert("RGB"))


def crop_draft_transform(size: int):
    """RandomResizedCrop + flip whose crop is drawn from the header's size, decoded at the smallest DCT
    scale that keeps the crop >= ``size`` px (the raw path's crops at the raw path's resolution)."""

    def transform(path: Path) -> torch.Tensor:
        with Image.open(path) as image:
            width, height = image.size
            top, left, crop_h, crop_w = v2.RandomResizedCrop.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3])
            scale = next((s for s in (8, 4, 2) if min(crop_w, crop_h) // s >= size), 1)
            if scale > 1:
                image.draft("RGB", (math.ceil(width / scale), math.ceil(height / scale)))
            sx, sy = image.size[0] / width, image.size[1] / height
            pixels = pil_to_tensor(image.convert("RGB"))
        box = (round(top * sy), round(left * sx), max(1, round(crop_h * sy)), max(1, round(crop_w * sx)))
        pixels = F.resized_crop(pixels, *box, [size, size], antialias=True)
        if torch.rand(()) < 0.5:
            pixels = pixels.flip(-1)
        return normalise(pixels)

    return transform


def decoders() -> dict:
    """Optional libjpeg-turbo bindings that are installed: name -> bytes -> (3, H, W) uint8."""
    found = {}
    try:
        import simplejpeg

        found["simplejpeg"] = lambda data: torch.from_numpy(simplejpeg.decode_jpeg(data, colorspace="RGB")).permute(2, 0, 1)
    except ImportError:
        pass
    try:
        import turbojpeg

        codec = turbojpeg.TurboJPEG()
        found["PyTurboJPEG"] = lambda data: torch.from_numpy(codec.decode(data, pixel_format=turbojpeg.TJPF_RGB)).permute(2, 0, 1)
    except (ImportError, OSError, RuntimeError):  # not installed, or its libturbojpeg missing / too old
        pass
    return found


def paths_to_time(size: int, raw: list[Path], stored: list[Path]) -> dict:
    """name -> (function of one file, the files it reads); the first is the trainer's raw path."""
    train = image_transform("coco", size, train=True)
    reference = v1.Compose(
        [
            v1.RandomResizedCrop(size, antialias=True),
            v1.RandomHorizontalFlip(),
            v1.ConvertImageDtype(torch.float32),
            v1.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )

    def pil(path):
        return pil_to_tensor(load_rgb(path, "benchmark image"))

    def torchvision_decode(path):
        return tvio.decode_jpeg(tvio.read_file(str(path)), mode=tvio.ImageReadMode.RGB)

    table = {
        REFERENCE_PATH: (lambda p: reference(pil(p)), raw),
        RAW_PATH: (lambda p: train(pil(p)), raw),
        "raw, PIL draft (DCT scale to >= crop size)": (lambda p: train(draft_decode(p, size)), raw),
        "raw, PIL draft per crop (same crops and resolution)": (crop_draft_transform(size), raw),
        "raw, torchvision.io.decode_jpeg": (lambda p: train(torchvision_decode(p)), raw),
    }
    optional = decoders()
    for name, decode in optional.items():
        table[f"raw, {name}"] = (lambda p, d=decode: train(d(p.read_bytes())), raw)
    table["stored, PIL + transforms v1"] = (lambda p: reference(pil(p)), stored)
    table[STORED_PATH] = (lambda p: train(pil(p)), stored)
    table["stored, torchvision.io.decode_jpeg"] = (lambda p: train(torchvision_decode(p)), stored)
    for name, decode in optional.items():
        table[f"stored, {name}"] = (lambda p, d=decode: train(d(p.read_bytes())), stored)
    return table


def time_paths(table: dict, rounds: int) -> dict[str, list[float]]:
    """images per CPU-second of each path per round; each round takes the paths in turn, starting one further on."""
    names = list(table)
    for function, files in table.values():  # warm-up: page cache, lazy imports, allocator
        function(files[0])
    rates = {name: [] for name in names}
    for round_ in range(rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            function, files = table[name]
            torch.manual_seed(round_)
            started = time.process_time()
            for path in files:
                function(path)
            rates[name].append(len(files) / (time.process_time() - started))
    return rates


def dataloader_rates(raw: list[Path], stored: list[Path], size: int, workers: int, batches: int, device: str) -> dict:
    """images/s of a real DataLoader (``workers`` processes, batch 128, pinned on CUDA), raw against stored."""

    class Files(torch.utils.data.Dataset):
        def __init__(self, files):
            self.files, self.transform = files, image_transform("coco", size, train=True)

        def __len__(self):
            return 128 * (batches + 2)

        def __getitem__(self, index):
            return self.transform(pil_to_tensor(load_rgb(self.files[index % len(self.files)], "benchmark image")))

    rates = {}
    for name, files in (("raw", raw), ("stored", stored)):
        loader = torch.utils.data.DataLoader(
            Files(files), batch_size=128, num_workers=workers, pin_memory=device == "cuda", persistent_workers=False
        )
        iterator = iter(loader)
        for _ in range(2):  # workers started, queues full
            next(iterator).to(device, non_blocking=True)
        started = time.perf_counter()
        for _ in range(batches):
            next(iterator).to(device, non_blocking=True)
        if device == "cuda":
            torch.cuda.synchronize()
        rates[name] = 128 * batches / (time.perf_counter() - started)
        del iterator
    return rates


def gpu_decode_rates(raw: list[Path], stored: list[Path], size: int, repeats: int = 5) -> dict:
    """images/s of torchvision.io.decode_jpeg on CUDA (batches of 64), alone and with a per-image crop + flip."""
    crop = v2.Compose([v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()])
    rates = {}
    for name, files in (("raw", raw), ("stored", stored)):
        data = [tvio.read_file(str(p)) for p in (files * (64 // len(files) + 1))[:64]]
        tvio.decode_jpeg(data, device="cuda")
        for label, step in (("decode", lambda images: images), ("decode + crop", lambda images: [crop(i) for i in images])):
            torch.cuda.synchronize()
            started = time.perf_counter()
            for _ in range(repeats):
                step(tvio.decode_jpeg(data, device="cuda"))
            torch.cuda.synchronize()
            rates[f"{name}, {label}"] = 64 * repeats / (time.perf_counter() - started)
    return rates


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=48, help="COCO-sized JPEGs to generate and time")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stored-side", type=int, default=256, help="training.stored_shorter_side of the stored copies")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--work", default="benchmark-data", help="where the generated images go (kept for reruns)")
    parser.add_argument("--dataloader", type=int, default=0, help="also time a DataLoader with this many workers")
    parser.add_argument("--dataloader-batches", type=int, default=20)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: pinned DataLoader and GPU decode")
    parser.add_argument("--quick", action="store_true", help="8 images, one round: a try-out")
    parser.add_argument("--json", default=None, help="write the numbers here")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.rounds = 8, 1
    torch.set_num_threads(1)  # as in a DataLoader worker

    work = Path(args.work)
    raw = write_coco_sized_jpegs(work / "raw", args.images)
    stored = [work / f"stored{args.stored_side}" / p.name for p in raw]
    for source, target in zip(raw, stored):
        if not target.is_file():
            assert store_resized(source, target, args.stored_side) is None
    raw_kb = np.mean([p.stat().st_size for p in raw]) / 1024
    stored_kb = np.mean([p.stat().st_size for p in stored]) / 1024
    with Image.open(stored[0]) as image:
        stored_size = image.size
    print(
        f"{len(raw)} raw JPEGs 640x480, {raw_kb:.0f} KB mean; stored copies {stored_size[0]}x{stored_size[1]}, "
        f"{stored_kb:.0f} KB; RandomResizedCrop({args.input_size}) + flip + normalise, 1 thread"
    )
    load = os.getloadavg()[0]
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; torch {torch.__version__}; load average {load:.2f}"
    )

    table = paths_to_time(args.input_size, raw, stored)
    rates = time_paths(table, args.rounds)
    reference = rates[REFERENCE_PATH]
    ratios = {name: [r / ref for r, ref in zip(values, reference)] for name, values in rates.items()}
    print(f"\n{args.rounds} round(s); median (min-max); workers = ceil(target / per-core rate)")
    print(
        f"| path | images per CPU-second | ratio to the reference | workers for {' / '.join(f'{t:,}/s' for t in TARGETS.values())} "
        f"| same on the reference host |"
    )
    print("|---|---|---|---|---|")
    summary = {"load_average_start": load, "raw_kb": raw_kb, "stored_kb": stored_kb, "stored_size": stored_size, "paths": {}}
    for name, values in rates.items():
        per_core = statistics.median(values)
        ratio = statistics.median(ratios[name])
        here = [math.ceil(t / per_core) for t in TARGETS.values()]
        there = [math.ceil(t / (REFERENCE_PER_WORKER * ratio)) for t in TARGETS.values()]
        print(
            f"| {name} | {spread(values, 0)} | {spread(ratios[name], 2)} | {' / '.join(map(str, here))} | {' / '.join(map(str, there))} |"
        )
        summary["paths"][name] = {
            "images_per_s": values,
            "ratio": ratios[name],
            "workers_here": here,
            "workers_reference_host": there,
        }
    print(f"load average at end: {os.getloadavg()[0]:.2f}")

    if args.dataloader:
        torch.set_num_threads(max(1, (os.cpu_count() or 2) - args.dataloader))
        loader = dataloader_rates(raw, stored, args.input_size, args.dataloader, args.dataloader_batches, args.device)
        summary["dataloader"] = {"workers": args.dataloader, **loader}
        print(
            f"\nDataLoader, {args.dataloader} workers, batch 128{', pinned, to CUDA' if args.device == 'cuda' else ''}: "
            f"raw {loader['raw']:.0f} images/s, stored {loader['stored']:.0f} images/s "
            f"(ratio {loader['stored'] / loader['raw']:.2f})"
        )
    if args.device == "cuda":
        gpu = gpu_decode_rates(raw, stored, args.input_size)
        summary["gpu_decode"] = gpu
        print("\nGPU decode_jpeg (batches of 64): " + "; ".join(f"{k} {v:.0f} images/s" for k, v in gpu.items()))
    write_json(args.json, summary)
    return summary


if __name__ == "__main__":
    main()
