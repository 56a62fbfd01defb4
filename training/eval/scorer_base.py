"""What every scorer shares: the text length, the default device, encoding each distinct image once.

Kept apart from ``scorers`` (the Hugging Face adapters and ``load_scorer``) and ``ours`` (our checkpoints) so
that neither imports the other at module level.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

MAX_TEXT_LEN = 40  # tokens; the companion study's setting


def default_device() -> str:
    """cuda when available, else cpu."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def unique_images(images: Sequence[Image.Image]) -> tuple[list[Image.Image], list[int]]:
    """Distinct image objects and, per position, the index of its object (the same image is encoded once)."""
    seen: dict[int, int] = {}
    distinct: list[Image.Image] = []
    index: list[int] = []
    for image in images:
        key = id(image)
        if key not in seen:
            seen[key] = len(distinct)
            distinct.append(image)
        index.append(seen[key])
    return distinct, index


class ItmFromLogits:
    """``itm`` (p(match)) and ``itm_logit`` (the raw match logit) of a scorer that defines ``_itm_logits``."""

    def _itm_logits(self, images: Sequence[Image.Image], texts: Sequence[str]) -> torch.Tensor:
        """ITM head logits ``[N, 2]`` (no match, match) of the pairs taken position by position."""
        raise NotImplementedError

    @torch.inference_mode()
    def itm(self, images: Sequence[Image.Image], texts: Sequence[str]) -> list[float]:
        """softmax(ITM logits)[match]."""
        return self._itm_logits(images, texts).softmax(dim=-1)[:, 1].tolist()

    @torch.inference_mode()
    def itm_logit(self, images: Sequence[Image.Image], texts: Sequence[str]) -> list[float]:
        """The raw "match" logit (retrieval re-ranking)."""
        return self._itm_logits(images, texts)[:, 1].tolist()
