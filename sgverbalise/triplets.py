"""Validate a normalised scene graph and extract its triplets, entities and regions; everything else is a reject.

Rules, in the order they are applied (each failure is one reject with its reason, nothing is dropped silently):

- objects: an empty normalised name is ``empty_name``; a box with w <= 0, h <= 0 or a non-finite coordinate is
  ``bad_box``; a box that does not overlap the image (when its size is known) is ``box_outside_image``. A box that
  overlaps the image but sticks out of it is clipped to the image.
- relations: an empty predicate is ``empty_name``; a subject or object id that the graph does not have (also
  through ``merged_object_ids``) is ``unknown_object``; one that points at a rejected object takes that object's
  reason; subject == object is ``self_relation``; the same (subject name, subject box, predicate, object name,
  object box) a second time is ``duplicate_triplet``; with a vocabulary, a predicate outside it is
  ``out_of_vocabulary`` (still a valid triplet for VSG, but not an MRC target).
- regions: an empty phrase is ``empty_name``; bad or outside boxes as for objects.
- an image with neither a valid object nor a valid relation is ``no_graph`` (no sample is written for it).

So, for every image: relations read == MRC triplets + relation rejects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

from sgverbalise.rejects import reject


class Vocabulary(Protocol):
    def id(self, predicate: str) -> int | None: ...


@dataclass
class Extraction:
    """What one image's graph yields: valid triplets (VSG), MRC targets, entities, regions and rejects."""

    triplets: list[dict] = field(default_factory=list)
    entities: list[dict] = field(default_factory=list)
    regions: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    num_relations: int = 0

    @property
    def mrc(self) -> list[dict]:
        """Triplets with a relation id: the MRC targets."""
        return [t for t in self.triplets if t["relation_id"] is not None]

    @property
    def has_graph(self) -> bool:
        return bool(self.triplets or self.entities)


_EXACT = 1 << 52  # integers of smaller magnitude are exact as floats, and so are their sums


def _exact_size(width: int | None, height: int | None) -> bool:
    """Whether the image size allows ``_box``'s integer arithmetic (None or an integer of exact magnitude each)."""
    return all(v is None or type(v) is int and -_EXACT < v < _EXACT for v in (width, height))


def _box(item: dict, width: int | None, height: int | None, exact_size: bool = False) \
        -> tuple[list[float] | None, str | None]:
    """The box clipped to the image as [x, y, w, h], or None and the reject reason. With ``exact_size``
    (``_exact_size`` of the image's size), integer coordinates of exact magnitude (what the readers give) are
    clipped in integer arithmetic: the same box as through floats, several times faster."""
    try:
        x, y, w, h = item["x"], item["y"], item["w"], item["h"]
    except (KeyError, TypeError):
        return None, "bad_box"
    if exact_size and type(x) is int and type(y) is int and type(w) is int and type(h) is int \
            and -_EXACT < x < _EXACT and -_EXACT < y < _EXACT and -_EXACT < w < _EXACT and -_EXACT < h < _EXACT:
        if w <= 0 or h <= 0:
            return None, "bad_box"
        x0, y0, x1, y1 = x, y, x + w, y + h
        if width and height:
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
            if x1 <= x0 or y1 <= y0:
                return None, "box_outside_image"
        return [x0, y0, x1 - x0, y1 - y0], None
    try:
        x, y, w, h = float(x), float(y), float(w), float(h)
    except (TypeError, ValueError):
        return None, "bad_box"
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        return None, "bad_box"
    x0, y0, x1, y1 = x, y, x + w, y + h
    if width and height:
        x0, y0, x1, y1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))
        if x1 <= x0 or y1 <= y0:
            return None, "box_outside_image"
    return [_num(x0), _num(y0), _num(x1 - x0), _num(y1 - y0)], None


def _num(v: float) -> float | int:
    """Integers stay integers, so pixel boxes read as written."""
    return int(v) if float(v).is_integer() else round(v, 3)


def _what(rel: dict) -> str:
    """A relation as its rejects' detail names it."""
    return f"{rel['subject_id']} {rel.get('predicate_raw')!r} {rel['object_id']}"


def extract(record: dict, vocab: Vocabulary | None = None) -> Extraction:
    """Validate a normalised record and extract triplets, entities and regions, with a reject for each failure."""
    source, image_id = record["source"], record["image_id"]
    width, height = record.get("width"), record.get("height")
    out = Extraction(num_relations=len(record.get("relations") or []))

    exact_size = _exact_size(width, height)
    objects: dict[str, dict] = {}
    bad_objects: dict[str, str] = {}
    for obj in record.get("objects") or []:
        oid = obj["object_id"]
        box, reason = _box(obj, width, height, exact_size)
        if not obj.get("name"):
            reason = "empty_name"
        if reason:
            bad_objects[oid] = reason
            out.rejects.append(reject(source, image_id, reason, f"object {oid} {obj.get('names')}", "object"))
            continue
        entity = {"object_id": oid, "name": obj["name"], "attributes": list(obj.get("attributes_norm") or []),
                  "box": box}
        out.entities.append(entity)
        objects[oid] = entity
    # merged ids resolve to the object they were merged into, unless they are objects of their own
    for obj in record.get("objects") or []:
        for mid in obj.get("merged_object_ids") or []:
            if mid not in objects and mid not in bad_objects:
                if obj["object_id"] in objects:
                    objects[mid] = objects[obj["object_id"]]
                elif obj["object_id"] in bad_objects:
                    bad_objects[mid] = bad_objects[obj["object_id"]]

    seen: set[tuple] = set()
    for rel in record.get("relations") or []:
        sid, oid, predicate = rel["subject_id"], rel["object_id"], rel.get("predicate") or ""
        reason = None
        if not predicate:
            reason = "empty_name"
        elif sid not in objects and sid not in bad_objects or oid not in objects and oid not in bad_objects:
            reason = "unknown_object"
        elif sid in bad_objects or oid in bad_objects:
            reason = bad_objects.get(sid) or bad_objects[oid]
        elif objects[sid] is objects[oid]:
            reason = "self_relation"
        if reason:
            out.rejects.append(reject(source, image_id, reason, _what(rel), "relation"))
            continue
        subj, obj = objects[sid], objects[oid]
        key = (subj["name"], tuple(subj["box"]), predicate, obj["name"], tuple(obj["box"]))
        if key in seen:
            out.rejects.append(reject(source, image_id, "duplicate_triplet", _what(rel), "relation"))
            continue
        seen.add(key)
        relation_id = None if vocab is None else vocab.id(predicate)
        out.triplets.append(
            {
                "subject_id": subj["object_id"],
                "subject": subj["name"],
                "subject_attributes": subj["attributes"],
                "subject_box": subj["box"],
                "predicate": predicate,
                "predicate_raw": rel.get("predicate_raw") or predicate,
                "relation_id": relation_id,
                "object_id": obj["object_id"],
                "object": obj["name"],
                "object_attributes": obj["attributes"],
                "object_box": obj["box"],
            }
        )
        if vocab is not None and relation_id is None:
            out.rejects.append(reject(source, image_id, "out_of_vocabulary", _what(rel), "relation"))

    for region in record.get("regions") or []:
        box, reason = _box(region, width, height, exact_size)
        phrase = " ".join(str(region.get("phrase") or "").split())
        if not phrase:
            reason = "empty_name"
        if reason:
            out.rejects.append(reject(source, image_id, reason, f"region {region.get('region_id')}", "region"))
            continue
        out.regions.append({"region_id": region.get("region_id") or "", "phrase": phrase, "box": box})

    if not out.has_graph:
        out.rejects.append(reject(source, image_id, "no_graph", "no valid object or relation", "image"))
    return out
