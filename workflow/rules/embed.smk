# Stage 4, embed: image and caption embeddings of the evaluation split (mu, sigma and samples
# for PCME; the K embeddings for PVSE). `python -m pcmebench.embed` lands with issue #3.


rule embed:
    input:
        prepared=WORK / "prepared" / "{dataset}",
        checkpoint=f"{RUN_DIR}/model.safetensors",
    output:
        embeddings=f"{RUN_DIR}/embeddings_test.safetensors",
    params:
        settings=run_settings,
    log:
        f"{RUN_DIR}/embed.log",
    benchmark:
        f"{RUN_DIR}/embed.benchmark.tsv"
    threads: 2
    conda:
        CONDA_ENV
    resources:
        gpu=1 if config["device"] == "cuda" else 0,
    shell:
        "python -m pcmebench.embed --prepared {input.prepared} --checkpoint {input.checkpoint}"
        " --output {output.embeddings} --threads {threads} --settings {params.settings:q} > {log} 2>&1"
