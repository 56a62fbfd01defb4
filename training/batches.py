"""The batches the data streams produce and the models consume: one data type per batch, as the paper.

Every batch is a dict with ``"type"`` and tensors; images are float tensors normalised for the vision encoder,
boxes are normalised ``x, y, w, h`` in [0, 1] of the (transformed) image. Text is tokenised in the data workers.

``caption`` (web image-text) and ``vsg`` (verbalised scene graphs): the ITC / ITM / MLM batches.
    image           float [B, 3, H, W]
    input_ids       long  [B, L]     [CLS] text [SEP] [PAD]...
    attention_mask  long  [B, L]
    word_ids        long  [B, L]     index of the word each token belongs to, -1 for special/pad tokens
                                     (for whole-word masking)
    image_ids       long  [B]        an id per distinct image (same image twice in a batch: same id; ITC treats
                                     such pairs as positives)

``mrc`` (masked relation classification): T triplets over N images.
    image           float [N, 3, H, W]
    image_index     long  [T]        which image each triplet is on
    subj_ids, subj_mask  long [T, Le]  the subject's label as text
    obj_ids, obj_mask    long [T, Le]  the object's label as text
    subj_box, obj_box    float [T, 4]  normalised x, y, w, h
    relation        long  [T]        relation id (relations.json)

``entity`` (X-VLM grounding): E entities over N images.
    image           float [N, 3, H, W]
    image_index     long  [E]
    input_ids, attention_mask  long [E, Le]  the entity's label (name, or attributes + name) as text
    box             float [E, 4]     normalised x, y, w, h
"""

from __future__ import annotations

BATCH_TYPES = ("caption", "entity", "mrc", "vsg")

CAPTION_KEYS = ("image", "input_ids", "attention_mask", "word_ids", "image_ids")
MRC_KEYS = ("image", "image_index", "subj_ids", "subj_mask", "obj_ids", "obj_mask", "subj_box", "obj_box", "relation")
ENTITY_KEYS = ("image", "image_index", "input_ids", "attention_mask", "box")
KEYS = {"caption": CAPTION_KEYS, "vsg": CAPTION_KEYS, "mrc": MRC_KEYS, "entity": ENTITY_KEYS}


def check_batch(batch: dict) -> None:
    """Raise ValueError when ``batch`` lacks a key its type needs."""
    kind = batch.get("type")
    if kind not in KEYS:
        raise ValueError(f"batch type {kind!r} is not one of {BATCH_TYPES}")
    missing = [k for k in KEYS[kind] if k not in batch]
    if missing:
        raise ValueError(f"{kind} batch lacks {missing}")
