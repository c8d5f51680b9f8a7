"""The full model: shared encoders plus one method's heads and loss, and its builder."""

from __future__ import annotations

import importlib

import torch
from torch import nn

from models.encoders import TextEncoder, build_image_encoder
from models.registry import STACK_SETTINGS, Method, method_entry

BATCH_POSITIVES = ("pair", "image")


class CrossModalModel(nn.Module):
    """Image encoder + text encoder + a method (its heads and loss).

    ``batch_positives``: which in-batch (image, caption) pairs the loss treats as
    matches. ``pair``: only each pair's own image and caption, as every original
    does (naver-ai/pcme criterions/probemb.py ``full_sampling``; yalesong/pvse
    loss.py and fartashf/vsepp model.py mask the diagonal), so another caption of
    the same image in the batch counts as a negative; ``image``: any two pairs that
    show the same image match.
    """

    def __init__(self, image_encoder: nn.Module, text_encoder: TextEncoder, method: nn.Module, batch_positives: str = "pair"):
        super().__init__()
        if batch_positives not in BATCH_POSITIVES:
            raise ValueError(f"batch_positives must be one of {BATCH_POSITIVES}, got {batch_positives!r}")
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.method = method
        self.batch_positives = batch_positives

    def encode_images(self, images: torch.Tensor) -> dict:
        return self.method.embed_images(*self.image_encoder(images))

    def encode_captions(self, tokens: torch.Tensor, lengths: torch.Tensor) -> dict:
        return self.method.embed_captions(*self.text_encoder(tokens, lengths))

    def forward(self, images, tokens, lengths, image_ids):
        """The method's loss on a batch of pairs (which pairs match: ``batch_positives``).

        In training, a method with a ``training_targets`` hook (models/__init__.py) turns the
        images and the bool match into its own batch: images (perhaps fewer, the last ones
        dropped, and the captions with them) and float targets, which its loss gets instead of
        the match. Encoders may run under autocast (bf16 on CUDA); the loss always runs in fp32,
        where PCME's distances and log-sigmoids stay accurate.
        """
        if self.batch_positives == "image":
            match = image_ids[:, None] == image_ids[None, :]
        else:
            match = torch.eye(len(image_ids), dtype=torch.bool, device=image_ids.device)
        hook = getattr(self.method, "training_targets", None)
        if self.training and hook is not None:
            images, match = hook(images, image_ids, match)
            kept = len(images)
            tokens, lengths, image_ids = tokens[:kept], lengths[:kept], image_ids[:kept]
        encoded_images = self.encode_images(images)
        encoded_captions = self.encode_captions(tokens, lengths)
        with torch.autocast(images.device.type, enabled=False):
            return self.method.loss(_to_float(encoded_images), _to_float(encoded_captions), match)

    def set_epoch(self, epoch: int) -> None:
        """Tell the method which (0-based) epoch runs, for methods with a warm-up."""
        if hasattr(self.method, "set_epoch"):
            self.method.set_epoch(epoch)

    def set_phase(self, frozen: bool) -> None:
        """Enter the frozen-backbone phase (``frozen``) or the fine-tuning one.

        The image backbone learns only when fine-tuning (the papers' first phase keeps
        it frozen); the word vectors follow the method's ``word_vectors_training``.
        """
        for parameter in self.image_encoder.parameters():
            parameter.requires_grad_(not frozen)
        self.text_encoder.set_phase(frozen)

    def parameters_to_clip(self) -> list[nn.Parameter]:
        """Every parameter but the loss's own (PCME's a and b): the originals clip the model's
        gradients, and keep the loss's parameters in a separate criterion module
        (naver-ai/pcme engine/trainer.py clips ``self.model.parameters()``)."""
        own = {id(p) for p in getattr(self.method, "loss_parameters", list)()}
        return [p for p in self.parameters() if id(p) not in own]


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


def method_class(entry: Method) -> type[nn.Module]:
    """The class a registry entry names, from the method's own file."""
    return getattr(importlib.import_module(entry.module), entry.class_name)


def method_arguments(entry: Method, settings: dict, dataset: str, dataset_format: str) -> dict:
    """Keyword arguments of the method's class: its settings with the entry's defaults filled in,
    per-dataset values resolved, the stack's own settings left out."""
    complete = entry.complete(settings)
    return {k: per_dataset(v, dataset, dataset_format) for k, v in complete.items() if k not in STACK_SETTINGS}


def build_model(
    method: str,
    method_settings: dict,
    dataset: str,
    dataset_format: str,
    embed_dim: int,
    image_encoder: str,
    word_vectors: torch.Tensor,
    pretrained: bool = True,
    batch_positives: str = "pair",
) -> CrossModalModel:
    """A model for a registered ``method`` (models/registry.py) on one shared encoder stack.

    The method's ``word_vectors_training`` setting goes to the text encoder, the others to its class.
    """
    entry = method_entry(method)
    missing = [k for k in entry.required if k not in method_settings]
    if missing:
        raise ValueError(f"method {method!r}: settings {missing} have no value and no default in {entry.where}")
    images = build_image_encoder(image_encoder, pretrained)
    training = per_dataset(method_settings["word_vectors_training"], dataset, dataset_format)
    text = TextEncoder(word_vectors, embed_dim, training)
    head = method_class(entry)(
        images.feature_dims, text.feature_dims, embed_dim, **method_arguments(entry, method_settings, dataset, dataset_format)
    )
    return CrossModalModel(images, text, head, batch_positives)
