"""Export the embeddings of one split for a trained run (the evaluation stage reads them).

    python -m pcmebench.embed --prepared work/prepared/synthetic-coco \
        --checkpoint work/runs/synthetic-coco/pcme/seed0/model.safetensors \
        --output work/runs/synthetic-coco/pcme/seed0/embeddings_test.safetensors [--split test]

The output (safetensors) holds ``image_ids`` and ``caption_ids`` in the split's
order, ``caption_image_index`` (each caption's image row), and what the method's
registry entry exports (``models/registry.py``): each of its ``exports.items`` per
modality as ``image_<item>`` / ``caption_<item>`` (VSE: ``embeddings`` (N, 1, D);
PVSE: ``embeddings`` (N, K, D); PCME: ``mu``, ``log_sigma`` (N, D) and ``samples``
(N, J, D)), the ``exports.drawn`` item drawn again from a fixed seed (the method's
``draw_samples``) so evaluation is deterministic, and its ``exports.learned``
scalars (PCME's ``a`` and ``b``). The run's settings travel in the file's metadata.
"""

from __future__ import annotations

import argparse
import json
import logging

import torch
from torch.utils.data import DataLoader

from corpora.batches import Captions, Images, image_transform, pad_tokens
from corpora.errors import DataError
from corpora.prepared import PreparedDataset
from models.registry import method_entry
from pcmebench.logs import log_to_stderr
from pcmebench.runs import model_for, resolve_device, use_threads
from pcmebench.tensorfiles import metadata_json, read_safetensors, write_safetensors

log = logging.getLogger("pcmebench.embed")
SAMPLE_SEED = 0


def load_run(checkpoint, prepared: PreparedDataset, device: str | None = None):
    """The trained model (in eval mode), its settings and its device from a run's ``model.safetensors``.

    ``device`` overrides the run's own setting (auto, cpu, cuda). Weights trained on other
    prepared data (another vocabulary, other splits) are refused with the fix named.
    """
    fix = "rerun the train rule for this run"
    weights, metadata = read_safetensors(checkpoint, "a run's weights", fix)
    settings = metadata_json(checkpoint, metadata, "settings", fix)
    if "run_identity" in metadata:
        trained_on = metadata_json(checkpoint, metadata, "run_identity", fix).get("prepared_data")
        if trained_on != prepared.content_sha256:
            raise DataError(
                checkpoint,
                "a run's weights",
                f"trained on other prepared data than {prepared.path} (content {trained_on}, now "
                f"{prepared.content_sha256}): the data was prepared again since; {fix}",
            )
    run_device = resolve_device(device or settings["device"])
    model = model_for(settings, prepared, pretrained=False)
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        raise DataError(checkpoint, "a run's weights", f"do not fit the model this code builds ({error}); {fix}") from None
    return model.to(run_device).eval(), settings, run_device


@torch.no_grad()
def embed_split(model, prepared: PreparedDataset, split_name: str, settings: dict, device, batch_size: int = 256) -> dict:
    split = prepared.split(split_name)
    training = settings["dataset_settings"]["training"]
    images = DataLoader(
        Images(split, image_transform(training["augment"], training["input_size"], train=False)), batch_size=batch_size
    )
    captions = DataLoader(Captions(split), batch_size=batch_size, collate_fn=pad_tokens)
    image_out = [model.encode_images(batch.to(device)) for batch in images]
    caption_out = [model.encode_captions(tokens.to(device), lengths) for tokens, lengths in captions]
    tensors = {
        "image_ids": torch.tensor(split.images["image_id"]),
        "caption_ids": torch.tensor(split.captions["caption_id"]),
        "caption_image_index": torch.tensor(split.captions["image_index"]),
    }
    method = method_entry(settings["method"])
    generator = torch.Generator(device=device).manual_seed(SAMPLE_SEED)
    for prefix, outputs in (("image", image_out), ("caption", caption_out)):
        lacking = [item for item in method.items if item not in outputs[0]]
        if lacking:
            raise ValueError(
                f"{method.where}: {method.class_name}.embed_{prefix}s returns no {lacking}, which the entry of "
                f"{method.name!r} exports; it returns {sorted(outputs[0])}"
            )
        encoded = {item: torch.cat([o[item] for o in outputs]) for item in method.items if item != method.drawn}
        if method.drawn:
            encoded[method.drawn] = model.method.draw_samples(encoded, generator)
        tensors.update({f"{prefix}_{item}": encoded[item] for item in method.items})
    tensors.update({name: getattr(model.method, name).detach().reshape(1) for name in method.learned})
    return {k: v.float().cpu().contiguous() if v.is_floating_point() else v.cpu().contiguous() for k, v in tensors.items()}


def export(prepared_dir, checkpoint, output, split: str = "test", threads: int | None = None, device: str | None = None) -> None:
    use_threads(threads)
    prepared = PreparedDataset(prepared_dir)
    model, settings, run_device = load_run(checkpoint, prepared, device)
    tensors = embed_split(model, prepared, split, settings, run_device)
    metadata = {"settings": json.dumps(settings, sort_keys=True), "split": split}
    write_safetensors(output, tensors, metadata)
    log.info("wrote %s: %s", output, {k: tuple(v.shape) for k, v in tensors.items()})


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prepared", required=True)
    parser.add_argument("--checkpoint", required=True, help="a run's model.safetensors")
    parser.add_argument("--output", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default=None, help="override the run's device (auto, cpu, cuda)")
    args = parser.parse_args(argv)
    log_to_stderr()
    export(args.prepared, args.checkpoint, args.output, args.split, args.threads, args.device)


if __name__ == "__main__":
    main()
