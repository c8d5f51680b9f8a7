"""Image and text encoders shared by every method.

Each encoder returns a global feature (B, G) and local features (B, N, C) with a
mask (B, N) of the valid positions: image regions of the last feature map, or
word vectors; its ``feature_dims`` (``models.heads.FeatureDims``) gives their widths.
The method heads (``models.heads``) turn both into embeddings.
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from models.heads import FeatureDims

IMAGE_ENCODERS = ("small-cnn", "resnet50", "resnet152")


class SmallCNN(nn.Module):
    """Four stride-2 conv blocks for the synthetic datasets (pretrained by ``pcmebench.pretrain``).

    Two coordinate channels join the RGB input (CoordConv, Liu et al. 2018) so
    features can say where a thing is ("left of", "at the top") and still be
    pooled; the global feature is the max and the mean of the last feature map.
    """

    def __init__(self, width: int = 16):
        super().__init__()
        channels = [5, width, 2 * width, 4 * width, 8 * width]
        blocks = []
        for c_in, c_out in itertools.pairwise(channels):
            blocks += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*blocks)
        self.feature_dims = FeatureDims(global_dim=2 * channels[-1], local_dim=channels[-1])

    def forward(self, images: torch.Tensor):
        b, _, h, w = images.shape
        ys = torch.linspace(-1, 1, h, device=images.device, dtype=images.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
        xs = torch.linspace(-1, 1, w, device=images.device, dtype=images.dtype).view(1, 1, 1, w).expand(b, 1, h, w)
        grid = self.features(torch.cat([images, xs, ys], dim=1))
        local = grid.flatten(2).transpose(1, 2)
        global_feature = torch.cat([grid.amax(dim=(2, 3)), grid.mean(dim=(2, 3))], dim=1)
        return global_feature, local, torch.ones(local.shape[:2], dtype=torch.bool, device=local.device)


def check_weights_in_place(url: str) -> None:
    """The copy of ``url`` in torch.hub's checkpoints folder, if there is one, must have the SHA-256
    whose first digits its file name carries (torch.hub's own test when it downloads)."""
    name = url.rsplit("/", 1)[-1]
    path = Path(torch.hub.get_dir()) / "checkpoints" / name
    match = torch.hub.HASH_REGEX.search(name)
    if not path.is_file() or match is None:
        return
    with path.open("rb") as file:
        digest = hashlib.file_digest(file, "sha256")
    if not digest.hexdigest().startswith(match.group(1)):
        raise ValueError(
            f"{path}: ImageNet weights: SHA-256 {digest.hexdigest()[:16]}... does not start with {match.group(1)}, as "
            f"its name says: not torchvision's file. Delete it; `snakemake download` fetches it from {url}"
        )


class ResNetBackbone(nn.Module):
    """A torchvision ResNet up to its last block: 7x7x2048 local features at 224 px, average-pooled global."""

    def __init__(self, name: str, pretrained: bool):
        super().__init__()
        import torchvision

        builder = getattr(torchvision.models, name)
        resnet = builder(weights=None)
        if pretrained:
            # torchvision's own loading unpickles the file in full (weights_only=False); read it as
            # tensors only. torch.hub checks the hash in its name only when it downloads the file, so
            # a copy found in place (TORCH_HOME: the download stage's, or one placed by hand) is checked here.
            weights = torchvision.models.get_model_weights(builder).IMAGENET1K_V1
            check_weights_in_place(weights.url)
            resnet.load_state_dict(weights.get_state_dict(progress=False, check_hash=True, weights_only=True))
        self.body = nn.Sequential(*list(resnet.children())[:-2])
        self.feature_dims = FeatureDims(global_dim=resnet.fc.in_features, local_dim=resnet.fc.in_features)

    def forward(self, images: torch.Tensor):
        grid = self.body(images)
        local = grid.flatten(2).transpose(1, 2)
        return grid.mean(dim=(2, 3)), local, torch.ones(local.shape[:2], dtype=torch.bool, device=local.device)


def build_image_encoder(name: str, pretrained: bool) -> nn.Module:
    """``small-cnn`` (random weights; the trainer loads the pretrain stage's) or ``resnet50``/``resnet152``
    (ImageNet weights when ``pretrained``)."""
    if name == "small-cnn":
        return SmallCNN()
    if name in ("resnet50", "resnet152"):
        return ResNetBackbone(name, pretrained)
    raise ValueError(f"unknown image encoder {name!r}; allowed: {list(IMAGE_ENCODERS)}")


def last_position(outputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, L, C) per-position outputs -> (B, C) at each sequence's last valid position."""
    index = (lengths.to(outputs.device) - 1).clamp(min=0)
    return outputs[torch.arange(outputs.shape[0], device=outputs.device), index]


def run_gru(gru: nn.GRU, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """A batch-first GRU over padded ``inputs`` (B, L, C) of ``lengths`` -> outputs (B, L, H), zero past each end."""
    packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
    output, _ = gru(packed)
    return pad_packed_sequence(output, batch_first=True, total_length=inputs.shape[1])[0]


WORD_VECTOR_TRAINING = ("never", "finetune", "always")


class TextEncoder(nn.Module):
    """Word vectors -> bidirectional GRU with ``embed_dim / 2`` units per direction.

    As in PVSE with ``--legacy`` (the mode its published numbers use) and PCME's caption
    encoder (yalesong/pvse model.py ``EncoderText``; naver-ai/pcme models/caption_encoder.py):
    the global feature is the GRU output at the last word (the forward state after the
    whole caption joined to the backward state after the last word alone, so the
    backward direction's state-to-state weights never learn), already D-dimensional;
    the local features the heads attend over are the word vectors themselves, not
    the GRU states.

    ``word_vectors_training``: when the word vectors learn; ``never`` (PVSE's README
    command), ``finetune`` (only in the fine-tuning phase: PCME's ``txt_finetune``,
    train_coco.py / train_cub.py) or ``always`` (VSE++, whose word vectors are
    trained from the start; fartashf/vsepp model.py). See ``set_phase``.
    """

    def __init__(self, word_vectors: torch.Tensor, embed_dim: int, word_vectors_training: str = "always"):
        super().__init__()
        if embed_dim % 2:
            raise ValueError(f"embed_dim must be even for a bidirectional GRU, got {embed_dim}")
        if word_vectors_training not in WORD_VECTOR_TRAINING:
            raise ValueError(f"word_vectors_training must be one of {WORD_VECTOR_TRAINING}, got {word_vectors_training!r}")
        self.word_vectors_training = word_vectors_training
        self.words = nn.Embedding.from_pretrained(word_vectors.float(), freeze=False, padding_idx=0)
        self.gru = nn.GRU(word_vectors.shape[1], embed_dim // 2, batch_first=True, bidirectional=True)
        self.feature_dims = FeatureDims(embed_dim, word_vectors.shape[1], global_is_joint=True)
        self.set_phase(frozen=False)

    def set_phase(self, frozen: bool) -> None:
        """Let the word vectors learn or not in the frozen-backbone phase (``frozen``) or the fine-tuning one."""
        trainable = {"never": False, "finetune": not frozen, "always": True}[self.word_vectors_training]
        self.words.weight.requires_grad_(trainable)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor):
        vectors = self.words(tokens)
        mask = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < lengths.to(tokens.device)[:, None]
        return last_position(run_gru(self.gru, vectors, lengths), lengths), vectors, mask
