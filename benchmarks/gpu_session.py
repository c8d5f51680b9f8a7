"""One command for a session with a lent GPU: every GPU measurement issues 4 and 14 ask for, written
as the section that goes into benchmarks/RESULTS.md.

    python benchmarks/gpu_session.py --work work-smoke --out "$OUT"                  # on the GPU machine
    python benchmarks/gpu_session.py --work work-smoke --out try --device cpu --quick  # a try-out on a CPU

Needs the smoke preset's prepared synthetic-coco and pretrained backbone (``work-smoke``) and its raw
images (``data-smoke/synthetic-coco``): build them where Snakemake runs with ``snakemake --cores 2
--configfile config/smoke.yaml -- work-smoke/prepared/synthetic-coco
work-smoke/pretrained/synthetic-coco/backbone.safetensors`` and carry both folders to the GPU machine.

Parts, in order of importance; each is timed, and one that fails is recorded and the rest still run;
a part that would start after ``--budget-s`` is skipped and recorded as such:

1. the card, driver, CUDA, cuDNN, torch and torchvision versions, the CPUs;
2. ``gpu_check.py``: every method trained (bf16 autocast, channels_last), exported, evaluated and one
   resumed, on the device;
3. ``bench_match_probability.py`` at 5K, fp32 and TF32 products on the same inputs (target: <= 0.25 s
   with the fp32 path's top-10 rankings);
4. ``bench_training_step.py`` at the paper's shapes: ResNet-152, batch 128, bf16 + channels_last
   (COCO); PCME's step again without the trainer's two per-step syncs; ResNet-50 at batch 150 (CUB);
5. ``bench_data_path.py``: decode + augmentation per core, a DataLoader with one worker per CPU but one
   (at most 15), raw against stored copies, and ``decode_jpeg`` on the GPU;
6. the projection (``projection.py``) from this GPU's own rates and ratios, beside the prediction
   from the CPU's ratios and the issue's H100 numbers.

Writes ``OUT/gpu_session.json`` (every number) and ``OUT/gpu_session.md`` (the RESULTS.md section),
and prints the latter.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch
import torchvision
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_data_path
import bench_match_probability
import bench_training_step
import gpu_check
import projection
from reporting import spread, write_json

from models.registry import probabilistic


def environment(device: str) -> dict:
    info = {
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
    }
    if device == "cuda":
        properties = torch.cuda.get_device_properties(0)
        info.update(
            card=torch.cuda.get_device_name(0),
            memory_gb=round(properties.total_memory / 2**30, 1),
            capability=f"{properties.major}.{properties.minor}",
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
        if shutil.which("nvidia-smi"):
            query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
            info["driver"] = subprocess.run(query, capture_output=True, text=True, timeout=30, check=False).stdout.strip()
    return info


def quick_methods() -> list[str]:
    """The quick check's methods: the default config's first point method and every probabilistic one."""
    configured = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["methods"]
    point = [m for m in configured if m not in probabilistic()][:1]
    return point + [m for m in configured if m in probabilistic()]


def parts(args) -> dict:
    """name -> a function returning that part's numbers, in the order they run."""
    out = Path(args.out)
    cuda = args.device == "cuda"
    quick = ["--quick"] if args.quick else []
    check = ["--work", args.work, "--device", args.device, "--out", str(out / "gpu_check.json"), "--scratch", str(out / "runs")]
    if args.quick:
        check += ["--methods", *quick_methods()]
    match = ["--size", "1k" if args.quick else "5k", "--device", args.device, "--json", str(out / "match_probability.json")]
    match += ["--both"] + (["--reference-queries", "2"] if args.quick else [])
    paper = [] if args.quick else ["--batch", "128", "--steps", "10"]
    if cuda:
        paper += ["--device", "cuda", "--precision", "bf16", "--memory-format", "channels_last"]
    coco = [*quick, *paper, "--backbone", "resnet152", "--json", str(out / "step_coco.json")]
    no_sync = [
        *quick,
        *paper,
        "--backbone",
        "resnet152",
        "--methods",
        *probabilistic(),
        "--no-sync",
        "--json",
        str(out / "step_no_sync.json"),
    ]
    cub = [*quick, *paper, "--backbone", "resnet50", "--json", str(out / "step_cub.json")]
    if not args.quick:
        cub[cub.index("128")] = "150"  # one pair per class of CUB's 150 training classes
    workers = max(1, min(15, (os.cpu_count() or 2) - 1))
    data = [*quick, "--work", str(out / "data"), "--dataloader", str(workers), "--device", args.device]
    data += ["--json", str(out / "data_path.json")]
    return {
        "gpu_check": lambda: gpu_check.main(check),
        "match_probability": lambda: bench_match_probability.run(match),
        "step_coco": lambda: bench_training_step.main(coco),
        "step_no_sync": lambda: bench_training_step.main(no_sync),
        "step_cub": lambda: bench_training_step.main(cub),
        "data_path": lambda: bench_data_path.main(data),
    }


def measured_projection(results: dict) -> dict | None:
    """The projection from this machine's own backbone rates, ratios and DataLoader rates, where all were measured."""
    coco, cub, data = results.get("step_coco"), results.get("step_cub"), results.get("data_path")
    if not (coco and cub and data and "dataloader" in data):
        return None

    def backbone(step):
        return {phase: statistics.median(step["rates"][phase]["backbone alone"]) for phase in ("frozen", "finetune")}

    gpu = {"name": results["environment"].get("card", results["environment"]["cpu"]), "resnet152": backbone(coco),
           "resnet50": backbone(cub)}  # fmt: skip
    loader = data["dataloader"]
    return projection.project(
        projection.ratios_from_step_json(coco),
        {},
        gpu,
        cpus_per_gpu=loader["workers"] + 1,
        coco_path="raw",
        cub_ratios=projection.ratios_from_step_json(cub),
        loader_rates={"raw": loader["raw"], "stored": loader["stored"]},
    )


def report(results: dict) -> str:
    """The RESULTS.md section: what ran where, the numbers, and the prediction beside them."""
    env = results["environment"]
    lines = [
        f"### {env['date_utc']} UTC: {env.get('card', env['cpu'])}",
        "",
        (
            f"torch {env['torch']}, torchvision {env['torchvision']}, CUDA {env.get('cuda')}, cuDNN {env.get('cudnn')}, "
            f"driver {env.get('driver')}, {env['cpus']} CPUs ({env['cpu']}), Python {env['python']}."
        ),
        "",
    ]
    for name, seconds in results["seconds"].items():
        if name in results["errors"]:
            lines.append(f"- {name}: FAILED after {seconds:.0f} s: {results['errors'][name].splitlines()[-1]}")
    check = results.get("gpu_check")
    if check:
        lines += [
            "",
            "CUDA paths (gpu_check.py, smoke synthetic-coco):",
            "",
            "| method | samples/s | peak GPU MB | R@1 |",
            "|---|---|---|---|",
        ]
        for method, run in check["runs"].items():
            recall = ", ".join(f"{k} {v}" for k, v in run["R@1"].items())
            lines.append(f"| {method} | {run['samples_per_second']} | {run['peak_gpu_memory_mb']} | {recall} |")
        resume = check["resume"]
        lines.append(
            f"\nResumed {resume['method']}: final loss {resume['final_loss_resumed']} against {resume['final_loss_whole']} whole."
        )
    match = results.get("match_probability")
    if match:
        seconds = ", ".join(f"{mode} {value:.3f} s" for mode, value in match["seconds"].items())
        same = ", ".join(f"{mode} {value}" for mode, value in match["top10_identical"].items())
        lines += [
            "",
            (
                f"Match probability {match['size']}: {seconds} (target <= 0.25 s at 5K with fp32's rankings; "
                f"predicted from the issue's H100: 0.44 s fp32, 0.23 s TF32); top-10 as the float64 reference: {same}."
            ),
        ]
    for key, title in (
        ("step_coco", "ResNet-152 (COCO)"),
        ("step_cub", "ResNet-50 (CUB)"),
        ("step_no_sync", "PCME without per-step syncs"),
    ):
        step = results.get(key)
        if not step:
            continue
        settings = step["settings"]
        lines += ["", f"Training step, {title}, batch {settings['batch']}, {settings['precision']}, {settings['memory_format']}:", "",
                  "| step | frozen images/s | ratio | predicted ratio | fine-tune images/s | ratio | predicted ratio |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for model in step["rates"]["frozen"]:
            cells = []
            for phase in ("frozen", "finetune"):
                ratio = step["ratios"][phase].get(model)
                predicted = projection.CPU_RATIOS.get(model, {}).get(phase)
                cells += [
                    spread(step["rates"][phase][model], 0),
                    f"{ratio['median']:.3f} ({ratio['min']:.3f}-{ratio['max']:.3f})" if ratio else "1",
                    f"{predicted:.3f}" if predicted else "1",
                ]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
    data = results.get("data_path")
    if data:
        lines += ["", "Data path, images per CPU-second, median (min-max) (ratio to raw PIL):", ""]
        lines += [f"- {name}: {spread(v['images_per_s'], 0)} ({spread(v['ratio'], 2)})" for name, v in data["paths"].items()]
        if "dataloader" in data:
            loader = data["dataloader"]
            lines.append(
                f"- DataLoader, {loader['workers']} workers, batch 128: raw {loader['raw']:,.0f}/s, stored {loader['stored']:,.0f}/s"
            )
        if "gpu_decode" in data:
            lines.append(
                "- GPU decode_jpeg, batches of 64: " + "; ".join(f"{k} {v:,.0f}/s" for k, v in data["gpu_decode"].items())
            )
    measured = results.get("projection")
    if measured:
        predicted = projection.project(projection.CPU_RATIOS, projection.CPU_PATH_RATIOS)
        lines += ["", "Projection from this machine's own numbers:", "", projection.markdown(measured), "",
                  "Predicted (this CPU's ratios, the issue's H100 numbers, 16 CPUs per GPU):", "",
                  projection.summary_table([predicted])]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, help="the smoke preset's work_dir (prepared/, pretrained/)")
    parser.add_argument("--out", required=True, help="where the JSON, the Markdown and the scratch runs go")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes everywhere: a try-out on a CPU")
    parser.add_argument("--budget-s", type=float, default=480, help="start no part after this many seconds")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    results = {"environment": environment(args.device), "seconds": {}, "errors": {}}
    for name, part in parts(args).items():
        if time.perf_counter() - began > args.budget_s:
            results["errors"][name] = f"skipped: the session's budget of {args.budget_s:.0f} s was spent"
            results["seconds"][name] = 0.0
            continue
        print(f"\n===== {name} =====", flush=True)
        started = time.perf_counter()
        try:
            results[name] = part()
        except Exception:  # noqa: BLE001 - one part's failure is recorded; the others still run
            results["errors"][name] = traceback.format_exc()
            print(results["errors"][name], flush=True)
        results["seconds"][name] = time.perf_counter() - started
        if args.device == "cuda":
            torch.cuda.empty_cache()
    results["projection"] = measured_projection(results)
    write_json(out / "gpu_session.json", results)
    text = report(results)
    (out / "gpu_session.md").write_text(text)
    print("\n" + text)
    return results


if __name__ == "__main__":
    main()
