# Shared by all stages: the config checked once, paths, and the input functions of the rules.
import functools
import json
import os
import re
import shlex
import sys
from pathlib import Path

# The repository's packages (corpora, models, metrics, pcmebench) import without installation,
# here and in every job, also inside a --use-conda environment built from environment.yml.
sys.path.insert(0, workflow.basedir)
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])))

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from corpora import DATASETS, SYNTHETIC_FORMAT, dataset_format
from corpora.sources import REAL_DATASETS, DataPaths
from pcmebench import resources
from pcmebench.cluster import preflight as slurm_preflight
from pcmebench.configcheck import check_config

# Every key at every level against the schema (each method's as its entry in models/ declares), then
# what cannot run: all problems at once, before any job; the entries' defaults fill in the rest.
METHODS = check_config(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")
# Checked when the workflow is read, before the DAG: an error raised from an input function can make
# Snakemake drop the rule as a producer instead of stopping, without ever showing the cause.
if device_problem := resources.device_problem(config["device"], workflow):
    raise WorkflowError(device_problem)

DATA_ROOT = Path(config["data_root"])
WORK = Path(config["work_dir"])
RESULTS = Path(config["results_dir"])
# The workflow's resources folder: torchvision's ImageNet weights, once for every job and node.
TORCH_HOME = Path("resources") / "torch"
os.environ.update(TORCH_HOME=str(TORCH_HOME.resolve()))
DATA = DataPaths(DATA_ROOT, config["sources"], TORCH_HOME, config["dataset_settings"])
# Compute jobs claim the whole --cores budget unless their dataset's `threads` asks for fewer (pcmebench/resources.py).
TORCH_THREADS = max(1, workflow.cores or 1)
RUN_DIR = str(WORK / "runs" / "{dataset}" / "{method}" / "seed{seed}")
RESULT_TABLES = [
    str(RESULTS / f"{t}.csv") for t in ("metrics", "summary", "uncertainty", "uncertainty_summary", "runs", "external")
]
# Published numbers (one committed file, each row with its source), copied to results/paper.csv.
PUBLISHED_NUMBERS = str(Path(workflow.basedir) / "workflow" / "resources" / "published_numbers.csv")
PAPER_TABLE = str(RESULTS / "paper.csv")
BOOTSTRAP = {"replicates": 1000, "seed": 0} | config.get("bootstrap", {})
CONDA_ENV = "../../environment.yml"
# Jobs `exec` their Python, so a signal to the job (a kill, a time limit) reaches it instead of orphaning
# it. Their `python` is the one Snakemake runs in (an unactivated virtualenv works), or --use-conda's.
if not any(m.name == "CONDA" for m in workflow.deployment_settings.deployment_method):
    shell.prefix(f'export PATH={shlex.quote(os.path.dirname(sys.executable))}:"$PATH"; ')


def one_of(names):
    """A wildcard constraint matching exactly these strings."""
    return "|".join(re.escape(str(name)) for name in sorted(names, key=str))


def dataset_settings(name):
    return config["dataset_settings"][name]


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


def core_claim(wildcards):
    return resources.core_claim(dataset_settings(wildcards.dataset).get("threads"), TORCH_THREADS)


def torch_threads(wildcards, threads):
    return resources.torch_threads(dataset_settings(wildcards.dataset).get("threads"), threads)


def gpus(wildcards):
    return resources.gpus(config["device"], wildcards.dataset)


def pretrain_settings(synthetic):
    """All a synthetic dataset's pretraining depends on: a new training schedule must not retrain it."""
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


def run_dirs():
    return expand(RUN_DIR, dataset=config["datasets"], method=config["methods"], seed=config["seeds"])


def run_files(name):
    """One file of every configured run, e.g. run_files("metrics.csv")."""
    return [f"{run}/{name}" for run in run_dirs()]


@functools.cache
def check_real_data():
    """Stop the plan when a configured real dataset's file is neither in place nor downloadable, naming each."""
    if message := DATA.missing_message(config["datasets"]):
        raise WorkflowError(message)


def raw_dataset(wildcards):
    """Input of prepare: the generated folder, or the real data's files and folders (checked first)."""
    if wildcards.dataset in SYNTHETIC_FORMAT:
        return str(DATA_ROOT / wildcards.dataset)
    check_real_data()
    return DATA.layout(wildcards.dataset)


def word_vectors_input(wildcards):
    return [path] if (path := DATA.word_vectors(wildcards.dataset)) else []


def imagenet_weights(wildcards):
    """{"imagenet_weights": path} for the train rule where the image encoder starts from ImageNet."""
    if (path := DATA.imagenet_weights(wildcards.dataset)) and wildcards.dataset in REAL_DATASETS:
        check_real_data()
    return {"imagenet_weights": path} if path else {}


def everything_to_download(wildcards):
    check_real_data()
    return sorted(str(item.path) for item in DATA.needed(config["datasets"]))
