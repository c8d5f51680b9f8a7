# Stage 4, embed: image and caption embeddings of the evaluation split, what the method's registry
# entry exports (mu, sigma and samples for PCME; the K embeddings for PVSE); see pcmebench/embed.py.


rule embed:
    input:
        prepared=WORK / "prepared" / "{dataset}",
        checkpoint=f"{RUN_DIR}/model.safetensors",
    output:
        embeddings=f"{RUN_DIR}/embeddings_test.safetensors",
    log:
        f"{RUN_DIR}/embed.log",
    benchmark:
        f"{RUN_DIR}/embed.benchmark.tsv"
    conda:
        CONDA_ENV
    threads: core_claim
    resources:
        torch_threads=torch_threads,
        gpu=gpus,
    params:
        device=config["device"],
    shell:
        "exec python -m pcmebench.embed --prepared {input.prepared} --checkpoint {input.checkpoint}"
        " --output {output.embeddings} --threads {resources.torch_threads} --device {params.device} > {log} 2>&1"
