"""Per-type examples from raw shard samples, and their collation into the batches of ``training.batches``.

A raw sample is ``{"__key__", "__url__", ext: bytes}``. Builders take the sample, a ``Context`` and a seeded
``random.Random`` (every random choice is drawn from it) and return an example dict, or None when the sample
has nothing for this type (no caption, no VSG, no entity or triplet left after the crop): the stream counts
those as filtered. Any exception (a corrupt JPEG, bad JSON) is counted as a skipped sample by the stream.

* ``caption``: the ``.txt`` caption (web shards in img2dataset's format); ``image_id`` from source and key.
* ``vsg``: one of the sample's VSG strings, drawn at random; ``image_id`` from the scene graph's image id (GQA
  images are VG images with the same ids, so the same picture gets the same id in either source).
* With ``Context.foils`` (``data.foils``) both also carry ``foil``, a false caption of the image or None: a
  web sample's ``"foil"`` string from its ``.json``, or the VSG string with one segment replaced by its foil
  (``sgverbalise.foils.vsg_foil``, from the sample's triplets, drawn after the image's crop). A mirrored
  image gets the foil mirrored too (``swap_left_right``), as its caption.
* ``entity``: up to ``entities_per_image`` entities whose boxes survive the crop, label = name (or attributes
  and name with ``entity_attributes``).
* ``mrc``: up to ``relations_per_image`` triplets whose subject and object boxes both survive the crop, drawn
  at random while the distinct entities they involve stay within ``entities_per_image`` (4 entities and 2
  relations per image, as X-VLM samples boxes).

For ``entity`` and ``mrc`` a crop that leaves nothing usable is drawn again (``crop_attempts`` times)
before the whole image is used uncropped.
"""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import torch
from PIL import Image
from torch.utils.data import default_collate

from sgverbalise.foils import vsg_foil
from sgverbalise.schemas.sample import Entity, SampleJSON, Triplet
from sgverbalise.training.data.pixelring import PixelRing, RingPixels
from sgverbalise.training.data.tokenizer import TextEncoder
from sgverbalise.training.data.transforms import Crop, ImageTransform, crop_box, swap_left_right

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


@dataclass
class Context:
    """What a stream's builders and collation need: its type, source name, transform, tokenizer, settings; in a
    DataLoader worker, the worker's ``PixelRing``."""

    kind: str
    source: str
    transform: ImageTransform
    tokenizer: Any
    max_text_len: int
    pad_to_max: bool = False
    entities_per_image: int = 4
    relations_per_image: int = 2
    entity_attributes: bool = False
    crop_attempts: int = 5
    keep_keys: bool = False
    foils: bool = False
    ring: PixelRing | None = None
    encoder: TextEncoder | None = field(default=None, repr=False)  # built at the first batch


def image_id(namespace: str, ident: str) -> int:
    """A stable non-negative 63-bit id for an image."""
    digest = hashlib.blake2b(f"{namespace}\x00{ident}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def open_image(sample: dict) -> Image.Image:
    """The sample's image, opened but not decoded yet (the transform decodes it, maybe at a reduced scale);
    raises on a missing image or an unknown format (undecodable pixels raise in the transform)."""
    ext = next((e for e in IMAGE_EXTS if e in sample), None)
    if ext is None:
        raise KeyError(f"sample {sample.get('__key__')!r} has no image member ({'/'.join(IMAGE_EXTS)})")
    return Image.open(io.BytesIO(sample[ext]))


def decode_json(sample: dict) -> SampleJSON:
    """The sample's ``.json`` member (its fields: ``sgverbalise.schemas.sample``)."""
    if "json" not in sample:
        raise KeyError(f"sample {sample.get('__key__')!r} has no json member")
    meta = orjson.loads(sample["json"])
    if not isinstance(meta, dict):
        raise ValueError(f"sample {sample.get('__key__')!r}: json is not an object")
    return meta


def _order(rng: random.Random, n: int) -> list[int]:
    return rng.sample(range(n), n)


def caption_example(sample: dict, ctx: Context, rng: random.Random) -> dict | None:
    """A web image-text example (img2dataset's ``.txt`` caption)."""
    text = sample.get("txt", b"").decode("utf-8").strip()
    if not text:
        return None
    pixels, _, flipped = ctx.transform(open_image(sample), rng=rng)
    example = {
        "image": pixels,
        "text": _mirrored(text, flipped),
        "image_id": image_id(ctx.source, sample["__key__"]),
        "key": sample["__key__"],
    }
    if ctx.foils:
        example["foil"] = _mirrored(web_foil(sample), flipped)
    return example


def web_foil(sample: dict) -> str | None:
    """The ``"foil"`` string of a web sample's ``.json`` (``WebStyle.captions="statements"``), or None."""
    if "json" not in sample:
        return None
    foil = decode_json(sample).get("foil")
    return (foil.strip() or None) if isinstance(foil, str) else None


def _mirrored(text: str | None, flipped: bool) -> str | None:
    """The text of a mirrored image (left and right swapped) when ``flipped``; None stays None."""
    return swap_left_right(text) if flipped and text is not None else text


def vsg_example(sample: dict, ctx: Context, rng: random.Random) -> dict | None:
    """A verbalised-scene-graph example: one of the sample's VSG strings, drawn at random."""
    meta = decode_json(sample)
    vsgs = [v for v in meta.get("vsg", []) if v.strip()]
    if not vsgs:
        return None
    text = vsgs[rng.randrange(len(vsgs))] if len(vsgs) > 1 else vsgs[0]
    pixels, _, flipped = ctx.transform(open_image(sample), rng=rng)
    example = {
        "image": pixels,
        "text": _mirrored(text, flipped),
        "image_id": image_id("scene-graph", str(meta["image_id"])),
        "key": sample["__key__"],
    }
    if ctx.foils:
        example["foil"] = _mirrored(vsg_foil(text, meta.get("triplets", []), rng), flipped)
    return example


def grounded_transform(
    image: Image.Image,
    boxes: Sequence[Sequence[float]],
    ctx: Context,
    rng: random.Random,
    usable: Callable[[list], bool],
) -> tuple[torch.Tensor, list, bool]:
    """Crop until ``usable(boxes)`` holds (``crop_attempts`` tries), else the whole image; returns the uint8
    pixels, boxes and whether it was mirrored."""
    t = ctx.transform
    width, height = image.size
    if t.train:
        for _ in range(ctx.crop_attempts):
            crop = t.sample(width, height, rng=rng)
            out = [crop_box(b, crop, width, height, t.min_visible) for b in boxes]
            if usable(out):
                pixels, _ = t.apply(image, crop)
                return pixels, out, crop.flip
    pixels, out = t.apply(image, Crop(0, 0, width, height), boxes)
    return pixels, out, False


def entity_label(entity: Entity, with_attributes: bool = False) -> str:
    """An entity's text: its name, or its attributes then its name."""
    return " ".join([*entity.get("attributes", []), entity["name"]]) if with_attributes else entity["name"]


def entity_example(sample: dict, ctx: Context, rng: random.Random) -> dict | None:
    """An X-VLM grounding example: up to ``entities_per_image`` entities with their boxes after the crop."""
    meta = decode_json(sample)
    entities = meta.get("entities", [])
    if not entities:
        return None
    image = open_image(sample)
    pixels, boxes, flipped = grounded_transform(
        image, [e["box_norm"] for e in entities], ctx, rng, lambda bs: any(b is not None for b in bs)
    )
    alive = [i for i, b in enumerate(boxes) if b is not None]
    if not alive:
        return None
    chosen = sorted(alive[j] for j in _order(rng, len(alive))[: ctx.entities_per_image])
    labels = [entity_label(entities[i], ctx.entity_attributes) for i in chosen]
    if flipped:
        labels = [swap_left_right(label) for label in labels]
    return {"image": pixels, "labels": labels, "boxes": [boxes[i] for i in chosen], "key": sample["__key__"]}


def _entity_keys(t: Triplet) -> tuple:
    subject = t.get("subject_id") or (t["subject"], tuple(t["subject_box_norm"]))
    obj = t.get("object_id") or (t["object"], tuple(t["object_box_norm"]))
    return subject, obj


def mrc_example(sample: dict, ctx: Context, rng: random.Random) -> dict | None:
    """A masked-relation-classification example: triplets whose two boxes survive the crop."""
    meta = decode_json(sample)
    triplets = meta.get("triplets", [])
    if not triplets:
        return None
    n = len(triplets)
    boxes = [t["subject_box_norm"] for t in triplets] + [t["object_box_norm"] for t in triplets]
    image = open_image(sample)
    pixels, out, _ = grounded_transform(
        image,
        boxes,
        ctx,
        rng,
        lambda bs: any(bs[i] is not None and bs[n + i] is not None for i in range(n)),
    )
    chosen: list[int] = []
    seen: set = set()
    for i in _order(rng, n):
        if out[i] is None or out[n + i] is None or len(chosen) >= ctx.relations_per_image:
            continue
        keys = set(_entity_keys(triplets[i]))
        if len(seen | keys) > ctx.entities_per_image:
            continue
        seen |= keys
        chosen.append(i)
    if not chosen:
        return None
    chosen.sort()
    return {
        "image": pixels,
        "subjects": [triplets[i]["subject"] for i in chosen],
        "objects": [triplets[i]["object"] for i in chosen],
        "subj_boxes": [out[i] for i in chosen],
        "obj_boxes": [out[n + i] for i in chosen],
        "relations": [int(triplets[i]["relation_id"]) for i in chosen],
        "key": sample["__key__"],
    }


def stack_pixels(pixels: list[torch.Tensor], ring: PixelRing | None = None) -> torch.Tensor | RingPixels:
    """The examples' uint8 pixels as one contiguous [N, 3, H, W] tensor; in a DataLoader worker in shared memory,
    a segment of the worker's ``ring`` reused from batch to batch (else ``default_collate``'s fresh one), so
    handing the batch to the main process copies nothing."""
    return ring.stack(pixels) if ring is not None else default_collate(pixels)


def _finish(batch: dict, examples: list[dict], ctx: Context) -> dict:
    if ctx.keep_keys:
        batch["keys"] = [e["key"] for e in examples]
    return batch


def _encode(ctx: Context, texts: Sequence[str]) -> dict[str, torch.Tensor]:
    if ctx.encoder is None:
        ctx.encoder = TextEncoder(ctx.tokenizer, ctx.max_text_len, ctx.pad_to_max)
    return ctx.encoder(texts)


def collate_text(examples: list[dict], ctx: Context) -> dict:
    """A ``caption`` or ``vsg`` batch (with ``foil_ids``, ``foil_mask``, ``has_foil`` under ``ctx.foils``; a
    row without a foil gets an empty text there)."""
    enc = _encode(ctx, [e["text"] for e in examples])
    batch = {
        "type": ctx.kind,
        "image": stack_pixels([e["image"] for e in examples], ctx.ring),
        **enc,
        "image_ids": torch.tensor([e["image_id"] for e in examples], dtype=torch.long),
    }
    if ctx.foils:
        foils = _encode(ctx, [e.get("foil") or "" for e in examples])
        batch["foil_ids"], batch["foil_mask"] = foils["input_ids"], foils["attention_mask"]
        batch["has_foil"] = torch.tensor([e.get("foil") is not None for e in examples], dtype=torch.bool)
    return _finish(batch, examples, ctx)


def _boxes(rows: list) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


def collate_entity(examples: list[dict], ctx: Context) -> dict:
    """An ``entity`` batch: E entities over N images."""
    enc = _encode(ctx, [label for e in examples for label in e["labels"]])
    batch = {
        "type": "entity",
        "image": stack_pixels([e["image"] for e in examples], ctx.ring),
        "image_index": torch.tensor(
            [i for i, e in enumerate(examples) for _ in e["labels"]], dtype=torch.long
        ),
        "input_ids": enc["input_ids"],
        "attention_mask": enc["attention_mask"],
        "box": _boxes([b for e in examples for b in e["boxes"]]),
    }
    return _finish(batch, examples, ctx)


def collate_mrc(examples: list[dict], ctx: Context) -> dict:
    """An ``mrc`` batch: T triplets over N images."""
    subj = _encode(ctx, [s for e in examples for s in e["subjects"]])
    obj = _encode(ctx, [o for e in examples for o in e["objects"]])
    batch = {
        "type": "mrc",
        "image": stack_pixels([e["image"] for e in examples], ctx.ring),
        "image_index": torch.tensor(
            [i for i, e in enumerate(examples) for _ in e["relations"]], dtype=torch.long
        ),
        "subj_ids": subj["input_ids"],
        "subj_mask": subj["attention_mask"],
        "obj_ids": obj["input_ids"],
        "obj_mask": obj["attention_mask"],
        "subj_box": _boxes([b for e in examples for b in e["subj_boxes"]]),
        "obj_box": _boxes([b for e in examples for b in e["obj_boxes"]]),
        "relation": torch.tensor([r for e in examples for r in e["relations"]], dtype=torch.long),
    }
    return _finish(batch, examples, ctx)


BUILDERS: dict[str, Callable[[dict, Context, random.Random], dict | None]] = {
    "caption": caption_example,
    "vsg": vsg_example,
    "entity": entity_example,
    "mrc": mrc_example,
}
COLLATE: dict[str, Callable[[list[dict], Context], dict]] = {
    "caption": collate_text,
    "vsg": collate_text,
    "entity": collate_entity,
    "mrc": collate_mrc,
}
