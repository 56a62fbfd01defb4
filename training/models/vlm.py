"""RelationVLM: ALBEF / X-VLM with the relation-aware objectives (VSG batches, masked relation classes).

Batches follow training/batches.py. Per batch type (each loss is named, ``loss`` is their weighted sum):
- ``caption`` / ``vsg``: ITC (momentum distillation and queue when on), ITM with hard negatives, whole-word
  MLM; a batch with foils (``data.foils``) adds (image i, foil i) as ITM negatives for its rows with a foil.
- ``entity`` (X-VLM): VMA, i.e. ITC / ITM / MLM between an entity's label and the image with its visual
  context masked (in-batch, no queue; labels that are the same text count as positives), and box regression
  (L1 + GIoU) from the fused [CLS] of the label over the whole image.
- ``mrc``: subject and object encoded separately with their boxes' visual context masked, fused [CLS] vectors
  concatenated, two-layer MLP, cross-entropy over the relation vocabulary.

Visual context masking (as X-VLM): the token mask keeps the image [CLS] and every patch that overlaps the box;
it restricts the ViT's self-attention (so the entity's tokens never see other patches) and the fusion's
cross-attention. Boxes are clipped to the image; a box of zero area still keeps the patch at its corner.
X-VLM's rule "keep a box only if more than half of it lies inside the cropped image" is a data-side decision
(the data streams crop); ``box_mostly_inside`` implements it for them.

Images come as uint8 pixels [N, 3, H, W] (the batch contract) and are normalised on the model's device by
``normalise_images``: ``forward`` does it once per batch, and every public method that takes images does it
for its caller (the evaluation scorers pass uint8 pixels too). A floating tensor is taken as already
normalised, which is how ``forward`` hands its batch on to the methods it shares with those callers.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_model, save_model
from torch import nn
from transformers.models.bert.modeling_bert import BertPredictionHeadTransform

from sgverbalise.training.batches import IMAGE_MEAN, IMAGE_STD, check_batch
from sgverbalise.training.models import losses as L
from sgverbalise.training.models.config import TEMP_MAX, TEMP_MIN, ModelConfig
from sgverbalise.training.models.encoders import TextEncoder, VisionEncoder, bert_config
from sgverbalise.training.models.fusion import FusionEncoder

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
_EDGE_EPS = 1e-4  # in patch units: a box edge this close to a patch border does not pull in the next patch
_LOG_TEMP_MIN, _LOG_TEMP_MAX = math.log(TEMP_MIN), math.log(TEMP_MAX)


def normalise_images(
    image: torch.Tensor,
    mean: tuple[float, ...] = IMAGE_MEAN,
    std: tuple[float, ...] = IMAGE_STD,
) -> torch.Tensor:
    """uint8 pixels [N, 3, H, W] as the vision encoder's input: float32 ``(pixels / 255 - mean) / std`` on the
    pixels' device (CLIP's mean and std unless given); a floating tensor is taken as already normalised and
    returned unchanged."""
    if image.is_floating_point():
        return image
    if image.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 pixels (or normalised floats), not {image.dtype}")
    mean_t = torch.tensor(mean, dtype=torch.float32, device=image.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=image.device).view(1, 3, 1, 1)
    return image.float().div_(255.0).sub_(mean_t).div_(std_t)


def patch_mask_for_boxes(boxes: torch.Tensor, grid: int) -> torch.Tensor:
    """Token keep-mask [T, 1 + grid * grid] (long): image [CLS] plus the patches overlapping each box.

    ``boxes`` [T, 4] are normalised x, y, w, h; patches are numbered row by row as the ViT lays them out.
    """
    x0, y0 = boxes[:, 0], boxes[:, 1]
    x1, y1 = x0 + boxes[:, 2], y0 + boxes[:, 3]
    cells = torch.arange(grid, device=boxes.device)

    def span(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        start = torch.floor(low.clamp(0, 1) * grid + _EDGE_EPS).long().clamp(0, grid - 1)
        stop = torch.ceil(high.clamp(0, 1) * grid - _EDGE_EPS).long().clamp(max=grid)
        stop = torch.maximum(stop, start + 1)
        return (cells[None, :] >= start[:, None]) & (cells[None, :] < stop[:, None])

    inside = span(y0, y1)[:, :, None] & span(x0, x1)[:, None, :]
    keep_cls = torch.ones(boxes.shape[0], 1, dtype=torch.long, device=boxes.device)
    return torch.cat([keep_cls, inside.flatten(1).long()], dim=1)


def box_mostly_inside(boxes: torch.Tensor) -> torch.Tensor:
    """[T] bool: more than half of each normalised x, y, w, h box lies inside the image (X-VLM's rule)."""
    xyxy = L.xywh_to_xyxy(boxes)
    inner = torch.cat([xyxy[:, :2].clamp(0, 1), xyxy[:, 2:].clamp(0, 1)], dim=1)
    area = boxes[:, 2].clamp(min=0) * boxes[:, 3].clamp(min=0)
    inside = (inner[:, 2:] - inner[:, :2]).clamp(min=0).prod(dim=1)
    return (area > 0) & (inside > 0.5 * area)


def _first_occurrence(inverse: torch.Tensor, count: int) -> torch.Tensor:
    """For each unique value (0..count-1), the first position where ``inverse`` holds it."""
    positions = torch.arange(inverse.numel(), device=inverse.device)
    first = torch.full((count,), inverse.numel(), dtype=torch.long, device=inverse.device)
    return first.scatter_reduce(0, inverse, positions, reduce="amin")


def _pad_to(ids: torch.Tensor, length: int, value: int) -> torch.Tensor:
    """``ids`` [B, L] right-padded with ``value`` to ``length`` columns."""
    return F.pad(ids, (0, length - ids.shape[1]), value=value)


class MLMHead(nn.Module):
    """BERT's masked-LM head: dense + activation + LayerNorm, then a decoder tied to the word embeddings."""

    def __init__(self, bert_cfg, embeddings: nn.Embedding) -> None:
        super().__init__()
        self.transform = BertPredictionHeadTransform(bert_cfg)
        self.decoder = nn.Linear(bert_cfg.hidden_size, bert_cfg.vocab_size)
        self.decoder.weight = embeddings.weight

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits of hidden states."""
        return self.decoder(self.transform(hidden))


class RelationVLM(nn.Module):
    """ALBEF / X-VLM encoders and heads; ``forward(batch)`` gives the batch's named losses and ``loss``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = cfg = copy.deepcopy(config)
        text_init, vision_init = cfg.text.init_path, cfg.vision.init_path
        self.vision = VisionEncoder(cfg.vision)  # sizes in cfg follow the checkpoint when initialised from one
        self.text = TextEncoder(cfg.text, spare_layers=cfg.fusion.num_layers)
        fusion_cfg = bert_config(cfg.text, cfg.fusion.num_layers)
        self.fusion = FusionEncoder(
            fusion_cfg, cfg.fusion.num_layers, cfg.vision.hidden_size, cfg.fusion.cross_attention_scale,
            cfg.fusion.position_code,
        )
        self.fusion_layers_from_text_init = self.fusion.init_from_bert_layers(self.text.spare)
        self.text.spare = []
        width = cfg.text.hidden_size
        self.vision_proj = nn.Linear(cfg.vision.hidden_size, cfg.embed_dim)
        self.text_proj = nn.Linear(width, cfg.embed_dim)
        self.itm_head = nn.Linear(width, 2)
        self.mlm_head = MLMHead(fusion_cfg, self.text.word_embeddings)
        if text_init:
            self._load_mlm_head(text_init)
        # The ITC temperature is learnt in log space (as CLIP's logit scale): a step scales it by a factor.
        log_temp = torch.tensor(math.log(float(cfg.temperature)))
        self.log_temp = nn.Parameter(log_temp, requires_grad=cfg.learn_temperature)
        self.mrc_head = None
        if cfg.use_mrc:
            self.mrc_head = nn.Sequential(
                nn.Linear(2 * width, cfg.mrc_hidden), nn.ReLU(), nn.Linear(cfg.mrc_hidden, cfg.num_relations)
            )
        self.box_head = None
        if cfg.use_box:
            self.box_head = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 4))
        if cfg.init_std is not None:
            self._reinit(cfg.init_std, keep_text=bool(text_init), keep_vision=bool(vision_init))
        self.momentum_towers = None
        if cfg.use_momentum:
            self.momentum_towers = copy.deepcopy(self._towers())
            self.momentum_towers.requires_grad_(False)
        if cfg.queue_size:
            self.register_buffer("image_queue", torch.zeros(cfg.queue_size, cfg.embed_dim))
            self.register_buffer("text_queue", torch.zeros(cfg.queue_size, cfg.embed_dim))
            self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
            self.register_buffer("queue_count", torch.zeros((), dtype=torch.long))
        self._queue_filled = 0  # queue_count on the host: reading the buffer each step would sync the device
        # Health of the last ``forward`` (detached scalars, not losses; the trainer logs them):
        # ``feature_cos``: mean pairwise cosine of the ITC image features of the batch (near 1: collapsed);
        # ``itm_separation``: mean p(match) of the ITM positives minus that of its negatives (foils included);
        # ``foil_separation`` (batches with foils): p(match) of captions minus of their foils, same images.
        self.diagnostics: dict[str, torch.Tensor] = {}

    # -- building blocks ----------

    def _reinit(self, std: float, keep_text: bool, keep_vision: bool) -> None:
        """Every Linear/Embedding weight ~ N(0, std), biases 0, except what a checkpoint gave: the loaded
        towers, and with a text checkpoint the MLM head (tied to its embeddings, its transform loaded) and the
        fusion layers taken from its spare layers."""
        kept: list[nn.Module] = [self.vision] if keep_vision else []
        if keep_text:
            kept += [self.text, self.mlm_head] + ([self.fusion] if self.fusion_layers_from_text_init else [])
        skip = {id(m) for part in kept for m in part.modules()}
        for module in self.modules():
            if id(module) in skip or not isinstance(module, (nn.Linear, nn.Embedding)):
                continue
            nn.init.normal_(module.weight, std=std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def normalise_images(self, image: torch.Tensor) -> torch.Tensor:
        """``normalise_images`` with this model's ``vision.image_mean`` / ``vision.image_std``."""
        return normalise_images(image, self.config.vision.image_mean, self.config.vision.image_std)

    @property
    def temp(self) -> torch.Tensor:
        """The ITC temperature: ``exp(log_temp)`` within [TEMP_MIN, TEMP_MAX] (a tensor with its gradient)."""
        return self.log_temp.clamp(_LOG_TEMP_MIN, _LOG_TEMP_MAX).exp()

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        """Load as nn.Module does, converting an older checkpoint's linear ``temp`` to ``log_temp`` and
        setting the host-side queue count from the loaded ``queue_count``."""
        old, new = prefix + "temp", prefix + "log_temp"
        if old in state_dict and new not in state_dict:
            state_dict[new] = state_dict.pop(old).float().clamp(TEMP_MIN, TEMP_MAX).log()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if self.config.queue_size:
            self._queue_filled = int(self.queue_count)

    def _towers(self) -> nn.ModuleDict:
        """The modules that have momentum copies, in a fixed order."""
        return nn.ModuleDict(
            {
                "vision": self.vision,
                "vision_proj": self.vision_proj,
                "text": self.text,
                "text_proj": self.text_proj,
                "fusion": self.fusion,
                "mlm_head": self.mlm_head,
            }
        )

    def _load_mlm_head(self, folder: str) -> None:
        """Take the MLM transform and output bias of a BertForMaskedLM checkpoint when the folder has them."""
        weights = Path(folder) / WEIGHTS_NAME
        if not weights.is_file():
            return
        names = {
            "transform.dense.weight": "cls.predictions.transform.dense.weight",
            "transform.dense.bias": "cls.predictions.transform.dense.bias",
            "transform.LayerNorm.weight": "cls.predictions.transform.LayerNorm.weight",
            "transform.LayerNorm.bias": "cls.predictions.transform.LayerNorm.bias",
            "decoder.bias": "cls.predictions.bias",
        }
        with safe_open(str(weights), framework="pt") as f:
            found = {ours: f.get_tensor(theirs) for ours, theirs in names.items() if theirs in f.keys()}
        if found:
            self.mlm_head.load_state_dict(found, strict=False)

    def encode_image(self, image: torch.Tensor, token_mask: torch.Tensor | None = None) -> torch.Tensor:
        """ViT token states [N, 1 + patches, Hv] ([CLS] first) of uint8 pixels, optionally restricted by a
        token keep-mask."""
        return self.vision(self.normalise_images(image), token_mask)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Text-encoder token states [B, L, H]."""
        return self.text(input_ids, attention_mask)

    def fuse(
        self,
        text_hidden: torch.Tensor,
        attention_mask: torch.Tensor,
        image_embeds: torch.Tensor,
        image_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Fused token states [B, L, H]; ``image_mask`` [B, K] (1 = attend) defaults to every image token."""
        if image_mask is None:
            image_mask = torch.ones(image_embeds.shape[:2], dtype=torch.long, device=image_embeds.device)
        return self.fusion(text_hidden, attention_mask, image_embeds, image_mask)

    def region_embeds(
        self, image: torch.Tensor, image_index: torch.Tensor, boxes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Image tokens of each box with its visual context masked, and their keep-mask.

        Shapes [E, 1 + P, Hv] and [E, 1 + P].

        The ViT runs once per distinct (image, box) pair.
        """
        image = self.normalise_images(image)
        keys = torch.cat([image_index[:, None].to(boxes.dtype), boxes], dim=1)
        unique, inverse = torch.unique(keys, dim=0, return_inverse=True)
        first = _first_occurrence(inverse, unique.shape[0])
        token_mask = patch_mask_for_boxes(boxes[first], self.config.vision.grid)
        embeds = self.vision(image[image_index[first]], token_mask)
        return embeds[inverse], token_mask[inverse]

    def entity_cls(
        self,
        image: torch.Tensor,
        image_index: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        boxes: torch.Tensor,
    ) -> torch.Tensor:
        """Fused [CLS] [E, H] of each entity's label over its image, visual context outside its box masked."""
        embeds, token_mask = self.region_embeds(image, image_index, boxes)
        fused = self.fuse(self.text(input_ids, attention_mask), attention_mask, embeds, token_mask)
        return fused[:, 0]

    def _image_feat(self, image_embeds: torch.Tensor, proj: nn.Module | None = None) -> torch.Tensor:
        """Normalised ITC embedding of image tokens."""
        return F.normalize((self.vision_proj if proj is None else proj)(image_embeds[:, 0]), dim=-1)

    def _text_feat(self, text_hidden: torch.Tensor, proj: nn.Module | None = None) -> torch.Tensor:
        """Normalised ITC embedding of text tokens."""
        return F.normalize((self.text_proj if proj is None else proj)(text_hidden[:, 0]), dim=-1)

    # -- momentum and queue ----------

    @torch.no_grad()
    def _momentum_update(self) -> None:
        """EMA of the online towers into their momentum copies."""
        m = self.config.momentum
        online = self._towers().parameters()
        for param, param_m in zip(online, self.momentum_towers.parameters(), strict=True):
            param_m.mul_(m).add_(param.detach(), alpha=1 - m)

    @torch.no_grad()
    def _enqueue(self, image_feat: torch.Tensor, text_feat: torch.Tensor) -> None:
        """Write momentum features into the ring-buffer queues (the newest ``queue_size`` are kept). Under
        torch.distributed the features of every rank are enqueued, in rank order, as ALBEF does: the queues hold
        negatives from the whole global batch and stay the same on every rank."""
        size = self.config.queue_size
        image_feat, text_feat = L.gather_ranks(image_feat), L.gather_ranks(text_feat)
        image_feat, text_feat = image_feat[-size:], text_feat[-size:]
        slots = (self.queue_ptr + torch.arange(image_feat.shape[0], device=image_feat.device)) % size
        self.image_queue[slots] = image_feat.to(self.image_queue.dtype)
        self.text_queue[slots] = text_feat.to(self.text_queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + image_feat.shape[0]) % size)
        self._queue_filled = min(self._queue_filled + image_feat.shape[0], size)
        self.queue_count.fill_(self._queue_filled)

    def _queues(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The filled part of the queues (None without a queue); the count is kept on the host (no sync)."""
        if not self.config.queue_size:
            return None, None
        filled = self._queue_filled
        return self.image_queue[:filled], self.text_queue[:filled]

    # -- losses ----------

    def _albef_losses(
        self,
        image_embeds: torch.Tensor,
        image_mask: torch.Tensor,
        batch: dict,
        word_ids: torch.Tensor,
        group_ids: torch.Tensor,
        alpha: float,
        momentum_image: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """ITC + ITM (hard negatives) + MLM of images and texts; momentum path with ``momentum_image``."""
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        text_hidden = self.text(input_ids, attention_mask)
        image_feat, text_feat = self._image_feat(image_embeds), self._text_feat(text_hidden)
        positives = L.positives_from_ids(group_ids)
        self.diagnostics["feature_cos"] = L.mean_pairwise_cosine(image_feat.detach())
        temp = self.temp
        towers = self.momentum_towers if momentum_image is not None else None
        momentum: dict[str, torch.Tensor] = {}
        if towers is not None:
            with torch.no_grad():
                if self.training:
                    self._momentum_update()
                image_embeds_m = towers["vision"](momentum_image)
                momentum = {
                    "image_embeds": image_embeds_m,
                    "image_feat": self._image_feat(image_embeds_m, towers["vision_proj"]),
                    "text_feat": self._text_feat(
                        towers["text"](input_ids, attention_mask), towers["text_proj"]
                    ),
                }
            image_queue, text_queue = self._queues()
            itc = L.itc_loss(
                image_feat,
                text_feat,
                temp,
                positives,
                image_feat_m=momentum["image_feat"],
                text_feat_m=momentum["text_feat"],
                image_queue=image_queue,
                text_queue=text_queue,
                alpha=alpha,
            )
        else:
            itc = L.itc_loss(image_feat, text_feat, temp, positives)

        foils = (batch["has_foil"], batch["foil_ids"], batch["foil_mask"]) if "has_foil" in batch else None
        itm = self._itm_loss(
            image_embeds, image_mask, text_hidden, attention_mask, image_feat, text_feat, positives, foils
        )

        masked_ids, labels = L.mask_whole_words(
            input_ids,
            word_ids,
            probability=self.config.mlm_probability,
            mask_token_id=self.config.text.mask_token_id,
            vocab_size=self.config.text.vocab_size,
        )
        chosen = labels != L.IGNORE
        fused = self.fuse(self.text(masked_ids, attention_mask), attention_mask, image_embeds, image_mask)
        logits = self.mlm_head(fused[chosen])
        soft = None
        if towers is not None and alpha > 0:
            with torch.no_grad():
                hidden_m = towers["text"](masked_ids, attention_mask)
                fused_m = towers["fusion"](hidden_m, attention_mask, momentum["image_embeds"], image_mask)
                soft = F.softmax(towers["mlm_head"](fused_m[chosen]), dim=-1)
        mlm = L.mlm_loss(logits, labels[chosen], soft, alpha)

        if towers is not None and self.training and self.config.queue_size:
            self._enqueue(momentum["image_feat"], momentum["text_feat"])
        return {"itc": itc, "itm": itm, "mlm": mlm}

    def _itm_loss(
        self,
        image_embeds: torch.Tensor,
        image_mask: torch.Tensor,
        text_hidden: torch.Tensor,
        attention_mask: torch.Tensor,
        image_feat: torch.Tensor,
        text_feat: torch.Tensor,
        positives: torch.Tensor,
        foils: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """ITM over the B pairs plus, per image, a hard negative text and, per text, a hard negative image;
        with ``foils`` (has_foil [B], foil_ids, foil_mask [B, Lf]) also (image i, foil i) for each row with a
        foil, one more negative (fused on its own, so the other pairs are computed as without foils)."""
        batch = image_embeds.shape[0]
        rows = torch.arange(batch, device=image_embeds.device)
        with torch.no_grad():
            sim = image_feat @ text_feat.t() / self.temp
        hard = self.config.itm_hard_negatives
        text_for_image, image_ok = L.sample_hard_negatives(sim, positives, hard_fraction=hard)
        image_for_text, text_ok = L.sample_hard_negatives(sim.t(), positives.t(), hard_fraction=hard)
        image_rows = torch.cat([rows, rows[image_ok], image_for_text[text_ok]])
        text_rows = torch.cat([rows, text_for_image[image_ok], rows[text_ok]])
        fused = self.fuse(
            text_hidden[text_rows],
            attention_mask[text_rows],
            image_embeds[image_rows],
            image_mask[image_rows],
        )
        labels = torch.zeros(image_rows.shape[0], dtype=torch.long, device=image_embeds.device)
        labels[:batch] = 1
        logits = self.itm_head(fused[:, 0])
        if foils is not None:
            logits, labels = self._with_foils(logits, labels, image_embeds, image_mask, *foils)
        self.diagnostics["itm_separation"] = L.itm_separation(logits.detach(), labels)
        return L.itm_loss(logits, labels)

    def _with_foils(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        image_embeds: torch.Tensor,
        image_mask: torch.Tensor,
        has_foil: torch.Tensor,
        foil_ids: torch.Tensor,
        foil_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ITM logits and labels with (image i, foil i) appended as negatives for the rows with a foil; sets the
        ``foil_separation`` diagnostic (mean p(match) of those rows' captions minus of their foils; 0 without)."""
        rows = has_foil.nonzero().squeeze(1)
        foil_logits = logits.new_zeros((0, logits.shape[1]))
        if rows.numel():
            ids, mask = foil_ids[rows], foil_mask[rows]
            fused = self.fuse(self.text(ids, mask), mask, image_embeds[rows], image_mask[rows])
            foil_logits = self.itm_head(fused[:, 0])
        pairs = torch.cat([logits[rows], foil_logits]).detach()
        pair_labels = torch.cat([labels.new_ones(rows.numel()), labels.new_zeros(rows.numel())])
        self.diagnostics["foil_separation"] = L.itm_separation(pairs, pair_labels)
        return torch.cat([logits, foil_logits]), torch.cat([labels, labels.new_zeros(rows.numel())])

    def _caption_losses(self, batch: dict, alpha: float) -> dict[str, torch.Tensor]:
        """Caption and VSG batches: ITC / ITM / MLM, with momentum distillation when configured."""
        image = batch["image"]  # normalised by ``forward``
        image_embeds = self.vision(image)
        image_mask = torch.ones(image_embeds.shape[:2], dtype=torch.long, device=image.device)
        momentum_image = image if self.momentum_towers is not None else None
        return self._albef_losses(
            image_embeds, image_mask, batch, batch["word_ids"], batch["image_ids"], alpha, momentum_image
        )

    def _entity_losses(self, batch: dict, alpha: float) -> dict[str, torch.Tensor]:
        """Entity batches: VMA on the box-masked image and box regression from the whole image."""
        image, index, box = batch["image"], batch["image_index"], batch["box"]
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        out: dict[str, torch.Tensor] = {}
        if self.config.use_vma:
            embeds, token_mask = self.region_embeds(image, index, box)
            word_ids = batch.get("word_ids")
            if word_ids is None:
                specials = (
                    self.config.text.pad_token_id,
                    self.config.text.cls_token_id,
                    self.config.text.sep_token_id,
                )
                word_ids = L.token_word_ids(input_ids, attention_mask, specials)
            same_text = L.group_ids_of_rows(input_ids * attention_mask)
            out.update(self._albef_losses(embeds, token_mask, batch, word_ids, same_text, 0.0))
        if self.config.use_box:
            out["box_l1"], out["box_giou"] = L.box_losses(
                self.predict_boxes(image, index, input_ids, attention_mask), box
            )
        return out

    def _mrc_losses(self, batch: dict, alpha: float) -> dict[str, torch.Tensor]:
        """MRC batches: relation cross-entropy."""
        return {"mrc": F.cross_entropy(self.mrc_logits(batch), batch["relation"])}

    # -- public ----------

    @property
    def batch_types(self) -> tuple[str, ...]:
        """The batch types this model trains on (others make ``forward`` raise ValueError)."""
        return self.config.batch_types

    def forward(self, batch: dict, *, alpha: float | None = None) -> dict[str, torch.Tensor]:
        """Named losses of one batch plus ``loss``, their weighted sum (weights from config.weights).

        ``alpha`` overrides the distillation weight (e.g. ALBEF's ramp-up over the first epoch).
        """
        check_batch(batch)
        batch = {**batch, "image": self.normalise_images(batch["image"])}
        self.diagnostics = {}
        kind = batch["type"]
        if kind not in self.batch_types:
            raise ValueError(
                f"{self.config.name} does not train on {kind!r} batches (it takes {self.batch_types})"
            )
        if self.training and self.log_temp.requires_grad:
            with torch.no_grad():
                self.log_temp.clamp_(_LOG_TEMP_MIN, _LOG_TEMP_MAX)
        distill = self.config.distill_alpha if alpha is None else alpha
        losses = _HANDLERS[kind](self, batch, distill if self.momentum_towers is not None else 0.0)
        weights = self.config.weights
        losses["loss"] = sum(getattr(weights, name) * value for name, value in losses.items())
        return losses

    def mrc_logits(self, batch: dict) -> torch.Tensor:
        """Relation logits [T, num_relations] of an MRC batch."""
        if self.mrc_head is None:
            raise ValueError(f"{self.config.name} has no MRC head (use_mrc is off)")
        triplets = batch["relation"].shape[0]
        length = max(batch["subj_ids"].shape[1], batch["obj_ids"].shape[1])
        pad = self.config.text.pad_token_id
        ids = torch.cat([_pad_to(batch["subj_ids"], length, pad), _pad_to(batch["obj_ids"], length, pad)])
        mask = torch.cat([_pad_to(batch["subj_mask"], length, 0), _pad_to(batch["obj_mask"], length, 0)])
        index = torch.cat([batch["image_index"], batch["image_index"]])
        boxes = torch.cat([batch["subj_box"], batch["obj_box"]])
        cls = self.entity_cls(batch["image"], index, ids, mask, boxes)
        return self.mrc_head(torch.cat([cls[:triplets], cls[triplets:]], dim=1))

    def predict_boxes(
        self,
        image: torch.Tensor,
        image_index: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Predicted boxes [E, 4] (normalised centre x, centre y, w, h) of each label in its whole image."""
        if self.box_head is None:
            raise ValueError(f"{self.config.name} has no box head (use_box is off)")
        image_embeds = self.encode_image(image)[image_index]
        fused = self.fuse(self.text(input_ids, attention_mask), attention_mask, image_embeds)
        return self.box_head(fused[:, 0]).sigmoid()

    @torch.no_grad()
    def itm_score(
        self, image: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Probability of "match" [B] of image i with text i (softmax of the ITM head; no gradients)."""
        return self.itm_score_encoded(
            self.encode_image(image), self.text(input_ids, attention_mask), attention_mask
        )

    @torch.no_grad()
    def itm_score_encoded(
        self, image_embeds: torch.Tensor, text_hidden: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """``itm_score`` from precomputed ``encode_image`` / ``encode_text`` outputs (re-ranking)."""
        fused = self.fuse(text_hidden, attention_mask, image_embeds)
        return F.softmax(self.itm_head(fused[:, 0]).float(), dim=-1)[:, 1]

    @torch.no_grad()
    def itc_embeddings(
        self,
        image: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """L2-normalised ITC embeddings (image [N, D] or None, text [B, D] or None); similarity = dot."""
        image_feat = None if image is None else self._image_feat(self.encode_image(image))
        text_feat = None
        if input_ids is not None:
            if attention_mask is None:
                raise ValueError("text embeddings need attention_mask")
            text_feat = self._text_feat(self.text(input_ids, attention_mask))
        return image_feat, text_feat

    def param_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: decay on weight matrices; none on biases, norms, temperature, position/cls tokens."""
        decay, no_decay = [], []
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            plain = param.ndim <= 1 or "position_embeddings" in name or "cls_token" in name
            (no_decay if plain else decay).append(param)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def save_pretrained(self, folder: str | Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` (weights, momentum copies, queues) there."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.config.to_dict(), indent=2, sort_keys=True) + "\n"
        (folder / CONFIG_NAME).write_text(text, encoding="utf-8")
        save_model(self, str(folder / WEIGHTS_NAME))

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu") -> RelationVLM:
        """A model saved by ``save_pretrained`` (no init checkpoints are read)."""
        folder = Path(folder)
        config = ModelConfig.from_dict(json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8")))
        config.vision.init_path = config.text.init_path = None
        model = cls(config)
        load_model(model, str(folder / WEIGHTS_NAME), strict=True, device=str(device))
        return model.to(device)


_HANDLERS: dict[str, Callable[[RelationVLM, dict, float], dict[str, torch.Tensor]]] = {
    "caption": RelationVLM._caption_losses,
    "vsg": RelationVLM._caption_losses,
    "entity": RelationVLM._entity_losses,
    "mrc": RelationVLM._mrc_losses,
}
