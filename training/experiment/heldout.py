"""The rule that keeps the probes out of training: colour/shape pairs that no training scene ever shows.

Colours are numbered in alphabetical order (black 0, blue 1, ..., yellow 9) and shapes in
``sgverbalise.synth.SHAPES`` order (circle 0, square 1, triangle 2, rectangle 3, diamond 4). A pair is held
out when ``(colour index + shape index) % 10 == 0``: black circle, yellow square, red triangle, purple
rectangle and pink diamond (one held-out colour per shape, so every colour and every shape is still seen in
training, with other partners). About one object in ten of a random scene is such a pair.

* Training scenes (web images, scene-graph corpus images) contain no held-out pair: the web generator draws
  scenes until one has none (``training_scene``), and scene-graph corpus images that show one are left out
  by ``build-shards --exclude-image-ids`` (the job's mechanism for evaluation images).
* Every probe item names at least one held-out pair in its text, about an image that shows it
  (``probe_relation``): the combination is new to the model, the words are not.

``OPPOSITE`` gives, for each predicate of the shape scenes, one that cannot hold for the same ordered pair
under the definitions of ``sgverbalise.synth.relation_between`` (left/right, above/below, on/under,
bigger/smaller exclude each other; ``inside`` excludes ``on``; two boxes ``next to`` each other overlap
vertically, so neither is ``above`` the other): the shape predicates' part of the domain's table
``sgverbalise.foils.OPPOSITE``, which the trainer's foils use too.
"""

from __future__ import annotations

import random

from sgverbalise import foils
from sgverbalise.synth import COLOURS, PREDICATES, SHAPES, Scene, make_scene

COLOUR_ORDER: tuple[str, ...] = tuple(sorted(COLOURS))
HELDOUT_PAIRS: frozenset[tuple[str, str]] = frozenset(
    (c, s)
    for i, c in enumerate(COLOUR_ORDER)
    for j, s in enumerate(SHAPES)
    if (i + j) % len(COLOUR_ORDER) == 0
)
HELDOUT_LABELS: frozenset[str] = frozenset(f"{c} {s}" for c, s in HELDOUT_PAIRS)
OPPOSITE: dict[str, str] = {p: foils.OPPOSITE[p] for p in PREDICATES}
# The shape predicates of a converse pair (``foils.REVERSIBLE``: "on", "under", "left of", ...). Items cycling
# through them, each against its opposite, give a model that prefers one word of a pair whatever the picture
# exactly half the pair's items (``inside`` -> ``on`` and ``next to`` -> ``above`` are one-way: a preference for
# ``inside`` and ``next to`` would score every one of their items).
MUTUAL: tuple[str, ...] = tuple(p for p in PREDICATES if p in foils.REVERSIBLE)
SYMMETRIC: frozenset[str] = foils.SYMMETRIC & frozenset(PREDICATES)


def is_heldout(colour: str, shape: str) -> bool:
    """Whether the colour/shape pair is held out of training."""
    return (colour, shape) in HELDOUT_PAIRS


def heldout_objects(scene: Scene) -> list[int]:
    """Indices of the scene's objects that are held-out pairs."""
    return [i for i, o in enumerate(scene.objects) if is_heldout(o.colour, o.shape)]


def training_scene(rng: random.Random, size: int, max_tries: int = 1000) -> Scene:
    """A random shape scene (``make_scene``) without any held-out pair (scenes are drawn until one fits)."""
    for _ in range(max_tries):
        scene = make_scene(rng, size)
        if not heldout_objects(scene):
            return scene
    raise RuntimeError(f"no scene without a held-out pair in {max_tries} draws")


def training_relation(
    rng: random.Random, size: int, predicate: str, max_tries: int = 5000
) -> tuple[Scene, tuple[int, str, int]]:
    """A training-like scene (no held-out pair) and one of its relations with ``predicate``."""
    for _ in range(max_tries):
        scene = training_scene(rng, size)
        candidates = [r for r in scene.relations if r[1] == predicate]
        if candidates:
            return scene, rng.choice(candidates)
    raise RuntimeError(f"no training scene with a {predicate!r} relation in {max_tries} draws")


def probe_relation(
    rng: random.Random, size: int, predicate: str | None = None, max_tries: int = 5000
) -> tuple[Scene, tuple[int, str, int]]:
    """A random shape scene and one of its relations (with ``predicate`` when given) whose subject or object is
    a held-out pair."""
    for _ in range(max_tries):
        scene = make_scene(rng, size)
        held = set(heldout_objects(scene))
        candidates = [r for r in scene.relations
                      if (r[0] in held or r[2] in held) and predicate in (None, r[1])]
        if candidates:
            return scene, rng.choice(candidates)
    raise RuntimeError(f"no scene with a {predicate or 'any'} relation of a held-out pair in {max_tries} draws")


def false_variant(rng: random.Random, relation: tuple[int, str, int]) -> tuple[int, str, int]:
    """A false statement about the same two objects (``sgverbalise.foils.foil_triplet``): the opposite
    predicate, or (for an asymmetric predicate, half the time) subject and object swapped."""
    foil = foils.foil_triplet(*relation, rng)
    if foil is None:
        raise ValueError(f"no foil for {relation}")
    return foil
