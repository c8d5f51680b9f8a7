# Stage 0, download: the real data (coco, cub), GloVe and the ImageNet weights, fetched from the
# config's `sources`, verified and extracted into the layouts the loaders read. The tables of what
# goes where are in corpora/sources.py, the transfer in corpora/download.py, the extraction in
# corpora/archives.py, the jobs' command line in pcmebench/download.py. Every rule here is local:
# on a cluster it runs on the submit host, so no compute node downloads anything.
# `snakemake --configfile config/paper.yaml --cores 4 download` fetches everything ahead (on a
# login node with internet).
from snakemake.settings.types import ExecMode

from corpora.sources import ARCHIVES, DOWNLOADS, WEIGHT_FILES, glove_path

# The jobs read `sources` from the environment, not from a param: Snakemake reruns a job whose params
# changed, and a new mirror's address must not fetch again (and so rerun everything after) what is in place.
os.environ.update(PCMEBENCH_SOURCES=json.dumps(config["sources"]))
PLAIN_FILE_KEYS = DATA.plain_files()  # output path -> key in sources
# ImageNet weights in place must be torchvision's (not again in each job's own Snakemake).
if workflow.workflow_settings.exec_mode == ExecMode.DEFAULT and (problem := DATA.weights_problem(config["datasets"])):
    raise WorkflowError(problem)


rule download:
    input:
        everything_to_download,
    localrule: True


for _name, _data in REAL_DATASETS.items():

    rule:
        name:
            f"download_{_name}_file"
        output:
            f"{DATA.root(_name)}/{{file}}",
        log:
            f"{WORK}/logs/download/{_name}/{{file}}.log",
        wildcard_constraints:
            file=one_of(map(str, _data.files.values())),
        localrule: True
        conda:
            CONDA_ENV
        params:
            key=lambda wildcards, output: PLAIN_FILE_KEYS[output[0]],
        shell:
            'exec python -m pcmebench.download fetch --key {params.key} --output {output} --sources "$PCMEBENCH_SOURCES"'
            " > {log} 2>&1"


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
        root=lambda wildcards: DATA.root(ARCHIVES[wildcards.archive].split(".")[0]),
    shell:
        "exec python -m pcmebench.download fetch --key {params.key} --output {output} --root {params.root}"
        ' --sources "$PCMEBENCH_SOURCES" > {log} 2>&1'


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
    shell:
        'exec python -m pcmebench.download fetch --key {params.key} --output {output} --sources "$PCMEBENCH_SOURCES"'
        " > {log} 2>&1"


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
    shell:
        'exec python -m pcmebench.download fetch --key {params.key} --output {output} --sources "$PCMEBENCH_SOURCES"'
        " > {log} 2>&1"


for _name, _data in REAL_DATASETS.items():
    for _key, _archive in _data.archives.items():

        rule:
            name:
                f"extract_{_name}_{_key}"
            input:
                archive=DATA_ROOT / DOWNLOADS / _archive.file,
                # ancient: an index newer than what was extracted (another archive's extraction ran later) reruns nothing
                index=[ancient(path) for path in DATA.extraction_index(_name, _key)],
            output:
                [directory(DATA.root(_name) / t) if folder else DATA.root(_name) / t for _, t, folder in _archive.targets()],
            log:
                WORK / "logs" / "extract" / f"{_archive.file}.log",
            localrule: True
            conda:
                CONDA_ENV
            params:
                key=f"{_name}.{_key}",
                members=_archive.members,  # the command takes them by key; a param, so a new mapping extracts again
                root=DATA.root(_name),
            shell:
                "exec python -m pcmebench.download extract --key {params.key} --archive {input.archive} --root {params.root}"
                ' --sources "$PCMEBENCH_SOURCES" > {log} 2>&1'
