"""Tiny stand-ins for the real downloads, in their published layouts, served from a LoopbackServer.

Built from the synthetic generators (which write COCO's and CUB's on-disk formats): COCO's
train2014.zip / val2014.zip / annotations_trainval2014.zip and split files; CUB_200_2011.tgz,
Reed et al.'s cvpr2016_cub.tar.gz (behind a Google-Drive-like confirmation page), PCME's split
files; a GloVe zip; ImageNet weight files. ``serve_real_data`` returns the config's ``sources``
section pointing at them, with their true sizes and checksums.
"""

from __future__ import annotations

import hashlib
import io
import stat
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from corpora.coco import CocoLayout, load_coco
from corpora.cub import CubLayout
from corpora.synthetic import write_synthetic_coco, write_synthetic_cub
from corpora.text import tokenize
from tests.conftest import TINY_COCO, TINY_CUB
from tests.loopback import LoopbackServer

GLOVE_DIM = 300  # the paper preset's word_dim
DRIVE_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>
<p>Google Drive can't scan this file for viruses.</p>
<form id="download-form" action="/drive/download" method="get">
<input type="submit" value="Download anyway"><input type="hidden" name="id" value="cub-captions">
<input type="hidden" name="export" value="download"><input type="hidden" name="confirm" value="t">
</form></body></html>"""


def zip_bytes(members: dict[str, bytes | None | tuple[str, str]]) -> bytes:
    """A zip archive of ``members`` (name -> content; None = a folder entry; ("symlink", target) = a
    symbolic link, as Info-ZIP stores one: the target as the content, S_IFLNK in the external attributes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, content in members.items():
            if isinstance(content, tuple):
                info = zipfile.ZipInfo(name)
                info.create_system = 3  # Unix
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                bundle.writestr(info, content[1])
            else:
                bundle.writestr(name, b"" if content is None else content)
    return buffer.getvalue()


def tar_bytes(members: dict[str, bytes | tuple[str, str]], compression: str = "gz") -> bytes:
    """A tar archive of ``members`` (name -> content, or ("symlink" | "hardlink", target))."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}") as bundle:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, tuple):
                info.type = tarfile.SYMTYPE if content[0] == "symlink" else tarfile.LNKTYPE
                info.linkname = content[1]
                bundle.addfile(info)
            else:
                info.size = len(content)
                bundle.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def entry(url: str, content: bytes, checksum: str | None = "md5", size: bool = True) -> dict:
    """A ``sources`` entry for ``content`` served at ``url``."""
    result = {"url": url, "size": len(content) if size else None}
    if checksum == "md5":
        result["md5"] = hashlib.md5(content).hexdigest()
    elif checksum == "sha256-prefix":
        result["sha256"] = hashlib.sha256(content).hexdigest()[:8]
    else:
        result["md5"] = None
    return result


def _tree(root: Path, folder: Path, prefix: str) -> dict[str, bytes]:
    return {prefix + p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@dataclass
class RealData:
    """What serve_real_data built: the ``sources`` config and facts the tests check against."""

    sources: dict
    coco_source: Path  # the synthetic dataset the COCO archives were made from
    cub_source: Path
    held_out: list[str] = field(default_factory=list)  # seen_test_images.txt lines
    glove_words: dict[str, float] = field(default_factory=dict)  # word -> the value of its vector


def serve_real_data(server: LoopbackServer, workdir: Path) -> RealData:
    coco = workdir / "coco-source"
    cub = workdir / "cub-source"
    write_synthetic_coco(coco, **TINY_COCO)
    write_synthetic_cub(cub, **TINY_CUB)
    sources: dict = {"download": True}

    layout = CocoLayout(coco)
    coco_sources: dict = {"root": None}
    for image_source in ("train2014", "val2014"):
        content = zip_bytes({f"{image_source}/": None, **_tree(coco, layout.images_dir(image_source), f"{image_source}/")})
        coco_sources[image_source] = entry(server.add(f"/coco/zips/{image_source}.zip", content), content)
    annotations = {
        f"annotations/{path.name}": path.read_bytes()
        for s in ("train2014", "val2014")
        for path in (layout.captions_json(s), layout.instances_json(s))
    }
    annotations["annotations/person_keypoints_train2014.json"] = b"{}"  # in the real archive, not extracted
    content = zip_bytes(annotations)
    coco_sources["annotations"] = entry(server.add("/coco/annotations/annotations_trainval2014.zip", content), content)
    for split in ("train", "restval", "dev", "test"):
        content = layout.split_ids(split).read_bytes()
        coco_sources[f"{split}_ids"] = entry(server.add(f"/pcme/coco_{split}_ids.npy", content), content)
    sources["coco"] = coco_sources

    layout = CubLayout(cub)
    cub_sources: dict = {"root": None}
    images = _tree(cub, cub / "images", "CUB_200_2011/images/")
    for path in (layout.images_txt, layout.classes_txt, layout.image_class_labels_txt):
        images[f"CUB_200_2011/{path.name}"] = path.read_bytes()
    images["CUB_200_2011/README"] = b"CUB-200-2011 stand-in\n"
    images["attributes.txt"] = b"1 has_bill_shape::curved\n"  # beside the folder, as in the real archive
    content = tar_bytes(images)
    cub_sources["images"] = entry(server.add("/caltech/CUB_200_2011.tgz?download=1", content), content)
    train_classes = layout.split_classes("train").read_bytes()
    test_classes = layout.split_classes("test").read_bytes()
    captions = _tree(cub, cub / "text_c10", "cvpr2016_cub/text_c10/")
    # Reed et al.'s split files of the same names, another split: not to be used
    captions["cvpr2016_cub/trainvalclasses.txt"] = test_classes
    captions["cvpr2016_cub/testclasses.txt"] = train_classes
    content = tar_bytes(captions)
    server.add("/drive/uc?export=download&id=cub-captions", b"", page=DRIVE_PAGE)
    server.add("/drive/download?id=cub-captions&export=download&confirm=t", content)
    cub_sources["captions"] = {"url": server.base + "/drive/uc?export=download&id=cub-captions", "size": None, "md5": None}
    cub_sources["trainvalclasses"] = entry(server.add("/pcme/cub/trainvalclasses.txt", train_classes), train_classes)
    cub_sources["testclasses"] = entry(server.add("/pcme/cub/testclasses.txt", test_classes), test_classes)
    # hold out the first image of each training class, as PCME's list holds out some of each
    by_class: dict[str, str] = {}
    for line in layout.images_txt.read_text().splitlines():
        relative = line.split(" ", 1)[1]
        by_class.setdefault(relative.split("/")[0], relative)
    held_out = [by_class[name] for name in train_classes.decode().split()]
    content = "".join(f"{relative}\n" for relative in held_out).encode()
    cub_sources["seen_test_images"] = entry(server.add("/pcme/cub/seen_test_images.txt", content), content)
    sources["cub"] = cub_sources

    words = sorted(
        {w for split in load_coco(coco, check_images=False).values() for c in split.captions["caption"] for w in tokenize(c)}
        | {w for p in (cub / "text_c10").rglob("*.txt") for w in tokenize(p.read_text())}
    )
    glove_words = {word: round(0.001 * (i + 1), 3) for i, word in enumerate(words[::2])}  # half the words have a vector
    lines = [f"{word} " + " ".join([f"{value:.3f}"] * GLOVE_DIM) for word, value in glove_words.items()]
    first = next(iter(glove_words))
    lines.insert(1, f"{first} and more " + " ".join(["9.0"] * GLOVE_DIM))  # a word with spaces, read from the right
    text = ("\n".join(lines) + "\n").encode() + b"\xff\xfeword " + b" ".join([b"7.0"] * GLOVE_DIM) + b"\n"
    content = zip_bytes({"glove.840B.300d.txt": text})
    sources["glove"] = entry(server.add("/stanford/glove.840B.300d.zip", content), content, checksum=None)

    sources["imagenet"] = {}
    for encoder in ("resnet50", "resnet152"):
        content = f"stand-in for {encoder}'s ImageNet weights".encode()
        sources["imagenet"][encoder] = entry(
            server.add(f"/torch/{encoder}.pth", content), content, checksum="sha256-prefix", size=False
        )
    return RealData(sources, coco, cub, held_out, glove_words)
