# Models trained elsewhere (config `external`, docs/external.md): each file of embeddings or scores is
# evaluated as a trained run's embeddings are (pcmebench/external.py), into work/external/, and joins
# every table and figure; nothing is trained for it. `snakemake lists` writes the lists a user embeds.

from pcmebench.configcheck import external_files, resolve_external
from pcmebench.tables import declare_external

# Each entry completed (scorings, statistics by whether its files hold log σ, colour); the figures' and report's methods.
declare_external(resolve_external(config, METHODS))
EXTERNAL_DIR = str(WORK / "external" / "{dataset}" / "{external}" / "seed{seed}")
LISTS = RESULTS / "lists"
# The external models with a file of a configured dataset: those the tables, figures and report show.
EXTERNAL_SHOWN = [n for n, e in config.get("external", {}).items() if any(external_files(e, d) for d in config["datasets"])]

# One folder per external model, configured dataset and file (seeds 0, 1, ... in the files' order).
EXTERNAL_DIRS = [
    EXTERNAL_DIR.format(dataset=dataset, external=name, seed=seed)
    for name, entry in config.get("external", {}).items()
    for dataset in config["datasets"]
    for seed in range(len(external_files(entry, dataset)))
]
# Every folder of evaluation tables: the trained runs', then the external models'.
EVALUATED_DIRS = run_dirs() + EXTERNAL_DIRS
# The input of a job on one external model's file (evaluate_external, export_external).
EXTERNAL_FILE = lambda w: external_files(config["external"][w.external], w.dataset)[int(w.seed)]


rule evaluate_external:
    input:
        prepared=WORK / "prepared" / "{dataset}",
        file=EXTERNAL_FILE,
    output:
        metrics=f"{EXTERNAL_DIR}/metrics.csv",
        per_query=f"{EXTERNAL_DIR}/per_query.parquet",
        queries=f"{EXTERNAL_DIR}/queries.parquet",
        uncertainty=f"{EXTERNAL_DIR}/uncertainty.csv",
        uncertainty_summary=f"{EXTERNAL_DIR}/uncertainty_summary.csv",
        record=f"{EXTERNAL_DIR}/external.json",
    log:
        f"{EXTERNAL_DIR}/evaluate.log",
    benchmark:
        f"{EXTERNAL_DIR}/evaluate.benchmark.tsv"
    conda:
        CONDA_ENV
    threads: core_claim
    resources:
        torch_threads=torch_threads,
        gpu=1 if config["device"] == "cuda" else 0,
    params:
        out=EXTERNAL_DIR,
        scoring=lambda w: config["external"][w.external]["scoring"],
        statistics=lambda w: config["external"][w.external]["statistics"],
        label=lambda w: config["external"][w.external]["label"],
        color=lambda w: config["external"][w.external]["color"],
        device=config["device"],
    shell:
        "exec python -m pcmebench.external --dataset {wildcards.dataset} --prepared {input.prepared} --embeddings {input.file:q}"
        " --scoring {params.scoring} --statistics {params.statistics} --name {wildcards.external} --label {params.label:q}"
        " --color {params.color:q} --seed {wildcards.seed} --out {params.out} --threads {resources.torch_threads}"
        " --device {params.device} > {log} 2>&1"


rule lists:
    input:
        expand(LISTS / "{dataset}" / "{kind}.csv", dataset=config["datasets"], kind=["images", "captions"]),


rule split_lists:
    input:
        lambda wildcards: DATA.annotations(wildcards.dataset),
    output:
        images=LISTS / "{dataset}" / "images.csv",
        captions=LISTS / "{dataset}" / "captions.csv",
    log:
        WORK / "logs" / "lists" / "{dataset}.log",
    conda:
        CONDA_ENV
    threads: 1
    params:
        raw_root=lambda wildcards: str(DATA.root(wildcards.dataset)),
        out=lambda wildcards: str(LISTS / wildcards.dataset),
    shell:
        "exec python -m pcmebench.lists --raw {params.raw_root} --dataset {wildcards.dataset} --out {params.out} > {log} 2>&1"
