# Stage 5, evaluate: retrieval metrics of every protocol and the sigma-uncertainty analysis of one
# run; see pcmebench/evaluate.py (the files' columns are in its docstring).


rule evaluate:
    input:
        prepared=WORK / "prepared" / "{dataset}",
        embeddings=f"{RUN_DIR}/embeddings_test.safetensors",
    output:
        metrics=f"{RUN_DIR}/metrics.csv",
        per_query=f"{RUN_DIR}/per_query.parquet",
        queries=f"{RUN_DIR}/queries.parquet",
        uncertainty=f"{RUN_DIR}/uncertainty.csv",
        uncertainty_summary=f"{RUN_DIR}/uncertainty_summary.csv",
    log:
        f"{RUN_DIR}/evaluate.log",
    benchmark:
        f"{RUN_DIR}/evaluate.benchmark.tsv"
    conda:
        CONDA_ENV
    threads: core_claim
    resources:
        torch_threads=torch_threads,
        gpu=1 if config["device"] == "cuda" else 0,
    params:
        settings=run_settings,
        device=config["device"],
    shell:
        "exec python -m pcmebench.evaluate --prepared {input.prepared} --embeddings {input.embeddings}"
        " --metrics {output.metrics} --per-query {output.per_query} --queries {output.queries}"
        " --uncertainty {output.uncertainty} --uncertainty-summary {output.uncertainty_summary}"
        " --settings {params.settings:q} --threads {resources.torch_threads} --device {params.device} > {log} 2>&1"
