"""Masked relation classification on held-out shards: a model's accuracy next to the majority-class rate.

Every triplet of every held-out sample counts once: the evaluation transform (a plain resize, no crop), all
triplets per image, one pass over the split's shards in order. The majority-class rate is the accuracy of
always answering the most frequent relation of the held-out triplets themselves (the best constant answer).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch

from sgverbalise.training.data.sources import SourceConfig, load_relations
from sgverbalise.training.data.streams import DataConfig, build_loader
from sgverbalise.training.models import RelationVLM

ALL = 1_000_000  # entities / relations per image: every one


def heldout_config(
    shards: str | list[str],
    image_size: int,
    split: str = "val",
    batch_size: int = 32,
    tokenizer: str | None = None,
) -> DataConfig:
    """A one-pass, unshuffled MRC stream over a shard set's ``split`` with every triplet of every image."""
    return DataConfig(
        sources={"mrc": [SourceConfig(shards, split=split, name="heldout")]},
        ratios={"mrc": 1.0},
        batch_sizes={"mrc": batch_size},
        image_size=image_size,
        train=False,
        resampled=False,
        shuffle_buffer=0,
        num_workers=0,
        entities_per_image=ALL,
        relations_per_image=ALL,
        tokenizer=tokenizer,
    )


@torch.no_grad()
def mrc_accuracy(model: RelationVLM, batches: Any, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Accuracy, majority-class rate and counts of ``model`` over MRC ``batches``."""
    was_training = model.training
    model.eval()
    correct, total = 0, 0
    labels: Counter = Counter()
    predicted: Counter = Counter()
    try:
        for batch in batches:
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            guess = model.mrc_logits(batch).argmax(dim=-1)
            truth = batch["relation"]
            correct += int((guess == truth).sum())
            total += int(truth.numel())
            labels.update(truth.tolist())
            predicted.update(guess.tolist())
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("no held-out triplets")
    majority, count = labels.most_common(1)[0]
    return {
        "accuracy": correct / total,
        "majority_rate": count / total,
        "majority_class": majority,
        "triplets": total,
        "correct": correct,
        "labels": dict(sorted(labels.items())),
        "predicted": dict(sorted(predicted.items())),
    }


def evaluate_mrc(
    model: RelationVLM,
    shards: str | list[str],
    tokenizer: Any,
    split: str = "val",
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """MRC accuracy of ``model`` on the ``split`` of a scene-graph shard set, with the majority-class rate
    and, when the set has a relations.json beside it, the majority relation's name."""
    cfg = heldout_config(shards, model.config.vision.image_size, split, batch_size)
    result = mrc_accuracy(model, build_loader(cfg, tokenizer), device)
    if isinstance(shards, str):
        try:
            result["majority_relation"] = load_relations(shards)[result["majority_class"]]
        except (OSError, ValueError, IndexError):
            pass
    return result
