# Stage 7, plots: the figures of the results folder (pcmebench/plots.py), each as PNG (for the reports)
# and PDF (for papers) under <results_dir>/plots/<dataset>/. Which figures exist follows from the configured
# datasets and methods alone (PLOT_FILES, built by pcmebench.plots.figure_files): the σ figures
# need a probabilistic method (models/registry.py), the multiplicity and comparison figures a synthetic dataset. The PNGs carry captions
# (workflow/report/<figure>.rst) for Snakemake's own report (snakemake --report report.html).
from pcmebench.plots import FIGURES, figure_files

# Snakemake's report() under another name: a line that starts with `report` is the report
# directive to Snakemake's parser and to snakefmt.
from snakemake.io import report as for_report

PLOTS = RESULTS / "plots"
PLOT_FILES = figure_files(PLOTS, config["datasets"], config["methods"])
# The PNGs marked for Snakemake's report, by section and dataset; the PDFs plain outputs.
PLOT_OUTPUTS = [
    (
        for_report(
            path,
            caption=f"../report/{Path(path).stem}.rst",
            category=FIGURES[Path(path).stem].section,
            subcategory=Path(path).parent.name,
            labels={
                "dataset": Path(path).parent.name,
                "figure": FIGURES[Path(path).stem].title,
            },
        )
        if path.endswith(".png")
        else path
    )
    for path in PLOT_FILES
]


rule plots:
    input:
        summary=RESULTS / "summary.csv",
        uncertainty=RESULTS / "uncertainty.csv",
        uncertainty_summary=RESULTS / "uncertainty_summary.csv",
        queries=run_files("queries.parquet"),
        curves=run_files("train_log.csv"),
        records=run_files("run.json"),
    output:
        PLOT_OUTPUTS,
    log:
        WORK / "logs" / "plots.log",
    benchmark:
        WORK / "benchmarks" / "plots.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        runs=run_dirs(),
        results=RESULTS,
        out=PLOTS,
        datasets=config["datasets"],
        methods=config["methods"],
    shell:
        "exec python -m pcmebench.plots --results {params.results} --runs {params.runs} --out {params.out}"
        " --datasets {params.datasets} --methods {params.methods} > {log} 2>&1"
