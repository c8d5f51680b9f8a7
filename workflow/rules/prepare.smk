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
        raw_root=lambda wildcards: str(dataset_root(wildcards.dataset)),
        format=lambda wildcards: dataset_format(wildcards.dataset),
        train_splits=lambda wildcards: dataset_settings(wildcards.dataset)["train_splits"],
        min_word_count=lambda wildcards: dataset_settings(wildcards.dataset)["min_word_count"],
        word_dim=lambda wildcards: dataset_settings(wildcards.dataset)["word_dim"],
        word_vector_std=lambda wildcards: dataset_settings(wildcards.dataset)["word_vector_std"],
        word_vectors=lambda wildcards: word_vectors_file(wildcards.dataset),
        stored_shorter_side=lambda wildcards: dataset_settings(wildcards.dataset)["training"]["stored_shorter_side"],
    script:
        "../scripts/prepare.py"
