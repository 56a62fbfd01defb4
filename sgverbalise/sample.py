"""One shard sample's ``.json`` member (``schemas/sample.schema.json``) from an extracted scene graph."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from sgverbalise.schemas import SCHEMA_VERSION
from sgverbalise.triplets import Extraction


def sample_key(source: str, image_id: str) -> str:
    """``{source}-{image_id}``, with the characters webdataset or a file system would misread replaced."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(image_id))
    return f"{source}-{safe}"


def _rounded(value: float, scale: float) -> float:
    """``value`` to 1/``scale``: ``round(value * scale) / scale``, several times faster than ``round(value, n)``
    (the two can differ in the last place only where ``value`` lies on a tie to within float error)."""
    return round(value * scale) / scale


def _scaled(box: Sequence[float], scale: float) -> list[float]:
    return list(box) if scale == 1.0 else [_rounded(v * scale, 100.0) for v in box]


def _normalised(box: Sequence[float], width: int, height: int) -> list[float]:
    """The box in [0, 1] image coordinates, each value ``_rounded`` to 1e-6: x0 = min(max(x / width, 0), 1), w0 =
    min(w / width, 1 - x0), likewise y0 and h0. Written out with comparisons (the same values, NaN included, as
    min and max give) rather than calls: this runs for every distinct box of every sample."""
    x, y, w, h = box
    x0, y0, w0, h0 = x / width, y / height, w / width, h / height
    x0 = 0.0 if x0 < 0.0 else 1.0 if x0 > 1.0 else x0
    y0 = 0.0 if y0 < 0.0 else 1.0 if y0 > 1.0 else y0
    w0 = 1.0 - x0 if 1.0 - x0 < w0 else w0
    h0 = 1.0 - y0 if 1.0 - y0 < h0 else h0
    return [round(x0 * 1e6) / 1e6, round(y0 * 1e6) / 1e6, round(w0 * 1e6) / 1e6, round(h0 * 1e6) / 1e6]


def build_sample(
    record: dict, extraction: Extraction, vsg: Sequence[str], *, width: int, height: int, scale: float = 1.0
) -> dict:
    """The sample dict for an image of ``width`` x ``height`` pixels; boxes are scaled by ``scale`` first
    (the image stage sets it when it resizes) and normalised to [0, 1]."""

    done: dict[tuple, tuple[list[float], list[float]]] = {}

    def boxes(box: Sequence[float]) -> tuple[list[float], list[float]]:
        # an object's box recurs in each of its triplets and as an entity: round it once (round() is the cost)
        key = tuple(box)
        found = done.get(key)
        if found is None:
            pixels = _scaled(box, scale)
            found = done[key] = pixels, _normalised(pixels, width, height)
        return list(found[0]), list(found[1])

    triplets = []
    for t in extraction.mrc:
        subject_box, subject_norm = boxes(t["subject_box"])
        object_box, object_norm = boxes(t["object_box"])
        triplets.append(
            {
                "subject": t["subject"],
                "subject_id": t["subject_id"],
                "subject_box": subject_box,
                "subject_box_norm": subject_norm,
                "predicate": t["predicate"],
                "predicate_raw": t["predicate_raw"],
                "relation_id": t["relation_id"],
                "object": t["object"],
                "object_id": t["object_id"],
                "object_box": object_box,
                "object_box_norm": object_norm,
            }
        )
    entities = []
    for e in extraction.entities:
        box, norm = boxes(e["box"])
        entities.append({"object_id": e["object_id"], "name": e["name"], "attributes": e["attributes"],
                         "box": box, "box_norm": norm})
    regions = []
    for r in extraction.regions:
        box, norm = boxes(r["box"])
        regions.append({"region_id": r["region_id"], "phrase": r["phrase"], "box": box, "box_norm": norm})
    return {
        "schema_version": SCHEMA_VERSION,
        "key": sample_key(record["source"], record["image_id"]),
        "source": record["source"],
        "image_id": str(record["image_id"]),
        "coco_id": record.get("coco_id"),
        "flickr_id": record.get("flickr_id"),
        "width": int(width),
        "height": int(height),
        "vsg": list(vsg),
        "num_relations": extraction.num_relations,
        "num_triplets": len(extraction.triplets),
        "triplets": triplets,
        "entities": entities,
        "regions": regions,
    }


def sample_json(sample: dict) -> bytes:
    """The ``.json`` member's bytes: compact UTF-8 JSON (orjson: about nine times faster than ``json.dumps`` on
    a sample full of box coordinates). The readers bound every integer to 64 bits and drop lone surrogates, so
    every sample they lead to can be encoded."""
    return orjson.dumps(sample)
