# Stage 7, plots: the figures of the results folder (pcmebench/plots.py), each as PNG (for the report)
# and PDF (for papers) under <results_dir>/plots/<dataset>/. Which figures exist follows from the configured
# datasets and methods alone (pcmebench.plots.figure_files): the σ figures need a probabilistic method
# (models/registry.py), the multiplicity and comparison figures a synthetic dataset.
from pcmebench.plots import figure_files

PLOTS = RESULTS / "plots"
PLOT_FILES = figure_files(PLOTS, config["datasets"], [*config["methods"], *EXTERNAL_SHOWN])


rule plots:
    input:
        summary=RESULTS / "summary.csv",
        uncertainty=RESULTS / "uncertainty.csv",
        uncertainty_summary=RESULTS / "uncertainty_summary.csv",
        external=RESULTS / "external.csv",
        queries=[f"{folder}/queries.parquet" for folder in EVALUATED_DIRS],
        curves=run_files("train_log.csv"),
        records=run_files("run.json"),
    output:
        PLOT_FILES,
    log:
        WORK / "logs" / "plots.log",
    benchmark:
        WORK / "benchmarks" / "plots.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        runs=EVALUATED_DIRS,
        results=RESULTS,
        out=PLOTS,
        datasets=config["datasets"],
        methods=[*config["methods"], *EXTERNAL_SHOWN],
    shell:
        "exec python -m pcmebench.plots --results {params.results} --runs {params.runs} --out {params.out}"
        " --datasets {params.datasets} --methods {params.methods} > {log} 2>&1"
