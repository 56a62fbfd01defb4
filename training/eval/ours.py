"""Scorer of our checkpoints: ``RelationVLM`` (``config.json`` + ``model.safetensors``) and its tokenizer.

The tokenizer is read from the checkpoint's ``tokenizer/`` folder, else from the checkpoint folder itself
(``tokenizer.json`` beside the weights), else from ``tokenizer_path``. Images get the evaluation transform of
training (a bicubic resize to the model's square side) and go to the model as uint8 pixels, which it
normalises on its device (``training.models.vlm.normalise_images``), as in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from sgverbalise.training.data.tokenizer import load_tokenizer
from sgverbalise.training.data.transforms import ImageTransform
from sgverbalise.training.models.vlm import RelationVLM

from .scorer_base import MAX_TEXT_LEN, ItmFromLogits, default_device, unique_images

TOKENIZER_DIR = "tokenizer"


def find_tokenizer(checkpoint: str | Path, tokenizer_path: str | Path | None = None) -> Path:
    """The tokenizer folder of a checkpoint (see the module docstring for the order)."""
    checkpoint = Path(checkpoint)
    candidates = [checkpoint / TOKENIZER_DIR, checkpoint] + ([Path(tokenizer_path)] if tokenizer_path else [])
    for folder in candidates:
        if (folder / "tokenizer.json").is_file() or (folder / "vocab.txt").is_file():
            return folder
    raise FileNotFoundError(f"no tokenizer in {checkpoint}/{TOKENIZER_DIR}, {checkpoint} or {tokenizer_path}")


class OursScorer(ItmFromLogits):
    """ITM p(match) and ITC embeddings of a ``RelationVLM`` checkpoint."""

    has_itm = True

    def __init__(
        self,
        path: str,
        device: str | None = None,
        max_text_len: int = MAX_TEXT_LEN,
        tokenizer_path: str | None = None,
    ) -> None:
        self.path = path
        self.device = torch.device(device or default_device())
        self.max_text_len = max_text_len
        self.model = RelationVLM.from_pretrained(path, device=self.device).eval()
        self.tokenizer = load_tokenizer(find_tokenizer(path, tokenizer_path))
        self.transform = ImageTransform(size=self.model.config.vision.image_size, train=False)

    def _pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """uint8 pixels [N, 3, H, W] on the model's device (the model normalises them there)."""
        return torch.stack([self.transform(image)[0] for image in images]).to(self.device)

    def _tokens(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.tokenizer(
            list(texts), padding="longest", truncation=True, max_length=self.max_text_len, return_tensors="pt"
        )
        return enc["input_ids"].long().to(self.device), enc["attention_mask"].long().to(self.device)

    rerank_rule = "replace"  # ALBEF's retrieval protocol: the ITM logit replaces the ITC score of the top k

    def _fused_cls(self, images: Sequence[Image.Image], texts: Sequence[str]) -> torch.Tensor:
        """The fusion's [CLS] states [N, H] of each (image, text) pair; each distinct image is encoded once."""
        distinct, index = unique_images(images)
        image_embeds = self.model.encode_image(self._pixels(distinct))[
            torch.tensor(index, device=self.device)
        ]
        input_ids, attention_mask = self._tokens(texts)
        text_hidden = self.model.encode_text(input_ids, attention_mask)
        return self.model.fuse(text_hidden, attention_mask, image_embeds)[:, 0]

    def _itm_logits(self, images: Sequence[Image.Image], texts: Sequence[str]) -> torch.Tensor:
        """ITM head logits [N, 2] on the fused [CLS]."""
        return self.model.itm_head(self._fused_cls(images, texts)).float()

    @torch.inference_mode()
    def fused_cls(self, images: Sequence[Image.Image], texts: Sequence[str]) -> torch.Tensor:
        """The fusion's [CLS] states [N, H] of each (image, text) pair (what the ITM head reads)."""
        return self._fused_cls(images, texts).float()

    @torch.inference_mode()
    def itc_image(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Normalised ITC image embeddings [N, D]."""
        return self.model.itc_embeddings(image=self._pixels(images))[0].float()

    @torch.inference_mode()
    def itc_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Normalised ITC text embeddings [N, D]."""
        input_ids, attention_mask = self._tokens(texts)
        return self.model.itc_embeddings(input_ids=input_ids, attention_mask=attention_mask)[1].float()
