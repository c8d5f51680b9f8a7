# Stage 2b, pretrain: the synthetic datasets' stand-in for ImageNet weights, a small CNN trained to
# recognise its world's objects (synthetic-coco) or bird parts (synthetic-cub) on images drawn
# apart from the dataset (pcmebench/pretrain.py). Every method of the dataset starts from it.


rule pretrain:
    output:
        backbone=WORK / "pretrained" / "{dataset}" / "backbone.safetensors",
        record=WORK / "pretrained" / "{dataset}" / "backbone.json",
    log:
        WORK / "logs" / "pretrain" / "{dataset}.log",
    benchmark:
        WORK / "benchmarks" / "pretrain" / "{dataset}.tsv"
    wildcard_constraints:
        dataset=one_of(SYNTHETIC_FORMAT),
    conda:
        CONDA_ENV
    threads: core_claim
    resources:
        torch_threads=torch_threads,
    params:
        settings=lambda wildcards: json.dumps(pretrain_settings(wildcards.dataset), sort_keys=True),
    shell:
        "exec python -m pcmebench.pretrain --dataset {wildcards.dataset} --output {output.backbone}"
        " --threads {resources.torch_threads} --settings {params.settings:q} > {log} 2>&1"
