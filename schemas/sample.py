"""The fields of a shard sample's ``.json`` member as TypedDicts, for readers of samples (the trainer): field
names are checked against ``sample.schema.json`` (tests/test_schemas.py), so a renamed field fails there and
in a type checker instead of as a KeyError at training time."""

# No ``from __future__ import annotations`` here: NotRequired must be evaluated for ``__required_keys__``.
from typing import NotRequired, TypedDict

Box = list[int]  # x, y, w, h in pixels
BoxNorm = list[float]  # x0, y0, x1, y1 in [0, 1]


class Triplet(TypedDict):
    """One MRC target (``$defs/triplet``)."""

    subject: str
    subject_id: NotRequired[str | None]
    subject_box: Box
    subject_box_norm: BoxNorm
    predicate: str
    predicate_raw: NotRequired[str]
    relation_id: int
    object: str
    object_id: NotRequired[str | None]
    object_box: Box
    object_box_norm: BoxNorm


class Entity(TypedDict):
    """One object of the image, for grounding (``$defs/entity``)."""

    object_id: str
    name: str
    attributes: list[str]
    box: Box
    box_norm: BoxNorm


class Region(TypedDict):
    """One region description (``$defs/region``)."""

    region_id: NotRequired[str | None]
    phrase: str
    box: Box
    box_norm: BoxNorm


class SampleJSON(TypedDict):
    """The ``.json`` member of one shard sample (``sample.schema.json``)."""

    schema_version: str
    key: str
    source: str
    image_id: str
    coco_id: NotRequired[int | None]
    flickr_id: NotRequired[int | None]
    width: int
    height: int
    vsg: list[str]
    num_relations: int
    num_triplets: int
    triplets: list[Triplet]
    entities: list[Entity]
    regions: NotRequired[list[Region]]
