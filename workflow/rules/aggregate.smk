# Stage 6, aggregate: gather every run into the tidy tables of results/ (see results/README.md).
# `python -m pcmebench.aggregate` lands with issue #5.


rule aggregate:
    input:
        metrics=[f"{run}/metrics.csv" for run in run_dirs()],
        uncertainty=[f"{run}/uncertainty.csv" for run in run_dirs()],
        records=[f"{run}/run.json" for run in run_dirs()],
    output:
        RESULT_TABLES,
    params:
        runs=run_dirs(),
        results=RESULTS,
    log:
        WORK / "logs" / "aggregate.log",
    benchmark:
        WORK / "benchmarks" / "aggregate.tsv"
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "python -m pcmebench.aggregate --runs {params.runs} --results {params.results} > {log} 2>&1"
