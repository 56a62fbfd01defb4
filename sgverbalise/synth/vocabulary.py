"""The words of the synthetic VG and GQA files: a VG-flavoured vocabulary for random graphs (with VG's
weights, case variants and alias files), and how the shape scenes' names and predicates are written."""

from __future__ import annotations

from .scenes import PREDICATES

GQA_PHRASES: dict[str, str] = {p: p for p in PREDICATES} | {
    "left of": "to the left of",
    "right of": "to the right of",
}
SHAPE_SYNSETS = {
    "circle": "circle.n.01", "square": "square.n.01", "triangle": "triangle.n.01",
    "rectangle": "rectangle.n.01", "diamond": "diamond.n.02",
}
PREDICATE_SYNSETS = {
    "inside": "inside.r.01", "on": "along.r.01", "under": "under.r.01", "next to": "next.r.01",
    "left of": "left.r.01", "right of": "right.r.01", "above": "above.r.01", "below": "below.r.01",
    "bigger than": "big.a.01", "smaller than": "small.a.01",
}
VG_NAMES = (
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
VG_ATTRIBUTES = (
    "white", "black", "blue", "green", "red", "brown", "yellow", "small", "large", "wooden", "metal", "tall",
    "parked", "standing", "open", "glass", "dark", "young", "grey", "silver", "orange", "striped", "smiling",
    "bright", "cloudy", "short", "long", "old", "empty", "round", "Green", "white ",
)
# (predicate as written, synset or None, weight): mixed case and article-laden variants, as in VG.
VG_PREDICATES = (
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
GQA_PREDICATES = (
    ("to the left of", 40), ("to the right of", 40), ("on", 4), ("wearing", 2), ("in", 2), ("near", 2),
    ("of", 1), ("in front of", 1), ("behind", 1), ("next to", 1), ("above", 1), ("inside", 1), ("holding", 1),
    ("sitting on", 1), ("on top of", 1),
)
VG_IMAGE_SIZES = ((800, 600), (800, 600), (640, 480), (500, 333), (800, 533), (500, 375), (1024, 768),
                  (600, 800), (333, 500))
GQA_LOCATIONS = ("outdoors", "indoors")
GQA_WEATHERS = ("cloudy", "sunny", "clear", "overcast")


def _cum(weights: list[int]) -> list[int]:
    out, total = [], 0
    for w in weights:
        total += w
        out.append(total)
    return out


VG_NAME_CW = _cum([w for _, _, w in VG_NAMES])
VG_PRED_CW = _cum([w for _, _, w in VG_PREDICATES])
GQA_PRED_CW = _cum([w for _, w in GQA_PREDICATES])
OBJECT_ALIAS = (
    "man,men,man is", "tree,trees", "window,windows", "building,buildings", "shirt,shirts", "person,persons",
    "circle,circles", "square,squares", "triangle,triangles", "rectangle,rectangles", "diamond,diamonds",
)
RELATIONSHIP_ALIAS = (
    "near,next to", "near,beside", "near,by", "above,on top of", "in,inside of", "in,inside",
    "has,have,has a", "under,below", "wearing,wears", "holding,holds", "on,are on", "sitting on,sitting in",
)
