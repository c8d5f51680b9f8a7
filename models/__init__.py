"""Methods on one shared stack: VSE0 and VSE++ (``vse.py``), PVSE K=1 and K=2 (``pvse.py``), PCME (``pcme.py``),
PCME++ (``pcmepp.py``).

A method is one file in this package: its class, its loss and its registry entry side by side.
The entry (a literal ``METHODS`` list, see ``models/registry.py`` for its fields) names the method,
its label and colour, its scorings (``models/scorings.py``), what its embeddings export and its
settings; every stage, table, figure and test reads it from there. The file's class is built by
``build_model`` as ``Class(image_dims, text_dims, embed_dim, **settings)``, the settings being the
entry's (defaults filled in, per-dataset values resolved, the stack's ``word_vectors_training``
left out). It subclasses ``models.heads.BaseMethod``, which holds the shared heads and implements
the interface for one cosine embedding per item, so a method defines its ``loss`` and overrides
only what differs:

``embed_images(global_feature, local, mask) -> dict`` and ``embed_captions(...) -> dict``
    From an encoder's features (``FeatureDims``: global (B, G), local (B, L, F) and its (B, L)
    mask; ``models.heads.EmbeddingHead`` turns them into K embeddings) to a dict of (B, ...)
    tensors; the keys the entry lists in ``exports.items`` are what the embed stage saves, and
    the scorings read them by name: ``embeddings`` (B, K, D) for ``cosine`` (K = 1) and
    ``max-cosine``; ``mu`` and ``log_sigma`` (B, D) and ``samples`` (B, J, D) for the Gaussian
    scorings. The base class routes both to ``embed(modality, global_feature, local, mask)``
    (modality ``image`` or ``caption``), which a method overrides (PCME adds σ heads).
``similarity(images: dict, captions: dict) -> Tensor``
    (N_i, N_c), higher = closer, from the two dicts: what the loss trains (the base class: the
    cosine of ``embeddings``).
``loss(images: dict, captions: dict, match: BoolTensor) -> (Tensor, dict)``
    The batch's scalar loss and a dict of detached scalars for the training log; ``match``
    (N_i, N_c) says which in-batch pairs are positives. Runs in fp32.

Optional: ``set_epoch(epoch)`` (a schedule inside the loss, e.g. a warm-up),
``training_targets(images, image_ids, match) -> (images, targets)`` (the method builds its own
training batch, PCME++'s mixed images and soft targets: in training only, before encoding, the
model hands it the (B, C, H, W) images, the (B,) image ids and the bool match, and its ``loss``
then gets the returned float (B', B') targets instead of the match; B' < B drops the last pairs,
captions included; random draws on the CPU from torch's global generator, which the trainer
seeds per epoch, so a run draws the same on any device),
``loss_parameters() -> list`` (the loss's own parameters, not gradient-clipped),
``draw_samples(encoded, generator) -> Tensor`` (required when the entry's ``exports.drawn`` names
an item: it draws that item again from the embed stage's fixed seed), and, per entry, the
``exports.learned`` attributes (learned scalars a scoring reads, PCME's ``a`` and ``b``).

Importing this package loads no torch; ``build_model``, ``CrossModalModel`` and
``match_probability`` load it on first use.
"""

from models.registry import Method, RegistryError, method_entry, registered

__all__ = ["CrossModalModel", "Method", "RegistryError", "build_model", "match_probability", "method_entry", "registered"]

_LAZY = {"CrossModalModel": "models.model", "build_model": "models.model", "match_probability": "models.pcme"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
