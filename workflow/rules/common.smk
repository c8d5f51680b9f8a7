# Helpers shared by all stages: validated config, paths, and input functions.
import functools
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

# The repository's packages (corpora, models, metrics, pcmebench) import without installation,
# here and in every job, also inside a --use-conda environment built from environment.yml.
sys.path.insert(0, workflow.basedir)
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])))

from snakemake.cli import parse_args as parse_snakemake_arguments
from snakemake.exceptions import WorkflowError
from snakemake.settings.types import ExecMode
from snakemake.logging import logger
from snakemake.utils import validate

from corpora import SYNTHETIC_FORMAT, dataset_format
from models.registry import RegistryError, registered, settings_problems, with_method_settings
from pcmebench.cluster import ClusterFitError, check_plan_fits_cluster, check_workflow_fits_cluster
from pcmebench.configcheck import coerce_command_line_scalars, load_schema, recipe_problems, schema_problems

CONFIG_SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"

# The methods: every entry of the method files in models/ (models/registry.py), read without torch.
try:
    METHOD_REGISTRY = registered()
except RegistryError as error:
    raise WorkflowError(str(error)) from None

# Every key at every level is checked against the schema, each method's settings as its registry
# entry declares them (an unknown key is named, with the allowed ones), then what cannot run (an
# unregistered method, a setting without a value, zero epochs, ...): all problems at once, before
# any job. The entries' defaults then fill in what the config leaves out.
_schema = with_method_settings(load_schema(CONFIG_SCHEMA), METHOD_REGISTRY)
coerce_command_line_scalars(config, _schema)
_problems = schema_problems(config, _schema) or settings_problems(config, METHOD_REGISTRY) + recipe_problems(config)
if _problems:
    raise WorkflowError("\n".join(["the config cannot run:", *_problems]))
validate(config, "../schemas/config.schema.yaml")
config["method_settings"] = {
    name: METHOD_REGISTRY[name].complete(settings) if name in config["methods"] else settings
    for name, settings in {**{m: {} for m in config["methods"]}, **config["method_settings"]}.items()
}

DATA_ROOT = Path(config["data_root"])
WORK = Path(config["work_dir"])
RESULTS = Path(config["results_dir"])

# A torch job uses every core it is given; several on the same cores slow each other down far
# more than they gain (measured: 4 trainings x 2 threads on 2 cores ran ~15x slower each). So
# compute jobs claim the whole --cores budget and run one at a time on a local machine, unless
# their dataset's `threads` setting asks for fewer (core_claim); the scripts cap torch's threads
# at the cores that exist.
TORCH_THREADS = max(1, workflow.cores or 1)
RUN_DIR = str(WORK / "runs" / "{dataset}" / "{method}" / "seed{seed}")
RESULT_TABLES = [str(RESULTS / f"{table}.csv") for table in ("metrics", "summary", "uncertainty", "uncertainty_summary", "runs")]
# Published numbers (one committed file, each row with its source), copied to results/paper.csv.
PUBLISHED_NUMBERS = str(Path(workflow.basedir) / "workflow" / "resources" / "published_numbers.csv")
PAPER_TABLE = str(RESULTS / "paper.csv")
BOOTSTRAP = {"replicates": 1000, "seed": 0} | config.get("bootstrap", {})
CONDA_ENV = "../../environment.yml"
# Shell commands run their Python with `exec`, which makes the job's process the Python process, so a
# signal to the job (a kill, a scheduler's time limit) reaches it instead of orphaning it.
# Jobs' `python` is the interpreter Snakemake runs in (so an unactivated virtualenv works), or the
# environment's own when --use-conda builds one from environment.yml.
if not any(m.name == "CONDA" for m in workflow.deployment_settings.deployment_method):
    shell.prefix(f'export PATH={shlex.quote(os.path.dirname(sys.executable))}:"$PATH"; ')


def slurm_preflight():
    """Before a run through SLURM submits anything: say where its jobs go, and stop, naming the rule
    and the setting, if a job asks for more than any node of its partition has (pcmebench/cluster.py)."""
    try:
        check_workflow_fits_cluster(workflow, logger)
    except ClusterFitError as error:
        raise WorkflowError(str(error)) from None


def slurm_dry_run_preflight():
    """A dry run through SLURM runs no onstart: the same check once every rule is read, over each
    configured job of every cluster rule, finished ones too (what the plan shows)."""
    if not (workflow.output_settings.dryrun and command_line_executor() == "slurm"):
        return
    try:
        check_plan_fits_cluster(workflow, configured_wildcards, logger)
    except ClusterFitError as error:
        raise WorkflowError(str(error)) from None


def configured_wildcards(rule):
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


def run_settings(wildcards):
    """Everything one training run depends on, as JSON for the stage's command line."""
    return json.dumps(
        {
            "dataset": wildcards.dataset,
            "method": wildcards.method,
            "seed": int(wildcards.seed),
            "device": config["device"],
            # how many threads a job uses is not part of its recipe: changing it reruns nothing
            "dataset_settings": {k: v for k, v in dataset_settings(wildcards.dataset).items() if k != "threads"},
            "method_settings": config["method_settings"][wildcards.method],
        },
        sort_keys=True,
    )


def dataset_settings(name):
    return config["dataset_settings"][name]


def core_claim(wildcards):
    """The cores a torch job (train, embed, evaluate) claims from the scheduler.

    Its dataset's `threads` setting, else all of --cores. A claim below --cores is scaled by
    --cores / this machine's CPUs, so that no more torch threads run at once than there are CPUs:
    `--cores 8` on two CPUs would otherwise start eight one-thread jobs on two cores.
    """
    threads = dataset_settings(wildcards.dataset).get("threads")
    if not threads:
        return TORCH_THREADS
    return min(TORCH_THREADS, threads * max(1, TORCH_THREADS // (os.cpu_count() or 1)))


def torch_threads(wildcards, threads):
    """The torch threads a job runs with: its dataset's `threads` setting, else what it was given.
    A resource, not a param: params trigger reruns, and a new --cores must not rerun anything."""
    return dataset_settings(wildcards.dataset).get("threads") or threads


def pretrain_settings(synthetic):
    """What the pretrain stage of a synthetic dataset depends on, and nothing else: editing the
    training schedule must not redraw and retrain the backbone."""
    data = dataset_settings(synthetic)
    return {
        "pretraining": data["pretraining"],
        "image_size": data["generator"]["image_size"],
        "input_size": data["training"]["input_size"],
        "flip": data["training"]["augment"] == "flip",
    }


def pretrained_backbone(wildcards):
    """{"backbone": path} where the run starts from the pretrain stage's weights (small-cnn with
    training.pretrained), else nothing; resnet encoders load ImageNet weights themselves."""
    data = dataset_settings(wildcards.dataset)
    if data["image_encoder"] == "small-cnn" and data["training"]["pretrained"]:
        return {"backbone": str(WORK / "pretrained" / wildcards.dataset / "backbone.safetensors")}
    return {}


def prepared_datasets():
    return [str(WORK / "prepared" / d) for d in config["datasets"]]


def run_files(name):
    """One file of every configured run, e.g. run_files("metrics.csv")."""
    return [f"{run}/{name}" for run in run_dirs()]


@functools.cache
def cuda_visible():
    """Whether torch sees a CUDA device on this machine; asked only where NVIDIA's driver tools are
    installed, since importing torch costs seconds of every plan."""
    if shutil.which("nvidia-smi") is None:
        return False
    import torch

    return torch.cuda.is_available()


@functools.cache
def command_line_executor():
    """The executor the command line or its profiles name (None: local), read by Snakemake's own
    parser when the workflow is read, before Snakemake has chosen it; "unknown" for a job's own
    Snakemake (on a node) and for a run that is not from the command line (the API)."""
    if workflow.workflow_settings.exec_mode != ExecMode.DEFAULT:
        return "unknown"
    try:
        _, arguments = parse_snakemake_arguments(sys.argv[1:])
    except BaseException:
        return "unknown"
    return arguments.executor


def jobs_run_here() -> bool:
    """Whether this Snakemake runs its jobs on this machine (locally, or a dry run of that), not
    through a cluster executor whose nodes may have what the planning host lacks."""
    return command_line_executor() in (None, "local", "dryrun", "touch")


# Checked when the workflow is read, before the DAG: an error raised from an input function can
# make Snakemake drop the rule as a producer instead of stopping (and then delete finished outputs
# downstream as incomplete), without ever showing the cause.
if config["device"] == "cuda" and jobs_run_here() and not cuda_visible():
    raise WorkflowError(
        "config: device: cuda, but torch sees no CUDA device on this machine, where the jobs would run; "
        "set device: auto (CUDA where there is one, else the CPU) or cpu, or submit to GPU nodes (profiles/slurm)"
    )


def gpus(wildcards):
    """GPUs a torch job (train, embed) asks for: 1 where it runs on CUDA, else 0.

    device cuda: 1; cpu: 0; auto: 1 on the real datasets (coco, cub: the paper preset needs a GPU,
    and a cluster's submit host usually has none), and on the synthetic ones where this machine
    has a CUDA device at planning time, as the job's own `auto` will then pick it. Locally the
    resource only limits concurrency under --resources gpu=N; the SLURM executor turns it into a
    GPU request (profiles/slurm).
    """
    if config["device"] != "auto":
        return int(config["device"] == "cuda")
    return int(wildcards.dataset in REAL_DATASETS or cuda_visible())


def run_dirs():
    return [
        RUN_DIR.format(dataset=d, method=m, seed=s)
        for d in config["datasets"]
        for m in config["methods"]
        for s in config["seeds"]
    ]


def raw_dataset(wildcards):
    """Input of prepare: the generated folder, or the real data's files and folders (real_data_inputs)."""
    name = wildcards.dataset
    if name in SYNTHETIC_FORMAT:
        return str(DATA_ROOT / name)
    return real_data_inputs(name)


def word_vectors_file(name):
    """The GloVe file of a dataset's settings, resolved under data_root, or None."""
    path = dataset_settings(name)["word_vectors"]
    if path is None:
        return None
    return str(path if Path(path).is_absolute() else DATA_ROOT / path)


# --- Real data: what the rules of download.smk fetch and extract, and what the jobs read. ---
import re

from corpora.coco import CocoLayout
from corpora.cub import CubLayout
from corpora.download import ChecksumError, verify
from corpora.sources import (
    DOWNLOADS,
    IMAGENET_WEIGHTS,
    REAL_DATASETS,
    Item,
    dataset_items,
    glove_path,
    missing_message,
    source,
    unobtainable,
    weights_path,
)
from corpora.sources import dataset_root as real_dataset_root

SOURCES = config["sources"]
# The workflow's resources folder: torchvision's ImageNet weights, once for every job and node.
RESOURCES = Path("resources")
TORCH_HOME = RESOURCES / "torch"
os.environ.update(TORCH_HOME=str(TORCH_HOME.resolve()))


def dataset_root(name):
    """Where a dataset's raw files are: data_root/<name>, or sources.<name>.root for a real one."""
    return real_dataset_root(name, DATA_ROOT, SOURCES) if name in REAL_DATASETS else DATA_ROOT / name


def one_of(names):
    """A wildcard constraint matching exactly these strings."""
    return "|".join(re.escape(str(name)) for name in sorted(names, key=str))


# The Snakefile's constraint of the method wildcard: every registered method.
METHOD_NAMES = one_of(METHOD_REGISTRY)


# What the rules of download.smk produce: plain files per dataset (path under its root -> source key),
# archives under data_root/downloads (file name -> source key), GloVe and the weights.
PLAIN_FILES = {name: {str(path): f"{name}.{key}" for key, path in data.files.items()} for name, data in REAL_DATASETS.items()}
PLAIN_FILE_KEYS = {str(dataset_root(name) / path): key for name, files in PLAIN_FILES.items() for path, key in files.items()}
ARCHIVES = {archive.file: f"{name}.{key}" for name, data in REAL_DATASETS.items() for key, archive in data.archives.items()}
WEIGHT_FILES = {file: f"imagenet.{encoder}" for encoder, file in IMAGENET_WEIGHTS.items()}
DOWNLOADABLE = {
    *(Path(path) for path in PLAIN_FILE_KEYS),
    *(DATA_ROOT / DOWNLOADS / file for file in ARCHIVES),
    *(weights_path(encoder, TORCH_HOME) for encoder in IMAGENET_WEIGHTS),
    glove_path(DATA_ROOT),
}


def real_data_items(name):
    """Everything a real dataset's jobs read: its layout, its GloVe file, its ImageNet weights."""
    items = dataset_items(name, dataset_root(name), DATA_ROOT)
    if word_vectors_file(name):
        items.append(Item(Path(word_vectors_file(name)), "glove"))
    items += [Item(Path(path), f"imagenet.{dataset_settings(name)['image_encoder']}") for path in imagenet_weights_files(name)]
    return items


@functools.cache
def check_real_data():
    """Stop the plan when a file of a configured real dataset is neither in place nor downloadable,
    naming every such file of every dataset with its address."""
    items = {item.path: item for name in config["datasets"] if name in REAL_DATASETS for item in real_data_items(name)}
    missing = unobtainable(list(items.values()), SOURCES, DOWNLOADABLE)
    if missing:
        if SOURCES["download"]:
            why = "cannot be downloaded (no address, or a path no download rule writes)"
            fix = f"give its source an address (url), or for GloVe set word_vectors to the downloaded {glove_path(DATA_ROOT)}"
        else:
            why, fix = "downloads are off (sources.download: false)", "set sources.download: true to fetch them"
        raise WorkflowError(
            f"Real data is missing and {why}:\n{missing_message(missing, SOURCES)}\n"
            f"Put each file or folder there by hand (the README's section 'Real data' shows the layout), "
            f"or {fix} ({len(missing)} missing)."
        )


def real_data_inputs(name):
    """The files and folders prepare reads for a real dataset (checked first, see check_real_data)."""
    check_real_data()
    return [str(item.path) for item in dataset_items(name, dataset_root(name), DATA_ROOT)]


def imagenet_weights_files(name):
    """The ImageNet weights file a dataset's training starts from, if it uses any."""
    data = dataset_settings(name)
    if data["image_encoder"] in IMAGENET_WEIGHTS and data["training"]["pretrained"]:
        return [str(weights_path(data["image_encoder"], TORCH_HOME))]
    return []


def imagenet_weights(wildcards):
    """{"imagenet_weights": path} for the train rule where the image encoder starts from ImageNet."""
    files = imagenet_weights_files(wildcards.dataset)
    if files and wildcards.dataset in REAL_DATASETS:
        check_real_data()
    return {"imagenet_weights": files[0]} if files else {}


def check_weights_in_place():
    """ImageNet weights found in place (downloaded, or put there by hand) must be torchvision's: the
    download rule does not run for a file that exists, and torch.hub checks only what it downloads."""
    for encoder in sorted({dataset_settings(n)["image_encoder"] for n in config["datasets"] if imagenet_weights_files(n)}):
        path = weights_path(encoder, TORCH_HOME)
        if path.is_file():
            try:
                verify(path.resolve(), source(SOURCES, f"imagenet.{encoder}"), what=f"sources.imagenet.{encoder}")
            except ChecksumError as error:
                raise WorkflowError(f"{error}\nNot torchvision's file: delete it; `snakemake download` fetches it.") from None


if workflow.workflow_settings.exec_mode == ExecMode.DEFAULT:  # not again in each job's own Snakemake
    check_weights_in_place()


def word_vectors_input(wildcards):
    """The GloVe file prepare reads, if the dataset uses one."""
    path = word_vectors_file(wildcards.dataset)
    return [path] if path else []


def extraction_index(name, key):
    """The index files an extraction checks its archive against (corpora.sources.extraction_check):
    COCO's captions file of the source, CUB's images.txt for Reed et al.'s captions. Ancient: their
    being newer than what was extracted (another archive's extraction ran later) reruns nothing."""
    if name == "coco" and key in ("train2014", "val2014"):
        return [ancient(str(CocoLayout(dataset_root(name)).captions_json(key)))]
    if name == "cub" and key == "captions":
        return [ancient(str(CubLayout(dataset_root(name)).images_txt))]
    return []


def everything_to_download(wildcards):
    check_real_data()
    return sorted({str(item.path) for name in config["datasets"] if name in REAL_DATASETS for item in real_data_items(name)})
