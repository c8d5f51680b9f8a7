"""The full model: shared encoders plus one method's heads and loss, and its builder."""

from __future__ import annotations

import torch
from torch import nn

from models.encoders import TextEncoder, build_image_encoder
from models.pcme import PCME
from models.pvse import PVSE
from models.vse import VSE

METHODS = {"vse0": VSE, "vsepp": VSE, "pvse-k1": PVSE, "pvse-k2": PVSE, "pcme": PCME}


class CrossModalModel(nn.Module):
    """Image encoder + text encoder + a method (its heads and loss)."""

    def __init__(self, image_encoder: nn.Module, text_encoder: TextEncoder, method: nn.Module):
        super().__init__()
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.method = method

    def encode_images(self, images: torch.Tensor) -> dict:
        return self.method.embed_images(*self.image_encoder(images))

    def encode_captions(self, tokens: torch.Tensor, lengths: torch.Tensor) -> dict:
        return self.method.embed_captions(*self.text_encoder(tokens, lengths))

    def forward(self, images, tokens, lengths, image_ids):
        """The method's loss on a batch of pairs; pairs with the same image id match each other.

        Encoders may run under autocast (bf16 on CUDA); the loss always runs in fp32,
        where PCME's distances and log-sigmoids stay accurate.
        """
        match = image_ids[:, None] == image_ids[None, :]
        encoded_images = self.encode_images(images)
        encoded_captions = self.encode_captions(tokens, lengths)
        with torch.autocast(images.device.type, enabled=False):
            return self.method.loss(_to_float(encoded_images), _to_float(encoded_captions), match)

    def set_epoch(self, epoch: int) -> None:
        """Tell the method which (0-based) epoch runs, for methods with a warm-up."""
        if hasattr(self.method, "set_epoch"):
            self.method.set_epoch(epoch)

    def set_backbone_trainable(self, trainable: bool) -> None:
        """Freeze or release the image backbone (the paper's first, frozen phase)."""
        for parameter in self.image_encoder.parameters():
            parameter.requires_grad_(trainable)


def _to_float(encoded: dict) -> dict:
    return {k: v.float() for k, v in encoded.items()}


def per_dataset(value, dataset: str, dataset_format: str):
    """A setting's value for ``dataset``: a plain value, or a mapping keyed by dataset name or format."""
    if not isinstance(value, dict):
        return value
    if dataset in value:
        return value[dataset]
    if dataset_format in value:
        return value[dataset_format]
    raise KeyError(f"setting {value} has no value for {dataset!r} or its format {dataset_format!r}")


def method_arguments(method: str, settings: dict, dataset: str, dataset_format: str) -> dict:
    """Keyword arguments of the method's class, per-dataset values resolved."""
    args = {k: per_dataset(v, dataset, dataset_format) for k, v in settings.items()}
    if METHODS[method] is not PVSE:
        args.pop("embeddings")  # one embedding per item by definition
    return args


def build_model(
    method: str,
    method_settings: dict,
    dataset: str,
    dataset_format: str,
    embed_dim: int,
    image_encoder: str,
    word_vectors: torch.Tensor,
    freeze_words: bool,
    pretrained: bool = True,
) -> CrossModalModel:
    """A model for ``method`` (vse0, vsepp, pvse-k1, pvse-k2, pcme) on one shared encoder stack."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; allowed: {sorted(METHODS)}")
    images = build_image_encoder(image_encoder, pretrained)
    text = TextEncoder(word_vectors, embed_dim, freeze_words)
    head = METHODS[method](
        (images.global_dim, images.local_dim),
        (text.global_dim, text.local_dim),
        embed_dim,
        **method_arguments(method, method_settings, dataset, dataset_format),
    )
    return CrossModalModel(images, text, head)
