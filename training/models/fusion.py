"""Bidirectional fusion encoder: BERT-style layers, padding-only self-attention, cross-attention to the image.

Why not ``BertModel(add_cross_attention=True)``: in transformers 5 ``BertLayer`` refuses cross-attention
unless ``is_decoder=True``, and then builds its self-attention with ``is_causal=True`` while ``BertModel``
turns the padding mask into a causal one, so a token would never see the tokens after it. ALBEF's fusion
encoder is bidirectional, so the layers here are assembled from transformers' ``BertAttention`` (built with
``is_causal=False``), ``BertIntermediate`` and ``BertOutput``, and every mask is passed explicitly as an
additive [B, 1, 1, K] key mask (which also turns off SDPA's implicit causal path). Parameter names follow
``BertLayer`` (``attention``, ``crossattention``, ``intermediate``, ``output``) so BERT layers initialise
them directly.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertAttention, BertIntermediate, BertOutput


def additive_key_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, K] keep-mask (1 = attend) as an additive [B, 1, 1, K] bias: 0 where kept, dtype min elsewhere."""
    keep = mask.to(torch.bool)[:, None, None, :]
    return torch.zeros(keep.shape, dtype=dtype, device=mask.device).masked_fill(~keep, torch.finfo(dtype).min)


class FusionLayer(nn.Module):
    """Self-attention over text (padding mask only), cross-attention to image tokens (image mask), FFN."""

    def __init__(self, config: BertConfig, layer_idx: int, cross_attention_scale: float = 1.0) -> None:
        """``cross_attention_scale`` multiplies the cross-attention logits (1: BERT's 1 / sqrt(head size))."""
        super().__init__()
        self.attention = BertAttention(config, is_causal=False, layer_idx=layer_idx)
        self.crossattention = BertAttention(
            config, is_causal=False, layer_idx=layer_idx, is_cross_attention=True
        )
        self.crossattention.self.scaling *= cross_attention_scale
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)
        if self.attention.self.is_causal or self.crossattention.self.is_causal:
            raise AssertionError("fusion attention must not be causal")

    def forward(
        self, hidden: torch.Tensor, text_bias: torch.Tensor, image: torch.Tensor, image_bias: torch.Tensor
    ) -> torch.Tensor:
        """One layer: ``text_bias``/``image_bias`` are additive key masks from ``additive_key_mask``."""
        hidden, _ = self.attention(hidden, attention_mask=text_bias)
        hidden, _ = self.crossattention(
            hidden, encoder_hidden_states=image, encoder_attention_mask=image_bias
        )
        return self.output(self.intermediate(hidden), hidden)


def grid_position_code(tokens: int, width: int) -> torch.Tensor:
    """A fixed 2D sine/cosine code [tokens, width] of each patch's place in its square grid, for image tokens
    laid out as [CLS] + grid x grid patches (row by row): a quarter of the channels are sines of the column at
    ``width / 4`` frequencies (one period across the grid down to ~1/100 of a period), a quarter their cosines,
    the other half the same of the row; the [CLS] row is zero."""
    grid = math.isqrt(tokens - 1)
    if grid * grid != tokens - 1 or width % 4:
        raise ValueError(f"a grid code needs 1 + a square number of tokens and a width divisible by 4, "
                         f"not {tokens} tokens of width {width}")
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    quarter = width // 4
    frequency = torch.exp(-math.log(100.0) * torch.arange(quarter) / quarter) * (2 * math.pi / grid)
    parts = []
    for place in (cols.flatten(), rows.flatten()):
        angle = place[:, None].float() * frequency[None]
        parts += [angle.sin(), angle.cos()]
    return torch.cat([torch.zeros(1, width), torch.cat(parts, 1)], 0)


class FusionEncoder(nn.Module):
    """Stack of ``FusionLayer`` s; image tokens are projected to the text width when the widths differ and, with
    ``position_code`` > 0, get ``position_code`` x ``grid_position_code`` added as they enter."""

    def __init__(
        self, config: BertConfig, num_layers: int, vision_width: int, cross_attention_scale: float = 1.0,
        position_code: float = 0.0,
    ) -> None:
        super().__init__()
        if config.is_decoder:
            raise ValueError("the fusion encoder is bidirectional: pass a BertConfig with is_decoder=False")
        self.layers = nn.ModuleList(FusionLayer(config, i, cross_attention_scale) for i in range(num_layers))
        self.position_code = position_code
        same = vision_width == config.hidden_size
        self.image_proj: nn.Module = nn.Identity() if same else nn.Linear(vision_width, config.hidden_size)

    def init_from_bert_layers(self, layers: list[nn.Module]) -> int:
        """Copy self-attention and FFN weights of BERT layers into the fusion layers; return the count."""
        for layer, bert_layer in zip(self.layers, layers, strict=False):
            missing, unexpected = layer.load_state_dict(bert_layer.state_dict(), strict=False)
            if unexpected or any(not name.startswith("crossattention.") for name in missing):
                raise ValueError(
                    f"BERT layer does not fit the fusion layer: missing {missing}, unexpected {unexpected}"
                )
        return min(len(self.layers), len(layers))

    def forward(
        self,
        text_hidden: torch.Tensor,
        text_mask: torch.Tensor,
        image_embeds: torch.Tensor,
        image_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Fused states [B, L, H] from text states [B, L, H], image tokens [B, K, Hv] and keep-masks."""
        image = self.image_proj(image_embeds)
        if self.position_code:
            code = grid_position_code(image.shape[1], image.shape[2]).to(image)
            image = image + self.position_code * code
        text_bias = additive_key_mask(text_mask, text_hidden.dtype)
        image_bias = additive_key_mask(image_mask, text_hidden.dtype)
        hidden = text_hidden
        for layer in self.layers:
            hidden = layer(hidden, text_bias, image, image_bias)
        return hidden
