"""Image and text encoders: a transformers ViT and the first layers of a transformers BERT.

Random weights, or with ``init_path`` the weights of a local Hugging Face folder (``save_pretrained``
output of any ViT/BERT model) and the config's sizes are overwritten with the checkpoint's. Nothing is
ever downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import BertConfig, BertModel, ViTConfig, ViTModel

from sgverbalise.training.models.config import TextConfig, VisionConfig


def vit_config(cfg: VisionConfig) -> ViTConfig:
    """The transformers ViTConfig of our vision sizes."""
    return ViTConfig(
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
        attn_implementation="sdpa",
    )


def bert_config(cfg: TextConfig, num_layers: int | None = None) -> BertConfig:
    """The transformers BertConfig of our text sizes (an encoder: ``is_decoder`` stays False)."""
    return BertConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers if num_layers is None else num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position,
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
        pad_token_id=cfg.pad_token_id,
        attn_implementation="sdpa",
    )


def _local_folder(path: str) -> str:
    """``path`` when it is a local folder with a config.json; FileNotFoundError otherwise (no download)."""
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a local Hugging Face model folder (no config.json)")
    return str(folder)


class VisionEncoder(nn.Module):
    """ViT returning all tokens ([CLS] first, then patches row by row), with an optional token mask."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        if cfg.init_path:
            self.vit = ViTModel.from_pretrained(
                _local_folder(cfg.init_path),
                add_pooling_layer=False,
                local_files_only=True,
                attn_implementation="sdpa",
                hidden_dropout_prob=cfg.dropout,  # the config's dropout, not the folder's
                attention_probs_dropout_prob=cfg.dropout,
            )
            hf = self.vit.config
            cfg.image_size, cfg.patch_size, cfg.hidden_size = hf.image_size, hf.patch_size, hf.hidden_size
            cfg.num_layers, cfg.num_heads = hf.num_hidden_layers, hf.num_attention_heads
            cfg.intermediate_size = hf.intermediate_size
            cfg.init_path = None
        else:
            self.vit = ViTModel(vit_config(cfg), add_pooling_layer=False)
        self.hidden_size = cfg.hidden_size

    def forward(self, image: torch.Tensor, token_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Token states [N, 1 + patches, H]; ``token_mask`` [N, 1 + patches] (1 = keep) hides the others."""
        return self.vit(pixel_values=image, attention_mask=token_mask).last_hidden_state


class TextEncoder(nn.Module):
    """BERT (bidirectional, no pooler) over the text alone: the text tower of ALBEF."""

    def __init__(self, cfg: TextConfig, spare_layers: int = 0) -> None:
        """``spare_layers``: checkpoint layers after the text ones, kept in ``spare`` for the fusion."""
        super().__init__()
        self.spare: list[nn.Module] = []
        if cfg.init_path:
            bert = BertModel.from_pretrained(
                _local_folder(cfg.init_path),
                add_pooling_layer=False,
                local_files_only=True,
                attn_implementation="sdpa",
                hidden_dropout_prob=cfg.dropout,  # the config's dropout, not the folder's
                attention_probs_dropout_prob=cfg.dropout,
            )
            if bert.config.num_hidden_layers < cfg.num_layers:
                raise ValueError(
                    f"{cfg.init_path} has {bert.config.num_hidden_layers} layers, the text encoder needs "
                    f"{cfg.num_layers}"
                )
            layers = bert.encoder.layer
            self.spare = list(layers[cfg.num_layers : cfg.num_layers + spare_layers])
            bert.encoder.layer = nn.ModuleList(layers[: cfg.num_layers])
            bert.config.num_hidden_layers = cfg.num_layers
            hf = bert.config
            cfg.vocab_size, cfg.hidden_size, cfg.num_heads = (
                hf.vocab_size,
                hf.hidden_size,
                hf.num_attention_heads,
            )
            cfg.intermediate_size, cfg.max_position = hf.intermediate_size, hf.max_position_embeddings
            cfg.pad_token_id = hf.pad_token_id if hf.pad_token_id is not None else cfg.pad_token_id
            cfg.init_path = None
            self.bert = bert
        else:
            self.bert = BertModel(bert_config(cfg), add_pooling_layer=False)
        self.hidden_size = cfg.hidden_size

    @property
    def word_embeddings(self) -> nn.Embedding:
        """The token embedding table (tied to the MLM decoder)."""
        return self.bert.embeddings.word_embeddings

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token states [B, L, H] (padding masked, every token sees every other)."""
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
