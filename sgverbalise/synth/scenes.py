"""Shape scenes: a few coloured shapes placed on a square canvas, and the relations that hold among them.

Every relation is computed from the placed boxes by ``relation_between``, so a scene's graph is true in its
picture (``render.render_scene``).

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
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

PREDICATES: tuple[str, ...] = (
    "inside", "on", "under", "next to", "left of", "right of", "above", "below", "bigger than", "smaller than"
)
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

    def statement(self, relation: tuple[int, str, int]) -> str:
        """``subject predicate object`` with the objects' labels ("red circle left of blue square")."""
        s, predicate, o = relation
        return f"{self.objects[s].label} {predicate} {self.objects[o].label}"


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
