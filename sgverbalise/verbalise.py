"""Verbalised scene graphs (VSG): a sample of an image's triplets written as one structured caption.

A VSG caption is K triplets, each written ``subject relation object``, joined with `` [SEP] ``::

    man riding horse [SEP] horse on grass [SEP] ...

Order (``sort="centre"``, the default): by the centre of the subject's box, top to bottom, then left to right
(key: centre y, then centre x, then the triplet's text, so ties are broken the same way everywhere). Like reading a
page, the caption begins with what is at the top of the image. ``sort="none"`` keeps the sampled (random) order.

Sampling is deterministic from (seed, source, image id, caption index): the same captions come out whatever the
worker, process or order. When an image has at most K triplets, every caption holds all of them; captions are
distinct, so such an image gets one caption (sorted) however many are asked for.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

SORTS = ("centre", "none")


@dataclass(frozen=True)
class VSGConfig:
    """How VSG captions are sampled and written."""

    k: int = 8  # triplets per caption (the paper: 8; an appendix: 16)
    captions: int = 1  # VSG captions per image (at most; duplicates are dropped)
    sort: str = "centre"  # "centre": by subject box centre, top-to-bottom then left-to-right; "none": sampled order
    attributes: int = 0  # attributes written before each name ("white shirt"); 0 = off, as the paper
    separator: str = " [SEP] "
    seed: int = 0

    def __post_init__(self) -> None:
        if self.k < 1 or self.captions < 1 or self.attributes < 0:
            raise ValueError(f"VSGConfig needs k >= 1, captions >= 1, attributes >= 0; got {self}")
        if self.sort not in SORTS:
            raise ValueError(f"VSGConfig.sort must be one of {SORTS}, got {self.sort!r}")


def rng_for(seed: int, source: str, image_id: str, index: int = 0) -> random.Random:
    """A random generator that depends only on its arguments (not on PYTHONHASHSEED or process)."""
    digest = hashlib.sha256(f"{seed}\x1f{source}\x1f{image_id}\x1f{index}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _phrase(name: str, attributes: Sequence[str], max_attributes: int) -> str:
    words = [a for a in attributes if a and a not in name.split()][:max_attributes] if max_attributes else []
    return " ".join([*words, name])


def triplet_text(triplet: dict, attributes: int = 0) -> str:
    """``subject relation object``, with up to ``attributes`` attributes before each name."""
    subject = _phrase(triplet["subject"], triplet.get("subject_attributes") or (), attributes)
    obj = _phrase(triplet["object"], triplet.get("object_attributes") or (), attributes)
    return f"{subject} {triplet['predicate']} {obj}"


def _centre_key(triplet: dict, text: str) -> tuple[float, float, str]:
    x, y, w, h = triplet["subject_box"]
    return (y + h / 2, x + w / 2, text)


def verbalise(triplets: Sequence[dict], cfg: VSGConfig, source: str, image_id: str) -> list[str]:
    """Up to ``cfg.captions`` distinct VSG captions of an image's valid triplets (none when it has none)."""
    if not triplets:
        return []
    captions: list[str] = []
    for index in range(cfg.captions):
        rng = rng_for(cfg.seed, source, image_id, index)
        chosen = rng.sample(range(len(triplets)), min(cfg.k, len(triplets)))
        items = [(triplets[i], triplet_text(triplets[i], cfg.attributes)) for i in chosen]
        if cfg.sort == "centre":
            items.sort(key=lambda item: _centre_key(*item))
        caption = cfg.separator.join(text for _, text in items)
        if caption not in captions:
            captions.append(caption)
        if len(triplets) <= cfg.k and cfg.sort == "centre":
            break  # every further caption would be the same
    return captions
