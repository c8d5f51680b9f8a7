# Stage 2, prepare: read raw data through the shared loaders, decode every image once (a bad file
# stops here, named, not in a training job); store splits, vocabulary and word vectors as
# memory-mapped Hugging Face datasets, and resized copies of the images with stored_shorter_side.


rule prepare:
    input:
        raw=raw_dataset,
        word_vectors=word_vectors_input,
    output:
        directory(WORK / "prepared" / "{dataset}"),
    log:
        WORK / "logs" / "prepare" / "{dataset}.log",
    benchmark:
        WORK / "benchmarks" / "prepare" / "{dataset}.tsv"
    conda:
        CONDA_ENV
    threads: core_claim
    params:
        raw_root=lambda wildcards: str(DATA.root(wildcards.dataset)),
        format=lambda wildcards: dataset_format(wildcards.dataset),
        train_splits=lambda wildcards: dataset_settings(wildcards.dataset)["train_splits"],
        min_word_count=lambda wildcards: dataset_settings(wildcards.dataset)["min_word_count"],
        word_dim=lambda wildcards: dataset_settings(wildcards.dataset)["word_dim"],
        word_vector_std=lambda wildcards: dataset_settings(wildcards.dataset)["word_vector_std"],
        word_vectors=lambda wildcards: DATA.word_vectors(wildcards.dataset),
        stored_shorter_side=lambda wildcards: dataset_settings(wildcards.dataset)["training"]["stored_shorter_side"],
    shell:
        "exec python -m pcmebench.prepare --dataset {wildcards.dataset} --format {params.format} --raw {params.raw_root}"
        " --output {output} --train-splits {params.train_splits} --min-word-count {params.min_word_count}"
        " --word-dim {params.word_dim} --word-vector-std {params.word_vector_std} --word-vectors {params.word_vectors}"
        ' --stored-shorter-side {params.stored_shorter_side} --workers {threads} --sources "$PCMEBENCH_SOURCES" > {log} 2>&1'
