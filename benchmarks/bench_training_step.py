"""Each method's full training step against the image backbone alone, as a ratio, in both phases; then
the paper table's projected wall time (``projection.py``).

    python benchmarks/bench_training_step.py                    # this CPU: ResNet-50, batch 16, 224 px, D 1024, J 7
    python benchmarks/bench_training_step.py --quick            # tiny shapes, one round (a try-out)
    python benchmarks/bench_training_step.py --device cuda --backbone resnet152 --batch 128 --precision bf16 \
        --memory-format channels_last                            # the paper's shapes on a GPU

The method step is the trainer's (``pcmebench.train``): the batch copied from (pinned, on CUDA)
host memory, the encoders, the method's heads and loss (fp32, outside autocast), the non-finite
check, AdamW over every trainable parameter, the method's gradient clipping and the progress bar's
``loss.item()``; the backbone frozen in the frozen phase. The reference is the same ResNet body
alone on images already on the device: in fine-tuning a forward, a backward from the mean of its
feature map and an AdamW step; in the frozen phase its forward pass without gradients (train mode,
as in the trainer). The methods' AdamW is the trainer's (``pcmebench.train.make_optimizer``, fused);
``--adamw-for-loop`` measures PyTorch's default implementation instead. Captions are random token ids (10,000 words of 300-d vectors, as GloVe, trained as the method's COCO recipe trains them; 8 to
22 tokens), every pair of its own image. Weights are random (``pretrained=False``): the speed is
the same. Each method's units of steps run between two units of the reference, and its ratio is
taken against those two (``measure``); the median over all and the spread of the rounds' medians
are reported.

On the CPU the clock is the process's CPU time on one torch thread by default (``--clock``,
``--threads``): on a CPU shared with other jobs, wall time measures their load as much as this
work, CPU time the work alone (one thread: no idle spinning of a thread pool counted as work).
On CUDA the clock is wall time, after a device sync.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import projection
from reporting import spread, write_json

from models import build_model
from models.encoders import build_image_encoder
from models.model import per_dataset
from models.registry import registered
from pcmebench.runs import Precision
from pcmebench.train import make_optimizer

METHODS = tuple(registered())  # every method file of models/ (models/registry.py)
PHASES = ("frozen", "finetune")
VOCABULARY, WORD_DIM = 10_000, 300


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class BackboneAlone:
    """The image backbone with its own AdamW: the reference each method's step is measured against."""

    def __init__(self, backbone: str, precision: Precision, images: torch.Tensor):
        self.encoder = build_image_encoder(backbone, pretrained=False).to(precision.device, memory_format=precision.memory_format)
        self.optimizer = torch.optim.AdamW(self.encoder.parameters(), lr=1e-5)
        self.precision = precision
        self.images = images.to(precision.device, memory_format=precision.memory_format)

    def step(self, images, tokens, lengths, image_ids, frozen: bool) -> None:
        images = self.images
        self.encoder.train()
        if frozen:
            with torch.no_grad(), self.precision.autocast():
                self.encoder.body(images)
            return
        with self.precision.autocast():
            loss = self.encoder.body(images).float().mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


class MethodStep:
    """One method's model and optimiser, stepped as ``pcmebench.train`` steps them."""

    def __init__(self, method: str, config: dict, args, precision: Precision):
        words = torch.randn(VOCABULARY, WORD_DIM)
        settings = registered()[method].complete(config["method_settings"].get(method))
        if "samples" in registered()[method].settings:  # a sampling method: J from the command line
            settings["samples"] = args.samples
        self.model = build_model(method, settings, "coco", "coco", args.embed_dim, args.backbone, words, pretrained=False).to(
            precision.device, memory_format=precision.memory_format
        )
        self.optimizer = make_optimizer(self.model, {"weight_decay": 1e-4}, 1e-5, fused=not args.adamw_for_loop)
        self.grad_clip = per_dataset(settings["grad_clip"], "coco", "coco")  # the method's own, as the trainer
        self.precision = precision
        self.sync = args.sync

    def step(self, images, tokens, lengths, image_ids, frozen: bool) -> None:
        device = self.precision.device
        images = images.to(device, non_blocking=True, memory_format=self.precision.memory_format)
        tokens, image_ids = tokens.to(device), image_ids.to(device)
        self.model.train()
        self.model.set_phase(frozen)  # word vectors as the method's COCO recipe trains them
        with self.precision.autocast():
            loss, stats = self.model(images, tokens, lengths, image_ids)
        if self.sync and not torch.isfinite(loss):  # the trainer's non-finite guard (a device sync)
            raise FloatingPointError("non-finite loss")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters_to_clip(), self.grad_clip)
        self.optimizer.step()
        sums = {key: value.float() for key, value in {"loss": loss.detach(), **stats}.items()}  # the epoch statistics
        if self.sync:
            f"{loss.item():.4f}"  # the progress bar's loss (a device sync)
        del sums


def random_batch(args, device: torch.device) -> tuple:
    """A collated batch in host memory, pinned on CUDA, as the trainer's DataLoader gives it."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, args.size, args.size, generator=generator)
    lengths = torch.randint(8, 23, (args.batch,), generator=generator)
    tokens = torch.randint(4, VOCABULARY, (args.batch, int(lengths.max())), generator=generator)
    tokens[torch.arange(tokens.shape[1])[None, :] >= lengths[:, None]] = 0
    batch = (images, tokens, lengths, torch.arange(args.batch))
    return tuple(t.pin_memory() for t in batch) if device.type == "cuda" else batch


def measure(models: dict, batch: tuple, phase: str, args, device: torch.device, clock) -> tuple[dict, dict]:
    """Per round, ``args.cycles`` times the sequence reference, method 1, reference, method 2, ..., reference,
    each a unit of ``args.steps`` steps timed by ``clock``; a method's ratio is its rate over the mean rate of
    the reference units just before and after it, so a load that drifts while they run cancels out. Every
    model first takes one untimed step (allocator, lazy kernels). Returns (images/s of every unit, per
    model; the ratios per round, per method)."""
    frozen = phase == "frozen"
    reference, methods = "backbone alone", [name for name in models if name != "backbone alone"]
    for model in models.values():
        model.step(*batch, frozen=frozen)

    def unit_rate(name: str) -> float:
        synchronize(device)
        started = clock()
        for _ in range(args.steps):
            models[name].step(*batch, frozen=frozen)
        synchronize(device)
        rate = args.steps * len(batch[0]) / (clock() - started)
        rates[name].append(rate)
        return rate

    rates = {name: [] for name in models}
    ratios = {name: [[] for _ in range(args.rounds)] for name in methods}
    for round_ in range(args.rounds):
        for _ in range(args.cycles):
            before = unit_rate(reference)
            for method in methods:
                rate = unit_rate(method)
                after = unit_rate(reference)
                ratios[method][round_].append(rate / ((before + after) / 2))
                before = after
    return rates, ratios


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--backbone", choices=["resnet50", "resnet152"], default="resnet50")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--embed-dim", type=int, default=1024)
    parser.add_argument("--samples", type=int, default=7, help="PCME's J")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--memory-format", choices=["contiguous", "channels_last"], default="contiguous")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    parser.add_argument("--steps", type=int, default=None, help="steps per timed unit (default: 1 on the CPU, 10 on CUDA)")
    parser.add_argument("--cycles", type=int, default=None, help="cycles per round (default: 3 on the CPU, 1 on CUDA)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds: the repeats whose spread is reported")
    parser.add_argument("--no-sync", dest="sync", action="store_false", help="drop the trainer's two per-step device syncs")
    parser.add_argument(
        "--adamw-for-loop", action="store_true", help="PyTorch's default for-loop AdamW instead of the trainer's fused one"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: 1 on the CPU, torch's on CUDA)")
    parser.add_argument(
        "--clock", choices=["cpu", "wall"], default=None, help="default: cpu (process time) on the CPU, wall on CUDA"
    )
    parser.add_argument("--data-json", default=None, help="bench_data_path.py --json output, for the projection")
    parser.add_argument("--quick", action="store_true", help="ResNet-50 at batch 2, 64 px, D 64, one round: a try-out")
    parser.add_argument("--json", default=None, help="write the numbers here")
    args = parser.parse_args(argv)
    cuda = args.device == "cuda"
    args.steps = args.steps or (10 if cuda else 1)
    args.cycles = args.cycles or (1 if cuda else 3)
    if args.quick:
        args.batch, args.size, args.embed_dim, args.steps, args.cycles, args.rounds = 2, 64, 64, 1, 1, 1
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    device = torch.device(args.device)
    if args.threads or device.type == "cpu":
        torch.set_num_threads(args.threads or 1)
    args.clock = args.clock or ("cpu" if device.type == "cpu" else "wall")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    precision = Precision.for_run({"precision": args.precision, "memory_format": args.memory_format}, device)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    torch.manual_seed(0)
    name = (
        torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    print(
        f"{args.backbone} backbone, batch {args.batch}, {args.size}x{args.size}, D {args.embed_dim}, J {args.samples}; "
        f"{precision.describe()}; {name}; torch {torch.__version__}; per-step syncs {'on' if args.sync else 'off'}; "
        f"AdamW {'for-loop' if args.adamw_for_loop else 'fused'}; "
        f"{'CPU time' if args.clock == 'cpu' else 'wall time'}"
    )
    if device.type == "cpu":
        print(f"load average at start: {os.getloadavg()[0]:.2f}")
    batch = random_batch(args, device)
    models = {"backbone alone": BackboneAlone(args.backbone, precision, batch[0])}
    models.update({method: MethodStep(method, config, args, precision) for method in args.methods})
    summary = {"settings": {k: v for k, v in vars(args).items() if k != "json"}, "device": name, "torch": torch.__version__}
    summary.update(rates={}, ratios={})
    for phase in args.phases:
        rates, ratios = measure(models, batch, phase, args, device, clock)
        summary["rates"][phase] = rates
        summary["ratios"][phase] = {}
        print(
            f"\n{phase} phase: {args.rounds} round(s) x {args.cycles} cycle(s) of units of {args.steps} step(s); "
            "rate: median (min-max) over units; ratio: median over cycles (min-max of the rounds' medians)"
        )
        print(f"| step | images per {'CPU-' if args.clock == 'cpu' else ''}second | ratio to the backbone alone |")
        print("|---|---|---|")
        print(f"| backbone alone | {spread(rates['backbone alone'], 1)} | 1 |")
        for model, per_round in ratios.items():
            medians = [statistics.median(r) for r in per_round]
            every = [r for rs in per_round for r in rs]
            summary["ratios"][phase][model] = {
                "median": statistics.median(every), "rounds": medians, "min": min(medians), "max": max(medians)
            }  # fmt: skip
            print(
                f"| {model} | {spread(rates[model], 1)} | {statistics.median(every):.3f} ({min(medians):.3f}-{max(medians):.3f}) |"
            )
        if device.type == "cuda":
            summary["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    if device.type == "cpu":
        print(f"load average at end: {os.getloadavg()[0]:.2f}")
    if set(args.methods) == set(METHODS) and set(args.phases) == set(PHASES):
        data = json.loads(Path(args.data_json).read_text()) if args.data_json else None
        projections = projection.scenarios(projection.ratios_from_step_json(summary), projection.path_ratios_from_data_json(data))
        print("\nProjection from these ratios (benchmarks/projection.py):")
        print(projection.markdown(projections[0]), end="\n\n")
        print(projection.summary_table(projections))
    write_json(args.json, summary)
    return summary


if __name__ == "__main__":
    main()
