"""Pretrain the small CNN of a synthetic dataset: its stand-in for ImageNet weights.

The paper's image encoders start from ImageNet-pretrained ResNets and are first
trained with the backbone frozen. The synthetic datasets have no such weights, and
a backbone trained from random weights by the retrieval loss alone barely moves in
the few epochs a CPU affords. So this stage gives each synthetic dataset what
ImageNet gives the real ones: a backbone that already recognises the world's
visual vocabulary, learned from labelled images that are not the dataset's own.

It draws a fresh sample of the dataset's world in memory, from its own seed (not
the dataset's: no training or test image is reused), with the dataset's drawing
code, image size and JPEG round trip, and trains ``SmallCNN`` plus a linear
classifier with a binary cross-entropy per label:

- ``synthetic-coco``: which object categories the scene holds (colour x shape, as
  COCO's instance labels), which shapes appear large and small, and which of the
  nine grid cells are occupied (as a detection-pretrained backbone knows where
  objects are);
- ``synthetic-cub``: the bird's part attributes (crown, wing and belly colour;
  bill and tail length), as CUB-200-2011 annotates its images with 312 binary
  part attributes (``attributes/image_attribute_labels.txt``).

The classifier is dropped; the backbone's weights go to a safetensors file that
``pcmebench.train`` loads when a synthetic dataset's ``training.pretrained`` is on.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.transforms import v2 as T

from corpora.batches import IMAGENET_MEAN, IMAGENET_STD
from corpora.synthetic.birds import PARTS, draw_bird, sample_classes
from corpora.synthetic.drawing import jpeg_bytes
from corpora.synthetic.scenes import COLOURS, GRID, SHAPES, SIZES, sample_scene
from corpora.synthetic.shapes_coco import draw_scene
from models.encoders import SmallCNN
from pcmebench.files import atomic_write, code_version
from pcmebench.runs import add_stage_arguments, parse_stage_arguments, use_threads
from pcmebench.tensorfiles import write_safetensors

log = logging.getLogger("pcmebench.pretrain")
JPEG_QUALITY = 90  # as the generators write their images


def scene_labels() -> list[str]:
    categories = [f"{colour} {shape}" for colour in COLOURS for shape in SHAPES]
    sized = [f"{size} {shape}" for size in SIZES for shape in SHAPES]
    cells = [f"object in cell {row},{col}" for row in range(GRID) for col in range(GRID)]
    return categories + sized + cells


def bird_labels() -> list[str]:
    return [f"{part}: {value}" for part, values in PARTS.items() for value in values]


def draw_labelled(dataset: str, count: int, image_size: int, seed: int) -> tuple[list[Image.Image], np.ndarray, list[str]]:
    """``count`` images of ``dataset``'s world drawn from ``seed``, their multi-hot labels and the label names."""
    rng = np.random.default_rng(seed)
    if dataset == "synthetic-coco":
        names = scene_labels()
        column = {name: i for i, name in enumerate(names)}
        images, labels = [], np.zeros((count, len(names)), dtype=np.float32)
        for n in range(count):
            scene = sample_scene(rng)
            images.append(draw_scene(scene, rng, image_size)[0])
            for obj in scene:
                for name in (obj.category, f"{obj.size} {obj.shape}", f"object in cell {obj.row},{obj.col}"):
                    labels[n, column[name]] = 1.0
    elif dataset == "synthetic-cub":
        names = bird_labels()
        column = {name: i for i, name in enumerate(names)}
        # every class of the world, not only the dataset's: attributes, not species, are the labels
        birds = sample_classes(math.prod(len(v) for v in PARTS.values()), rng)
        images, labels = [], np.zeros((count, len(names)), dtype=np.float32)
        for n in range(count):
            bird = birds[n % len(birds)]
            images.append(draw_bird(bird, rng, image_size))
            for part, value in zip(PARTS, bird, strict=True):
                labels[n, column[f"{part}: {value}"]] = 1.0
    else:
        raise ValueError(f"pretraining is defined for synthetic-coco and synthetic-cub, not {dataset!r}")
    images = [Image.open(io.BytesIO(jpeg_bytes(image, JPEG_QUALITY))).convert("RGB") for image in images]
    return images, labels, names


def pretrain(dataset: str, settings: dict, output, threads: int | None = None) -> dict:
    """Pretrain the backbone of ``dataset``; write it to ``output`` (safetensors) and a record beside it.

    ``settings``: ``pretraining`` (seed, images, epochs, lr, batch_size), ``image_size`` (the
    generator's), ``input_size`` (the trainer's) and ``flip`` (mirror half the images, where the
    dataset's augmentation does).
    """
    use_threads(threads)
    recipe, input_size, flip = settings["pretraining"], settings["input_size"], settings["flip"]
    if recipe["images"] < recipe["batch_size"]:
        raise ValueError(
            f"pretraining of {dataset}: images ({recipe['images']}) must be at least batch_size ({recipe['batch_size']})"
        )
    began = time.perf_counter()
    images, labels, names = draw_labelled(dataset, recipe["images"], settings["image_size"], recipe["seed"])
    resize = T.Resize((input_size, input_size), antialias=True)
    pixels = torch.stack([resize(T.functional.pil_to_tensor(image)) for image in images])  # uint8: 4x less memory
    targets = torch.from_numpy(labels)
    drawing_seconds = time.perf_counter() - began

    torch.manual_seed(recipe["seed"])
    backbone = SmallCNN()
    classifier = nn.Linear(backbone.feature_dims.global_dim, len(names))
    history = fit(dataset, backbone, classifier, pixels, targets, recipe, flip)

    weights = {k: v.detach().contiguous() for k, v in backbone.state_dict().items()}
    record = {
        "dataset": dataset,
        "labels": names,
        "settings": settings,
        "drawing_seconds": drawing_seconds,
        "wall_seconds": time.perf_counter() - began,
        "history": history,
        "code_version": code_version(),
    }
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"dataset": dataset, "settings": json.dumps(settings, sort_keys=True)}
    write_safetensors(output, weights, metadata)
    atomic_write(output.with_suffix(".json"), lambda path: path.write_text(json.dumps(record, indent=2) + "\n"))
    return record


def fit(
    dataset: str,
    backbone: nn.Module,
    classifier: nn.Linear,
    pixels: torch.Tensor,
    targets: torch.Tensor,
    recipe: dict,
    flip: bool,
) -> list[dict]:
    """Train ``backbone`` and ``classifier`` on the uint8 ``pixels`` and multi-hot ``targets`` (AdamW,
    one-cycle rate, binary cross-entropy per label; ``flip`` mirrors half of each batch); each epoch's
    mean loss and percentage of images with every label right."""
    normalise = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    parameters = list(backbone.parameters()) + list(classifier.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=recipe["lr"], weight_decay=1e-4)
    batch = recipe["batch_size"]
    steps_per_epoch = len(pixels) // batch
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, recipe["lr"], total_steps=recipe["epochs"] * steps_per_epoch)
    history = []
    for epoch in range(recipe["epochs"]):
        order = torch.randperm(len(pixels))
        total, correct = 0.0, 0.0
        for step in range(steps_per_epoch):
            rows = order[step * batch : (step + 1) * batch]
            x = normalise(pixels[rows].float().div_(255))
            if flip:
                mirrored = torch.rand(len(rows)) < 0.5
                x[mirrored] = x[mirrored].flip(-1)
            logits = classifier(backbone(x)[0])
            loss = nn.functional.binary_cross_entropy_with_logits(logits, targets[rows])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite pretraining loss at epoch {epoch + 1}, step {step + 1} of {dataset}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
            correct += ((logits.detach() > 0) == (targets[rows] > 0)).all(dim=1).float().sum().item()
        row = {"epoch": epoch + 1, "loss": total / steps_per_epoch, "exact_match": 100 * correct / (steps_per_epoch * batch)}
        history.append(row)
        log.info("epoch %d: loss %.4f, images with every label right %.1f%%", epoch + 1, row["loss"], row["exact_match"])
    return history


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="synthetic-coco or synthetic-cub")
    parser.add_argument("--output", required=True, help="the backbone's safetensors file; a .json record goes beside it")
    add_stage_arguments(parser, "the settings pretrain() takes, as JSON (the workflow writes them)")
    args, settings = parse_stage_arguments(parser, argv)
    pretrain(args.dataset, settings, args.output, args.threads)


if __name__ == "__main__":
    main()
