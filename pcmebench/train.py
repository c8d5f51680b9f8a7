"""Train one method on one dataset with one seed; resumable, on CPU or CUDA.

    python -m pcmebench.train --prepared work/prepared/synthetic-coco \
        --run-dir work/runs/synthetic-coco/pcme/seed0 --settings '<json>' [--threads N]

Schedule (PCME paper; naver-ai/pcme train_coco.py, train_cub.py, engine/trainer.py):
a phase with the image backbone frozen, then fine-tuning of everything, each phase
with its own learning rate, cosine-annealed per epoch over ``cosine_t_max`` epochs
(the phase's length when null) and its own optimiser, built afresh when fine-tuning
starts; AdamW (the paper used AdamP); the model's gradients clipped at the method's
``grad_clip`` (VSE++, PVSE and PCME++: 2; PCME: none, as its fp16 runs effectively did), the
loss's own parameters (PCME's a and b) never; batches of the dataset's ``batch_size`` unless the
method sets its own. After every
epoch the run writes ``checkpoint.pt`` (atomically; loadable with
``torch.load(weights_only=True)``); the same command after a crash resumes from
it, and on CPU ends with the same weights as an uninterrupted run, because each
epoch's randomness is seeded from (seed, epoch). A non-finite loss stops the run
with the epoch and step, leaving the last good checkpoint in place.

A checkpoint is resumed only by the run that wrote it: same recipe (settings and
pretrained backbone), same code (``code_digest``) and same prepared data
(``content_sha256``); otherwise the log says what differs and the run starts
afresh. A finished run deletes its checkpoint, so a forced rerun trains again.

Outputs in the run folder: ``model.safetensors`` (final weights), ``run.json``
(what the run was), ``train_log.csv`` (one row per epoch).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler
from tqdm import tqdm

from corpora.batches import (
    CaptionNoise,
    CaptionPairs,
    EpochBatches,
    OnePerClassBatches,
    SeededItems,
    collate_pairs,
    image_transform,
)
from corpora.prepared import PreparedDataset
from pcmebench.files import code_digest
from pcmebench.runs import (
    Precision,
    add_stage_arguments,
    atomic_write,
    code_version,
    file_sha256,
    load_backbone,
    method_setting,
    model_for,
    parse_stage_arguments,
    resolve_device,
    settings_hash,
    use_threads,
)
from pcmebench.tensorfiles import load_checkpoint, save_checkpoint, write_safetensors

log = logging.getLogger("pcmebench.train")
CHECKPOINT = "checkpoint.pt"


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message says where."""


def phase_of(epoch: int, training: dict) -> tuple[str, float, bool]:
    """(phase name, learning rate, backbone frozen) for 0-based ``epoch``.

    Within a phase the rate follows CosineAnnealingLR stepped once per epoch:
    base * (1 + cos(pi * e / T)) / 2 at the phase's epoch e, T = ``cosine_t_max``
    or the phase's length. PCME's CUB recipe anneals both phases over T = 50
    (config/cub/pcme_cub.yaml), so its 10 frozen epochs end near 90% of the rate.
    """
    frozen = training["frozen_epochs"]
    if epoch < frozen:
        name, base, position, length, is_frozen = "frozen", training["lr"], epoch, frozen, True
    else:
        name, base, position, length, is_frozen = (
            "finetune",
            training["finetune_lr"],
            epoch - frozen,
            training["finetune_epochs"],
            False,
        )
    period = training["cosine_t_max"] or length
    return name, base * 0.5 * (1 + math.cos(math.pi * position / period)), is_frozen


def make_optimizer(model: torch.nn.Module, training: dict, lr: float, fused: bool = True) -> torch.optim.Optimizer:
    """A fresh AdamW over every parameter (frozen ones get no gradient and no step).

    Fused: one kernel over all tensors, the same update as PyTorch's default for-loop AdamW up to
    rounding, several times faster on the CPU (benchmarks/RESULTS.md, "Training step").
    """
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=training["weight_decay"], fused=fused)


def seed_epoch(seed: int, epoch: int) -> None:
    """Seed torch's generator (the training loop's randomness: PCME's samples) for one epoch from (seed, epoch)."""
    torch.manual_seed(seed * 100_003 + epoch)


def loader_workers(setting: int | str, threads: int | None) -> int:
    """DataLoader workers for the ``workers`` setting: a number, or auto = the job's CPUs (``threads``,
    else those this process may run on) less one for the training process, at least one."""
    if setting != "auto":
        return setting
    cpus = threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    return max(1, cpus - 1)


def make_loader(pairs: CaptionPairs, training: dict, seed: int, device: torch.device, threads: int | None = None) -> DataLoader:
    """The run's training loader, built once; ``loader.batch_sampler.set_epoch(epoch)`` starts an epoch.

    Each epoch's order comes from (seed, epoch) and each item's augmentation from (seed, epoch,
    item) (``SeededItems``), so the batches are the same whatever ``workers``, ``persistent_workers``
    and ``prefetch_factor`` are, and after a resume.
    """
    order = torch.Generator()
    if training["batching"] == "one-per-class":
        batches = OnePerClassBatches(pairs.class_ids(), order)
    else:
        # The last partial batch is kept, as the original's COCO loader (naver-ai/pcme datasets/_dataloader.py,
        # drop_last False), unless it would hold a single pair, which has no in-batch negative.
        single = len(pairs) % training["batch_size"] == 1
        if single:
            log.info("the last batch of each epoch would hold one pair: left out")
        batches = BatchSampler(RandomSampler(pairs, generator=order), training["batch_size"], drop_last=single)
    workers = loader_workers(training["workers"], threads)
    return DataLoader(
        SeededItems(pairs, seed),
        batch_sampler=EpochBatches(batches, order, seed),
        collate_fn=collate_pairs,
        num_workers=workers,
        pin_memory=training["pin_memory"] and device.type == "cuda",
        persistent_workers=training["persistent_workers"] and workers > 0,
        prefetch_factor=training["prefetch_factor"] if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),  # the workers' own seeds; items reseed themselves
    )


@dataclass(frozen=True)
class TrainingRun:
    """What stays fixed through one run: its settings, its training settings (the method's batch size
    applied), its folder, device, numeric precision and identity (``identity["config"]``: the settings'
    hash, with the backbone's checksum)."""

    settings: dict
    training: dict
    run_dir: Path
    device: torch.device
    precision: Precision
    identity: dict

    @property
    def seed(self) -> int:
        return self.settings["seed"]

    @property
    def epochs(self) -> int:
        return self.training["frozen_epochs"] + self.training["finetune_epochs"]

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / CHECKPOINT

    @property
    def curve(self) -> Path:
        return self.run_dir / "train_log.csv"


def train(
    prepared_dir, run_dir, settings: dict, threads: int | None = None, stop_after_epoch: int | None = None, backbone=None
) -> dict | None:
    """Train (or resume) the run; returns its record, or None when stopped early by ``stop_after_epoch``.

    ``backbone``: a pretrained image backbone (``pcmebench.pretrain``) to start from; its
    checksum joins the run's identity, so a checkpoint made from another backbone is not resumed.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    use_threads(threads)
    device = resolve_device(settings["device"])
    training = settings["dataset_settings"]["training"]
    batch_size = method_setting(settings, "batch_size")
    if batch_size is not None:  # the method's own (PCME++ on synthetic-coco: docs/deviations.md)
        training = {**training, "batch_size": batch_size}
    config_hash = settings_hash(settings if backbone is None else {**settings, "backbone_sha256": file_sha256(backbone)})

    torch.manual_seed(settings["seed"])
    prepared = PreparedDataset(prepared_dir)
    identity = {"config": config_hash, "code": code_digest(), "prepared_data": prepared.content_sha256}
    model = model_for(settings, prepared)
    if backbone is not None:
        load_backbone(model.image_encoder, backbone)
    precision = Precision.for_run(training, device)
    model = model.to(device, memory_format=precision.memory_format)
    run = TrainingRun(settings, training, run_dir, device, precision, identity)
    optimizer = make_optimizer(model, training, training["lr"])
    history, start = resume(run, model, optimizer)
    loader = training_loader(run, prepared, threads)

    for epoch in range(start, run.epochs):
        phase, lr, frozen = phase_of(epoch, training)
        if epoch == training["frozen_epochs"] and epoch > 0:
            # fine-tuning starts with a new optimiser (and schedule), as train_*.py build a new engine
            optimizer = make_optimizer(model, training, lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        row = {"epoch": epoch + 1, "phase": phase, "lr": lr, **train_epoch(run, model, optimizer, loader, epoch, frozen, history)}
        history.append(row)
        log.info("epoch %d: %s", epoch + 1, json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}))
        save_progress(run, model, optimizer, epoch, history)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < run.epochs:
            return None
    return finish(run, model, history)


def resume(run: TrainingRun, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[list[dict], int]:
    """Restore the model and optimiser from the run's checkpoint when this run wrote it; the per-epoch
    history so far and the 0-based epoch to start from (none and 0 when starting afresh)."""
    if not run.checkpoint.is_file():
        return [], 0
    state = load_checkpoint(run.checkpoint, run.device)
    differences = identity_differences(state.get("identity"), run.identity)
    if differences:
        log.info("starting afresh: %s was written by another run (%s)", run.checkpoint, "; ".join(differences))
        return [], 0
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    log.info("resuming from %s after epoch %d", run.checkpoint, state["epoch"] + 1)
    return state["history"], state["epoch"] + 1


def training_loader(run: TrainingRun, prepared: PreparedDataset, threads: int | None) -> DataLoader:
    """The loader over the training splits' image-caption pairs, with the run's augmentation and caption noise."""
    training, settings = run.training, run.settings
    splits = [prepared.split(name) for name in prepared.meta["train_splits"]]
    pairs = CaptionPairs(
        splits,
        image_transform(training["augment"], training["input_size"], train=True, random_erasing=training["random_erasing"]),
        CaptionNoise(training["word_drop"], training["word_drop_mode"]),
        training["cache_images"],
    )
    loader = make_loader(pairs, training, run.seed, run.device, threads)
    log.info(
        "%s / %s / seed %d on %s (%s, %d loader workers): %d pairs, %d epochs",
        settings["dataset"],
        settings["method"],
        run.seed,
        run.device,
        run.precision.describe(),
        loader.num_workers,
        len(pairs),
        run.epochs,
    )
    return loader


def train_epoch(
    run: TrainingRun,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    epoch: int,
    frozen: bool,
    history: list[dict],
) -> dict[str, float]:
    """One epoch over ``loader`` (0-based ``epoch``; the optimiser's rate already set): the mean of the
    loss and of each statistic the model returns, the wall time and the pairs per second."""
    settings, device, precision = run.settings, run.device, run.precision
    grad_clip = method_setting(settings, "grad_clip")
    model.train()
    model.set_phase(frozen)
    model.set_epoch(epoch)
    seed_epoch(run.seed, epoch)
    loader.batch_sampler.set_epoch(epoch)
    sums: dict[str, float] = {}
    seen, began = 0, time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{run.epochs}", mininterval=5, leave=False)
    for step, (images, tokens, lengths, image_ids) in enumerate(bar):
        images = images.to(device, non_blocking=True, memory_format=precision.memory_format)
        with precision.autocast():
            loss, stats = model(images, tokens.to(device), lengths, image_ids.to(device))
        if not torch.isfinite(loss):
            last = f"{run.checkpoint} (after epoch {history[-1]['epoch']})" if history else "none yet"
            raise NonFiniteLossError(
                f"non-finite loss {loss.item()} at epoch {epoch + 1}, step {step + 1} of "
                f"{settings['dataset']}/{settings['method']}/seed {run.seed}; the last good checkpoint is {last}"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters_to_clip(), grad_clip)
        optimizer.step()
        seen += len(image_ids)
        for key, value in {"loss": loss.detach(), **stats}.items():
            sums[key] = sums.get(key, 0.0) + value.float()  # stays on the device: no sync per step
        bar.set_postfix(loss=f"{loss.item():.4f}", samples_per_s=f"{seen / (time.perf_counter() - began):.0f}", refresh=False)
    if seen == 0:
        raise ValueError(
            f"{settings['dataset']}: no training batch of {run.training['batch_size']} pairs fits in its "
            f"{len(loader.dataset)} training pairs; lower dataset_settings.{settings['dataset']}.training.batch_size "
            f"(or the method's method_settings.{settings['method']}.batch_size)"
        )
    steps = step + 1
    wall = time.perf_counter() - began
    return {**{k: float(v) / steps for k, v in sums.items()}, "wall_seconds": wall, "samples_per_second": seen / wall}


def save_progress(
    run: TrainingRun, model: torch.nn.Module, optimizer: torch.optim.Optimizer, epoch: int, history: list[dict]
) -> None:
    """After 0-based ``epoch``: the checkpoint a rerun resumes from (with the run's identity) and the training log so far."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "history": history,
        "identity": run.identity,
    }
    save_checkpoint(run.checkpoint, state)
    write_curve(run.curve, history)


def finish(run: TrainingRun, model: torch.nn.Module, history: list[dict]) -> dict:
    """Write the final weights, the training log and ``run.json``; delete the checkpoint; return the run's record."""
    settings, identity, device = run.settings, run.identity, run.device
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "settings": json.dumps(settings, sort_keys=True),
        "settings_hash": identity["config"],
        "run_identity": json.dumps(identity, sort_keys=True),
    }
    write_safetensors(run.run_dir / "model.safetensors", weights, metadata)
    # The weights are out: the checkpoint has done its job, and kept it would make a forced rerun
    # of this run return these weights instead of training again.
    run.checkpoint.unlink(missing_ok=True)
    write_curve(run.curve, history)
    record = {
        "dataset": settings["dataset"],
        "method": settings["method"],
        "seed": run.seed,
        "epochs": run.epochs,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": run.precision.describe(),
        "wall_seconds": sum(r["wall_seconds"] for r in history),
        "samples_per_second": sum(r["samples_per_second"] for r in history) / len(history),
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "final_loss": history[-1]["loss"],
        "config_hash": identity["config"],
        "code_version": code_version(),
        "code_digest": identity["code"],
        "prepared_data_sha256": identity["prepared_data"],
    }
    atomic_write(run.run_dir / "run.json", lambda path: path.write_text(json.dumps(record, indent=2) + "\n"))
    return record


IDENTITY_PARTS = {"config": "settings or backbone", "code": "code", "prepared_data": "prepared data"}


def identity_differences(stored: dict | None, current: dict) -> list[str]:
    """What differs between a checkpoint's run identity and this run's, in words; empty when they match."""
    if not isinstance(stored, dict):
        return ["it predates run identities"]
    return [
        f"other {words}: {stored.get(part)} in the checkpoint, {current[part]} now"
        for part, words in IDENTITY_PARTS.items()
        if stored.get(part) != current[part]
    ]


def write_curve(path: Path, history: list[dict]) -> None:
    """The per-epoch log as CSV; columns are the union of every epoch's keys."""
    columns = list(dict.fromkeys(k for row in history for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    atomic_write(path, lambda p: p.write_text(buffer.getvalue()))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prepared", required=True, help="a folder written by the prepare rule")
    parser.add_argument("--run-dir", required=True, help="where the checkpoint, weights and logs go")
    parser.add_argument("--backbone", default=None, help="a pretrained image backbone (safetensors) to start from")
    add_stage_arguments(parser, "the run's settings as JSON (the workflow writes them)")
    args, settings = parse_stage_arguments(parser, argv)
    train(args.prepared, args.run_dir, settings, args.threads, backbone=args.backbone)


if __name__ == "__main__":
    main()
