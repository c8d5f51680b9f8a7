"""Where each file of the real data comes from and where it goes.

The config's ``sources`` section gives every file's address, size and checksum (defaults in
config/config.yaml; a lab with a mirror, and the tests, point them elsewhere). This module maps
them onto the layouts the loaders read (``corpora.coco.CocoLayout``, ``corpora.cub.CubLayout``):
each dataset's plain files (split files, downloaded straight into place) and archives (fetched
into ``<data_root>/downloads/`` and extracted member by member), the GloVe archive and the
ImageNet weights. The workflow (workflow/rules/download.smk) builds its download and extraction
rules from these tables and ``DataPaths``, which also says at planning time what is neither in
place nor downloadable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from corpora.archives import IncompleteArchiveError
from corpora.coco import CocoLayout
from corpora.coco import _read_captions as coco_captions
from corpora.cub import CubLayout
from corpora.cub import _read_pairs as read_pairs
from corpora.download import ChecksumError, Source, verify

DOWNLOADS = "downloads"  # under data_root: archives, removed once extracted
GLOVE_FILE = "glove.840B.300d.zip"  # under data_root/glove; corpora.text reads the vectors straight from it
# torchvision's IMAGENET1K_V1 weights: the file names torch.hub looks for under $TORCH_HOME/hub/checkpoints
# (tests/test_download.py checks them against torchvision's own).
IMAGENET_WEIGHTS = {"resnet50": "resnet50-0676ba61.pth", "resnet152": "resnet152-394f9c45.pth"}


@dataclass(frozen=True)
class Archive:
    """An archive of a dataset: its file name, and which members go where under the dataset root
    (a trailing ``/`` maps a whole folder; see ``corpora.archives.extract``)."""

    file: str
    members: dict[str, str]

    def targets(self) -> list[tuple[str, str, bool]]:
        """(member, path under the dataset root, whether it is a folder) of each mapped member."""
        return [(member, target.rstrip("/"), target.endswith("/")) for member, target in self.members.items()]


@dataclass(frozen=True)
class RealDataset:
    """A real dataset's files: config key -> path under its root (plain files) or archive."""

    files: dict[str, Path]
    archives: dict[str, Archive] = field(default_factory=dict)


def _coco() -> RealDataset:
    layout = CocoLayout(Path())
    annotations = [layout.captions_json(s) for s in ("train2014", "val2014")] + [
        layout.instances_json(s) for s in ("train2014", "val2014")
    ]
    return RealDataset(
        files={f"{split}_ids": layout.split_ids(split) for split in ("train", "restval", "dev", "test")},
        archives={
            **{s: Archive(f"{s}.zip", {f"{s}/": f"{layout.images_dir(s)}/"}) for s in ("train2014", "val2014")},
            "annotations": Archive("annotations_trainval2014.zip", {f"annotations/{p.name}": str(p) for p in annotations}),
        },
    )


def _cub() -> RealDataset:
    layout = CubLayout(Path())
    index_files = (layout.images_txt, layout.classes_txt, layout.image_class_labels_txt)
    return RealDataset(
        # PCME's split files (Xian et al. 2017), not those of the same names in Reed et al.'s archive
        files={
            "trainvalclasses": layout.split_classes("train"),
            "testclasses": layout.split_classes("test"),
            "seen_test_images": layout.seen_test_images,
        },
        archives={
            "images": Archive(
                "CUB_200_2011.tgz",
                {"CUB_200_2011/images/": f"{layout.image('')}/", **{f"CUB_200_2011/{p.name}": str(p) for p in index_files}},
            ),
            # only the captions: the archive's own trainvalclasses.txt/testclasses.txt are Reed et al.'s split
            "captions": Archive("cvpr2016_cub.tar.gz", {"cvpr2016_cub/text_c10/": "text_c10/"}),
        },
    )


REAL_DATASETS = {"coco": _coco(), "cub": _cub()}
# What the download rules write, by file name: each archive and ImageNet weights file -> its key in `sources`.
ARCHIVES = {archive.file: f"{name}.{key}" for name, data in REAL_DATASETS.items() for key, archive in data.archives.items()}
WEIGHT_FILES = {file: f"imagenet.{encoder}" for encoder, file in IMAGENET_WEIGHTS.items()}


def archive_of(key: str) -> tuple[str, Archive]:
    """The dataset and the archive of a `sources` key such as "cub.captions"."""
    name, archive = key.split(".", 1)
    return name, REAL_DATASETS[name].archives[archive]


@dataclass(frozen=True)
class Item:
    """One file or folder the real DAG reads, and how it is obtained.

    ``key``: its entry in config ``sources`` ("coco.train2014", "glove", "imagenet.resnet50").
    ``archive``: the archive (under data_root/downloads) it is extracted from; None when the file
    is downloaded as it is.
    """

    path: Path
    key: str
    folder: bool = False
    archive: Path | None = None
    member: str | None = None


def source_entry(sources: dict, key: str) -> dict:
    entry = sources
    for part in key.split("."):
        entry = entry[part]
    return entry


def source(sources: dict, key: str) -> Source:
    """The Source of ``key`` ("coco.train2014") in config ``sources``."""
    return Source.from_config(source_entry(sources, key))


def dataset_root(name: str, data_root: Path, sources: dict) -> Path:
    """Where a real dataset lives: ``sources.<name>.root``, else ``<data_root>/<name>``."""
    root = sources.get(name, {}).get("root")
    return Path(root) if root else Path(data_root) / name


def dataset_items(name: str, root: Path, data_root: Path) -> list[Item]:
    """Every file and folder of a real dataset's layout under ``root``."""
    dataset = REAL_DATASETS[name]
    items = [Item(root / path, f"{name}.{key}") for key, path in dataset.files.items()]
    for key, archive in dataset.archives.items():
        for member, target, folder in archive.targets():
            items.append(Item(root / target, f"{name}.{key}", folder, Path(data_root) / DOWNLOADS / archive.file, member))
    return items


def glove_path(data_root: Path) -> Path:
    return Path(data_root) / "glove" / GLOVE_FILE


def weights_path(encoder: str, torch_home: Path) -> Path:
    return Path(torch_home) / "hub" / "checkpoints" / IMAGENET_WEIGHTS[encoder]


def unobtainable(items: list[Item], sources: dict, downloadable: set[Path]) -> list[Item]:
    """The items neither in place nor obtainable by the workflow.

    An item can be obtained when its archive is in place (it is extracted), or when downloads are
    enabled (``sources.download``), its source has an address and a rule fetches it (its path, or
    its archive's, is in ``downloadable``).
    """
    missing = []
    for item in items:
        if item.path.exists():
            continue
        if item.archive is not None and item.archive.exists():
            continue
        fetched = item.archive if item.archive is not None else item.path
        if sources.get("download", True) and source(sources, item.key).url and fetched in downloadable:
            continue
        missing.append(item)
    return missing


def missing_message(missing: list[Item], sources: dict) -> str:
    """Every missing item with its address, for the planning error."""
    lines = []
    for item in missing:
        via = f", from {item.member} in {item.archive.name}" if item.archive else ""
        lines.append(
            f"  {item.path}{'/' if item.folder else ''}  (sources.{item.key}{via}: {source(sources, item.key).describe()})"
        )
    return "\n".join(lines)


def verify_in_place(name: str, root: Path, sources: dict) -> list[Path]:
    """Check the size and checksum of a dataset's plain files (its split files) under ``root``; a
    ChecksumError names a file that is not the expected one. Returns the files checked."""
    checked = []
    for key, path in REAL_DATASETS[name].files.items():
        expected = source(sources, f"{name}.{key}")
        if expected.size is not None or expected.has_checksum:
            verify(root / path, expected, what=f"sources.{name}.{key}")
            checked.append(root / path)
    return checked


def extraction_check(key: str, root: Path):
    """What every extraction of archive ``key`` must hold, as a check of its temporary folder (the
    targets under it as under ``root``) before anything moves into place; None where the member
    check is all there is. A short archive then stops its own job, naming the first missing files:
    every image the COCO captions file of its source lists; every image of CUB's ``images.txt``;
    a caption file for each of them in Reed et al.'s ``text_c10``."""
    root = Path(root)
    if key in ("coco.train2014", "coco.val2014"):
        source_name = key.split(".")[1]

        def expected(staging: Path) -> list[Path]:
            _, files = coco_captions(CocoLayout(root), source_name)
            folder = CocoLayout(staging).images_dir(source_name)
            return [folder / name for name in sorted(set(files.values()))]

    elif key == "cub.images":

        def expected(staging: Path) -> list[Path]:
            layout = CubLayout(staging)
            return [layout.image(relative) for relative in read_pairs(layout.images_txt, "image").values()]

    elif key == "cub.captions":

        def expected(staging: Path) -> list[Path]:
            images = read_pairs(CubLayout(root).images_txt, "image").values()
            return [CubLayout(staging).caption_file(relative) for relative in images]

    else:
        return None

    def check(staging: Path) -> None:
        files = expected(staging)
        missing = [path.relative_to(staging) for path in files if not path.is_file()]
        if missing:
            raise IncompleteArchiveError(
                f"sources.{key}",
                "contents",
                f"{len(missing):,} of the {len(files):,} files the dataset's index names are not in the archive, "
                f"e.g. {', '.join(map(str, missing[:3]))}",
            )

    return check


@dataclass(frozen=True)
class DataPaths:
    """Where one config's data lives and what its jobs read: each dataset's root, the archives under
    ``data_root/downloads``, GloVe under ``data_root/glove``, the ImageNet weights under ``torch_home``;
    which of these the download rules write, and what a plan lacks. ``dataset_settings``: the
    config's, for each dataset's word vectors and image encoder."""

    data_root: Path
    sources: dict
    torch_home: Path
    dataset_settings: dict

    def root(self, name: str) -> Path:
        """Where a dataset's raw files are: ``data_root/<name>``, or ``sources.<name>.root`` for a real one."""
        return dataset_root(name, self.data_root, self.sources) if name in REAL_DATASETS else self.data_root / name

    def layout(self, name: str) -> list[str]:
        """The files and folders of a real dataset's layout, which its prepare job reads."""
        return [str(item.path) for item in dataset_items(name, self.root(name), self.data_root)]

    def annotations(self, name: str) -> list[str]:
        """What the lists of a dataset's test split read (``pcmebench.lists``): a synthetic dataset's
        folder; a real one's annotation, index and split files (and CUB's captions), not its images."""
        if name not in REAL_DATASETS:
            return [str(self.root(name))]
        layout = {"coco": CocoLayout, "cub": CubLayout}[name](self.root(name))
        captions = [layout.root / "text_c10"] if name == "cub" else []
        return [str(path) for path in (*layout.required_files(("test",)), *captions)]

    def word_vectors(self, name: str) -> str | None:
        """The GloVe file of a dataset's settings, resolved under data_root, or None."""
        path = self.dataset_settings[name]["word_vectors"]
        return None if path is None else str(path if Path(path).is_absolute() else self.data_root / path)

    def imagenet_weights(self, name: str) -> str | None:
        """The ImageNet weights file a dataset's training starts from, if it uses any."""
        data = self.dataset_settings[name]
        if data["image_encoder"] in IMAGENET_WEIGHTS and data["training"]["pretrained"]:
            return str(weights_path(data["image_encoder"], self.torch_home))
        return None

    def plain_files(self) -> dict[str, str]:
        """Each real dataset's plain file, as the path its download rule writes -> its key in `sources`."""
        return {
            str(self.root(name) / path): f"{name}.{key}"
            for name, data in REAL_DATASETS.items()
            for key, path in data.files.items()
        }

    def downloadable(self) -> set[Path]:
        """Every path a download rule writes."""
        return {
            *map(Path, self.plain_files()),
            *(self.data_root / DOWNLOADS / file for file in ARCHIVES),
            *(weights_path(encoder, self.torch_home) for encoder in IMAGENET_WEIGHTS),
            glove_path(self.data_root),
        }

    def needed(self, names: list[str]) -> list[Item]:
        """Everything the real datasets among ``names`` read, once each: their layouts, GloVe, ImageNet weights."""
        items = {}
        for name in (n for n in names if n in REAL_DATASETS):
            for item in dataset_items(name, self.root(name), self.data_root):
                items[item.path] = item
            if word_vectors := self.word_vectors(name):
                items[Path(word_vectors)] = Item(Path(word_vectors), "glove")
            if weights := self.imagenet_weights(name):
                items[Path(weights)] = Item(Path(weights), f"imagenet.{self.dataset_settings[name]['image_encoder']}")
        return list(items.values())

    def missing_message(self, names: list[str]) -> str | None:
        """The planning error for what the real datasets among ``names`` read and is neither in place
        nor obtainable (``unobtainable``), naming each with its address and the fix; None when every
        item can be had."""
        missing = unobtainable(self.needed(names), self.sources, self.downloadable())
        if not missing:
            return None
        if self.sources["download"]:
            why = "cannot be downloaded (no address, or a path no download rule writes)"
            fix = (
                f"give its source an address (url), or for GloVe set word_vectors to the downloaded {glove_path(self.data_root)}"
            )
        else:
            why, fix = "downloads are off (sources.download: false)", "set sources.download: true to fetch them"
        return (
            f"Real data is missing and {why}:\n{missing_message(missing, self.sources)}\n"
            f"Put each file or folder there by hand (the README's section 'Real data' shows the layout), "
            f"or {fix} ({len(missing)} missing)."
        )

    def weights_problem(self, names: list[str]) -> str | None:
        """Why ImageNet weights found in place (downloaded, or put there by hand) for ``names`` are not
        torchvision's, or None: the download rule does not run for a file that exists, and torch.hub
        checks only what it downloads."""
        for encoder in sorted({self.dataset_settings[n]["image_encoder"] for n in names if self.imagenet_weights(n)}):
            path = weights_path(encoder, self.torch_home)
            if path.is_file():
                try:
                    verify(path.resolve(), source(self.sources, f"imagenet.{encoder}"), what=f"sources.imagenet.{encoder}")
                except ChecksumError as error:
                    return f"{error}\nNot torchvision's file: delete it; `snakemake download` fetches it."
        return None

    def extraction_index(self, name: str, key: str) -> list[str]:
        """The index files an extraction checks its archive against (``extraction_check``): COCO's
        captions file of the source, CUB's images.txt for Reed et al.'s captions."""
        if name == "coco" and key in ("train2014", "val2014"):
            return [str(CocoLayout(self.root(name)).captions_json(key))]
        if name == "cub" and key == "captions":
            return [str(CubLayout(self.root(name)).images_txt)]
        return []
