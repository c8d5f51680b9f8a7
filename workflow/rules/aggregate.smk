# Stage 6, aggregate: gather every run into the tidy tables of results/ (see results/README.md),
# with bootstrap confidence intervals over queries and the published numbers beside them.


rule aggregate:
    input:
        metrics=[f"{folder}/metrics.csv" for folder in EVALUATED_DIRS],
        per_query=[f"{folder}/per_query.parquet" for folder in EVALUATED_DIRS],
        uncertainty=[f"{folder}/uncertainty.csv" for folder in EVALUATED_DIRS],
        uncertainty_summary=[f"{folder}/uncertainty_summary.csv" for folder in EVALUATED_DIRS],
        records=run_files("run.json"),
        external=[f"{folder}/external.json" for folder in EXTERNAL_DIRS],
        published=PUBLISHED_NUMBERS,
    output:
        RESULT_TABLES,
        PAPER_TABLE,
    log:
        WORK / "logs" / "aggregate.log",
    benchmark:
        WORK / "benchmarks" / "aggregate.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        runs=EVALUATED_DIRS,
        results=RESULTS,
        bootstrap=BOOTSTRAP["replicates"],
        seed=BOOTSTRAP["seed"],
    shell:
        "exec python -m pcmebench.aggregate --runs {params.runs} --results {params.results}"
        " --published {input.published} --bootstrap {params.bootstrap} --seed {params.seed} > {log} 2>&1"
