"""Models of the trainer: ALBEF / X-VLM and their relation-aware versions (REALBEF, REX-VLM).

``PRESETS`` maps a name to a ``ModelConfig`` factory; ``build_model(cfg)`` builds the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from sgverbalise.training.models.config import FusionConfig, LossWeights, ModelConfig, TextConfig, VisionConfig
from sgverbalise.training.models.vlm import RelationVLM, box_mostly_inside, patch_mask_for_boxes

ALBEF_BETAS = (0.9, 0.995)
XVLM_BETAS = (0.9, 0.95)


def albef() -> ModelConfig:
    """ALBEF: ViT-B/16, 6 + 6 BERT layers, ITC (momentum distillation, 65,536 queue) + ITM + MLM."""
    return ModelConfig(name="albef", use_momentum=True, queue_size=65536, adam_betas=ALBEF_BETAS)


def realbef() -> ModelConfig:
    """REALBEF: ALBEF trained on VSG batches too, plus masked relation classification."""
    return replace(albef(), name="realbef", use_mrc=True)


def xvlm() -> ModelConfig:
    """X-VLM: ITC / ITM / MLM in-batch (no momentum, no queue), VMA and box regression on entity batches."""
    return ModelConfig(
        name="xvlm", use_momentum=False, queue_size=0, use_box=True, use_vma=True, adam_betas=XVLM_BETAS
    )


def rexvlm() -> ModelConfig:
    """REX-VLM: X-VLM trained on VSG batches too, plus masked relation classification."""
    return replace(xvlm(), name="rexvlm", use_mrc=True)


PRESETS: dict[str, Callable[[], ModelConfig]] = {
    "albef": albef,
    "realbef": realbef,
    "xvlm": xvlm,
    "rexvlm": rexvlm,
}


def build_model(cfg: ModelConfig) -> RelationVLM:
    """The model of a config (encoders from ``vision.init_path`` / ``text.init_path`` when set)."""
    return RelationVLM(cfg)


__all__ = [
    "PRESETS",
    "FusionConfig",
    "LossWeights",
    "ModelConfig",
    "RelationVLM",
    "TextConfig",
    "VisionConfig",
    "box_mostly_inside",
    "build_model",
    "patch_mask_for_boxes",
]
