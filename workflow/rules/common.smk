# Helpers shared by all stages: validated config, paths, and input functions.
import json
import os
import shlex
import sys
from pathlib import Path

# The repository's packages (corpora, models, metrics, pcmebench) import without installation,
# here and in every job, also inside a --use-conda environment built from environment.yml.
sys.path.insert(0, workflow.basedir)
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])))

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from corpora import SYNTHETIC_FORMAT, dataset_format
from corpora.coco import CocoLayout
from corpora.cub import CubLayout


# --config parses list items as strings (seeds=[0,1] gives "0", "1"); seeds are numbers.
config["seeds"] = [int(s) if isinstance(s, str) and s.isdigit() else s for s in config.get("seeds", [])]
validate(config, "../schemas/config.schema.yaml")

for _kind in ("dataset", "method"):
    for _name in config[f"{_kind}s"]:
        if _name not in config[f"{_kind}_settings"]:
            raise WorkflowError(
                f"config: {_kind}s lists {_name!r} but {_kind}_settings has no entry for it; "
                f"settings exist for {sorted(config[f'{_kind}_settings'])}"
            )

DATA_ROOT = Path(config["data_root"])
WORK = Path(config["work_dir"])
RESULTS = Path("results")
LAYOUTS = {"coco": CocoLayout, "cub": CubLayout}

# A torch job uses every core it is given; several on the same cores slow each other down far
# more than they gain (measured: 4 trainings x 2 threads on 2 cores ran ~15x slower each). So
# compute jobs claim the whole --cores budget and run one at a time on a local machine; the
# scripts cap torch's threads at the cores that exist.
TORCH_THREADS = max(1, workflow.cores or 1)
RUN_DIR = str(WORK / "runs" / "{dataset}" / "{method}" / "seed{seed}")
RESULT_TABLES = [
    str(RESULTS / f"{table}.csv")
    for table in ("metrics", "summary", "uncertainty", "uncertainty_summary", "runs")
]
CONDA_ENV = "../../environment.yml"
# Jobs' `python` is the interpreter Snakemake runs in (so an unactivated virtualenv works), or the
# environment's own when --use-conda builds one from environment.yml.
if not any(m.name == "CONDA" for m in workflow.deployment_settings.deployment_method):
    shell.prefix(f"export PATH={shlex.quote(os.path.dirname(sys.executable))}:\"$PATH\"; ")


def run_settings(wildcards):
    """Everything one training run depends on, as JSON for the stage's command line."""
    return json.dumps(
        {
            "dataset": wildcards.dataset,
            "method": wildcards.method,
            "seed": int(wildcards.seed),
            "device": config["device"],
            "dataset_settings": dataset_settings(wildcards.dataset),
            "method_settings": config["method_settings"][wildcards.method],
        },
        sort_keys=True,
    )


def dataset_settings(name):
    return config["dataset_settings"][name]


def prepared_datasets():
    return [str(WORK / "prepared" / d) for d in config["datasets"]]


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
