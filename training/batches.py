"""The batches the data streams produce and the models consume: one data type per batch, as the paper.

Every batch is a dict with ``"type"`` and tensors. Images are uint8 RGB pixels [N, 3, H, W] (contiguous,
channels first), exactly as the workers resized them: the model normalises them on its own device with
``IMAGE_MEAN`` / ``IMAGE_STD`` (``training.models.vlm.normalise_images``), so a batch crosses process and
device boundaries at a quarter of the size of float images. Boxes are normalised ``x, y, w, h`` in [0, 1] of
the (transformed) image. Text is tokenised in the data workers.

``caption`` (web image-text) and ``vsg`` (verbalised scene graphs): the ITC / ITM / MLM batches.
    image           uint8 [B, 3, H, W]
    input_ids       long  [B, L]     [CLS] text [SEP] [PAD]...
    attention_mask  long  [B, L]
    word_ids        long  [B, L]     index of the word each token belongs to, -1 for special/pad tokens
                                     (for whole-word masking)
    image_ids       long  [B]        an id per distinct image (same image twice in a batch: same id; ITC treats
                                     such pairs as positives)
  with ``data.foils`` (all three or none; ``FOIL_KEYS``):
    foil_ids        long  [B, Lf]    a false caption of image i (relation foil), tokenised as input_ids; an
                                     empty text ([CLS] [SEP]) where the row has none
    foil_mask       long  [B, Lf]
    has_foil        bool  [B]        whether row i has a foil: (image i, foil i) is then one more ITM negative

``mrc`` (masked relation classification): T triplets over N images.
    image           uint8 [N, 3, H, W]
    image_index     long  [T]        which image each triplet is on
    subj_ids, subj_mask  long [T, Le]  the subject's label as text
    obj_ids, obj_mask    long [T, Le]  the object's label as text
    subj_box, obj_box    float [T, 4]  normalised x, y, w, h
    relation        long  [T]        relation id (relations.json)

``entity`` (X-VLM grounding): E entities over N images.
    image           uint8 [N, 3, H, W]
    image_index     long  [E]
    input_ids, attention_mask  long [E, Le]  the entity's label (name, or attributes + name) as text
    box             float [E, 4]     normalised x, y, w, h
"""

from __future__ import annotations

import torch

# the vision encoder's input normalisation (ALBEF's, i.e. CLIP's, per-channel mean and std of 0-1 pixels)
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)
BATCH_TYPES = ("caption", "entity", "mrc", "vsg")

CAPTION_KEYS = ("image", "input_ids", "attention_mask", "word_ids", "image_ids")
MRC_KEYS = ("image", "image_index", "subj_ids", "subj_mask", "obj_ids", "obj_mask", "subj_box", "obj_box", "relation")
ENTITY_KEYS = ("image", "image_index", "input_ids", "attention_mask", "box")
KEYS = {"caption": CAPTION_KEYS, "vsg": CAPTION_KEYS, "mrc": MRC_KEYS, "entity": ENTITY_KEYS}
FOIL_KEYS = ("foil_ids", "foil_mask", "has_foil")  # optional, caption and vsg batches only


def check_batch(batch: dict) -> None:
    """Raise ValueError when ``batch`` lacks a key its type needs, its images are not uint8 [N, 3, H, W] or its
    foil keys are partial, on a type without captions, or not [B, Lf] / bool [B]."""
    kind = batch.get("type")
    if kind not in KEYS:
        raise ValueError(f"batch type {kind!r} is not one of {BATCH_TYPES}")
    missing = [k for k in KEYS[kind] if k not in batch]
    if missing:
        raise ValueError(f"{kind} batch lacks {missing}")
    image = batch["image"]
    if not isinstance(image, torch.Tensor) or image.dtype != torch.uint8:
        raise ValueError(f"{kind} batch images must be a uint8 tensor, not {getattr(image, 'dtype', type(image))}")
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"{kind} batch images must be [N, 3, H, W], not {list(image.shape)}")
    _check_foils(batch, kind)


def _check_foils(batch: dict, kind: str) -> None:
    present = [k for k in FOIL_KEYS if k in batch]
    if not present:
        return
    if KEYS[kind] is not CAPTION_KEYS:
        raise ValueError(f"{kind} batches carry no foils, got {present}")
    if len(present) < len(FOIL_KEYS):
        raise ValueError(f"{kind} batch has {present} but not all of {list(FOIL_KEYS)}")
    rows = batch["input_ids"].shape[0]
    ids, mask, has = batch["foil_ids"], batch["foil_mask"], batch["has_foil"]
    if ids.ndim != 2 or ids.shape[0] != rows or mask.shape != ids.shape:
        shapes = f"{list(ids.shape)}/{list(mask.shape)}"
        raise ValueError(f"{kind} batch foil_ids/foil_mask must be [{rows}, Lf], not {shapes}")
    if has.dtype != torch.bool or list(has.shape) != [rows]:
        raise ValueError(f"{kind} batch has_foil must be bool [{rows}], not {has.dtype} {list(has.shape)}")
