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

import jsonschema
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

from corpora import SYNTHETIC_FORMAT, dataset_format
from corpora.coco import CocoLayout
from corpora.cub import CubLayout
from pcmebench.cluster import ClusterFitError, check_workflow_fits_cluster

CONFIG_SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"


def leaf_errors(errors):
    """Validation errors with those inside oneOf/anyOf branches, flattened."""
    for error in errors:
        yield error
        yield from leaf_errors(error.context or ())


def scalar_as(text, types):
    """``text`` as the first of the JSON-schema ``types`` (integer, number, boolean) it spells, else None."""
    readers = {
        "integer": int,
        "number": lambda t: int(t) if t.lstrip("+-").isdigit() else float(t),
        "boolean": lambda t: {"true": True, "false": False}[t.lower()],
    }
    for kind in types:
        try:
            return readers[kind](text)
        except (KeyError, ValueError):
            continue
    return None


def coerce_command_line_scalars(config, schema):
    """--config reads every nested value as text (seeds=[0,1] gives "0", "1";
    method_settings={vsepp: {margin: 0.25}} gives "0.25"). Where the schema wants a number,
    an integer or a boolean and finds text that spells one, use that value; validation then
    reports anything else."""
    validator = jsonschema.Draft202012Validator(schema)
    for _ in range(8):  # a fix can expose errors deeper down; a few passes reach them all
        fixed = False
        for error in leaf_errors(validator.iter_errors(config)):
            if error.validator != "type" or not isinstance(error.instance, str):
                continue
            types = [error.validator_value] if isinstance(error.validator_value, str) else error.validator_value
            value = scalar_as(error.instance, types)
            path = list(error.absolute_path)
            if value is None or not path:
                continue
            parent = functools.reduce(lambda node, key: node[key], path[:-1], config)
            parent[path[-1]] = value
            fixed = True
        if not fixed:
            return


coerce_command_line_scalars(config, yaml.safe_load(CONFIG_SCHEMA.read_text()))
validate(config, "../schemas/config.schema.yaml")

for _kind in ("dataset", "method"):
    for _name in config[f"{_kind}s"]:
        if _name not in config[f"{_kind}_settings"]:
            raise WorkflowError(
                f"config: {_kind}s lists {_name!r} but {_kind}_settings has no entry for it; "
                f"settings exist for {sorted(config[f'{_kind}_settings'])}"
            )

for _name in config["datasets"]:
    _data = config["dataset_settings"][_name]
    if _data["image_encoder"] == "small-cnn" and _data["training"]["pretrained"] and _name not in SYNTHETIC_FORMAT:
        raise WorkflowError(
            f"config: dataset_settings.{_name}: a pretrained small-cnn exists only for the synthetic datasets "
            f"(the pretrain stage draws their worlds); set training.pretrained: false, or use resnet50 or resnet152"
        )

DATA_ROOT = Path(config["data_root"])
WORK = Path(config["work_dir"])
RESULTS = Path("results")
LAYOUTS = {"coco": CocoLayout, "cub": CubLayout}

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
REAL_DATASETS = ("coco", "cub")
CONDA_ENV = "../../environment.yml"
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


REAL_DATA_HELP = {
    "coco": (
        "MS-COCO 2014: images/train2014 and images/val2014 from cocodataset.org (train2014.zip, "
        "val2014.zip); annotations/captions_*2014.json and instances_*2014.json from "
        "annotations_trainval2014.zip; annotations/coco_{train,restval,dev,test}_ids.npy, the "
        "VSE++/PCME split files (VSE++'s data archive, or PCME's README)."
    ),
    "cub": (
        "CUB-200-2011 (images/, images.txt, classes.txt, image_class_labels.txt from "
        "CUB_200_2011.tgz) and the captions of Reed et al. 2016 (text_c10/, trainvalclasses.txt, "
        "testclasses.txt from cvpr2016_cub), all in one folder."
    ),
}


def raw_dataset(wildcards):
    """Input of prepare: the generated folder, or the real data's key files with a how-to if absent."""
    name = wildcards.dataset
    if name in SYNTHETIC_FORMAT:
        return str(DATA_ROOT / name)
    root = DATA_ROOT / name
    required = LAYOUTS[name](root).required_files()
    missing = [str(p) for p in required if not p.exists()]
    if missing:
        raise WorkflowError(
            f"{name}: the real dataset is not under {root} (missing {', '.join(missing[:3])}"
            f"{' ...' if len(missing) > 3 else ''}). It cannot be downloaded by this workflow yet; "
            f"get {REAL_DATA_HELP[name]} Place them under {root}/ as the README's 'Real data' section shows."
        )
    return [str(p) for p in required]


def word_vectors_file(name):
    """The GloVe file of a dataset's settings, resolved under data_root, or None."""
    path = dataset_settings(name)["word_vectors"]
    if path is None:
        return None
    return str(path if Path(path).is_absolute() else DATA_ROOT / path)
