"""The CUDA paths of the trainer, the embedding export and the evaluation, on one prepared synthetic dataset.

    python benchmarks/gpu_check.py --work work-smoke --device cuda --out results/gpu_check.json
    python benchmarks/gpu_check.py --work work-smoke --device cpu --methods vse0 pcme --epochs 1   # tiny CPU try-out

For a machine without Snakemake (the lent GPU machines have torch but not it): it needs the
prepared dataset and the pretrained backbone that the workflow leaves under ``--work``, and the
raw images the prepared dataset reads (``data-smoke/synthetic-coco``; ``snakemake --cores 2
--configfile config/smoke.yaml -- work-smoke/prepared/synthetic-coco
work-smoke/pretrained/synthetic-coco/backbone.safetensors`` builds them on any machine).
``gpu_session.py`` runs it with the other GPU measurements. For each
method it trains a run (the smoke preset's settings, with ``--epochs`` frozen + fine-tuning
epochs, bf16 autocast and channels_last on CUDA), exports its test embeddings and evaluates them
on ``--device``, and records samples/s, wall seconds, peak GPU memory and 1K R@1 of each
direction; then it resumes one run from its first checkpoint to check that resuming works on the
device too. The summary (card, versions, numbers) goes to ``--out`` as JSON and to stdout.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.registry import registered
from pcmebench.embed import export
from pcmebench.evaluate import evaluate_run
from pcmebench.runs import merge_config
from pcmebench.train import train

METHODS = tuple(registered())  # every method file of models/ (models/registry.py)


def run_settings(config: dict, dataset: str, method: str, device: str, epochs: int) -> dict:
    """A run's settings as the workflow's run_settings writes them, with ``epochs`` per phase."""
    data = {k: v for k, v in config["dataset_settings"][dataset].items() if k != "threads"}
    data = merge_config(data, {"training": {"frozen_epochs": epochs, "finetune_epochs": epochs}})
    methods = config["method_settings"][method]
    if "warmup_epochs" in methods:
        methods = {**methods, "warmup_epochs": epochs}  # the warm-up is the frozen phase, as in the presets
    return {
        "dataset": dataset,
        "method": method,
        "seed": 0,
        "device": device,
        "dataset_settings": data,
        "method_settings": methods,
    }


def check(args) -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for extra in args.configfile:
        config = merge_config(config, yaml.safe_load(Path(extra).read_text()))
    work = Path(args.work)
    prepared = work / "prepared" / args.dataset
    backbone = work / "pretrained" / args.dataset / "backbone.safetensors"
    scratch = Path(args.scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    cuda = args.device == "cuda"
    summary = {
        "device": torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "dataset": args.dataset,
        "epochs_per_phase": args.epochs,
        "runs": {},
    }
    for method in args.methods:
        settings = run_settings(config, args.dataset, method, args.device, args.epochs)
        run_dir = scratch / method
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        began = time.perf_counter()
        record = train(prepared, run_dir, settings, threads=args.threads, backbone=backbone)
        export(prepared, run_dir / "model.safetensors", run_dir / "embeddings_test.safetensors", device=args.device)
        evaluation = evaluate_run(prepared, run_dir / "embeddings_test.safetensors", settings, args.device)
        metrics = evaluation.metrics
        own = metrics[(metrics["scoring"] == registered()[method].primary_scoring) & (metrics["metric"] == "R@1")]
        summary["runs"][method] = {
            "train_device": record["device"],
            "train_seconds": round(record["wall_seconds"], 2),
            "samples_per_second": round(record["samples_per_second"], 1),
            "seconds_train_embed_evaluate": round(time.perf_counter() - began, 2),
            "peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20) if cuda else None,
            "final_loss": record["final_loss"],
            "R@1": {f"{row.protocol} {row.direction}": round(row.value, 2) for row in own.itertuples()},
        }
        print(method, json.dumps(summary["runs"][method]), flush=True)

    method = args.methods[0]
    settings = run_settings(config, args.dataset, method, args.device, args.epochs)
    whole = json.loads((scratch / method / "run.json").read_text())
    assert train(prepared, scratch / "resumed", settings, threads=args.threads, backbone=backbone, stop_after_epoch=1) is None
    resumed = train(prepared, scratch / "resumed", settings, threads=args.threads, backbone=backbone)
    summary["resume"] = {
        "method": method,
        "final_loss_whole": whole["final_loss"],
        "final_loss_resumed": resumed["final_loss"],
        "note": "equal on CPU by construction; on CUDA nondeterministic kernels may differ slightly",
    }
    return summary


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, help="the workflow's work_dir, with prepared/ and pretrained/")
    parser.add_argument("--dataset", default="synthetic-coco", choices=["synthetic-coco", "synthetic-cub"])
    parser.add_argument("--configfile", nargs="*", default=[str(REPO / "config" / "smoke.yaml")], help="merged over config.yaml")
    parser.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--epochs", type=int, default=1, help="epochs per phase (frozen, then fine-tuning)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--scratch", default="gpu-check-runs", help="where the runs go (replaced)")
    parser.add_argument("--out", default=None, help="the summary as JSON")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    summary = check(args)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return summary


if __name__ == "__main__":
    main()
