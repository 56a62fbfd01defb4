"""Typed configuration of the relation-aware vision-language models (sizes, losses, flags) for JSON/YAML."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields, replace
from typing import Any

from sgverbalise.training.batches import IMAGE_MEAN, IMAGE_STD

TEMP_MIN, TEMP_MAX = 0.001, 0.5  # bounds of the ITC temperature (initial value and learnt)


@dataclass
class VisionConfig:
    """The ViT image encoder; ``init_path``: a local Hugging Face ViT folder (its sizes then win)."""

    image_size: int = 224
    patch_size: int = 16
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    dropout: float = 0.0
    init_path: str | None = None
    # Pixel normalisation ``(pixels / 255 - mean) / std`` per channel: CLIP's by default (pretrained towers
    # expect it). A model trained from scratch on images far from CLIP's statistics (e.g. synthetic scenes on a
    # light background, +1.7 std in every channel) starts better with the data's own (``sgv stats --images``).
    image_mean: tuple[float, float, float] = IMAGE_MEAN
    image_std: tuple[float, float, float] = IMAGE_STD

    def __post_init__(self) -> None:
        self.image_mean = tuple(float(v) for v in self.image_mean)  # type: ignore[assignment]
        self.image_std = tuple(float(v) for v in self.image_std)  # type: ignore[assignment]
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or min(self.image_std) <= 0:
            raise ValueError("vision.image_mean and vision.image_std need three values, std > 0")

    @property
    def grid(self) -> int:
        """Patches per side of the image."""
        return self.image_size // self.patch_size


@dataclass
class TextConfig:
    """The BERT text encoder (first ``num_layers`` layers); ``init_path``: a local Hugging Face folder."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 6
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position: int = 512
    dropout: float = 0.1
    pad_token_id: int = 0
    cls_token_id: int = 101
    sep_token_id: int = 102
    mask_token_id: int = 103
    init_path: str | None = None


@dataclass
class FusionConfig:
    """The fusion encoder: bidirectional self-attention + cross-attention to image tokens (text sizes)."""

    num_layers: int = 6
    # Multiplies the cross-attention logits (1: ALBEF's 1 / sqrt(head size)). Trained from scratch, the cross-
    # attention starts nearly uniform over the image tokens, so a small object moves the fused [CLS] by ~1/K of
    # its token's difference and ITM sits at its prior for hundreds of steps; a sharper start (e.g. 4) lets the
    # text queries pick out the object's tokens (tiny toy, ITM alone: AUC 0.80 vs 0.55 after 300 steps).
    cross_attention_scale: float = 1.0
    # Scale of a fixed 2D sine/cosine code of each patch's grid position added to the image tokens as they enter
    # the fusion (``fusion.grid_position_code``; 0: off, as in ALBEF). Trained from scratch on captions, the
    # ViT's learnt position embeddings wash out (ITC never needs them): a linear probe of "which half is the
    # named object in" reads 48.5% from the token at the object's own patch (chance 55), and the fusion never
    # learnt where a single object is. With the code at 1.0 it learnt that within 1,000 steps (93-98%).
    position_code: float = 0.0

    def __post_init__(self) -> None:
        if not self.cross_attention_scale > 0:
            raise ValueError("fusion.cross_attention_scale must be positive")
        if not self.position_code >= 0:
            raise ValueError("fusion.position_code must be 0 (off) or positive")


@dataclass
class LossWeights:
    """Weight of each named loss in the total ``loss``."""

    itc: float = 1.0
    itm: float = 1.0
    mlm: float = 1.0
    mrc: float = 1.0
    box_l1: float = 1.0
    box_giou: float = 1.0


@dataclass
class ModelConfig:
    """A whole model: encoders, heads, which losses are on, and the AdamW betas of its family."""

    name: str = "albef"
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    embed_dim: int = 256
    temperature: float = 0.07  # the ITC temperature at the start (learnt in log space with learn_temperature)
    learn_temperature: bool = True
    # ALBEF momentum distillation: EMA copies of the encoders, a queue of their features, soft targets.
    use_momentum: bool = True
    momentum: float = 0.995
    queue_size: int = 65536
    distill_alpha: float = 0.4
    mlm_probability: float = 0.25
    # Share of ITM negatives mined by ITC similarity (ALBEF: all); the others are drawn uniformly from the
    # batch. From scratch, once ITC ranks well, the mined negatives differ from the caption in one small detail
    # and ITM learns nothing from them at first; easy negatives give it a start.
    itm_hard_negatives: float = 1.0
    # Masked relation classification (MRC): two-layer MLP over [subject CLS; object CLS].
    use_mrc: bool = False
    mrc_hidden: int = 3072
    num_relations: int = 310
    # X-VLM: box regression from the grounded entity (L1 + GIoU), VMA (ITC/ITM/MLM on the box-masked image).
    use_box: bool = False
    use_vma: bool = False
    weights: LossWeights = field(default_factory=LossWeights)
    # Std of the normal init of every layer not loaded from a checkpoint (Linear and Embedding weights; biases
    # 0). None: the libraries' defaults (transformers' 0.02 in the towers, PyTorch's in the fusion and heads).
    # A narrow model from scratch needs more: at width 64 with 0.02 each sublayer adds 2-3% to the residual
    # stream, the [CLS] features of different inputs start at cosine 0.99+ and stay collapsed; 0.1 spreads them.
    init_std: float | None = None
    adam_betas: tuple[float, float] = (0.9, 0.995)

    def __post_init__(self) -> None:
        self.adam_betas = tuple(float(b) for b in self.adam_betas)  # type: ignore[assignment]
        if self.queue_size and not self.use_momentum:
            raise ValueError("queue_size > 0 needs use_momentum (the queue holds momentum features)")
        if self.vision.image_size % self.vision.patch_size:
            raise ValueError("image_size must be a multiple of patch_size")
        if not TEMP_MIN <= self.temperature <= TEMP_MAX:
            raise ValueError(f"temperature must lie in [{TEMP_MIN}, {TEMP_MAX}], got {self.temperature}")
        if self.init_std is not None and not self.init_std > 0:
            raise ValueError("init_std must be positive (or null for the libraries' defaults)")
        if not 0.0 <= self.itm_hard_negatives <= 1.0:
            raise ValueError("itm_hard_negatives must lie in [0, 1]")
        if not 0.0 < self.mlm_probability < 1.0:
            raise ValueError("mlm_probability must lie in (0, 1)")

    @property
    def batch_types(self) -> tuple[str, ...]:
        """The batch types (training/batches.py) this model trains on."""
        kinds = ["caption", "vsg"]
        if self.use_box or self.use_vma:
            kinds.append("entity")
        if self.use_mrc:
            kinds.append("mrc")
        return tuple(kinds)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON/YAML); ``from_dict(to_dict())`` gives an equal config."""
        return json.loads(json.dumps(dataclasses.asdict(self)))  # tuples as lists, as JSON and YAML give them

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Config from a nested dict; unknown keys raise ValueError, missing ones keep their defaults."""
        sub = {"vision": VisionConfig, "text": TextConfig, "fusion": FusionConfig, "weights": LossWeights}
        kwargs = _known(cls, data)
        for key, kind in sub.items():
            if key in kwargs and not isinstance(kwargs[key], kind):
                kwargs[key] = kind(**_known(kind, kwargs[key] or {}))
        return cls(**kwargs)

    def tiny(self) -> ModelConfig:
        """The same model with tiny random sizes (32 px images, 4 x 4 patches, width 32): for tests."""
        return replace(
            self,
            vision=VisionConfig(
                image_size=32,
                patch_size=8,
                hidden_size=32,
                num_layers=2,
                num_heads=2,
                intermediate_size=64,
                dropout=0.0,
            ),
            text=TextConfig(
                vocab_size=128,
                hidden_size=32,
                num_layers=1,
                num_heads=2,
                intermediate_size=64,
                max_position=64,
                dropout=0.0,
                pad_token_id=0,
                cls_token_id=1,
                sep_token_id=2,
                mask_token_id=3,
            ),
            fusion=replace(self.fusion, num_layers=2),
            embed_dim=16,
            queue_size=32 if self.use_momentum else 0,
            mrc_hidden=64,
            num_relations=7,
        )

    def with_relations(self, relations_url: str) -> ModelConfig:
        """The same config with ``num_relations`` from a shard set's relations.json (path or fsspec URL)."""
        from sgverbalise.vocab import RelationVocab

        return replace(self, num_relations=len(RelationVocab.load(relations_url)))


def _known(kind: type, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` restricted to the dataclass's fields; raise ValueError naming any unknown key."""
    names = {f.name for f in fields(kind)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {kind.__name__} keys: {unknown}")
    return dict(data)
