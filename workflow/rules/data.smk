# Stage 1, data: generate the embedded synthetic datasets (real data is placed under data_root).


rule synthesize:
    output:
        directory(DATA_ROOT / "{synthetic}"),
    log:
        WORK / "logs" / "synthesize" / "{synthetic}.log",
    benchmark:
        WORK / "benchmarks" / "synthesize" / "{synthetic}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        generator=lambda wildcards: dataset_settings(wildcards.synthetic)["generator"],
    script:
        "../scripts/synthesize.py"
