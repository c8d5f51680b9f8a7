# Stage 1, data: generate the embedded synthetic datasets (real data: download.smk).
from corpora.synthetic import GENERATOR_VERSIONS


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
        # unused by the script: a new generator version regenerates the data
        version=lambda wildcards: GENERATOR_VERSIONS[wildcards.synthetic],
    script:
        "../scripts/synthesize.py"
