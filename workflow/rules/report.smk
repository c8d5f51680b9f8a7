# Stage 8, report: `snakemake report` renders <results_dir>/report/index.html (pcmebench/report.py), one
# self-contained page (inline styles, images as data URIs) of the result tables, every figure and
# the validated config that produced them, each figure with its caption (workflow/report/<figure>.rst).

REPORT_CAPTIONS = Path(workflow.current_basedir).parent / "report"


rule report:
    input:
        tables=RESULT_TABLES,
        paper=PAPER_TABLE,
        plots=PLOT_FILES,
        captions=[REPORT_CAPTIONS / f"{name}.rst" for name in sorted({Path(p).stem for p in PLOT_FILES})],
    output:
        RESULTS / "report" / "index.html",
    log:
        WORK / "logs" / "report.log",
    benchmark:
        WORK / "benchmarks" / "report.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        results=RESULTS,
        plots=PLOTS,
        captions=REPORT_CAPTIONS,
        # The page shows the config; as a parameter, changing it re-renders the page.
        config=json.dumps(config, default=str),
    shell:
        "exec python -m pcmebench.report --results {params.results} --plots {params.plots} --captions {params.captions}"
        " --config-json {params.config:q} --out {output} > {log} 2>&1"
