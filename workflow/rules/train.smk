# Stage 3, train: one model per dataset x method x seed (pcmebench/train.py). The stages from
# here on run the package's command-line entry points, so a run can also be reproduced outside
# Snakemake.


rule train:
    input:
        unpack(pretrained_backbone),
        unpack(imagenet_weights),
        prepared=WORK / "prepared" / "{dataset}",
    output:
        checkpoint=f"{RUN_DIR}/model.safetensors",
        record=f"{RUN_DIR}/run.json",
        curve=f"{RUN_DIR}/train_log.csv",
    log:
        f"{RUN_DIR}/train.log",
    benchmark:
        f"{RUN_DIR}/train.benchmark.tsv"
    conda:
        CONDA_ENV
    threads: core_claim
    resources:
        torch_threads=torch_threads,
        gpu=gpus,
    params:
        settings=run_settings,
        run_dir=RUN_DIR,
        backbone=lambda wildcards, input: f"--backbone {input.backbone}" if "backbone" in input.keys() else "",
    shell:
        "exec python -m pcmebench.train --prepared {input.prepared} --run-dir {params.run_dir} {params.backbone}"
        " --threads {resources.torch_threads} --settings {params.settings:q} > {log} 2>&1"
