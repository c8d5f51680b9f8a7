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
        generator=lambda wildcards: json.dumps(dataset_settings(wildcards.synthetic)["generator"], sort_keys=True),
        # unused by the command: a new generator version regenerates the data
        version=lambda wildcards: GENERATOR_VERSIONS[wildcards.synthetic],
    shell:
        "exec python -m pcmebench.synthesize --dataset {wildcards.synthetic} --output {output} --generator {params.generator:q}"
        " > {log} 2>&1"
