"""Downloads, verification and safe extraction against a file server on 127.0.0.1, then the
downloaded stand-ins of the real data prepared through the shared loaders."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from corpora.archives import DamagedArchiveError, IncompleteArchiveError, UnsafeArchiveError, check_integrity, extract
from corpora.cub import load_cub
from corpora.download import ChecksumError, DownloadError, DownloadRefused, NotEnoughSpace, Source, fetch
from corpora.errors import DataError
from corpora.prepared import PreparedDataset, prepare_dataset
from corpora.sources import (
    DOWNLOADS,
    IMAGENET_WEIGHTS,
    REAL_DATASETS,
    dataset_items,
    extraction_check,
    source,
    unobtainable,
    verify_in_place,
)
from tests.loopback import LoopbackServer
from tests.real_data import DRIVE_PAGE, GLOVE_DIM, serve_real_data, tar_bytes, zip_bytes

CONTENT = bytes(range(256)) * 40  # 10,240 bytes


@pytest.fixture
def server():
    served = LoopbackServer()
    yield served
    served.close()


def md5(content: bytes) -> str:
    return hashlib.md5(content).hexdigest()


def quick(source: Source, target: Path, **options) -> Path:
    """fetch without the progress bar and with millisecond back-off."""
    return fetch(source, target, backoff=0.001, progress=False, **options)


def test_full_download_is_verified_and_renamed(server, tmp_path):
    url = server.add("/file.bin", CONTENT)
    target = quick(Source(url, len(CONTENT), md5(CONTENT)), tmp_path / "sub" / "file.bin")
    assert target.read_bytes() == CONTENT
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]  # no .part, no record: it has an MD5
    assert server.requested("/file.bin") == [None]


def test_a_cut_transfer_resumes_where_it_stopped(server, tmp_path):
    url = server.add("/file.bin", CONTENT, cut_after=3000)
    target = quick(Source(url, len(CONTENT), md5(CONTENT)), tmp_path / "file.bin")
    assert target.read_bytes() == CONTENT
    assert server.requested("/file.bin") == [None, "bytes=3000-"]


def test_a_partial_file_of_an_earlier_run_is_resumed(server, tmp_path):
    url = server.add("/file.bin", CONTENT)
    (tmp_path / "file.bin.part").write_bytes(CONTENT[:4096])
    quick(Source(url, len(CONTENT), md5(CONTENT)), tmp_path / "file.bin")
    assert (tmp_path / "file.bin").read_bytes() == CONTENT
    assert server.requested("/file.bin") == ["bytes=4096-"]


def test_a_host_ignoring_range_is_downloaded_from_the_start(server, tmp_path):
    url = server.add("/file.bin", CONTENT, ignore_range=True)
    (tmp_path / "file.bin.part").write_bytes(b"stale bytes")
    quick(Source(url, len(CONTENT), md5(CONTENT)), tmp_path / "file.bin")
    assert (tmp_path / "file.bin").read_bytes() == CONTENT


def test_busy_hosts_are_retried_and_missing_files_are_not(server, tmp_path):
    url = server.add("/file.bin", CONTENT, statuses=[503, 429])
    quick(Source(url, len(CONTENT), md5(CONTENT)), tmp_path / "file.bin")
    assert len(server.requested("/file.bin")) == 3
    with pytest.raises(DownloadError, match=r"/gone.bin: HTTP 404 .*point its entry in the config's `sources` at a mirror"):
        quick(Source(server.base + "/gone.bin", 10), tmp_path / "gone.bin")
    assert len(server.requested("/gone.bin")) == 1


def test_attempts_without_progress_give_up_and_keep_the_partial_file(server, tmp_path):
    url = server.add("/file.bin", CONTENT, statuses=[503] * 10)
    (tmp_path / "file.bin.part").write_bytes(CONTENT[:100])
    with pytest.raises(DownloadError, match=r"3 attempts in a row failed without progress .*the next run resumes there"):
        quick(Source(url, len(CONTENT), md5(CONTENT)), tmp_path / "file.bin", attempts=3)
    assert (tmp_path / "file.bin.part").read_bytes() == CONTENT[:100]
    assert not (tmp_path / "file.bin").exists()


def test_a_wrong_checksum_deletes_the_download(server, tmp_path):
    url = server.add("/file.bin", CONTENT)
    with pytest.raises(ChecksumError, match=rf"file.bin: download of {url}: MD5 is {md5(CONTENT)}, expected 0+ .*deleted"):
        quick(Source(url, len(CONTENT), "0" * 32), tmp_path / "file.bin")
    assert list(tmp_path.iterdir()) == []


def test_a_host_serving_another_size_is_refused_before_downloading(server, tmp_path):
    url = server.add("/file.bin", CONTENT)
    with pytest.raises(DownloadError, match=rf"serves {len(CONTENT):,} bytes, expected 99: not the expected file"):
        quick(Source(url, 99), tmp_path / "file.bin")
    assert not (tmp_path / "file.bin").exists()


def test_a_file_in_place_is_verified_without_a_request(server, tmp_path):
    url = server.add("/file.bin", CONTENT)
    (tmp_path / "file.bin").write_bytes(CONTENT)
    quick(Source(url, len(CONTENT), md5(CONTENT)), tmp_path / "file.bin")
    (tmp_path / "other.bin").write_bytes(CONTENT[::-1])
    with pytest.raises(ChecksumError, match=r"other.bin: other.bin: MD5 is .*, expected"):
        quick(Source(url, len(CONTENT), md5(CONTENT)), tmp_path / "other.bin")
    assert server.requests == []


def test_without_a_checksum_the_first_sha256_is_kept_and_a_change_warned(server, tmp_path, caplog):
    url = server.add("/file.bin", CONTENT)
    quick(Source(url), tmp_path / "file.bin")
    record = tmp_path / "file.bin.sha256"
    assert record.read_text() == f"{hashlib.sha256(CONTENT).hexdigest()}  file.bin\n"
    (tmp_path / "file.bin").unlink()
    server.add("/file.bin", CONTENT[::-1])
    with caplog.at_level(logging.WARNING, logger="pcmebench.download"):
        quick(Source(url), tmp_path / "file.bin")
    assert "differs from the first download's" in caplog.text
    assert record.read_text().startswith(hashlib.sha256(CONTENT).hexdigest())


def test_a_confirmation_page_is_followed_once(server, tmp_path):
    url = server.add("/drive/uc?export=download&id=cub-captions", b"", page=DRIVE_PAGE)
    server.add("/drive/download?id=cub-captions&export=download&confirm=t", CONTENT)
    quick(Source(url), tmp_path / "captions.tar.gz")
    assert (tmp_path / "captions.tar.gz").read_bytes() == CONTENT


def test_a_refusing_host_raises_download_refused(server, tmp_path):
    page = "<html><head><title>Google Drive - Quota exceeded</title></head><body>Too many users</body></html>"
    url = server.add("/drive/uc?id=busy", b"", page=page)
    with pytest.raises(DownloadRefused, match=r"answered with a web page \('Google Drive - Quota exceeded'\)"):
        quick(Source(url), tmp_path / "captions.tar.gz")
    assert not list(tmp_path.iterdir())


def test_too_little_free_space_stops_before_any_request(server, tmp_path, monkeypatch):
    url = server.add("/file.bin", CONTENT)
    monkeypatch.setattr("corpora.download.shutil.disk_usage", lambda path: _Usage(free=5000))
    with pytest.raises(NotEnoughSpace, match=r"needs 20.5 KB free in .*only 5.0 KB is free"):
        quick(Source(url, len(CONTENT), md5(CONTENT)), tmp_path / "file.bin", reserve=len(CONTENT))
    assert server.requests == []


class _Usage:
    def __init__(self, free):
        self.free = free


# --- the download stage's command line (pcmebench/download.py), as the download rules run it -----


def test_a_failed_archive_download_says_how_to_get_it_by_hand(server, tmp_path):
    from pcmebench.download import main

    sources = {"cub": {"captions": {"url": server.base + "/gone.tar.gz", "size": None, "md5": None}}}
    target = tmp_path / "downloads" / "cvpr2016_cub.tar.gz"
    args = ["fetch", "--key", "cub.captions", "--output", str(target), "--root", str(tmp_path / "cub")]
    with pytest.raises(DownloadError, match=r"HTTP 404") as error:
        main([*args, "--sources", json.dumps(sources)])
    assert f"To get sources.cub.captions by hand: download {server.base}/gone.tar.gz in a browser and save it as {target}" in str(
        error.value
    )
    assert f"or put what it holds in place: its cvpr2016_cub/text_c10/ at {tmp_path / 'cub' / 'text_c10/'}" in str(error.value)


def test_a_zip_without_a_checksum_is_read_whole_before_its_digest_is_kept(server, tmp_path):
    """GloVe has no published checksum: a damaged copy is moved aside, never the reference; an intact
    one has its SHA-256 recorded."""
    from pcmebench.download import main

    good = zip_bytes({"glove.840B.300d.txt": np.random.default_rng(0).bytes(20_000)})
    damaged = bytearray(good)
    damaged[len(good) // 2] ^= 0x55
    url = server.add("/glove.zip", bytes(damaged))
    target = tmp_path / "glove" / "glove.840B.300d.zip"
    args = ["fetch", "--key", "glove", "--output", str(target), "--sources", json.dumps({"glove": {"url": url}})]
    with pytest.raises(DataError, match=r"moved aside to .*glove.840B.300d.zip.rejected; the next run downloads sources.glove"):
        main(args)
    assert sorted(p.name for p in target.parent.iterdir()) == ["glove.840B.300d.zip.rejected"]
    server.add("/glove.zip", good)
    main(args)
    assert (target.parent / "glove.840B.300d.zip.sha256").read_text().split()[0] == hashlib.sha256(good).hexdigest()


# --- extraction ----------------------------------------------------------------------------------


def test_extraction_maps_members_and_leaves_the_rest(tmp_path):
    archive = tmp_path / "data.tgz"
    archive.write_bytes(tar_bytes({"top/images/a/1.jpg": b"one", "top/images/a/2.jpg": b"two", "top/index.txt": b"1 a/1.jpg\n",
                                   "top/README": b"no", "other.txt": b"no", "top/images/a/link.jpg": ("symlink", "1.jpg")}))  # fmt: skip
    placed = extract(archive, tmp_path / "root", {"top/images/": "images/", "top/index.txt": "index.txt"}, progress=False)
    root = tmp_path / "root"
    assert placed == [root / "images", root / "index.txt"]
    assert (root / "images" / "a" / "2.jpg").read_bytes() == b"two"
    assert (root / "images" / "a" / "link.jpg").read_bytes() == b"one"  # a link inside the folder is fine
    assert sorted(p.name for p in root.iterdir()) == ["images", "index.txt"]  # no README, no staging folder left


def test_an_archive_without_an_expected_member_is_not_the_expected_file(tmp_path):
    archive = tmp_path / "data.zip"
    archive.write_bytes(zip_bytes({"train2014/a.jpg": b"a"}))
    with pytest.raises(DataError, match=r"data.zip: member val2014/: not in the archive"):
        extract(archive, tmp_path / "root", {"val2014/": "images/val2014/"}, progress=False)
    assert not (tmp_path / "root" / "images").exists()


@pytest.mark.parametrize(
    "kind, members, problem",
    [
        ("zip", {"train2014/a.jpg": b"a", "train2014/../../evil.txt": b"x"}, "path with a '..' component"),
        ("zip", {"train2014/a.jpg": b"a", "/etc/evil.txt": b"x"}, "absolute path"),
        ("tar", {"top/a.jpg": b"a", "top/../../evil.txt": b"x"}, "path with a '..' component"),
        ("tar", {"/top/a.jpg": b"a"}, "absolute path"),
        ("tar", {"top/a.jpg": b"a", "top/escape": ("symlink", "../../outside")}, "symbolic link pointing outside"),
        ("tar", {"top/a.jpg": b"a", "top/passwd": ("symlink", "/etc/passwd")}, "symbolic link pointing outside"),
        ("tar", {"top/a.jpg": b"a", "top/hard": ("hardlink", "../outside")}, "hard link to a path outside"),
    ],
)
def test_unsafe_archives_are_rejected_whole(tmp_path, kind, members, problem):
    archive = tmp_path / f"bad.{'zip' if kind == 'zip' else 'tgz'}"
    archive.write_bytes(zip_bytes(members) if kind == "zip" else tar_bytes(members))
    folder = "train2014/" if kind == "zip" else "top/"
    with pytest.raises(UnsafeArchiveError, match=rf"bad\.\w+: member .*: {problem}.*the archive is rejected, nothing extracted"):
        extract(archive, tmp_path / "root", {folder: "images/"}, progress=False)
    assert not (tmp_path / "root" / "images").exists() and list((tmp_path / "root").iterdir()) == []
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path.parent / "evil.txt").exists()


LINK_CHAIN = {"l2": ("symlink", ".."), "l": ("symlink", "l2/../.."), "l3": ("symlink", "l/../.."), "l3/x.txt": b"outside"}


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_a_chain_of_links_that_leads_out_writes_nothing_outside(tmp_path, kind):
    """Each link looks inside when its path is read as text; on disk the chain leads out."""
    folder = "train2014/" if kind == "zip" else "top/"
    members = {f"{folder}a.jpg": b"a", **{folder + name: content for name, content in LINK_CHAIN.items()}}
    archive = tmp_path / "served" / f"chain.{'zip' if kind == 'zip' else 'tgz'}"
    archive.parent.mkdir()
    archive.write_bytes(zip_bytes(members) if kind == "zip" else tar_bytes(members))
    root = tmp_path / "a" / "b" / "root"
    with pytest.raises(UnsafeArchiveError, match=r"chain\.\w+: member.*(symbolic link|outside)"):
        extract(archive, root, {folder: "images/train2014/"}, progress=False)
    assert [p for p in tmp_path.rglob("x.txt")] == []  # nothing written anywhere
    assert list(root.iterdir()) == []


def reed_like_archive(classes: int = 40, files: int = 12) -> bytes:
    """A stand-in of Reed et al.'s cvpr2016_cub.tar.gz: text_c10/<class>/<image>.txt, ten lines each."""
    rng = np.random.default_rng(0)
    words = np.array(
        ["a", "bird", "with", "red", "wings", "and", "short", "beak", "small", "crown", "long", "tail", "belly", "white", "grey"]
    )
    return tar_bytes(
        {
            f"cvpr2016_cub/text_c10/{c:03d}.Class/{c:03d}_{i}.txt": "\n".join(
                " ".join(rng.choice(words, 12)) for _ in range(10)
            ).encode()
            for c in range(classes)
            for i in range(files)
        }
    )


@pytest.mark.parametrize("where", [0.3, 0.5, 0.7])
def test_a_damaged_tar_gz_is_refused_whole(tmp_path, where):
    """One flipped byte: tarfile may read a damaged header as the end, or extract every file with one
    of them wrong; the gzip trailer's CRC, or the data after the false end, gives it away."""
    good = reed_like_archive()
    damaged = bytearray(good)
    damaged[int(where * len(good))] ^= 0x55
    archive = tmp_path / "cvpr2016_cub.tar.gz"
    archive.write_bytes(bytes(damaged))
    with pytest.raises(DamagedArchiveError, match=r"cvpr2016_cub.tar.gz: .*the archive is refused whole"):
        extract(archive, tmp_path / "root", {"cvpr2016_cub/text_c10/": "text_c10/"}, progress=False)
    assert list((tmp_path / "root").iterdir()) == []
    with pytest.raises(DamagedArchiveError):
        check_integrity(archive)
    archive.write_bytes(good)
    check_integrity(archive)
    extract(archive, tmp_path / "root", {"cvpr2016_cub/text_c10/": "text_c10/"}, progress=False)
    assert len(list((tmp_path / "root" / "text_c10").rglob("*.txt"))) == 40 * 12


def test_a_damaged_header_in_a_plain_tar_is_not_taken_for_its_end(tmp_path):
    """No compression, so no CRC: tarfile stops at the damaged header as at an end; the data after it
    is not padding."""
    members = {f"top/{i:03d}.txt": f"caption {i}\n".encode() * 20 for i in range(30)}
    content = bytearray(tar_bytes(members, compression=""))
    header = content.index(b"top/015.txt")  # a header starts with the member's name
    content[header + 148 : header + 156] = b"9999999\0"  # a checksum that cannot be right
    archive = tmp_path / "plain.tar"
    archive.write_bytes(bytes(content))
    with pytest.raises(DamagedArchiveError, match=r"plain.tar: file: data after what reads as its end .* a damaged header"):
        extract(archive, tmp_path / "root", {"top/": "images/"}, progress=False)
    assert list((tmp_path / "root").iterdir()) == []
    with pytest.raises(DamagedArchiveError, match="a damaged header"):
        check_integrity(archive)


def test_a_damaged_zip_member_is_refused_even_when_not_extracted(tmp_path):
    members = {"annotations/captions_train2014.json": b"{}", "annotations/person_keypoints_train2014.json": os.urandom(5000)}
    content = bytearray(zip_bytes(members))
    start = content.index(b"person_keypoints") + len("annotations/person_keypoints_train2014.json")
    content[start + 2500] ^= 0xFF  # inside the member that is not extracted
    archive = tmp_path / "annotations.zip"
    archive.write_bytes(bytes(content))
    with pytest.raises(DamagedArchiveError, match=r"member 'annotations/person_keypoints_train2014.json': damaged"):
        extract(archive, tmp_path / "root", {"annotations/captions_train2014.json": "annotations/c.json"}, progress=False)
    assert list((tmp_path / "root").iterdir()) == []


def test_a_short_archive_stops_its_own_extraction_naming_the_missing_files(tmp_path):
    """Checked against the dataset's own index before anything moves: CUB's images.txt (inside the
    images archive; beside the captions one), COCO's captions file of the image source."""
    root = tmp_path / "cub"
    listed = {1: "001.A/a_1.jpg", 2: "001.A/a_2.jpg", 3: "002.B/b_1.jpg"}
    index = "".join(f"{i} {path}\n" for i, path in listed.items()).encode()
    images = {"CUB_200_2011/images.txt": index, **{f"CUB_200_2011/images/{p}": b"jpeg" for p in list(listed.values())[:2]}}
    archive = tmp_path / "CUB_200_2011.tgz"
    archive.write_bytes(tar_bytes(images))
    members = {"CUB_200_2011/images/": "images/", "CUB_200_2011/images.txt": "images.txt"}
    with pytest.raises(
        IncompleteArchiveError, match=r"CUB_200_2011.tgz: contents: 1 of the 3 files .* e.g. images/002.B/b_1.jpg"
    ):
        extract(archive, root, members, progress=False, check=extraction_check("cub.images", root))
    assert not root.exists() or list(root.iterdir()) == []
    images["CUB_200_2011/images/002.B/b_1.jpg"] = b"jpeg"
    archive.write_bytes(tar_bytes(images))
    extract(archive, root, members, progress=False, check=extraction_check("cub.images", root))

    captions = tmp_path / "cvpr2016_cub.tar.gz"
    captions.write_bytes(
        tar_bytes({"cvpr2016_cub/text_c10/001.A/a_1.txt": b"a bird", "cvpr2016_cub/text_c10/001.A/a_2.txt": b"a bird"})
    )
    with pytest.raises(IncompleteArchiveError, match=r"cvpr2016_cub.tar.gz: contents: 1 of the 3 .* text_c10/002.B/b_1.txt"):
        extract(
            captions, root, {"cvpr2016_cub/text_c10/": "text_c10/"}, progress=False, check=extraction_check("cub.captions", root)
        )
    assert not (root / "text_c10").exists()

    coco = tmp_path / "coco"
    (coco / "annotations").mkdir(parents=True)
    listing = {"images": [{"id": 1, "file_name": "x_1.jpg"}, {"id": 2, "file_name": "x_2.jpg"}], "annotations": []}
    (coco / "annotations" / "captions_train2014.json").write_text(json.dumps(listing))
    zipped = tmp_path / "train2014.zip"
    zipped.write_bytes(zip_bytes({"train2014/": None, "train2014/x_1.jpg": b"jpeg"}))
    with pytest.raises(IncompleteArchiveError, match=r"train2014.zip: contents: 1 of the 2 .* images/train2014/x_2.jpg"):
        extract(zipped, coco, {"train2014/": "images/train2014/"}, progress=False, check=extraction_check("coco.train2014", coco))
    assert not (coco / "images").exists()


def test_fetch_leaves_the_first_digest_to_the_caller_when_asked(server, tmp_path):
    url = server.add("/file.bin", CONTENT)
    quick(Source(url), tmp_path / "file.bin", record=False)
    assert not (tmp_path / "file.bin.sha256").exists()


def test_a_truncated_archive_is_a_data_error(tmp_path):
    archive = tmp_path / "cut.tgz"
    archive.write_bytes(tar_bytes({f"top/{i}.bin": os.urandom(4000) for i in range(5)})[:6000])
    with pytest.raises(DataError, match=r"cut.tgz: file: cannot be read to the end as a tar archive"):
        extract(archive, tmp_path / "root", {"top/": "images/"}, progress=False)
    assert list((tmp_path / "root").iterdir()) == []


# --- the real data's stand-ins --------------------------------------------------------------------


def test_imagenet_weight_files_are_torchvisions():
    torchvision = pytest.importorskip("torchvision")
    for encoder, file in IMAGENET_WEIGHTS.items():
        url = torchvision.models.get_model_weights(encoder).IMAGENET1K_V1.url
        assert url.rsplit("/", 1)[1] == file


def test_default_sources_pin_every_file_of_the_issue():
    import yaml

    from tests.conftest import REPO

    sources = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["sources"]
    assert source(sources, "coco.train2014") == Source("http://images.cocodataset.org/zips/train2014.zip", 13510573713,
                                                       "0da8c0bd3d6becc4dcb32757491aca88")  # fmt: skip
    assert source(sources, "cub.images").size == 1150585339
    assert source(sources, "cub.seen_test_images").md5 == "bf9e2982cb96bdaa95e5f2e31821b461"
    assert source(sources, "glove").size == 2176768927 and not source(sources, "glove").has_checksum
    for name, dataset in REAL_DATASETS.items():
        for key in [*dataset.files, *dataset.archives]:
            assert source(sources, f"{name}.{key}").url, key


def download_everything(real, data_root: Path, torch_home: Path) -> None:
    """What the download and extraction rules do, through the same functions."""
    for name, dataset in REAL_DATASETS.items():
        root = data_root / name
        for item in dataset_items(name, root, data_root):
            if item.archive is None:
                quick(source(real.sources, item.key), item.path)
        for key, archive in dataset.archives.items():
            path = quick(source(real.sources, f"{name}.{key}"), data_root / DOWNLOADS / archive.file)
            extract(path, root, archive.members, progress=False)
    quick(source(real.sources, "glove"), data_root / "glove" / "glove.840B.300d.zip")
    for encoder, file in IMAGENET_WEIGHTS.items():
        quick(source(real.sources, f"imagenet.{encoder}"), torch_home / file)


def test_real_layouts_download_and_prepare_through_the_shared_loaders(server, tmp_path):
    real = serve_real_data(server, tmp_path / "served")
    data = tmp_path / "data"
    download_everything(real, data, tmp_path / "torch")
    assert verify_in_place("cub", data / "cub", real.sources)  # PCME's split files, as served
    glove = data / "glove" / "glove.840B.300d.zip"

    meta = prepare_dataset("coco", data / "coco", tmp_path / "prepared-coco", ["train", "restval"], 1, GLOVE_DIM, glove)
    source_meta = prepare_dataset("coco", real.coco_source, tmp_path / "prepared-source", ["train", "restval"], 1, GLOVE_DIM)
    assert meta["splits"] == source_meta["splits"]
    prepared = PreparedDataset(tmp_path / "prepared-coco")
    vectors = prepared.word_vectors()
    in_glove = [w for w in prepared.vocab.words if w in real.glove_words]
    assert meta["words_from_word_vectors_file"] == len(in_glove) > 0
    for word in in_glove:  # the multi-word line did not overwrite its first word's vector
        np.testing.assert_allclose(vectors[prepared.vocab.index[word]], real.glove_words[word], rtol=1e-6)

    meta = prepare_dataset("cub", data / "cub", tmp_path / "prepared-cub", ["train"], 1, GLOVE_DIM, glove)
    splits = load_cub(data / "cub")
    all_train = load_cub(real.cub_source)["train"]  # the synthetic source holds nothing out
    held_out = {r.split("/", 1)[1] for r in real.held_out}
    assert {Path(f).name for f in splits["train"].images["image_file"]} == {
        Path(f).name for f in all_train.images["image_file"]
    } - held_out
    assert meta["splits"]["train"]["images"] == len(all_train.images) - len(real.held_out)
    assert meta["splits"]["test"] == {"images": len(splits["test"].images), "captions": 10 * len(splits["test"].images)}
    assert not (data / "cub" / "README").exists() and not (data / "cub" / "attributes.txt").exists()
    # only text_c10/ came from Reed et al.'s archive: its split files (another split) are not used
    assert (data / "cub" / "trainvalclasses.txt").read_bytes() == (real.cub_source / "trainvalclasses.txt").read_bytes()
    assert json.loads((tmp_path / "prepared-cub" / "meta.json").read_text())["word_vectors_file"] == str(glove)


def test_a_split_file_of_another_split_is_named_at_prepare(server, tmp_path):
    real = serve_real_data(server, tmp_path / "served")
    root = tmp_path / "cub"
    for key in REAL_DATASETS["cub"].files:
        quick(source(real.sources, f"cub.{key}"), root / REAL_DATASETS["cub"].files[key])
    reed = root / "trainvalclasses.txt"
    reed.write_text(reed.read_text()[::-1])
    with pytest.raises(ChecksumError, match=r"trainvalclasses.txt: sources.cub.trainvalclasses: MD5 is \w+, expected"):
        verify_in_place("cub", root, real.sources)


def test_what_cannot_be_obtained_is_listed(tmp_path):
    import copy

    import yaml

    from tests.conftest import REPO

    sources = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["sources"]
    data = tmp_path / "data"
    items = dataset_items("cub", data / "cub", data)
    downloadable = {item.archive or item.path for item in items}
    assert unobtainable(items, sources, downloadable) == []
    no_address = copy.deepcopy(sources)
    no_address["cub"]["captions"]["url"] = None
    assert [item.path for item in unobtainable(items, no_address, downloadable)] == [data / "cub" / "text_c10"]
    (data / DOWNLOADS).mkdir(parents=True)
    (data / DOWNLOADS / "cvpr2016_cub.tar.gz").touch()  # an archive in place is extracted: obtainable
    assert unobtainable(items, no_address, downloadable) == []
    offline = copy.deepcopy(sources) | {"download": False}
    (data / "cub" / "seen_test_images.txt").parent.mkdir(parents=True)
    (data / "cub" / "seen_test_images.txt").touch()
    missing = {item.path.name for item in unobtainable(items, offline, downloadable)}
    assert missing == {"trainvalclasses.txt", "testclasses.txt", "images", "images.txt", "classes.txt", "image_class_labels.txt"}
