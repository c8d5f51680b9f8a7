# Stage 5, evaluate: retrieval metrics and the sigma-uncertainty analysis of one run.
# `python -m pcmebench.evaluate` lands with issue #4.


rule evaluate:
    input:
        prepared=WORK / "prepared" / "{dataset}",
        embeddings=f"{RUN_DIR}/embeddings_test.safetensors",
    output:
        metrics=f"{RUN_DIR}/metrics.csv",
        uncertainty=f"{RUN_DIR}/uncertainty.csv",
    params:
        settings=run_settings,
    log:
        f"{RUN_DIR}/evaluate.log",
    benchmark:
        f"{RUN_DIR}/evaluate.benchmark.tsv"
    threads: TORCH_THREADS
    conda:
        CONDA_ENV
    shell:
        "python -m pcmebench.evaluate --prepared {input.prepared} --embeddings {input.embeddings}"
        " --metrics {output.metrics} --uncertainty {output.uncertainty}"
        " --settings {params.settings:q} > {log} 2>&1"
