# Optional (config `export`): every run's score matrices and top-k rankings, named by ids, for
# rescoring and for eccv-caption's tools (pcmebench/export.py, docs/export.md), into <results_dir>/export/.

EXPORT = {"enabled": False, "top_k": 100} | config.get("export", {})
# A run's (or an external file's) export folder: its evaluation folder's <dataset>/<name>/seed<seed> under results/export.
EXPORT_DIRS = [str(RESULTS / "export" / Path(*Path(f).parts[-3:])) for f in (EVALUATED_DIRS if EXPORT["enabled"] else [])]


rule export_run:
    input:
        prepared=WORK / "prepared" / "{dataset}",
        embeddings=f"{RUN_DIR}/embeddings_test.safetensors",
    output:
        directory(RESULTS / "export" / "{dataset}" / "{method}" / "seed{seed}"),
    log:
        f"{RUN_DIR}/export.log",
    conda:
        CONDA_ENV
    threads: core_claim
    resources:
        torch_threads=torch_threads,
        gpu=1 if config["device"] == "cuda" else 0,
    params:
        top_k=EXPORT["top_k"],
        device=config["device"],
    shell:
        "exec python -m pcmebench.export --prepared {input.prepared} --embeddings {input.embeddings} --out {output}"
        " --top-k {params.top_k} --device {params.device} --threads {resources.torch_threads} > {log} 2>&1"


rule export_external:
    input:
        prepared=WORK / "prepared" / "{dataset}",
        file=EXTERNAL_FILE,
    output:
        directory(RESULTS / "export" / "{dataset}" / "{external}" / "seed{seed}"),
    log:
        f"{EXTERNAL_DIR}/export.log",
    conda:
        CONDA_ENV
    threads: core_claim
    resources:
        torch_threads=torch_threads,
        gpu=1 if config["device"] == "cuda" else 0,
    params:
        top_k=EXPORT["top_k"],
        scoring=lambda w: config["external"][w.external]["scoring"],
        device=config["device"],
    shell:
        "exec python -m pcmebench.export --external --dataset {wildcards.dataset} --scoring {params.scoring}"
        " --prepared {input.prepared} --embeddings {input.file:q} --out {output} --top-k {params.top_k}"
        " --device {params.device} --threads {resources.torch_threads} > {log} 2>&1"
