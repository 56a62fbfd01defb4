"""VG and GQA image entries: those of a shape scene (its objects and relations), or random VG-like graphs.

The random graphs have about 35 objects and 21 relations per image drawn from a VG-flavoured vocabulary
(``vocabulary``), fast enough for a VG-sized corpus (108k images); their boxes mean nothing. GQA entries of
scenes phrase the predicates the GQA way (``GQA_PHRASES``: "to the left of", "to the right of").
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .scenes import Scene, SceneObject
from .vocabulary import (
    GQA_LOCATIONS,
    GQA_PHRASES,
    GQA_PRED_CW,
    GQA_PREDICATES,
    GQA_WEATHERS,
    PREDICATE_SYNSETS,
    SHAPE_SYNSETS,
    VG_ATTRIBUTES,
    VG_IMAGE_SIZES,
    VG_NAME_CW,
    VG_NAMES,
    VG_PRED_CW,
    VG_PREDICATES,
)

VG_URL = "https://cs.stanford.edu/people/rak248/{folder}/{image_id}.jpg"
VG_FOLDERS = ("VG_100K", "VG_100K_2")
GQA_ID_BASE = 2_500_000  # GQA image ids start here (VG's run from 1), so the two never collide
_GQA_OBJECT_ID_BASE = 100_000_000


@dataclass
class Ids:
    """Corpus-wide id counters (VG numbers objects, relationships and regions across the whole corpus)."""

    object_id: int = 1
    relationship_id: int = 1
    region_id: int = 1
    gqa_object_id: int = _GQA_OBJECT_ID_BASE

    def take(self, field: str) -> int:
        value = getattr(self, field)
        setattr(self, field, value + 1)
        return value


@dataclass
class VgImage:
    """One VG image's entries for each file."""

    image: dict
    objects: list[dict]  # objects.json (v1.4) objects
    sg_objects: list[dict]  # attributes.json / scene_graphs.json (v1.2) objects
    relationships: list[dict]  # relationships.json (embedded subject/object)
    sg_relationships: list[dict]  # scene_graphs.json (ids only)
    regions: list[dict]


def _vg_case(rng: random.Random, predicate: str) -> str:
    r = rng.random()
    return predicate.upper() if r < 0.15 else predicate.title() if r < 0.2 else predicate


def _embedded(obj: dict) -> dict:
    """A relationships.json subject/object: ``names`` (with merged ids) if merged, else a plain ``name``."""
    if obj["merged_object_ids"]:
        return {"h": obj["h"], "object_id": obj["object_id"], "merged_object_ids": obj["merged_object_ids"],
                "synsets": obj["synsets"], "w": obj["w"], "y": obj["y"], "x": obj["x"], "names": obj["names"]}
    return {"name": obj["names"][0], "h": obj["h"], "synsets": obj["synsets"], "object_id": obj["object_id"],
            "w": obj["w"], "y": obj["y"], "x": obj["x"]}


def _vg_object(ids: Ids, rng: random.Random, name: str, synset: str | None, attrs: list[str],
               box: tuple[int, int, int, int]) -> tuple[dict, dict]:
    x, y, w, h = box
    oid = ids.take("object_id")
    merged = [ids.take("object_id")] if rng.random() < 0.11 else []
    synsets = [synset] if synset else []
    obj = {"synsets": synsets, "h": h, "object_id": oid, "merged_object_ids": merged, "names": [name],
           "w": w, "y": y, "x": x}
    sg = {"synsets": synsets, "h": h, "object_id": oid, "names": [name], "w": w}
    if attrs:
        sg["attributes"] = attrs
    sg["y"], sg["x"] = y, x
    return obj, sg


def _vg_relationship(ids: Ids, predicate: str, synset: str | None, s: int, o: int,
                     objects: list[dict]) -> tuple[dict, dict]:
    rid = ids.take("relationship_id")
    synsets = [synset] if synset else []
    rel = {"predicate": predicate, "object": _embedded(objects[o]), "relationship_id": rid,
           "synsets": synsets, "subject": _embedded(objects[s])}
    sg_rel = {"synsets": synsets, "predicate": predicate, "relationship_id": rid,
              "object_id": objects[o]["object_id"], "subject_id": objects[s]["object_id"]}
    return rel, sg_rel


def _region(ids: Ids, image_id: int, phrase: str, box: tuple[int, int, int, int]) -> dict:
    x, y, w, h = box
    return {"region_id": ids.take("region_id"), "width": w, "height": h, "image_id": image_id,
            "phrase": phrase, "y": y, "x": x}


def _image_meta(rng: random.Random, image_id: int, width: int, height: int) -> dict:
    folder = VG_FOLDERS[rng.random() < 0.5]
    r = rng.random()
    coco_id = rng.randint(1, 581_000) if r < 0.2 else None
    flickr_id = rng.randint(1_000_000, 9_999_999_999) if 0.1 < r < 0.4 else None
    return {"width": width, "url": VG_URL.format(folder=folder, image_id=image_id), "height": height,
            "image_id": image_id, "coco_id": coco_id, "flickr_id": flickr_id}


def vg_random(rng: random.Random, ids: Ids, image_id: int) -> VgImage:
    """A VG-like image with random objects, attributes, relations and regions (boxes mean nothing)."""
    r = rng.random
    width, height = rng.choice(VG_IMAGE_SIZES)
    image = _image_meta(rng, image_id, width, height)
    n_obj = rng.randint(12, 58)
    objects, sg_objects = [], []
    names = rng.choices(VG_NAMES, cum_weights=VG_NAME_CW, k=n_obj)
    for name, synset, _ in names:
        x, y = int(r() * (width - 2)), int(r() * (height - 2))
        box = (x, y, 1 + int(r() * (width - x - 1)), 1 + int(r() * (height - y - 1)))
        u = r()
        attrs = [] if u < 0.47 else rng.sample(VG_ATTRIBUTES, 1 + (u > 0.85))
        obj, sg = _vg_object(ids, rng, name, synset if u > 0.03 else None, attrs, box)
        objects.append(obj)
        sg_objects.append(sg)
    relationships, sg_relationships = [], []
    for predicate, synset, _ in rng.choices(VG_PREDICATES, cum_weights=VG_PRED_CW, k=rng.randint(5, 37)):
        s = int(r() * n_obj)
        o = int(r() * (n_obj - 1))
        o += o >= s
        synset = synset if r() > 0.1 else None
        rel, sg_rel = _vg_relationship(ids, predicate, synset, s, o, objects)
        relationships.append(rel)
        sg_relationships.append(sg_rel)
    regions = []
    for _ in range(rng.randint(2, 10)):
        rel = relationships[int(r() * len(relationships))]
        subj, obj = rel["subject"], rel["object"]
        phrase = f"{subj.get('name') or subj['names'][0]} {rel['predicate'].lower()} " \
                 f"{obj.get('name') or obj['names'][0]}"
        regions.append(_region(ids, image_id, phrase, (subj["x"], subj["y"], subj["w"], subj["h"])))
    return VgImage(image, objects, sg_objects, relationships, sg_relationships, regions)


def _union(a: SceneObject, b: SceneObject) -> tuple[int, int, int, int]:
    x, y = min(a.x, b.x), min(a.y, b.y)
    return x, y, max(a.x2, b.x2) - x, max(a.y2, b.y2) - y


def vg_from_scene(rng: random.Random, ids: Ids, image_id: int, scene: Scene) -> VgImage:
    """A VG image entry whose objects and relations are those of ``scene``."""
    image = _image_meta(rng, image_id, scene.size, scene.size)
    objects, sg_objects = [], []
    for o in scene.objects:
        # Half the objects carry the colour in the name, the others as an attribute.
        name, attrs = (o.label, []) if rng.random() < 0.5 else (o.shape, [o.colour])
        obj, sg = _vg_object(ids, rng, name, SHAPE_SYNSETS[o.shape], attrs, (o.x, o.y, o.w, o.h))
        objects.append(obj)
        sg_objects.append(sg)
    relationships, sg_relationships = [], []
    for s, predicate, o in scene.relations:
        rel, sg_rel = _vg_relationship(ids, _vg_case(rng, predicate), PREDICATE_SYNSETS[predicate], s, o,
                                       objects)
        relationships.append(rel)
        sg_relationships.append(sg_rel)
    regions = []
    for s, predicate, o in scene.relations[:4]:
        a, b = scene.objects[s], scene.objects[o]
        regions.append(_region(ids, image_id, f"the {a.label} is {predicate} the {b.label}", _union(a, b)))
    for a in scene.objects[:2]:
        regions.append(_region(ids, image_id, f"a {a.label}", (a.x, a.y, a.w, a.h)))
    return VgImage(image, objects, sg_objects, relationships, sg_relationships, regions)


def _gqa_extras(rng: random.Random, entry: dict) -> None:
    r = rng.random()
    if r < 0.35:
        entry["location"] = rng.choice(GQA_LOCATIONS)
    if 0.3 < r < 0.4:
        entry["weather"] = rng.choice(GQA_WEATHERS)


def gqa_random(rng: random.Random, ids: Ids) -> dict:
    """A GQA-like image entry with random objects and relations (mostly left/right, as in GQA)."""
    r = rng.random
    width, height = rng.choice(VG_IMAGE_SIZES)
    n_obj = rng.randint(5, 28)
    keys = [str(ids.take("gqa_object_id")) for _ in range(n_obj)]
    objects = {}
    for key, (name, _, _) in zip(keys, rng.choices(VG_NAMES, cum_weights=VG_NAME_CW, k=n_obj), strict=True):
        x, y = int(r() * (width - 2)), int(r() * (height - 2))
        attrs = [] if r() < 0.3 else rng.sample(VG_ATTRIBUTES[:30], 1 + (r() < 0.4))
        objects[key] = {"name": name.lower(), "h": 1 + int(r() * (height - y - 1)), "relations": [],
                        "w": 1 + int(r() * (width - x - 1)), "attributes": attrs, "y": y, "x": x}
    for (predicate, _) in rng.choices(GQA_PREDICATES, cum_weights=GQA_PRED_CW, k=rng.randint(2, 50)):
        s = int(r() * n_obj)
        o = int(r() * (n_obj - 1))
        o += o >= s
        objects[keys[s]]["relations"].append({"object": keys[o], "name": predicate})
    entry = {"width": width, "objects": objects}
    _gqa_extras(rng, entry)
    entry["height"] = height
    return entry


def gqa_from_scene(rng: random.Random, ids: Ids, scene: Scene) -> dict:
    """A GQA image entry whose objects and relations (GQA phrasing) are those of ``scene``."""
    keys = [str(ids.take("gqa_object_id")) for _ in scene.objects]
    objects = {
        key: {"name": o.shape, "h": o.h, "relations": [], "w": o.w, "attributes": [o.colour], "y": o.y,
              "x": o.x}
        for key, o in zip(keys, scene.objects, strict=True)
    }
    for s, predicate, o in scene.relations:
        objects[keys[s]]["relations"].append({"object": keys[o], "name": GQA_PHRASES[predicate]})
    entry = {"width": scene.size, "objects": objects}
    _gqa_extras(rng, entry)
    entry["height"] = scene.size
    return entry


def gqa_image_id(index: int) -> str:
    """The GQA image id of the ``index``-th GQA image: numeric strings, every 20th an "n"-prefixed one."""
    return f"n{GQA_ID_BASE + index}" if index % 20 == 19 else str(GQA_ID_BASE + index)
