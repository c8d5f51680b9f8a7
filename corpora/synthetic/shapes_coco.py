"""``synthetic-coco``: scenes of shapes written in the on-disk format of COCO 2014.

See ``corpora.coco`` for the layout and ``corpora.synthetic.scenes`` for what
the images and captions mean. Categories are colour x shape (40), playing the
role of COCO's 80 instance categories, so PMRP's plausible matches exist here
exactly as on COCO. The test split also gets its complete ground truth:
``annotations/full_caption_to_image.json`` and ``full_image_to_caption.json``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from corpora.coco import COCO_SPLITS, SPLIT_SOURCE, CocoLayout
from corpora.synthetic.drawing import (
    PALETTE,
    draw_polygon,
    jitter,
    jpeg_bytes,
    shape_outline,
    texture,
)
from corpora.synthetic.output import dataset_folder, ground_truth_json, write_json
from corpora.synthetic.scenes import (
    COLOURS,
    GRID,
    SHAPES,
    Scene,
    sample_captions,
    sample_scene,
    truth_matrix,
)

# Stamped into GENERATOR.json; raised whenever the same arguments come to give other files.
GENERATOR_VERSION = 2
CATEGORIES = [
    {"id": 1 + i * len(SHAPES) + j, "name": f"{colour} {shape}", "supercategory": shape}
    for i, colour in enumerate(COLOURS)
    for j, shape in enumerate(SHAPES)
]
CATEGORY_ID = {c["name"]: c["id"] for c in CATEGORIES}
RADIUS = {"small": 0.2, "large": 0.38}  # of a grid cell; the largest outline spans 1.2 radii


def draw_scene(scene: Scene, rng: np.random.Generator, size: int) -> tuple[Image.Image, list[list[tuple[float, float]]]]:
    """The scene's pixels and each object's outline polygon (its COCO segmentation)."""
    image = Image.fromarray(texture(rng, size))
    draw = ImageDraw.Draw(image)
    cell = size / GRID
    outlines = []
    for obj in scene:
        radius = cell * RADIUS[obj.size] * rng.uniform(0.9, 1.1)
        slack = max(cell / 2 - 1.2 * radius, 0.0)
        cx = (obj.col + 0.5) * cell + rng.uniform(-slack, slack)
        cy = (obj.row + 0.5) * cell + rng.uniform(-slack, slack)
        outline = shape_outline(obj.shape, cx, cy, radius, rng.uniform(-0.3, 0.3))
        draw_polygon(draw, outline, jitter(PALETTE[obj.colour], rng))
        outlines.append(outline)
    return image, outlines


def _instance(annotation_id: int, image_id: int, obj, outline) -> dict:
    xs, ys = [p[0] for p in outline], [p[1] for p in outline]
    area = 0.5 * abs(sum(xs[k] * ys[k - 1] - xs[k - 1] * ys[k] for k in range(len(xs))))
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": CATEGORY_ID[obj.category],
        "segmentation": [[round(v, 2) for p in outline for v in p]],
        "area": round(area, 2),
        "bbox": [round(min(xs), 2), round(min(ys), 2), round(max(xs) - min(xs), 2), round(max(ys) - min(ys), 2)],
        "iscrowd": 0,
        # Not in COCO's schema; COCO readers ignore it. Makes each scene fully recoverable.
        "attributes": {"shape": obj.shape, "colour": obj.colour, "size": obj.size, "cell": [obj.col, obj.row]},
    }


def write_synthetic_coco(
    out_dir,
    seed: int = 0,
    image_size: int = 96,
    images: dict[str, int] | None = None,
    captions_per_image: int = 5,
    jpeg_quality: int = 90,
) -> None:
    """Generate the dataset into ``out_dir``; the same arguments give the same bytes."""
    images = dict(images or {"train": 2000, "restval": 500, "dev": 250, "test": 1000})
    if set(images) != set(COCO_SPLITS) or min(images.values()) < 1:
        raise ValueError(f"images needs a positive count for each of {list(COCO_SPLITS)}, got {images}")
    rng = np.random.default_rng(seed)
    total = sum(images.values())
    image_ids = rng.choice(np.arange(1, 50 * total + 1), size=total, replace=False).tolist()
    caption_ids = rng.choice(
        np.arange(1, 50 * total * captions_per_image + 1), size=total * captions_per_image, replace=False
    ).tolist()
    stamp = {
        "dataset": "synthetic-coco",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "image_size": image_size,
        "images": images,
        "captions_per_image": captions_per_image,
        "jpeg_quality": jpeg_quality,
    }
    with dataset_folder(out_dir, stamp) as root:
        layout = CocoLayout(root)
        layout.split_ids("train").parent.mkdir(parents=True)
        annotations = _Annotations(layout, rng, image_size, jpeg_quality)
        next_image = 0
        for split in COCO_SPLITS:
            split_caption_ids = []
            for _ in range(images[split]):
                ids = caption_ids[next_image * captions_per_image : (next_image + 1) * captions_per_image]
                annotations.add_image(split, image_ids[next_image], ids)
                next_image += 1
                split_caption_ids.extend(ids)
            np.save(layout.split_ids(split), np.asarray(split_caption_ids, dtype=np.int64))
        annotations.write()


class _Annotations:
    """A synthetic COCO dataset's images, written as they are drawn, and its annotation files: each
    source folder's images, captions and instances, and the test split's complete ground truth."""

    def __init__(self, layout: CocoLayout, rng: np.random.Generator, image_size: int, jpeg_quality: int):
        self.layout, self.rng, self.image_size, self.jpeg_quality = layout, rng, image_size, jpeg_quality
        self.files = {source: {"images": [], "captions": [], "instances": []} for source in ("train2014", "val2014")}
        self.next_instance = 1
        self.test_scenes, self.test_specs, self.test_image_ids, self.test_caption_ids = [], [], [], []

    def add_image(self, split: str, image_id: int, caption_ids: list[int]) -> None:
        """Draw a scene, its image and one caption per id of ``caption_ids`` (in that order, from the
        generator); write the image and note its annotations."""
        source, rng = SPLIT_SOURCE[split], self.rng
        files = self.files[source]
        scene = sample_scene(rng)
        image, outlines = draw_scene(scene, rng, self.image_size)
        file_name = f"COCO_{source}_{image_id:012d}.jpg"
        (self.layout.images_dir(source) / file_name).parent.mkdir(parents=True, exist_ok=True)
        (self.layout.images_dir(source) / file_name).write_bytes(jpeg_bytes(image, self.jpeg_quality))
        files["images"].append(
            {"id": image_id, "file_name": file_name, "width": self.image_size, "height": self.image_size, "license": 0}
        )
        for obj, outline in zip(scene, outlines):
            files["instances"].append(_instance(self.next_instance, image_id, obj, outline))
            self.next_instance += 1
        specs = sample_captions(scene, len(caption_ids), rng)
        for caption_id, spec in zip(caption_ids, specs):
            files["captions"].append({"id": caption_id, "image_id": image_id, "caption": spec.render(rng)})
        if split == "test":
            self.test_scenes.append(scene)
            self.test_specs.extend(specs)
            self.test_image_ids.append(image_id)
            self.test_caption_ids.extend(caption_ids)

    def write(self) -> None:
        """Each source folder's captions and instances files, and the test split's ground truth."""
        info = {"description": "pcme-bench synthetic-coco", "version": str(GENERATOR_VERSION), "year": 2026}
        licenses = [{"id": 0, "name": "CC0-1.0", "url": ""}]
        for source, content in self.files.items():
            write_json(
                self.layout.captions_json(source),
                {"info": info, "licenses": licenses, "images": content["images"], "annotations": content["captions"]},
            )
            write_json(
                self.layout.instances_json(source),
                {
                    "info": info,
                    "licenses": licenses,
                    "images": content["images"],
                    "annotations": content["instances"],
                    "categories": CATEGORIES,
                },
            )
        truth = truth_matrix(self.test_specs, self.test_scenes)
        test_images, test_captions = self.test_image_ids, self.test_caption_ids
        write_json(self.layout.ground_truth("caption_to_image"), ground_truth_json(truth, test_captions, test_images))
        write_json(self.layout.ground_truth("image_to_caption"), ground_truth_json(truth.T, test_images, test_captions))
