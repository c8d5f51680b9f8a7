"""Does every job fit the SLURM cluster it is sent to? Checked when a run through ``profiles/slurm`` starts.

SLURM accepts a job that asks for more CPUs, memory or GPUs than any node of its partition has, or
for more time than the partition allows, and leaves it pending for ever (reason ``PartitionConfig``
or ``Resources``) while Snakemake waits without a word. So before the first ``sbatch``, the
workflow's ``onstart`` hook compares every job's request with the nodes ``sinfo`` lists and stops
the run with one message per oversized rule: what it asked for, what the partition's nodes have,
and the setting of ``profiles/slurm/config.yaml`` to change (``SETTINGS``). A dry run, which runs
no ``onstart``, makes the same check once the workflow is read (``check_plan_fits_cluster``).

It also says once, at the start, which account and partitions the jobs go to, or that none was
given (the plugin's own guess of an account needs accounting, which many clusters have disabled).
Torch-free: the workflow imports it while planning.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from corpora import SYNTHETIC_FORMAT
from pcmebench.resources import command_line_executor

log = logging.getLogger("pcmebench.cluster")

# sinfo, one line per node and partition: node, partition (default marked *), CPUs, memory (MB),
# generic resources (gpu:2, gpu:a100:4(S:0-1), ...), the partition's time limit.
SINFO = ["sinfo", "--noheader", "--Node", "--format=%N|%P|%c|%m|%G|%l"]
# The settings of profiles/slurm/config.yaml (environment variables) that size each part of a job.
SETTINGS = {
    "cpus": "PCME_SLURM_CPUS",
    "mem_mb": "PCME_SLURM_MEM_MB",
    "minutes": "PCME_SLURM_MINUTES",
    "partition": "PCME_SLURM_PARTITION",
    "gpu_partition": "PCME_SLURM_GPU_PARTITION",
    "account": "PCME_SLURM_ACCOUNT",
}
PROFILE = "profiles/slurm/config.yaml"


def counted(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


class ClusterFitError(ValueError):
    """A job asks for more than any node of its partition has, or for a partition that does not exist."""


@dataclass(frozen=True)
class Node:
    name: str
    cpus: int
    mem_mb: int
    gpus: int

    def describe(self) -> str:
        return f"{self.name}: {counted(self.cpus, 'CPU')}, {self.mem_mb} MB, {counted(self.gpus, 'GPU')}"


@dataclass
class Partition:
    name: str
    default: bool
    max_minutes: float  # math.inf: no limit
    nodes: list[Node]


@dataclass(frozen=True)
class Request:
    """What one job asks SLURM for; ``partition`` None: the cluster's default partition."""

    rule: str
    wildcards: str
    cpus: int
    mem_mb: int
    gpus: int
    minutes: float
    partition: str | None
    account: str | None = None

    def describe(self) -> str:
        runtime = "no time limit" if math.isinf(self.minutes) else f"{self.minutes:g} min"
        return f"{counted(self.cpus, 'CPU')}, {self.mem_mb} MB, {counted(self.gpus, 'GPU')} and {runtime}"


def parse_minutes(text: str) -> float:
    """A SLURM time limit (``infinite``, ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``) in minutes."""
    text = text.strip()
    if text.lower() in ("infinite", "unlimited", "n/a", ""):
        return math.inf
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if days:  # D-HH, D-HH:MM, D-HH:MM:SS
        hours, minutes, seconds = (parts + [0, 0])[:3]
    elif len(parts) == 3:
        hours, minutes, seconds = parts
    else:  # MM or MM:SS
        hours, (minutes, seconds) = 0, (parts + [0])[:2]
    return int(days or 0) * 1440 + hours * 60 + minutes + seconds / 60


def parse_gpus(gres: str) -> int:
    """GPUs in a node's generic resources: ``gpu:4``, ``gpu:a100:4(S:0-1)``, ``gpu:2,shard:8``; ``(null)``: 0."""
    total = 0
    for item in re.sub(r"\([^)]*\)", "", gres).split(","):
        fields = item.strip().split(":")
        if fields[0] == "gpu":
            total += int(fields[-1]) if len(fields) > 1 and fields[-1].isdigit() else 1
    return total


def parse_sinfo(text: str) -> dict[str, Partition]:
    """Partitions and their nodes from the output of ``SINFO``."""
    partitions: dict[str, Partition] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        node, partition, cpus, mem_mb, gres, limit = line.strip().split("|")
        name = partition.rstrip("*")
        entry = partitions.setdefault(name, Partition(name, partition.endswith("*"), parse_minutes(limit), []))
        entry.nodes.append(Node(node, int(cpus.rstrip("+")), int(mem_mb.rstrip("+")), parse_gpus(gres)))
    return partitions


def read_partitions() -> dict[str, Partition]:
    result = subprocess.run(SINFO, capture_output=True, text=True, check=False, timeout=60)
    if result.returncode != 0:
        raise ClusterFitError(f"cannot read the cluster's nodes: {' '.join(SINFO)} failed: {result.stderr.strip()}")
    return parse_sinfo(result.stdout)


def fits(request: Request, node: Node) -> bool:
    return request.cpus <= node.cpus and request.mem_mb <= node.mem_mb and request.gpus <= node.gpus


def default_partition(partitions: dict[str, Partition]) -> Partition | None:
    return next((p for p in partitions.values() if p.default), None)


def misfit(request: Request, partitions: dict[str, Partition]) -> str | None:
    """Why the request can never start on this cluster, naming the settings to change; None when it fits."""
    gpu_rule = request.gpus > 0
    partition_setting = SETTINGS["gpu_partition"] if gpu_rule else SETTINGS["partition"]
    if request.partition is None:
        partition = default_partition(partitions)
        if partition is None:
            return (
                f"it names no partition and the cluster has no default one (partitions: {', '.join(partitions)}); "
                f"set {partition_setting}"
            )
    elif request.partition not in partitions:
        return f"partition {request.partition!r} does not exist (partitions: {', '.join(partitions)}); change {partition_setting}"
    else:
        partition = partitions[request.partition]
    if any(fits(request, node) for node in partition.nodes) and request.minutes <= partition.max_minutes:
        return None
    changes = []
    largest = {
        "cpus": max(n.cpus for n in partition.nodes),
        "mem_mb": max(n.mem_mb for n in partition.nodes),
        "gpus": max(n.gpus for n in partition.nodes),
    }
    if request.cpus > largest["cpus"]:
        changes.append(f"lower {SETTINGS['cpus']} to at most {largest['cpus']}")
    if request.mem_mb > largest["mem_mb"]:
        changes.append(f"lower {SETTINGS['mem_mb']} so that this rule's memory is at most {largest['mem_mb']} MB")
    if request.gpus > largest["gpus"]:
        changes.append(f"set {SETTINGS['gpu_partition']} to a partition with GPU nodes, or run on the CPU (config: device: cpu)")
    if request.minutes > partition.max_minutes:
        changes.append(f"lower {SETTINGS['minutes']} to at most {partition.max_minutes:g} (training resumes over resubmissions)")
    if not changes:  # every part fits some node, but no one node has all of them
        changes.append(f"lower {SETTINGS['cpus']} or {SETTINGS['mem_mb']}, or choose another {partition_setting}")
    nodes = "; ".join(node.describe() for node in partition.nodes[:5]) + (" ..." if len(partition.nodes) > 5 else "")
    limit = "no time limit" if math.isinf(partition.max_minutes) else f"a limit of {partition.max_minutes:g} min"
    return f"partition {partition.name} ({limit}) has nodes {nodes}: {'; '.join(changes)}"


def check_requests(requests: Iterable[Request], partitions: dict[str, Partition]) -> None:
    """Raise ClusterFitError with one line per rule whose jobs cannot start, each naming the setting to change."""
    problems: dict[tuple[str, str], list[Request]] = {}
    for request in requests:
        reason = misfit(request, partitions)
        if reason is not None:
            problems.setdefault((request.rule, reason), []).append(request)
    if not problems:
        return
    lines = []
    for (rule, reason), jobs in problems.items():
        example = f", e.g. {jobs[0].wildcards}" if jobs[0].wildcards else ""
        count = f"{counted(len(jobs), 'job')}{example}"
        lines.append(
            f"rule {rule} ({count}) asks for {jobs[0].describe()}, more than SLURM can ever give it: {reason} "
            f"({PROFILE}; in your own profile: set-threads / set-resources of {rule})"
        )
    raise ClusterFitError("These jobs would pend for ever on this cluster, so nothing was submitted:\n  " + "\n  ".join(lines))


def request_of(job) -> Request:
    """The SLURM request of one Snakemake job, as snakemake-executor-plugin-slurm makes it
    (--cpus-per-task from threads or cpus_per_task, --mem from mem_mb or mem_mb_per_cpu, --gpus from gpu, -t from runtime)."""
    resources = job.resources
    cpus = resources.get("cpus_per_task") or job.threads
    mem_mb = resources.get("mem_mb_per_cpu", 0) * cpus or resources.get("mem_mb", 0)
    runtime = resources.get("runtime")
    return Request(
        rule=job.rule.name,
        wildcards=", ".join(f"{k}={v}" for k, v in job.wildcards.items()),
        cpus=int(cpus),
        mem_mb=int(mem_mb or 0),
        gpus=int(resources.get("gpu") or resources.get("gpus") or 0),
        minutes=float(runtime) if isinstance(runtime, (int, float)) and runtime else math.inf,
        partition=str(resources["slurm_partition"]) if resources.get("slurm_partition") else None,
        account=str(resources["slurm_account"]) if resources.get("slurm_account") else None,
    )


def targets(requests: list[Request], partitions: dict[str, Partition]) -> str:
    """One line: the account and the partitions the jobs go to, or that none was given."""
    accounts = sorted({r.account for r in requests if r.account})
    account = (
        f"account {', '.join(accounts)}"
        if accounts
        else f"no account given ({SETTINGS['account']}): SLURM charges your default account"
    )
    default = default_partition(partitions)
    named = {}
    for request in requests:
        partition = request.partition or (f"{default.name} (the cluster's default)" if default else "none (no default)")
        named.setdefault(partition, set()).add(request.rule)
    where = "; ".join(f"{', '.join(sorted(rules))} -> partition {partition}" for partition, rules in named.items())
    return f"SLURM: {account}; {where}"


def check_workflow_fits_cluster(workflow, logger=log) -> None:
    """The ``onstart`` check of a run with the SLURM executor (no-op for any other executor)."""
    plugin = getattr(workflow, "executor_plugin", None)
    if getattr(plugin, "name", None) != "slurm":
        return
    check_fit([request_of(job) for job in workflow.dag.needrun_jobs() if not job.is_local], logger)


def check_plan_fits_cluster(workflow, wildcards_of, logger=log) -> None:
    """The same check for a dry run through SLURM (which runs no ``onstart``), made when the workflow
    has been read: every cluster rule once per wildcard combination ``wildcards_of(rule)`` gives
    (the configured runs), its resources evaluated as Snakemake evaluates a job's."""
    try:
        from snakemake.iocontainers import InputFiles, Wildcards
    except ImportError:  # Snakemake before 9
        from snakemake.io import InputFiles, Wildcards

    requests = []
    for rule in workflow.rules:
        if rule.norun or rule.name in getattr(workflow, "_localrules", ()):
            continue
        for values in wildcards_of(rule):
            resources = rule.expand_resources(Wildcards(fromdict=values), InputFiles(), attempt=1)
            job = _PlannedJob(rule, values, resources, resources["_cores"])
            requests.append(request_of(job))
    try:
        partitions = read_partitions() if shutil.which("sinfo") else None
    except ClusterFitError as error:  # a plan made where the cluster cannot be asked: say so, plan on
        logger.warning(f"SLURM: the jobs are not checked against the cluster's nodes ({error})")
        return
    check_fit(requests, logger, partitions)


def configured_wildcards(rule, config: dict) -> list[dict]:
    """The wildcard values of a rule's jobs over the configured datasets, methods and seeds."""
    names = set(rule.wildcard_names)
    combinations = {
        tuple((k, v) for k, v in {"dataset": d, "synthetic": d, "method": m, "seed": str(s)}.items() if k in names)
        for d in config["datasets"]
        for m in config["methods"]
        for s in config["seeds"]
        if "synthetic" not in names or d in SYNTHETIC_FORMAT
    }
    return [dict(c) for c in sorted(combinations)]


def check_dry_run_fits_cluster(workflow, config: dict, logger=log) -> None:
    """A dry run through SLURM runs no ``onstart``: the same check once every rule is read, over each
    configured job of every cluster rule, finished ones too (what the plan shows); no-op otherwise."""
    if workflow.output_settings.dryrun and command_line_executor(workflow) == "slurm":
        check_plan_fits_cluster(workflow, lambda rule: configured_wildcards(rule, config), logger)


def preflight(workflow, config: dict, logger=log, dry_run: bool = False) -> None:
    """The workflow's check: before a run through SLURM submits anything (``onstart``), or once a dry
    run has read every rule (``dry_run``), stop with a WorkflowError where a job cannot start."""
    from snakemake.exceptions import WorkflowError

    try:
        if dry_run:
            check_dry_run_fits_cluster(workflow, config, logger)
        else:
            check_workflow_fits_cluster(workflow, logger)
    except ClusterFitError as error:
        raise WorkflowError(str(error)) from None


@dataclass
class _PlannedJob:
    """What ``request_of`` reads of a job, for a job the DAG has not made yet."""

    rule: object
    wildcards: dict
    resources: object
    threads: int


def check_fit(requests: list[Request], logger=log, partitions: dict[str, Partition] | None = None) -> None:
    """Say where the jobs go, and raise ClusterFitError when one cannot start (``check_requests``);
    ``partitions``: sinfo's, read here when not given."""
    if not requests:
        return
    if partitions is None and shutil.which("sinfo") is None:
        logger.warning("SLURM: sinfo not found; jobs are submitted without checking that they fit the cluster's nodes")
        return
    partitions = partitions or read_partitions()
    logger.info(targets(requests, partitions))
    check_requests(requests, partitions)
