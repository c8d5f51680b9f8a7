# Stage 6, aggregate: gather every run into the tidy tables of results/ (see results/README.md),
# with bootstrap confidence intervals over queries and the published numbers beside them.


rule aggregate:
    input:
        metrics=run_files("metrics.csv"),
        per_query=run_files("per_query.parquet"),
        uncertainty=run_files("uncertainty.csv"),
        uncertainty_summary=run_files("uncertainty_summary.csv"),
        records=run_files("run.json"),
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
        runs=run_dirs(),
        results=RESULTS,
        bootstrap=BOOTSTRAP["replicates"],
        seed=BOOTSTRAP["seed"],
    shell:
        "exec python -m pcmebench.aggregate --runs {params.runs} --results {params.results}"
        " --published {input.published} --bootstrap {params.bootstrap} --seed {params.seed} > {log} 2>&1"
