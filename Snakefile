# pcme-bench: PCME against PVSE, VSE0 and VSE++ on COCO and CUB (and their synthetic twins).
# Stages, one rule file each: download (real data) or data (synthetic) -> prepare -> train -> embed
# -> evaluate (external models: their files, external.smk) -> aggregate -> plots -> report.
# `snakemake --cores 8 all` builds every table and plot of the preset's results_dir (results/ by
# default); `snakemake report` renders <results_dir>/report/index.html from them. The methods are
# the files of models/ (models/registry.py).


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


# A SLURM run checks its jobs against the cluster's nodes before submitting any (no-op otherwise).
onstart:
    slurm_preflight(workflow, config, logger)


# Every dataset the suite knows (corpora.DATASETS), every method a file of models/ registers.
wildcard_constraints:
    dataset=one_of(DATASETS),
    synthetic=one_of(SYNTHETIC_FORMAT),
    method=one_of(METHODS),
    external=one_of(config.get("external") or {}) or "(?!)",
    seed=r"\d+",


include: "workflow/rules/download.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/external.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/plots.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        RESULT_TABLES,
        PAPER_TABLE,
        PLOT_FILES,
        EXPORT_DIRS,


rule data:
    input:
        expand(WORK / "prepared" / "{dataset}", dataset=config["datasets"]),


# A dry run through SLURM runs no onstart: it checks its jobs once every rule is read.
slurm_preflight(workflow, config, logger, dry_run=True)
