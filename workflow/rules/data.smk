# Stage 1, data: generate the embedded synthetic datasets (real data is placed under data_root).


rule synthesize:
    output:
        directory(DATA_ROOT / "{synthetic}"),
    params:
        generator=lambda wildcards: dataset_settings(wildcards.synthetic)["generator"],
    log:
        WORK / "logs" / "synthesize" / "{synthetic}.log",
    benchmark:
        WORK / "benchmarks" / "synthesize" / "{synthetic}.tsv"
    threads: 1
    conda:
        CONDA_ENV
    script:
        "../scripts/synthesize.py"
