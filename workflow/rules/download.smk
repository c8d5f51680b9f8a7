# Stage 0, download: the real data (coco, cub), GloVe and the ImageNet weights, fetched from the
# config's `sources`, verified and extracted into the layouts the loaders read. The tables of what
# goes where are in corpora/sources.py, the transfer in corpora/download.py, the extraction in
# corpora/archives.py. Every rule here is local: on a cluster it runs on the submit host, so no
# compute node downloads anything. `snakemake --configfile config/paper.yaml --cores 4 download`
# fetches everything ahead (on a login node with internet).


rule download:
    input:
        everything_to_download,
    localrule: True


for _name, _files in PLAIN_FILES.items():

    rule:
        name:
            f"download_{_name}_file"
        output:
            f"{dataset_root(_name)}/{{file}}",
        log:
            f"{WORK}/logs/download/{_name}/{{file}}.log",
        wildcard_constraints:
            file=one_of(_files),
        localrule: True
        conda:
            CONDA_ENV
        params:
            key=lambda wildcards, output: PLAIN_FILE_KEYS[output[0]],
        script:
            "../scripts/download.py"


rule download_archive:
    output:
        temp(DATA_ROOT / DOWNLOADS / "{archive}"),
    log:
        WORK / "logs" / "download" / "{archive}.log",
    wildcard_constraints:
        archive=one_of(ARCHIVES),
    localrule: True
    conda:
        CONDA_ENV
    params:
        key=lambda wildcards: ARCHIVES[wildcards.archive],
    script:
        "../scripts/download.py"


rule download_glove:
    output:
        glove_path(DATA_ROOT),
    log:
        WORK / "logs" / "download" / "glove.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        key="glove",
    script:
        "../scripts/download.py"


rule download_imagenet_weights:
    output:
        TORCH_HOME / "hub" / "checkpoints" / "{weights}",
    log:
        WORK / "logs" / "download" / "{weights}.log",
    wildcard_constraints:
        weights=one_of(WEIGHT_FILES),
    localrule: True
    conda:
        CONDA_ENV
    params:
        key=lambda wildcards: WEIGHT_FILES[wildcards.weights],
    script:
        "../scripts/download.py"


for _name, _data in REAL_DATASETS.items():
    for _key, _archive in _data.archives.items():

        rule:
            name:
                f"extract_{_name}_{_key}"
            input:
                archive=DATA_ROOT / DOWNLOADS / _archive.file,
                index=extraction_index(_name, _key),
            output:
                [directory(dataset_root(_name) / t) if folder else dataset_root(_name) / t for _, t, folder in _archive.targets()],
            log:
                WORK / "logs" / "extract" / f"{_archive.file}.log",
            localrule: True
            conda:
                CONDA_ENV
            params:
                key=f"{_name}.{_key}",
                members=_archive.members,
                root=dataset_root(_name),
            script:
                "../scripts/extract.py"
