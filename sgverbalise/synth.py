"""Synthetic corpora in the real Visual Genome and GQA on-disk formats, and the shape scenes of their images.

Two generators share one writer:

* Shape scenes (``make_scene``/``render_scene``), used with ``with_images=True``: a few coloured shapes on a
  plain, lightly noisy background. Every relation is computed from the placed boxes by ``relation_between``,
  so the graph is true in the picture.
* VG-like random graphs, used without images: about 35 objects and 21 relations per image drawn from a
  VG-flavoured vocabulary, fast enough for a VG-sized corpus (108k images). Their boxes mean nothing.

Relation definitions (``relation_between(a, b)``; boxes are ``x, y, w, h`` in pixels, y grows downwards,
``x2 = x + w`` and ``y2 = y + h`` are exclusive ends; the FIRST predicate whose condition holds is returned,
so at most one predicate holds for an ordered pair):

1. ``inside``: a's box lies strictly inside b's: ``b.x < a.x``, ``b.y < a.y``, ``a.x2 < b.x2`` and
   ``a.y2 < b.y2``.
2. ``on``: a rests on b: ``a.y2 == b.y`` (touching, no gap) and a's horizontal centre lies in ``[b.x, b.x2]``.
3. ``under``: b is ``on`` a.
4. The boxes must now be disjoint (``a.x2 <= b.x`` or ``b.x2 <= a.x`` or ``a.y2 <= b.y`` or ``b.y2 <= a.y``),
   otherwise there is no relation.
5. ``next to``: the horizontal gap ``max(b.x - a.x2, a.x - b.x2)`` is in ``[0, near]`` (``near =
   max(3, size // 16)``) and the vertical extents overlap by at least half the smaller height.
6. ``left of``: ``a.x2 <= b.x`` and the vertical extents overlap (by at least one row).
7. ``right of``: ``b.x2 <= a.x`` and the vertical extents overlap.
8. ``above``: ``a.y2 <= b.y`` and the horizontal extents overlap (by at least one column).
9. ``below``: ``b.y2 <= a.y`` and the horizontal extents overlap.
10. ``bigger than``: ``shape_area(a) >= 2 * shape_area(b)`` (the filled area of the shape, not of its box).
11. ``smaller than``: ``shape_area(b) >= 2 * shape_area(a)``.
Otherwise (diagonal neighbours of similar size, or a contains b) there is no relation.

Every shape spans its whole box on both axes, so the box relations are relations of the drawn pixels. Objects
placed independently keep a gap of at least ``max(2, size // 64)`` pixels from every other box, so ``on`` and
``inside`` arise only where ``make_scene`` builds them (and only squares and rectangles carry or contain).
GQA files phrase the predicates the GQA way (``GQA_PHRASES``: "to the left of", "to the right of").
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
from PIL import Image, ImageDraw

PREDICATES: tuple[str, ...] = (
    "inside", "on", "under", "next to", "left of", "right of", "above", "below", "bigger than", "smaller than"
)
GQA_PHRASES: dict[str, str] = {p: p for p in PREDICATES} | {
    "left of": "to the left of",
    "right of": "to the right of",
}
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 60, 220),
    "yellow": (240, 215, 20),
    "purple": (130, 40, 170),
    "orange": (250, 140, 10),
    "cyan": (20, 200, 215),
    "pink": (250, 120, 190),
    "brown": (120, 70, 30),
    "black": (20, 20, 20),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "rectangle", "diamond")
_FILL = {"circle": math.pi / 4, "square": 1.0, "rectangle": 1.0, "triangle": 0.5, "diamond": 0.5}
_FLAT = ("square", "rectangle")  # shapes that can carry an object on top or contain one
_SHAPE_SYNSETS = {
    "circle": "circle.n.01", "square": "square.n.01", "triangle": "triangle.n.01",
    "rectangle": "rectangle.n.01", "diamond": "diamond.n.02",
}
_PREDICATE_SYNSETS = {
    "inside": "inside.r.01", "on": "along.r.01", "under": "under.r.01", "next to": "next.r.01",
    "left of": "left.r.01", "right of": "right.r.01", "above": "above.r.01", "below": "below.r.01",
    "bigger than": "big.a.01", "smaller than": "small.a.01",
}

JPEG_QUALITY = 92
VG_URL = "https://cs.stanford.edu/people/rak248/{folder}/{image_id}.jpg"
VG_FOLDERS = ("VG_100K", "VG_100K_2")
LAYOUTS = ("split", "scene_graphs", "both")
_VG_FILES = ("image_data", "region_descriptions", "objects", "relationships", "attributes", "scene_graphs")
GQA_ID_BASE = 2_500_000  # GQA image ids start here (VG's run from 1), so the two never collide
_GQA_OBJECT_ID_BASE = 100_000_000


# --------------------------------------------------------------------------------------------------- scenes


@dataclass(frozen=True)
class SceneObject:
    """A coloured shape and its box (x, y, w, h in pixels; x + w and y + h are exclusive ends)."""

    colour: str
    shape: str
    x: int
    y: int
    w: int
    h: int

    @property
    def x2(self) -> int:
        return self.x + self.w

    @property
    def y2(self) -> int:
        return self.y + self.h

    @property
    def label(self) -> str:
        """The object's name with its colour, e.g. "red circle"."""
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """Shapes on a square canvas and the relations (subject index, predicate, object index) among them."""

    size: int
    objects: tuple[SceneObject, ...]
    relations: tuple[tuple[int, str, int], ...]


def shape_area(obj: SceneObject) -> float:
    """The filled area of the drawn shape (box area times the shape's fill fraction)."""
    return obj.w * obj.h * _FILL[obj.shape]


def near_distance(size: int) -> int:
    """The largest horizontal gap (pixels) at which two boxes still count as ``next to``."""
    return max(3, size // 16)


def _overlap(a0: int, a1: int, b0: int, b1: int) -> int:
    return min(a1, b1) - max(a0, b0)


def relation_between(a: SceneObject, b: SceneObject, size: int) -> str | None:
    """The one predicate that holds for (a, b) by the definitions in this module's docstring, or None."""
    if b.x < a.x and b.y < a.y and a.x2 < b.x2 and a.y2 < b.y2:
        return "inside"
    if a.y2 == b.y and b.x <= a.x + a.w / 2 <= b.x2:
        return "on"
    if b.y2 == a.y and a.x <= b.x + b.w / 2 <= a.x2:
        return "under"
    if not (a.x2 <= b.x or b.x2 <= a.x or a.y2 <= b.y or b.y2 <= a.y):
        return None
    ov_y = _overlap(a.y, a.y2, b.y, b.y2)
    ov_x = _overlap(a.x, a.x2, b.x, b.x2)
    gap_x = max(b.x - a.x2, a.x - b.x2)
    if 0 <= gap_x <= near_distance(size) and ov_y >= min(a.h, b.h) / 2:
        return "next to"
    if ov_y > 0:
        if a.x2 <= b.x:
            return "left of"
        if b.x2 <= a.x:
            return "right of"
    if ov_x > 0:
        if a.y2 <= b.y:
            return "above"
        if b.y2 <= a.y:
            return "below"
    area_a, area_b = shape_area(a), shape_area(b)
    if area_a >= 2 * area_b:
        return "bigger than"
    if area_b >= 2 * area_a:
        return "smaller than"
    return None


def _apart(a: tuple[int, int, int, int], b: SceneObject, gap: int) -> bool:
    x, y, w, h = a
    return x + w + gap <= b.x or b.x2 + gap <= x or y + h + gap <= b.y or b.y2 + gap <= y


def _dims(rng: random.Random, shape: str, side: int) -> tuple[int, int]:
    if shape == "rectangle":
        long_side, short_side = side, max(4, round(side * 0.6))
        return (long_side, short_side) if rng.random() < 0.5 else (short_side, long_side)
    return side, side


class _Placer:
    """Places shapes on a canvas so that the boxes keep their gaps; helper of ``make_scene``."""

    def __init__(self, rng: random.Random, size: int) -> None:
        self.rng, self.size = rng, size
        self.gap = max(2, size // 64)
        self.objects: list[SceneObject] = []
        self.colours = rng.sample(sorted(COLOURS), len(COLOURS))

    def _fits(self, box: tuple[int, int, int, int], exempt: SceneObject | None = None) -> bool:
        x, y, w, h = box
        if x < 1 or y < 1 or x + w > self.size - 1 or y + h > self.size - 1:
            return False
        return all(o is exempt or _apart(box, o, self.gap) for o in self.objects)

    def _add(self, shape: str, box: tuple[int, int, int, int]) -> SceneObject:
        obj = SceneObject(self.colours[len(self.objects)], shape, *box)
        self.objects.append(obj)
        return obj

    def _side(self, lo: float, hi: float) -> int:
        return self.rng.randint(max(6, round(self.size * lo)), max(7, round(self.size * hi)))

    def free(self, shapes: tuple[str, ...] = SHAPES) -> SceneObject | None:
        """Anywhere, apart from everything else."""
        rng = self.rng
        for _ in range(40):
            shape = rng.choice(shapes)
            w, h = _dims(rng, shape, self._side(0.12, 0.28))
            box = (rng.randint(1, self.size - 1 - w), rng.randint(1, self.size - 1 - h), w, h)
            if self._fits(box):
                return self._add(shape, box)
        return None

    def inside(self, container: SceneObject) -> SceneObject | None:
        """Strictly inside a square or rectangle, with a margin of ``gap`` pixels."""
        rng, gap = self.rng, self.gap
        room = min(container.w, container.h) - 2 * gap - 2
        if room < 10:
            return None
        shape = rng.choice(("circle", "square", "triangle", "diamond"))
        side = rng.randint(max(8, room // 2), room)
        x = rng.randint(container.x + gap + 1, container.x2 - gap - 1 - side)
        y = rng.randint(container.y + gap + 1, container.y2 - gap - 1 - side)
        return self._add(shape, (x, y, side, side))  # inside the container, so apart from all others

    def on(self, support: SceneObject) -> SceneObject | None:
        """Resting on top of a square or rectangle: bottom edge on its top edge, centre over it."""
        rng = self.rng
        for _ in range(20):
            shape = rng.choice(SHAPES)
            w, h = _dims(rng, shape, self._side(0.08, 0.2))
            cx = rng.randint(support.x, support.x2)
            box = (cx - w // 2, support.y - h, w, h)
            if self._fits(box, exempt=support) and relation_between(SceneObject("", shape, *box), support,
                                                                    self.size) == "on":
                return self._add(shape, box)
        return None

    def next_to(self, anchor: SceneObject) -> SceneObject | None:
        """Beside an object, within the ``next to`` gap, vertically overlapping by half the smaller height."""
        rng = self.rng
        near = near_distance(self.size)
        for _ in range(20):
            shape = rng.choice(SHAPES)
            w, h = _dims(rng, shape, self._side(0.1, 0.22))
            gap = rng.randint(0, near)
            x = anchor.x2 + gap if rng.random() < 0.5 else anchor.x - gap - w
            slack = abs(h - anchor.h) // 2 + min(h, anchor.h) // 2
            y = anchor.y + (anchor.h - h) // 2 + rng.randint(-slack // 2, slack // 2)
            box = (x, y, w, h)
            if self._fits(box, exempt=anchor) and relation_between(SceneObject("", shape, *box), anchor,
                                                                    self.size) == "next to":
                return self._add(shape, box)
        return None


def make_scene(
    rng: random.Random, size: int = 256, *, n_objects: int | None = None, max_relations: int | None = None
) -> Scene:
    """A random scene of 3 to 7 distinctly coloured shapes and every relation that holds among them."""
    target = n_objects if n_objects is not None else rng.randint(3, 7)
    target = max(1, min(target, len(COLOURS)))
    placer = _Placer(rng, size)
    for _ in range(min(target, rng.randint(2, 3))):
        placer.free()
    builders = [("inside", 0.5), ("on", 0.5), ("next to", 0.5)]
    rng.shuffle(builders)
    for kind, p in builders:
        if len(placer.objects) >= target or rng.random() >= p:
            continue
        if kind == "next to":
            anchors = list(placer.objects)
        else:
            anchors = [o for o in placer.objects if o.shape in _FLAT]
        if not anchors:
            anchors = [o for o in [placer.free(_FLAT)] if o is not None]
            if not anchors or len(placer.objects) >= target:
                continue
        anchor = rng.choice(anchors)
        getattr(placer, kind.replace(" ", "_"))(anchor)
    for _ in range(3 * target):
        if len(placer.objects) >= target:
            break
        placer.free()
    objects = tuple(placer.objects)
    relations = []
    for i in range(len(objects)):
        for j in range(i + 1, len(objects)):
            pairs = ((i, j), (j, i))
            options = [(s, p, o) for s, o in pairs if (p := relation_between(objects[s], objects[o], size))]
            if options:
                relations.append(options[0] if len(options) == 1 else rng.choice(options))
    rng.shuffle(relations)
    if max_relations is not None:
        relations = relations[:max_relations]
    return Scene(size, objects, tuple(relations))


def render_scene(
    scene: Scene, size: int | None = None, *, noise_seed: int = 0, noise: int = 12
) -> Image.Image:
    """The scene drawn with Pillow on a light grey background with ``noise`` levels of seeded grain (RGB)."""
    n = scene.size
    grain = Image.frombytes("L", (n, n), random.Random(noise_seed).randbytes(n * n))
    grain = grain.point([236 - noise // 2 + v * noise // 256 for v in range(256)])
    image = Image.merge("RGB", (grain, grain, grain))
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        x0, y0, x1, y1 = obj.x, obj.y, obj.x2 - 1, obj.y2 - 1
        fill = COLOURS[obj.colour]
        if obj.shape in ("square", "rectangle"):
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        elif obj.shape == "circle":
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        elif obj.shape == "triangle":
            draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) / 2, y0)], fill=fill)
        else:  # diamond
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=fill)
    if size is not None and size != n:
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    return image


def save_jpeg(image: Image.Image, path: Path) -> None:
    """Write ``image`` as a JPEG with fixed settings (same pixels, same bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="JPEG", quality=JPEG_QUALITY, subsampling=0, optimize=False)


# --------------------------------------------------------------------------------------------- vocabulary

_VG_NAMES = (
    ("man", "man.n.01", 30), ("person", "person.n.01", 14), ("window", "window.n.01", 22),
    ("tree", "tree.n.01", 18), ("building", "building.n.01", 14), ("shirt", "shirt.n.01", 14),
    ("wall", "wall.n.01", 14), ("woman", "woman.n.01", 12), ("sign", "sign.n.02", 12),
    ("sky", "sky.n.01", 10), ("ground", "land.n.04", 10), ("grass", "grass.n.01", 10),
    ("table", "table.n.02", 8), ("hand", "hand.n.01", 9), ("head", "head.n.01", 8), ("car", "car.n.01", 8),
    ("water", "water.n.01", 7), ("pole", "pole.n.01", 7), ("plate", "plate.n.04", 6), ("leg", "leg.n.01", 6),
    ("light", "light.n.02", 6), ("hair", "hair.n.01", 6), ("ear", "ear.n.01", 5),
    ("street", "street.n.01", 5), ("door", "door.n.01", 5), ("fence", "fence.n.01", 5),
    ("cloud", "cloud.n.02", 5), ("hat", "hat.n.01", 4), ("shadow", "shadow.n.01", 4),
    ("jacket", "jacket.n.01", 4), ("pants", "trouser.n.01", 4), ("chair", "chair.n.01", 4),
    ("snow", "snow.n.02", 4), ("wheel", "wheel.n.01", 4), ("leaf", "leaf.n.01", 4),
    ("sidewalk", "sidewalk.n.01", 4), ("eye", "eye.n.01", 3), ("boy", "male_child.n.01", 3),
    ("girl", "girl.n.01", 3), ("dog", "dog.n.01", 3), ("cat", "cat.n.01", 3), ("horse", "horse.n.01", 3),
    ("bus", "bus.n.01", 3), ("train", "train.n.01", 3), ("umbrella", "umbrella.n.01", 2),
    ("bike", "bicycle.n.01", 2), ("flower", "flower.n.01", 2), ("bowl", "bowl.n.01", 2),
    ("cup", "cup.n.01", 2), ("shoe", "shoe.n.01", 2), ("trees", "tree.n.01", 3),
    ("windows", "window.n.01", 3), ("Man", "man.n.01", 1), ("giraffe", "giraffe.n.01", 2),
    ("elephant", "elephant.n.01", 2), ("kite", "kite.n.03", 1),
)
_VG_ATTRIBUTES = (
    "white", "black", "blue", "green", "red", "brown", "yellow", "small", "large", "wooden", "metal", "tall",
    "parked", "standing", "open", "glass", "dark", "young", "grey", "silver", "orange", "striped", "smiling",
    "bright", "cloudy", "short", "long", "old", "empty", "round", "Green", "white ",
)
# (predicate as written, synset or None, weight): mixed case and article-laden variants, as in VG.
_VG_PREDICATES = (
    ("on", "along.r.01", 60), ("ON", "along.r.01", 40), ("On", "along.r.01", 4), ("has", "have.v.01", 30),
    ("in", "in.r.01", 14), ("IN", "in.r.01", 8), ("of", None, 12), ("OF", None, 6),
    ("wearing", "wear.v.01", 10), ("WEARING", "wear.v.01", 6), ("wears", "wear.v.01", 3), ("with", None, 7),
    ("near", "near.r.01", 6), ("behind", "behind.r.01", 5), ("in front of", "in_front.r.01", 4),
    ("next to", "next.r.01", 5), ("on top of", "along.r.01", 4), ("under", "under.r.01", 4),
    ("holding", "have.v.01", 4), ("sitting on", "sit.v.01", 3), ("beside", "beside.r.01", 2),
    ("by", "by.r.01", 2), ("above", "above.r.01", 2), ("below", "below.r.01", 1),
    ("standing on", "stand.v.01", 2), ("against", "against.r.01", 1), ("are on", "along.r.01", 1),
    ("has a", "have.v.01", 1), ("parked on", "park.v.01", 1), ("inside of", "inside.r.01", 1),
    ("riding", "ride.v.01", 2), ("walking on", "walk.v.01", 1), ("hanging on", "hang.v.01", 1),
    ("at", None, 1), ("carrying", "carry.v.01", 1), ("Holding", "have.v.01", 1),
)
_GQA_PREDICATES = (
    ("to the left of", 40), ("to the right of", 40), ("on", 4), ("wearing", 2), ("in", 2), ("near", 2),
    ("of", 1), ("in front of", 1), ("behind", 1), ("next to", 1), ("above", 1), ("inside", 1), ("holding", 1),
    ("sitting on", 1), ("on top of", 1),
)
_VG_IMAGE_SIZES = ((800, 600), (800, 600), (640, 480), (500, 333), (800, 533), (500, 375), (1024, 768),
                   (600, 800), (333, 500))
_GQA_LOCATIONS = ("outdoors", "indoors")
_GQA_WEATHERS = ("cloudy", "sunny", "clear", "overcast")


def _cum(weights: list[int]) -> list[int]:
    out, total = [], 0
    for w in weights:
        total += w
        out.append(total)
    return out


_VG_NAME_CW = _cum([w for _, _, w in _VG_NAMES])
_VG_PRED_CW = _cum([w for _, _, w in _VG_PREDICATES])
_GQA_PRED_CW = _cum([w for _, w in _GQA_PREDICATES])
_OBJECT_ALIAS = (
    "man,men,man is", "tree,trees", "window,windows", "building,buildings", "shirt,shirts", "person,persons",
    "circle,circles", "square,squares", "triangle,triangles", "rectangle,rectangles", "diamond,diamonds",
)
_RELATIONSHIP_ALIAS = (
    "near,next to", "near,beside", "near,by", "above,on top of", "in,inside of", "in,inside",
    "has,have,has a", "under,below", "wearing,wears", "holding,holds", "on,are on", "sitting on,sitting in",
)


# ------------------------------------------------------------------------------------------- image entries


@dataclass
class _Ids:
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
class _VgImage:
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


def _vg_object(ids: _Ids, rng: random.Random, name: str, synset: str | None, attrs: list[str],
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


def _vg_relationship(ids: _Ids, predicate: str, synset: str | None, s: int, o: int,
                     objects: list[dict]) -> tuple[dict, dict]:
    rid = ids.take("relationship_id")
    synsets = [synset] if synset else []
    rel = {"predicate": predicate, "object": _embedded(objects[o]), "relationship_id": rid,
           "synsets": synsets, "subject": _embedded(objects[s])}
    sg_rel = {"synsets": synsets, "predicate": predicate, "relationship_id": rid,
              "object_id": objects[o]["object_id"], "subject_id": objects[s]["object_id"]}
    return rel, sg_rel


def _region(ids: _Ids, image_id: int, phrase: str, box: tuple[int, int, int, int]) -> dict:
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


def _vg_random(rng: random.Random, ids: _Ids, image_id: int) -> _VgImage:
    """A VG-like image with random objects, attributes, relations and regions (boxes mean nothing)."""
    r = rng.random
    width, height = rng.choice(_VG_IMAGE_SIZES)
    image = _image_meta(rng, image_id, width, height)
    n_obj = rng.randint(12, 58)
    objects, sg_objects = [], []
    names = rng.choices(_VG_NAMES, cum_weights=_VG_NAME_CW, k=n_obj)
    for name, synset, _ in names:
        x, y = int(r() * (width - 2)), int(r() * (height - 2))
        box = (x, y, 1 + int(r() * (width - x - 1)), 1 + int(r() * (height - y - 1)))
        u = r()
        attrs = [] if u < 0.47 else rng.sample(_VG_ATTRIBUTES, 1 + (u > 0.85))
        obj, sg = _vg_object(ids, rng, name, synset if u > 0.03 else None, attrs, box)
        objects.append(obj)
        sg_objects.append(sg)
    relationships, sg_relationships = [], []
    for predicate, synset, _ in rng.choices(_VG_PREDICATES, cum_weights=_VG_PRED_CW, k=rng.randint(5, 37)):
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
    return _VgImage(image, objects, sg_objects, relationships, sg_relationships, regions)


def _union(a: SceneObject, b: SceneObject) -> tuple[int, int, int, int]:
    x, y = min(a.x, b.x), min(a.y, b.y)
    return x, y, max(a.x2, b.x2) - x, max(a.y2, b.y2) - y


def _vg_from_scene(rng: random.Random, ids: _Ids, image_id: int, scene: Scene) -> _VgImage:
    """A VG image entry whose objects and relations are those of ``scene``."""
    image = _image_meta(rng, image_id, scene.size, scene.size)
    objects, sg_objects = [], []
    for o in scene.objects:
        # Half the objects carry the colour in the name, the others as an attribute.
        name, attrs = (o.label, []) if rng.random() < 0.5 else (o.shape, [o.colour])
        obj, sg = _vg_object(ids, rng, name, _SHAPE_SYNSETS[o.shape], attrs, (o.x, o.y, o.w, o.h))
        objects.append(obj)
        sg_objects.append(sg)
    relationships, sg_relationships = [], []
    for s, predicate, o in scene.relations:
        rel, sg_rel = _vg_relationship(ids, _vg_case(rng, predicate), _PREDICATE_SYNSETS[predicate], s, o,
                                       objects)
        relationships.append(rel)
        sg_relationships.append(sg_rel)
    regions = []
    for s, predicate, o in scene.relations[:4]:
        a, b = scene.objects[s], scene.objects[o]
        regions.append(_region(ids, image_id, f"the {a.label} is {predicate} the {b.label}", _union(a, b)))
    for a in scene.objects[:2]:
        regions.append(_region(ids, image_id, f"a {a.label}", (a.x, a.y, a.w, a.h)))
    return _VgImage(image, objects, sg_objects, relationships, sg_relationships, regions)


def _gqa_extras(rng: random.Random, entry: dict) -> None:
    r = rng.random()
    if r < 0.35:
        entry["location"] = rng.choice(_GQA_LOCATIONS)
    if 0.3 < r < 0.4:
        entry["weather"] = rng.choice(_GQA_WEATHERS)


def _gqa_random(rng: random.Random, ids: _Ids) -> dict:
    """A GQA-like image entry with random objects and relations (mostly left/right, as in GQA)."""
    r = rng.random
    width, height = rng.choice(_VG_IMAGE_SIZES)
    n_obj = rng.randint(5, 28)
    keys = [str(ids.take("gqa_object_id")) for _ in range(n_obj)]
    objects = {}
    for key, (name, _, _) in zip(keys, rng.choices(_VG_NAMES, cum_weights=_VG_NAME_CW, k=n_obj), strict=True):
        x, y = int(r() * (width - 2)), int(r() * (height - 2))
        attrs = [] if r() < 0.3 else rng.sample(_VG_ATTRIBUTES[:30], 1 + (r() < 0.4))
        objects[key] = {"name": name.lower(), "h": 1 + int(r() * (height - y - 1)), "relations": [],
                        "w": 1 + int(r() * (width - x - 1)), "attributes": attrs, "y": y, "x": x}
    for (predicate, _) in rng.choices(_GQA_PREDICATES, cum_weights=_GQA_PRED_CW, k=rng.randint(2, 50)):
        s = int(r() * n_obj)
        o = int(r() * (n_obj - 1))
        o += o >= s
        objects[keys[s]]["relations"].append({"object": keys[o], "name": predicate})
    entry = {"width": width, "objects": objects}
    _gqa_extras(rng, entry)
    entry["height"] = height
    return entry


def _gqa_from_scene(rng: random.Random, ids: _Ids, scene: Scene) -> dict:
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


# ---------------------------------------------------------------------------------------------- writing


class _JsonArray:
    """A JSON array written one element at a time."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "wb", buffering=1 << 20)  # noqa: SIM115 - closed by close()
        self.file.write(b"[")
        self.first = True

    def add(self, item: dict) -> None:
        if not self.first:
            self.file.write(b", ")
        self.first = False
        self.file.write(orjson.dumps(item))

    def close(self) -> None:
        self.file.write(b"]")
        self.file.close()


class _JsonObject:
    """A JSON object written one key at a time."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "wb", buffering=1 << 20)  # noqa: SIM115 - closed by close()
        self.file.write(b"{")
        self.first = True

    def add(self, key: str, item: dict) -> None:
        self.file.write((b"" if self.first else b", ") + orjson.dumps(key) + b": " + orjson.dumps(item))
        self.first = False

    def close(self) -> None:
        self.file.write(b"}")
        self.file.close()


def _image_rng(seed: int, source: str, index: int) -> random.Random:
    return random.Random(f"sgv-synth:{seed}:{source}:{index}")


def _write_vg(vg_dir: Path, n: int, seed: int, with_images: bool, layout: str, image_size: int,
              progress: Callable[[str, int], None] | None) -> dict:
    vg_dir.mkdir(parents=True, exist_ok=True)
    names = ["image_data", "region_descriptions"]
    if layout in ("split", "both"):
        names += ["objects", "relationships", "attributes"]
    if layout in ("scene_graphs", "both"):
        names.append("scene_graphs")
    for stale in set(_VG_FILES) - set(names):  # left by an earlier run with another layout
        (vg_dir / f"{stale}.json").unlink(missing_ok=True)
    files = {name: _JsonArray(vg_dir / f"{name}.json") for name in names}
    ids = _Ids()
    counts = {"images": 0, "objects": 0, "relations": 0, "regions": 0}
    try:
        for i in range(n):
            rng = _image_rng(seed, "vg", i)
            image_id = i + 1
            if with_images:
                scene = make_scene(rng, image_size)
                entry = _vg_from_scene(rng, ids, image_id, scene)
                folder = entry.image["url"].rsplit("/", 2)[-2]
                image = render_scene(scene, noise_seed=rng.getrandbits(32))
                save_jpeg(image, vg_dir / folder / f"{image_id}.jpg")
            else:
                entry = _vg_random(rng, ids, image_id)
            files["image_data"].add(entry.image)
            files["region_descriptions"].add({"regions": entry.regions, "id": image_id})
            if "objects" in files:
                url = entry.image["url"]
                files["objects"].add({"image_id": image_id, "objects": entry.objects, "image_url": url})
                files["relationships"].add({"relationships": entry.relationships, "image_id": image_id})
                files["attributes"].add({"image_id": image_id, "attributes": entry.sg_objects})
            if "scene_graphs" in files:
                objects = entry.sg_objects
                files["scene_graphs"].add(
                    {"relationships": entry.sg_relationships, "image_id": image_id, "objects": objects}
                )
            counts["images"] += 1
            counts["objects"] += len(entry.objects)
            counts["relations"] += len(entry.relationships)
            counts["regions"] += len(entry.regions)
            if progress and (i + 1) % 10_000 == 0:
                progress("vg", i + 1)
    finally:
        for f in files.values():
            f.close()
    alias = _OBJECT_ALIAS, _RELATIONSHIP_ALIAS
    (vg_dir / "object_alias.txt").write_text("\n".join(alias[0]) + "\n", encoding="utf-8")
    (vg_dir / "relationship_alias.txt").write_text("\n".join(alias[1]) + "\n", encoding="utf-8")
    return counts | {"files": sorted(f"{name}.json" for name in names) + ["object_alias.txt",
                                                                           "relationship_alias.txt"]}


def _write_gqa(gqa_dir: Path, n: int, seed: int, with_images: bool, image_size: int,
               progress: Callable[[str, int], None] | None) -> dict:
    gqa_dir.mkdir(parents=True, exist_ok=True)
    out = _JsonObject(gqa_dir / "train_sceneGraphs.json")
    ids = _Ids()
    counts = {"images": 0, "objects": 0, "relations": 0}
    try:
        for i in range(n):
            rng = _image_rng(seed, "gqa", i)
            image_id = gqa_image_id(i)
            if with_images:
                scene = make_scene(rng, image_size)
                entry = _gqa_from_scene(rng, ids, scene)
                image = render_scene(scene, noise_seed=rng.getrandbits(32))
                save_jpeg(image, gqa_dir / "images" / f"{image_id}.jpg")
            else:
                entry = _gqa_random(rng, ids)
            out.add(image_id, entry)
            counts["images"] += 1
            counts["objects"] += len(entry["objects"])
            counts["relations"] += sum(len(o["relations"]) for o in entry["objects"].values())
            if progress and (i + 1) % 10_000 == 0:
                progress("gqa", i + 1)
    finally:
        out.close()
    return counts | {"files": ["train_sceneGraphs.json"]}


def synthesize(
    out: str,
    n_images: int,
    *,
    seed: int = 0,
    with_images: bool = False,
    gqa_fraction: float = 0.3,
    layout: str = "both",
    image_size: int = 256,
    progress: Callable[[str, int], None] | None = None,
) -> dict:
    """Write a synthetic VG (``out/vg``) and GQA (``out/gqa``) corpus; return counts and paths per source.

    ``n_images`` counts both sources; ``round(n_images * gqa_fraction)`` of them are GQA images. Files are
    written image by image (memory stays bounded whatever ``n_images``). ``out`` should be empty or hold an
    earlier output of this function (its files are overwritten). The summary (without paths) is written last,
    to ``out/synth_summary.json``.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    if not 0.0 <= gqa_fraction <= 1.0:
        raise ValueError(f"gqa_fraction must be within [0, 1], not {gqa_fraction}")
    if n_images < 0 or image_size < 32:
        raise ValueError("n_images must be >= 0 and image_size >= 32")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    (root / "synth_summary.json").unlink(missing_ok=True)  # written last: its presence means complete
    n_gqa = round(n_images * gqa_fraction)
    n_vg = n_images - n_gqa
    params = {"n_images": n_images, "seed": seed, "with_images": with_images, "gqa_fraction": gqa_fraction,
              "layout": layout, "image_size": image_size}
    summary: dict = {"params": params}
    if n_vg:
        summary["vg"] = _write_vg(root / "vg", n_vg, seed, with_images, layout, image_size, progress)
    if n_gqa:
        summary["gqa"] = _write_gqa(root / "gqa", n_gqa, seed, with_images, image_size, progress)
    (root / "synth_summary.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    if n_vg:
        summary["vg"] |= {"dir": str(root / "vg"), "images_root": str(root / "vg") if with_images else None}
    if n_gqa:
        summary["gqa"] |= {"path": str(root / "gqa" / "train_sceneGraphs.json"),
                           "images_root": str(root / "gqa" / "images") if with_images else None}
    return summary
