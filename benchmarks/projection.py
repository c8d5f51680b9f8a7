"""The paper table's wall time, projected from measured rates: each method's schedule on COCO and CUB,
and the whole table (5 methods x 3 seeds x 2 datasets) on one GPU and on N GPUs.

    python benchmarks/projection.py --step-json step.json [--data-json data.json] [--gpu-json gpu.json]

A phase (frozen backbone, then fine-tuning) of a run takes epochs x samples per epoch / rate, with
rate = min(the GPU's backbone rate x the method's measured ratio to the backbone alone, the data
loader's rate). The GPU's backbone rates are the issue's H100 numbers unless a GPU run gives its own;
the ratios come from ``bench_training_step.py`` (this CPU, or the GPU); the loader's rate is
(CPUs per GPU - 1) workers x the reference host's 226 images/s per raw-PIL worker x the path's
measured ratio (``bench_data_path.py``). Not counted: the checkpoint written after each epoch, the
embedding and evaluation jobs (minutes per run), the queue.
"""

from __future__ import annotations

import argparse
import heapq
import json
from pathlib import Path

SEEDS = 3
# Issue 14's reference (H100 80GB, torch 2.11): training with bf16 autocast + channels_last, and the
# bf16 forward pass alone (what the frozen-backbone phase costs), batch 128, images/s.
REFERENCE_GPU = {
    "name": "H100 80GB (issue 14's reference numbers)",
    "resnet152": {"finetune": 1702, "frozen": 4007},
    "resnet50": {"finetune": 3628, "frozen": 8218},
}
REFERENCE_WORKER_RAW = 1812 / 8  # images/s per DataLoader worker, PIL + RandomResizedCrop, the H100 host
# The trainer's epochs (pcmebench.train): COCO random batches of 128, the last partial one kept, over the 566,435
# train + restval caption pairs; CUB one pair per class (150 trainval classes) per batch, as many
# batches as pairs // classes (8,855 images x 10 captions = 88,550 pairs).
SCHEDULES = {
    "coco": {"backbone": "resnet152", "samples_per_epoch": 566_435, "epochs": {"frozen": 30, "finetune": 30}},
    "cub": {"backbone": "resnet50", "samples_per_epoch": 88_550 // 150 * 150, "epochs": {"frozen": 10, "finetune": 50}},
}
TARGETS = {"pcme_coco_hours": 4.0, "table_gpu_days": 3.0}
# Measured on the 2-core CPU of benchmarks/RESULTS.md (2026-12-02, the trainer with fused AdamW and
# transforms v2): each method's training step over the backbone alone (bench_training_step.py:
# ResNet-50, batch 16, fp32, CPU time; medians of 3 x 3 cycles), and the trainer's decode +
# augmentation over the reference host's path, raw and stored (bench_data_path.py). The prediction a
# GPU session's own numbers are set beside.
CPU_RATIOS = {
    "vse0": {"frozen": 0.941, "finetune": 0.963},
    "vsepp": {"frozen": 0.909, "finetune": 0.974},
    "pvse-k1": {"frozen": 0.944, "finetune": 0.950},
    "pvse-k2": {"frozen": 0.935, "finetune": 0.999},
    "pcme": {"frozen": 0.891, "finetune": 0.932},
}
METHODS = tuple(CPU_RATIOS)  # the paper table's methods, those measured
CPU_PATH_RATIOS = {"raw": 1.33, "stored": 2.83}


def loader_rate(cpus_per_gpu: int, path_ratio: float) -> float:
    """images/s of a DataLoader with one worker per CPU but one, each at the reference host's raw rate x ratio."""
    return max(1, cpus_per_gpu - 1) * REFERENCE_WORKER_RAW * path_ratio


def run_hours(dataset: str, ratios: dict, gpu: dict, loader: float) -> dict:
    """Hours of one run's phases: samples / min(backbone rate x ratio, loader rate), and what bounds each."""
    schedule = SCHEDULES[dataset]
    out = {}
    for phase, epochs in schedule["epochs"].items():
        model_rate = gpu[schedule["backbone"]][phase] * min(1.0, ratios[phase])  # above 1 is measurement noise
        rate = min(model_rate, loader)
        out[phase] = {
            "hours": epochs * schedule["samples_per_epoch"] / rate / 3600,
            "images_per_s": rate,
            "bound": "GPU" if model_rate <= loader else "loader",
        }
    out["hours"] = sum(p["hours"] for p in out.values())
    return out


def makespan(jobs: list[float], gpus: int) -> float:
    """Longest-first list scheduling of independent jobs (hours) on ``gpus`` GPUs: the last one's end."""
    ends = [0.0] * gpus
    for job in sorted(jobs, reverse=True):
        heapq.heappush(ends, heapq.heappop(ends) + job)
    return max(ends)


def project(
    ratios: dict,
    path_ratios: dict,
    gpu: dict = REFERENCE_GPU,
    cpus_per_gpu: int = 16,
    coco_path: str = "raw",
    cub_ratios: dict | None = None,
    loader_rates: dict | None = None,
) -> dict:
    """``ratios``: method -> {"frozen", "finetune"} ratio to the backbone alone (``cub_ratios`` for CUB's
    ResNet-50, else the same); ``path_ratios``: {"raw": x, "stored": y} per-worker loader ratios to the reference host's path, or
    ``loader_rates``: {"raw", "stored"} images/s measured with ``cpus_per_gpu - 1`` workers. CUB reads
    its stored copies (its default), COCO ``coco_path``."""
    if loader_rates is None:
        loader_rates = {path: loader_rate(cpus_per_gpu, ratio) for path, ratio in path_ratios.items()}
    loaders = {"coco": loader_rates[coco_path], "cub": loader_rates["stored"]}
    per_dataset = {"coco": ratios, "cub": cub_ratios or ratios}
    runs = {m: {d: run_hours(d, per_dataset[d][m], gpu, loaders[d]) for d in SCHEDULES} for m in METHODS}
    jobs = [runs[m][d]["hours"] for m in METHODS for d in SCHEDULES for _ in range(SEEDS)]
    total = sum(jobs)
    return {
        "gpu": gpu["name"],
        "cpus_per_gpu": cpus_per_gpu,
        "coco_images": coco_path,
        "loader_images_per_s": loaders,
        "runs": runs,
        "table_gpu_hours": total,
        "makespan_hours": {n: makespan(jobs, n) for n in (1, 2, 4, 8, 15, 30)},
        "pcme_coco_meets_target": runs["pcme"]["coco"]["hours"] <= TARGETS["pcme_coco_hours"],
        "table_meets_target": total / 24 <= TARGETS["table_gpu_days"],
    }


def markdown(projection: dict) -> str:
    """The projection as Markdown: per-method hours, then the table's total on 1..30 GPUs."""
    p = projection
    loaders = p["loader_images_per_s"]
    lines = [
        (
            f"{p['gpu']}; {p['cpus_per_gpu']} CPUs per GPU ({p['cpus_per_gpu'] - 1} loader workers): COCO from "
            f"{p['coco_images']} images at {loaders['coco']:,.0f} images/s, CUB from stored copies at {loaders['cub']:,.0f} images/s."
        ),
        "",
        "| method | COCO frozen 30 ep. | COCO fine-tune 30 ep. | COCO total | CUB total (10 + 50 ep.) |",
        "|---|---|---|---|---|",
    ]
    for method, run in p["runs"].items():
        coco, cub = run["coco"], run["cub"]
        phase = [
            f"{coco[k]['hours']:.2f} h ({coco[k]['images_per_s']:,.0f}/s, {coco[k]['bound']})" for k in ("frozen", "finetune")
        ]
        lines.append(f"| {method} | {phase[0]} | {phase[1]} | {coco['hours']:.2f} h | {cub['hours']:.2f} h |")
    spans = ", ".join(f"{n} GPUs {h:.1f} h" if n > 1 else f"1 GPU {h:.1f} h" for n, h in p["makespan_hours"].items())
    lines += [
        "",
        (
            f"Whole table (5 methods x 3 seeds x COCO + CUB): {p['table_gpu_hours']:.1f} GPU-hours = "
            f"{p['table_gpu_hours'] / 24:.2f} GPU-days. Wall time, longest runs first: {spans}."
        ),
        (
            f"Targets: PCME on COCO <= {TARGETS['pcme_coco_hours']:.0f} h: {'met' if p['pcme_coco_meets_target'] else 'missed'} "
            f"({p['runs']['pcme']['coco']['hours']:.2f} h); table <= {TARGETS['table_gpu_days']:.0f} GPU-days: "
            f"{'met' if p['table_meets_target'] else 'missed'}."
        ),
    ]
    return "\n".join(lines)


def summary_table(projections: list[dict]) -> str:
    """One row per scenario (CPUs per GPU, COCO's images): PCME's COCO run, the table in GPU-days, wall times."""
    lines = [
        "| CPUs per GPU | COCO images | PCME COCO run | table, GPU-days | wall time on 1 / 4 / 15 GPUs |",
        "|---|---|---|---|---|",
    ]
    for p in projections:
        spans = " / ".join(f"{p['makespan_hours'][n]:.1f} h" for n in (1, 4, 15))
        lines.append(
            f"| {p['cpus_per_gpu']} | {p['coco_images']} | {p['runs']['pcme']['coco']['hours']:.2f} h | "
            f"{p['table_gpu_hours'] / 24:.2f} | {spans} |"
        )
    return "\n".join(lines)


def scenarios(ratios: dict, path_ratios: dict, gpu: dict = REFERENCE_GPU, **extra) -> list[dict]:
    """The projection for 16 and 8 CPUs per GPU (the reference host; the SLURM profile's train jobs), COCO raw and stored."""
    return [project(ratios, path_ratios, gpu, cpus, path, **extra) for cpus in (16, 8) for path in ("raw", "stored")]


def ratios_from_step_json(data: dict) -> dict:
    """method -> {phase: median ratio} from bench_training_step.py's JSON."""
    return {m: {phase: data["ratios"][phase][m]["median"] for phase in ("frozen", "finetune")} for m in METHODS}


def path_ratios_from_data_json(data: dict | None) -> dict:
    """{"raw": ..., "stored": ...}: the trainer's paths' median ratios to the reference host's path, from
    bench_data_path.py's JSON, else this CPU's."""
    if data is None:
        return dict(CPU_PATH_RATIOS)
    paths = data["paths"]
    return {
        kind: sorted(paths[name]["ratio"])[len(paths[name]["ratio"]) // 2]
        for kind, name in (("raw", "raw, PIL (the trainer's path)"), ("stored", "stored, PIL (the trainer's path)"))
    }


def gpu_from_json(data: dict | None) -> dict:
    return REFERENCE_GPU if data is None else data


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--step-json", default=None, help="bench_training_step.py --json output (default: CPU_RATIOS)")
    parser.add_argument("--data-json", default=None, help="bench_data_path.py --json output")
    parser.add_argument("--gpu-json", default=None, help="a GPU's own backbone rates, in REFERENCE_GPU's form")
    args = parser.parse_args(argv)

    def read(path):
        return json.loads(Path(path).read_text()) if path else None

    ratios = ratios_from_step_json(read(args.step_json)) if args.step_json else CPU_RATIOS
    all_scenarios = scenarios(ratios, path_ratios_from_data_json(read(args.data_json)), gpu_from_json(read(args.gpu_json)))
    print(markdown(all_scenarios[0]), end="\n\n")
    print(summary_table(all_scenarios))


if __name__ == "__main__":
    main()
