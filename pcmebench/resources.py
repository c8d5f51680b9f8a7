"""What the workflow's jobs ask of the machine: the cores a torch job claims, its torch threads and its
GPUs, and whether the jobs run on this machine at all (the executor the command line names).

A torch job uses every core it is given, and several on the same cores slow each other down far more
than they gain (docs/speed.md). So a compute job claims the whole --cores budget and runs alone on a
local machine, unless its dataset's ``threads`` setting asks for fewer. Torch-free: the workflow
imports it on every plan, and asks torch about CUDA only where NVIDIA's driver tools are installed.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys

from corpora import SYNTHETIC_FORMAT


def core_claim(threads: int | None, cores: int) -> int:
    """The cores a torch job (train, embed, evaluate) claims from the scheduler: its dataset's
    ``threads`` setting, else all of ``cores`` (--cores). A claim below --cores is scaled by
    --cores / this machine's CPUs, so that no more torch threads run at once than there are CPUs:
    `--cores 8` on two CPUs would otherwise start eight one-thread jobs on two cores."""
    if not threads:
        return cores
    return min(cores, threads * max(1, cores // (os.cpu_count() or 1)))


def torch_threads(threads: int | None, given: int) -> int:
    """The torch threads a job runs with: its dataset's ``threads`` setting, else the cores it was given.
    A resource, not a param: params trigger reruns, and a new --cores must not rerun anything."""
    return threads or given


@functools.cache
def cuda_visible() -> bool:
    """Whether torch sees a CUDA device on this machine; asked only where NVIDIA's driver tools are
    installed, since importing torch costs seconds of every plan."""
    if shutil.which("nvidia-smi") is None:
        return False
    import torch

    return torch.cuda.is_available()


def gpus(device: str, dataset: str) -> int:
    """GPUs a torch job (train, embed) asks for: 1 where it runs on CUDA, else 0.

    device cuda: 1; cpu: 0; auto: 1 on the real datasets (coco, cub: the paper preset needs a GPU,
    and a cluster's submit host usually has none), and on the synthetic ones where this machine
    has a CUDA device at planning time, as the job's own `auto` will then pick it. Locally the
    resource only limits concurrency under --resources gpu=N; the SLURM executor turns it into a
    GPU request (profiles/slurm).
    """
    if device != "auto":
        return int(device == "cuda")
    return int(dataset not in SYNTHETIC_FORMAT or cuda_visible())


def command_line_executor(workflow) -> str | None:
    """The executor the command line or its profiles name (None: local), read by Snakemake's own
    parser when the workflow is read, before Snakemake has chosen it; "unknown" for a job's own
    Snakemake (on a node) and for a run that is not from the command line (the API)."""
    from snakemake.settings.types import ExecMode

    if workflow.workflow_settings.exec_mode != ExecMode.DEFAULT:
        return "unknown"
    return _executor_named_by(tuple(sys.argv[1:]))


@functools.cache
def _executor_named_by(arguments: tuple[str, ...]) -> str | None:
    from snakemake.cli import parse_args

    try:
        _, parsed = parse_args(list(arguments))
    except BaseException:  # noqa: BLE001 - arguments the parser refuses (it exits): Snakemake itself says what is wrong
        return "unknown"
    return parsed.executor


def jobs_run_here(workflow) -> bool:
    """Whether this Snakemake runs its jobs on this machine (locally, or a dry run of that), not
    through a cluster executor whose nodes may have what the planning host lacks."""
    return command_line_executor(workflow) in (None, "local", "dryrun", "touch")


def device_problem(device: str, workflow) -> str | None:
    """Why ``device`` cannot run where the jobs run (cuda on a machine without it), or None."""
    if device == "cuda" and jobs_run_here(workflow) and not cuda_visible():
        return (
            "config: device: cuda, but torch sees no CUDA device on this machine, where the jobs would run; "
            "set device: auto (CUDA where there is one, else the CPU) or cpu, or submit to GPU nodes (profiles/slurm)"
        )
    return None
