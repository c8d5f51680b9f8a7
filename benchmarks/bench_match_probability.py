"""PCME's match probability: the chunked matrix-product version against the bare matrix product of the same
shapes and against a per-query float64 reference.

    python benchmarks/bench_match_probability.py                          # 1K size on the CPU
    python benchmarks/bench_match_probability.py --size 5k --device cuda [--tf32 | --both]

Sizes: 1k = 1,000 images x 5,000 captions, 5k = 5,000 x 25,000; J = 7 samples, D = 1024
(PCME on COCO). Both sides get the same random inputs (captions near their image, five
per image, as in COCO).

The reference is written the way the original PCME evaluation computes scores (naver-ai/pcme,
engine/eval_coco.py: one query's samples against the whole gallery per call, for each query of
each direction): its J samples against every gallery item's J samples, an N x J x J x D float64
difference tensor (split over the gallery only where it would exceed ``--reference-memory-gb``),
then sigmoid(-a ||.|| + b) averaged over the J x J pairs; for each image query (image to text)
and again for each caption query (text to image). The chunked version
(``models.pcme.match_probability``) computes the one (images x captions) matrix that
serves both directions. The reference of a whole direction would take hours on a CPU,
so it runs on a random subset of queries (``--reference-queries`` per direction) and
its time is extrapolated to every query, which is stated in the output. The script
checks that both give the same top-10 ranking for every reference query, in both
directions, and exits non-zero if not.

The yardstick of its own cost is the bare matrix product of the same shapes, timed in the same run
(in turn with it, ``--repeats`` times, the best kept): the (N_i J x D) image samples times the
(D x N_c J) caption samples, as one ``torch.mm`` that allocates its (N_i J x N_c J) result, in row
blocks of at most ``--bare-block-gb`` of result where the whole would not fit (5k: 24.5 GB).
``models.pcme.match_probability`` computes that product and the J x J distances' elementwise steps
and sums; the script prints its time as a ratio to the bare product's.

Targets (issue 4): >= 500x at 1k size on a 2-core CPU; <= 0.25 s at 5k on an H100/H200. Issue 22:
within 1.05x the bare product at 1k.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from reporting import write_json

from models.pcme import match_probability

SIZES = {"1k": (1000, 5000), "5k": (5000, 25000)}
ROW_BLOCK_BYTES = 256 * 2**20  # match_probability's tile on a GPU


def random_inputs(n_images: int, n_captions: int, samples: int, dim: int, seed: int, device):
    """PCME-like samples: unit-norm means, each caption's near its image's; per-dimension sigma 0.3 / sqrt(D)."""
    generator = torch.Generator().manual_seed(seed)
    image_mu = torch.nn.functional.normalize(torch.randn(n_images, dim, generator=generator), dim=1)
    owner = torch.arange(n_captions) * n_images // n_captions
    caption_mu = torch.nn.functional.normalize(
        image_mu[owner] + 0.8 * torch.randn(n_captions, dim, generator=generator) / dim**0.5, dim=1
    )
    sigma = 0.3 / dim**0.5
    images = image_mu[:, None] + sigma * torch.randn(n_images, samples, dim, generator=generator)
    captions = caption_mu[:, None] + sigma * torch.randn(n_captions, samples, dim, generator=generator)
    return images.to(device), captions.to(device)


def reference_scores(query: torch.Tensor, gallery: torch.Tensor, a: float, b: float, max_bytes: int) -> torch.Tensor:
    """One query's (J, D) samples against every gallery item's (J, D): float64, N x J x J x D differences."""
    query, j, dim = query.double(), gallery.shape[1], gallery.shape[2]
    step = max(1, max_bytes // (j * j * dim * 8))
    parts = []
    for start in range(0, gallery.shape[0], step):
        difference = query[None, :, None, :] - gallery[start : start + step].double()[:, None, :, :]  # (n, J, J, D)
        parts.append(torch.sigmoid(-a * difference.norm(dim=-1) + b).mean(dim=(1, 2)))
    return torch.cat(parts)


def with_tf32(allowed: bool, function, *args):
    """``function(*args)`` with TF32 matrix products allowed or not on CUDA (restored after)."""
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        return function(*args)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


def synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(function, device, repeats: int = 1):
    """(best wall time over ``repeats``, the last result)."""
    best, result = float("inf"), None
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        result = function()
        synchronize(device)
        best = min(best, time.perf_counter() - started)
    return best, result


def bare_product(images: torch.Tensor, captions: torch.Tensor, block_bytes: int) -> None:
    """The (N_i J x D) x (D x N_c J) product alone, each row block's result allocated as torch.mm allocates it."""
    left = images.flatten(0, 1)
    right = captions.transpose(0, 1).flatten(0, 1).T
    rows = max(1, block_bytes // (left.element_size() * right.shape[1]))
    for start in range(0, len(left), rows):
        torch.mm(left[start : start + rows], right)


def time_in_turn(functions: dict, device, repeats: int) -> tuple[dict, dict]:
    """{name: best wall time over ``repeats``}, {name: last result}; the functions run in turn each repeat."""
    best, results = {}, {}
    for _ in range(repeats):
        for name, function in functions.items():
            elapsed, results[name] = timed(function, device)
            best[name] = min(best.get(name, float("inf")), elapsed)
    return best, results


def top10(scores: torch.Tensor) -> torch.Tensor:
    """Indices of the 10 highest scores per row, ties by lower index (the metrics' convention)."""
    return torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :10]


def main(argv=None) -> int:
    summary = run(argv)
    return 0 if summary["identical"] else 1


def run(argv=None) -> dict:
    """Time the chunked version (fp32, and TF32 with ``--tf32`` / ``--both``), check it against the reference;
    print, and return (and write to ``--json``) the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="1k")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 matrix products on CUDA (default: full fp32)")
    parser.add_argument("--both", action="store_true", help="time fp32 and TF32 products in one run, on the same inputs")
    parser.add_argument("--samples", type=int, default=7)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--reference-queries", type=int, default=None, help="per direction (default: 8 on CPU, 50 on CUDA)")
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed runs of each, taken in turn, best kept (default: 3 CPU, 5 CUDA)"
    )
    parser.add_argument("--bare-block-gb", type=float, default=4.0, help="largest result of one bare product")
    parser.add_argument("--reference-memory-gb", type=float, default=4.0, help="largest difference tensor of the reference")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the numbers here")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device == "cuda"
    modes = ["fp32", "tf32"] if args.both else ["tf32" if args.tf32 else "fp32"]
    reference_queries = args.reference_queries or (50 if cuda else 8)
    repeats = args.repeats or (5 if cuda else 3)
    n_images, n_captions = SIZES[args.size]
    a, b = 20.0, 15.0

    device_name = (
        torch.cuda.get_device_name()
        if cuda
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    print(f"match probability, {args.size}: {n_images} images x {n_captions} captions, J = {args.samples}, D = {args.dim}")
    print(f"device: {args.device} ({device_name}); torch {torch.__version__}; matmul {' and '.join(modes)}")
    if not cuda:
        print(f"load average at start: {os.getloadavg()[0]:.2f} (a shared CPU slows both sides)")
    images, captions = random_inputs(n_images, n_captions, args.samples, args.dim, args.seed, args.device)
    a_tensor, b_tensor = torch.tensor([a], device=args.device), torch.tensor([b], device=args.device)

    functions = {"bare product": lambda: bare_product(images, captions, int(args.bare_block_gb * 2**30))}
    for mode in modes:
        functions[mode] = lambda mode=mode: with_tf32(mode == "tf32", match_probability, images, captions, a_tensor, b_tensor)
    if not cuda:  # the GPU's layout on the CPU (the CPU's before issue 22): row blocks of every caption in turn
        functions["row blocks"] = lambda: match_probability(
            images, captions, a_tensor, b_tensor, ROW_BLOCK_BYTES, n_captions, workers=1
        )
    with_tf32(False, match_probability, images[:8], captions, a_tensor, b_tensor)  # warm-up (CUDA context, kernels, allocator)
    times, chunked = time_in_turn(functions, args.device, repeats)
    bare = times.pop("bare product")
    chunked.pop("bare product")
    print(f"bare matrix product of the same shapes (fp32): {bare:.3f} s (best of {repeats}, in turn with the chunked version)")
    for mode in modes:
        print(
            f"chunked matrix products, {mode} (both directions from one matrix): {times[mode]:.3f} s "
            f"(best of {repeats}), {times[mode] / bare:.3f}x the bare product"
        )
    row_blocks = {}
    if "row blocks" in times:
        scores = chunked.pop("row blocks")
        row_blocks = {
            "seconds": times.pop("row blocks"),
            "identical": torch.equal(scores, chunked[modes[0]]),
            "max_abs_difference": (scores - chunked[modes[0]]).abs().max().item(),
        }
        print(
            f"row blocks of every caption in turn (the GPU's layout): {row_blocks['seconds']:.3f} s, "
            f"{row_blocks['seconds'] / bare:.3f}x the bare product; values identical to the tiles' "
            f"{row_blocks['identical']} (max |difference| {row_blocks['max_abs_difference']:.1e})"
        )

    generator = torch.Generator().manual_seed(args.seed + 1)
    picks = {
        "i2t": torch.randperm(n_images, generator=generator)[:reference_queries].sort().values,
        "t2i": torch.randperm(n_captions, generator=generator)[:reference_queries].sort().values,
    }
    totals, same_top10, worst = {}, {mode: True for mode in modes}, {mode: 0.0 for mode in modes}
    for direction, queries in picks.items():
        query_samples, gallery = (images, captions) if direction == "i2t" else (captions, images)
        n_queries = n_images if direction == "i2t" else n_captions
        rows = []
        synchronize(args.device)
        started = time.perf_counter()
        for q in queries.tolist():
            rows.append(reference_scores(query_samples[q], gallery, a, b, int(args.reference_memory_gb * 2**30)))
        synchronize(args.device)
        per_query = (time.perf_counter() - started) / len(queries)
        totals[direction] = per_query * n_queries
        reference = torch.stack(rows).cpu()
        index = queries.to(images.device)
        verdicts = []
        for mode, scores in chunked.items():
            ours = (scores[index] if direction == "i2t" else scores[:, index].T).cpu()
            same = torch.equal(top10(ours.double()), top10(reference))
            same_top10[mode] &= same
            worst[mode] = max(worst[mode], (ours.double() - reference).abs().max().item())
            verdicts.append(f"{mode}: top-10 identical {same}, max |difference| {worst[mode]:.2e}")
        print(
            f"reference {direction}: {per_query:.3f} s per query x {n_queries} queries = {totals[direction]:.0f} s "
            f"(extrapolated from {len(queries)} random queries); " + "; ".join(verdicts)
        )
    both = sum(totals.values())
    for mode in modes:
        print(f"speed-up of {mode}, both directions (reference {both:.0f} s, extrapolated): {both / times[mode]:.0f}x")
    for direction, total in totals.items():
        print(f"speed-up of {modes[0]}, {direction} alone: {total / times[modes[0]]:.0f}x")
    if not cuda:
        print(f"load average at end: {os.getloadavg()[0]:.2f}")
    # the fp32 path must rank as the reference does; with --both, TF32's rankings are reported, not required
    identical = same_top10.get("fp32", same_top10[modes[0]])
    if not identical:
        print("FAILED: the top-10 rankings differ from the float64 reference")
    summary = {
        "size": args.size,
        "device": device_name,
        "torch": torch.__version__,
        "seconds": times,
        "bare_product_seconds": bare,
        "ratio_to_bare_product": {mode: value / bare for mode, value in times.items()},
        "reference_seconds_extrapolated": totals,
        "reference_queries_per_direction": reference_queries,
        "top10_identical": same_top10,
        "max_abs_difference": worst,
        "identical": identical,
        "row_blocks": row_blocks,
    }
    write_json(args.json, summary)
    return summary


if __name__ == "__main__":
    sys.exit(main())
