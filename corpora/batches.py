"""PyTorch datasets, transforms and batching over prepared splits."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler
from torchvision.transforms import v2 as T
from torchvision.transforms.functional import pil_to_tensor

from corpora.prepared import PreparedSplit
from corpora.text import SPECIAL_TOKENS, UNK

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
AUGMENTATIONS = ("none", "flip", "coco", "cub")


def image_transform(augment: str, input_size: int, train: bool, random_erasing: float = 0.0):
    """uint8 (3, H, W) image tensor -> normalised float tensor.

    ``coco``: RandomResizedCrop + horizontal flip in training, resize + centre crop
    otherwise (as PCME on COCO); ``cub``: resize + centre crop (PCME on CUB);
    ``flip``: resize + horizontal flip in training; ``none``: resize only, for
    synthetic scenes whose captions say "left", "right", "top". In training,
    ``random_erasing`` is the probability of zeroing one rectangle (2% to 1/3 of the
    image, aspect 0.3 to 3.3) after normalisation, as PCME's ``random_erasing_prob``
    (naver-ai/pcme datasets/_transforms.py, mode 'const').

    torchvision's transforms v2: crops and resizes stay uint8 until normalisation, faster per CPU
    core than v1's float path with the same crops (benchmarks/RESULTS.md).
    """
    if augment not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {augment!r}; allowed: {list(AUGMENTATIONS)}")
    normalise = [T.ToDtype(torch.float32, scale=True), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if train and random_erasing > 0:
        normalise.append(T.RandomErasing(random_erasing, scale=(0.02, 1 / 3), ratio=(0.3, 1 / 0.3), value=0))
    if augment == "coco" and train:
        return T.Compose([T.RandomResizedCrop(input_size, antialias=True), T.RandomHorizontalFlip(), *normalise])
    if augment in ("coco", "cub"):
        return T.Compose([T.Resize(round(input_size * 256 / 224), antialias=True), T.CenterCrop(input_size), *normalise])
    steps = [T.Resize((input_size, input_size), antialias=True)]
    if augment == "flip" and train:
        steps.append(T.RandomHorizontalFlip())
    return T.Compose(steps + normalise)


def drop_words(tokens: list[int], probability: float) -> list[int]:
    """Remove each word (not <start>/<end>) with ``probability``, keeping at least one (torch RNG)."""
    words = tokens[1:-1]
    if probability <= 0 or len(words) < 2:
        return tokens
    keep = torch.rand(len(words)) >= probability
    if not keep.any():
        keep[torch.randint(len(words), ())] = True
    return [tokens[0], *(w for w, k in zip(words, keep.tolist()) if k), tokens[-1]]


def unk_then_delete(tokens: list[int], probability: float) -> list[int]:
    """PCME's caption noise (naver-ai/pcme datasets/_transforms.py ``tokenize``), torch RNG:
    each word (not <start>/<end>) becomes ``<unk>`` with ``probability``, then
    floor(``probability`` x words) words, chosen one at a time, are deleted."""
    words = tokens[1:-1]
    if probability <= 0 or not words:
        return tokens
    unk = SPECIAL_TOKENS.index(UNK)
    words = [unk if r < probability else w for w, r in zip(words, torch.rand(len(words)).tolist())]
    for _ in range(int(len(words) * probability)):
        words.pop(int(torch.randint(len(words), ())))
    return [tokens[0], *words, tokens[-1]]


CAPTION_NOISE = {"unk-then-delete": unk_then_delete, "delete": drop_words}


class CaptionNoise:
    """Training-time caption noise: ``unk-then-delete`` (PCME's) or ``delete`` (each word with ``probability``)."""

    def __init__(self, probability: float, mode: str):
        if mode not in CAPTION_NOISE:
            raise ValueError(f"unknown caption noise {mode!r}; allowed: {list(CAPTION_NOISE)}")
        self.probability = probability
        self.apply = CAPTION_NOISE[mode]

    def __call__(self, tokens: list[int]) -> list[int]:
        return self.apply(tokens, self.probability)


class ImageSource:
    """Decoded images of prepared splits as uint8 (3, H, W) tensors, kept in memory when ``cache``.

    Caching suits small datasets (the synthetic ones: a few tens of MB); on COCO
    every read decodes the file again.
    """

    def __init__(self, splits: list[PreparedSplit], cache: bool):
        self.splits = splits
        self.cache: dict[tuple[int, int], torch.Tensor] | None = {} if cache else None

    def __call__(self, split: int, row: int) -> torch.Tensor:
        if self.cache is not None and (split, row) in self.cache:
            return self.cache[split, row]
        image = pil_to_tensor(self.splits[split].image(row))
        if self.cache is not None:
            self.cache[split, row] = image
        return image


class CaptionPairs(Dataset):
    """One item per caption of ``splits``: (image, tokens, image id), the image decoded on access."""

    def __init__(self, splits: list[PreparedSplit], transform, caption_noise=None, cache_images: bool = False):
        self.images = ImageSource(splits, cache_images)
        self.transform = transform
        self.caption_noise = caption_noise
        self.index = []  # (split number, image row, tokens, image id, class id or -1)
        for number, split in enumerate(splits):
            classes = split.images["class_id"] if "class_id" in split.images.column_names else None
            image_ids = split.images["image_id"]
            for row, tokens in zip(split.captions["image_index"], split.captions["tokens"]):
                self.index.append((number, row, tokens, image_ids[row], classes[row] if classes else -1))

    def __len__(self) -> int:
        return len(self.index)

    def class_ids(self) -> list[int]:
        return [entry[4] for entry in self.index]

    def __getitem__(self, i):
        number, row, tokens, image_id, _ = self.index[i]
        noisy = self.caption_noise(tokens) if self.caption_noise is not None else tokens
        return self.transform(self.images(number, row)), noisy, image_id


class Images(Dataset):
    """Every image of one split, in its order."""

    def __init__(self, split: PreparedSplit, transform):
        self.images = ImageSource([split], cache=False)
        self.length = len(split.images)
        self.transform = transform

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, row):
        return self.transform(self.images(0, row))


class Captions(Dataset):
    """Every caption of one split as token ids, in its order."""

    def __init__(self, split: PreparedSplit):
        self.tokens = split.captions["tokens"]

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i):
        return self.tokens[i]


def pad_tokens(token_lists: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists -> (B, L) padded with 0 (<pad>) and (B,) lengths."""
    lengths = torch.tensor([len(t) for t in token_lists])
    padded = torch.zeros((len(token_lists), int(lengths.max())), dtype=torch.long)
    for row, tokens in enumerate(token_lists):
        padded[row, : len(tokens)] = torch.tensor(tokens)
    return padded, lengths


def collate_pairs(batch):
    images, tokens, image_ids = zip(*batch)
    padded, lengths = pad_tokens(list(tokens))
    return torch.stack(images), padded, lengths, torch.tensor(image_ids)


class OnePerClassBatches(Sampler):
    """Batches of one random pair from each class, as PCME trains on CUB (batch = number of classes).

    An epoch is ``len(pairs) // classes`` batches, about as many pairs as one pass.
    """

    def __init__(self, class_ids: list[int], generator: torch.Generator):
        by_class: dict[int, list[int]] = {}
        for index, class_id in enumerate(class_ids):
            by_class.setdefault(class_id, []).append(index)
        self.members = [torch.tensor(v) for v in by_class.values()]
        self.batches = len(class_ids) // len(self.members)
        self.generator = generator

    def __len__(self) -> int:
        return self.batches

    def __iter__(self):
        for _ in range(self.batches):
            yield [int(m[torch.randint(len(m), (), generator=self.generator)]) for m in self.members]


def mixed_seed(*parts: int) -> int:
    """A 64-bit seed from non-negative integers (a run's seed, an epoch, an item), by numpy's SeedSequence."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0])


class SeededItems(Dataset):
    """A dataset addressed by ``(epoch, index)`` keys whose items draw their randomness (augmentation,
    word drop: torch's and Python's generators) from ``mixed_seed(seed, epoch, index)``.

    An item of an epoch is then the same whichever loader process makes it, however many there
    are, whether they persist across epochs, and after a resumed run's restart. The caller's
    random state is restored after each item, so a single-process loader leaves the training
    loop's random stream (PCME's samples) as it found it.
    """

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        seed = mixed_seed(self.seed, epoch, index)
        generator = torch.random.default_generator  # the CPU's only: CUDA's stream (PCME's samples) is untouched
        torch_state, python_state = generator.get_state(), random.getstate()
        try:
            generator.manual_seed(seed)
            random.seed(seed)
            return self.dataset[index]
        finally:
            generator.set_state(torch_state)
            random.setstate(python_state)


class EpochBatches(Sampler):
    """One epoch's batches of ``(epoch, index)`` keys for ``SeededItems``, from a batch sampler whose
    order comes from ``generator``; ``set_epoch`` reseeds that generator from (seed, epoch), so a
    loader built once (its worker processes kept across epochs) gives every epoch its own order.
    """

    def __init__(self, batches: Sampler, generator: torch.Generator, seed: int):
        self.batches = batches
        self.generator = generator
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.generator.manual_seed(mixed_seed(self.seed, epoch))

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for batch in self.batches:
            yield [(self.epoch, index) for index in batch]
