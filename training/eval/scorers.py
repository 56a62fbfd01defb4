"""Pluggable scorers: image-text pairs to ITM p(match) and ITC embeddings, ours and HF baselines.

A scorer is loaded from a local folder (model + processor or tokenizer, no downloads). Adapters:

* ``HFClipScorer``: ``CLIPModel``, ITC only (``has_itm`` is False).
* ``HFBlipScorer``: ``BlipForImageTextRetrieval``, ITM head and ITC projections.
* ``HFBlip2Scorer``: ``Blip2ForImageTextRetrieval``; its ITC image embedding holds one vector per query token
  (``[N, Q, D]``) and the similarity is the maximum over queries, as the model computes it.
* ``OursScorer``: checkpoints of this project (see ``training/models``).

Texts are truncated to ``max_text_len`` tokens (40, the companion study's setting); images are resized by the
model's own processor. Each call handles one batch; the runner does the batching.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from PIL import Image

from .scorer_base import MAX_TEXT_LEN, ItmFromLogits, default_device, unique_images


@runtime_checkable
class Scorer(Protocol):
    """What the runner needs from a model."""

    has_itm: bool

    def itm(self, images: Sequence[Image.Image], texts: Sequence[str]) -> list[float]:
        """p(match) of each (image, text) pair, pairs taken position by position."""
        ...

    def itc_image(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """L2-normalised image embeddings, ``[N, D]`` (or ``[N, Q, D]``: one per query, max over queries)."""
        ...

    def itc_text(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised text embeddings, ``[N, D]``."""
        ...


def itc_similarity(image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """Cosine similarity ``[N_images, N_texts]``; a 3-D image embedding takes the max over its queries."""
    if image_emb.dim() == 3:
        return torch.einsum("iqd,td->iqt", image_emb, text_emb.to(image_emb.dtype)).amax(dim=1)
    return image_emb @ text_emb.to(image_emb.dtype).T


def pair_similarity(image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of pairs taken position by position, ``[N]``."""
    if image_emb.dim() == 3:
        return torch.einsum("iqd,id->iq", image_emb, text_emb.to(image_emb.dtype)).amax(dim=1)
    return (image_emb * text_emb.to(image_emb.dtype)).sum(dim=-1)


def _features(output: object) -> torch.Tensor:
    """Projected features of ``get_*_features`` (a tensor, or else ``pooler_output``)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class HFScorer:
    """Common parts of the Hugging Face adapters: model + processor from a folder, tokens, pixels."""

    model_class: str = ""
    has_itm = True

    def __init__(self, path: str, device: str | None = None, max_text_len: int = MAX_TEXT_LEN) -> None:
        import transformers

        self.path = path
        self.device = torch.device(device or default_device())
        self.max_text_len = max_text_len
        self.processor = transformers.AutoProcessor.from_pretrained(path)
        self.model = getattr(transformers, self.model_class).from_pretrained(path).to(self.device).eval()

    @property
    def tokenizer(self):
        """The processor's tokenizer."""
        return self.processor.tokenizer

    def _tokens(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            list(texts), padding="longest", truncation=True, max_length=self.max_text_len, return_tensors="pt"
        )
        return {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    def _pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        pixels = self.processor.image_processor(images=list(images), return_tensors="pt")["pixel_values"]
        return pixels.to(self.device, dtype=next(self.model.parameters()).dtype)


class HFClipScorer(HFScorer):
    """``CLIPModel`` from a local folder: ITC only."""

    model_class = "CLIPModel"
    has_itm = False

    def itm(self, images: Sequence[Image.Image], texts: Sequence[str]) -> list[float]:
        """CLIP has no ITM head."""
        raise NotImplementedError("CLIPModel has no image-text matching head; use the ITC scores")

    @torch.inference_mode()
    def itc_image(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Normalised projected image embeddings."""
        return F.normalize(
            _features(self.model.get_image_features(pixel_values=self._pixels(images))).float(), dim=-1
        )

    @torch.inference_mode()
    def itc_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Normalised projected text embeddings."""
        return F.normalize(_features(self.model.get_text_features(**self._tokens(texts))).float(), dim=-1)


class HFBlipScorer(ItmFromLogits, HFScorer):
    """``BlipForImageTextRetrieval`` from a local folder: ITM head on the fused [CLS], ITC projections."""

    model_class = "BlipForImageTextRetrieval"

    rerank_rule = "add"  # BLIP's retrieval protocol: ITM logit + ITC similarity for the top k
    ENC = "[ENC]"

    def _vision(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return self.model.vision_model(pixel_values=self._pixels(images)).last_hidden_state

    def _itm_logits(self, images: Sequence[Image.Image], texts: Sequence[str], enc: bool = False) -> torch.Tensor:
        """ITM head logits [N, 2]; ``enc``: the first text token set to [ENC] (BLIP's retrieval evaluation)."""
        distinct, index = unique_images(images)
        image_embeds = self._vision(distinct)[torch.tensor(index, device=self.device)]
        image_atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=self.device)
        tokens = self._tokens(texts)
        if enc:
            tokens["input_ids"] = tokens["input_ids"].clone()
            tokens["input_ids"][:, 0] = self.enc_token_id
        fused = self.model.text_encoder(
            **tokens, encoder_hidden_states=image_embeds, encoder_attention_mask=image_atts
        ).last_hidden_state
        return self.model.itm_head(fused[:, 0, :]).float()

    @property
    def enc_token_id(self) -> int:
        """The id of [ENC] in the tokenizer (its first token when the tokenizer has no [ENC])."""
        tok = self.tokenizer
        found = tok.convert_tokens_to_ids(self.ENC)
        if found is None or found == tok.unk_token_id:
            return int(self._tokens([""])["input_ids"][0, 0])
        return int(found)

    @torch.inference_mode()
    def itm_logit(self, images: Sequence[Image.Image], texts: Sequence[str]) -> list[float]:
        """The raw "match" logit with [ENC] as the first text token (BLIP's retrieval re-ranking)."""
        return self._itm_logits(images, texts, enc=True)[:, 1].tolist()

    @torch.inference_mode()
    def itc_image(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Normalised ``vision_proj`` of the image [CLS]."""
        return F.normalize(self.model.vision_proj(self._vision(images)[:, 0, :]).float(), dim=-1)

    @torch.inference_mode()
    def itc_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Normalised ``text_proj`` of the unimodal text [CLS]."""
        hidden = self.model.text_encoder(**self._tokens(texts)).last_hidden_state
        return F.normalize(self.model.text_proj(hidden[:, 0, :]).float(), dim=-1)


class HFBlip2Scorer(ItmFromLogits, HFScorer):
    """``Blip2ForImageTextRetrieval`` from a local folder: Q-Former ITM head and ITC (max over queries)."""

    model_class = "Blip2ForImageTextRetrieval"

    def _vision(self, images: Sequence[Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
        embeds = self.model.vision_model(pixel_values=self._pixels(images)).last_hidden_state
        return embeds, torch.ones(embeds.shape[:-1], dtype=torch.long, device=self.device)

    rerank_rule = "add"  # BLIP-2's retrieval protocol (LAVIS): ITM logit + ITC similarity for the top k

    def _itm_logits(self, images: Sequence[Image.Image], texts: Sequence[str]) -> torch.Tensor:
        """ITM logits [N, 2] averaged over query tokens, as the model's forward computes them.

        Text is tokenised alone (no image placeholder tokens), each distinct image is encoded once.
        """
        model = self.model
        distinct, index = unique_images(images)
        image_embeds, image_atts = self._vision(distinct)
        select = torch.tensor(index, device=self.device)
        image_embeds, image_atts = image_embeds[select], image_atts[select]
        tokens = self._tokens(texts)
        queries = model.query_tokens.expand(image_embeds.shape[0], -1, -1)
        query_atts = torch.ones(queries.shape[:-1], dtype=torch.long, device=self.device)
        attention_mask = torch.cat([query_atts, tokens["attention_mask"]], dim=1)
        embeds = model.embeddings(input_ids=tokens["input_ids"], query_embeds=queries)
        hidden = model.qformer(
            query_embeds=embeds,
            query_length=queries.shape[1],
            attention_mask=attention_mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_atts,
        ).last_hidden_state
        logits = model.itm_head(hidden[:, : queries.shape[1], :].to(model.itm_head.weight.dtype)).mean(dim=1)
        return logits.float()

    @torch.inference_mode()
    def itc_image(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Normalised projected query outputs, ``[N, Q, D]``."""
        model = self.model
        image_embeds, atts = self._vision(images)
        queries = model.query_tokens.expand(image_embeds.shape[0], -1, -1)
        out = model.qformer(
            query_embeds=queries, encoder_hidden_states=image_embeds, encoder_attention_mask=atts
        ).last_hidden_state
        return F.normalize(
            model.vision_projection(out.to(model.vision_projection.weight.dtype)).float(), dim=-1
        )

    @torch.inference_mode()
    def itc_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Normalised projected [CLS] of the Q-Former's text-only pass."""
        model = self.model
        tokens = self._tokens(texts)
        embeds = model.embeddings(input_ids=tokens["input_ids"])
        hidden = model.qformer(
            query_embeds=embeds, query_length=0, attention_mask=tokens["attention_mask"]
        ).last_hidden_state
        cls = hidden[:, 0, :].to(model.text_projection.weight.dtype)
        return F.normalize(model.text_projection(cls).float(), dim=-1)


# model_type in a Hugging Face config.json -> adapter name
HF_MODEL_TYPES = {"clip": "clip", "blip": "blip", "blip-2": "blip2"}
SCORERS: dict[str, Callable[..., Scorer]] = {
    "clip": HFClipScorer,
    "blip": HFBlipScorer,
    "blip2": HFBlip2Scorer,
}


def detect_kind(path: str) -> str:
    """The adapter for a folder: from ``config.json``'s ``model_type`` (HF models), else ``ours``."""
    config = os.path.join(path, "config.json")
    if os.path.exists(config):
        with open(config, encoding="utf-8") as fh:
            model_type = json.load(fh).get("model_type")
        if model_type in HF_MODEL_TYPES:
            return HF_MODEL_TYPES[model_type]
    return "ours"


def load_scorer(
    path: str, kind: str = "auto", device: str | None = None, max_text_len: int = MAX_TEXT_LEN
) -> Scorer:
    """A scorer for the model in the local folder ``path`` (``kind``: auto, ours, clip, blip or blip2)."""
    kind = detect_kind(path) if kind == "auto" else kind
    if kind == "ours":
        from .ours import OursScorer

        return OursScorer(path, device=device, max_text_len=max_text_len)
    if kind not in SCORERS:
        raise ValueError(f"unknown model kind {kind!r}; choose from auto, ours, {', '.join(SCORERS)}")
    return SCORERS[kind](path, device=device, max_text_len=max_text_len)
