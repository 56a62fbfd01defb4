"""GQA reader: canonical scene-graph records streamed from ``{train,val}_sceneGraphs.json`` (fsspec URLs)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from sgverbalise.readers._json import (
    Malformed,
    box,
    ident,
    ignore,
    iter_dict,
    list_field,
    names_of,
    opt_int,
    opt_str,
    req_str,
    short,
    str_list,
)
from sgverbalise.rejects import reject

SOURCE = "gqa"

Item = tuple[dict | None, list[dict]]


def iter_gqa(url: str, *, limit: int | None = None) -> Iterator[Item]:
    """Yield ``(record | None, rejects)`` per image of a GQA scene-graph file (an object keyed by image id).

    Relations live inside their subject object as ``{"name": predicate, "object": object id}``; they get
    ``relation_id`` None and keep dangling object ids (a later stage rejects those). A malformed object or
    relation is left out with a reject; an entry that is not a JSON object, has a blank id or wrongly typed
    image fields yields ``(None, [reject])``. ``limit`` stops after that many items. A file that is not valid
    JSON raises ValueError (naming it) after everything before the break has been yielded.
    """
    if limit is not None and limit <= 0:
        return
    pairs = iter_dict(url)
    count = 0
    try:
        for image_id, entry in pairs:
            yield assemble_gqa(image_id, entry)
            count += 1
            if limit is not None and count >= limit:
                break
    finally:
        pairs.close()


def parse_object(object_id: Any, entry: Any) -> dict:
    """One GQA object (a value of an image's ``objects``) in record shape."""
    if not isinstance(entry, dict):
        raise Malformed(f"object is not a JSON object: {short(entry, 40)}")
    return {
        "object_id": ident(object_id, "object_id"),
        "names": names_of(entry),
        "name": None,
        "attributes": str_list(entry.get("attributes"), "attributes"),
        "attributes_norm": None,
        "merged_object_ids": [],
        **box(entry),
    }


def parse_relation(subject_id: str, entry: Any) -> dict:
    """One GQA relation (an item of a subject object's ``relations``) in record shape."""
    if not isinstance(entry, dict):
        raise Malformed(f"relation is not a JSON object: {short(entry, 40)}")
    return {
        "relation_id": None,
        "subject_id": subject_id,
        "predicate_raw": req_str(entry.get("name"), "name"),
        "predicate": None,
        "object_id": ident(entry.get("object"), "object"),
    }


def _image(image_id: Any, entry: Any) -> tuple[dict | None, list[dict]]:
    """The image fields of an image entry, or None and the reject of an entry that cannot be a record."""
    try:
        image_id = ident(image_id, "image_id")
    except Malformed as err:
        return None, [reject(SOURCE, None, "malformed_record", f"unusable image id: {err}", kind="image")]
    if not isinstance(entry, dict):
        detail = f"image entry is not a JSON object: {short(entry)}"
        return None, [reject(SOURCE, image_id, "malformed_record", detail, kind="image")]
    try:
        return {
            "source": SOURCE,
            "image_id": image_id,
            "width": opt_int(entry.get("width"), "width"),
            "height": opt_int(entry.get("height"), "height"),
            "image_path": f"{image_id}.jpg",
            "coco_id": None,
            "flickr_id": None,
            "location": opt_str(entry.get("location"), "location"),
            "weather": opt_str(entry.get("weather"), "weather"),
        }, []
    except Malformed as err:
        return None, [reject(SOURCE, image_id, "malformed_record", f"image fields: {err}", kind="image")]


def _objects(entry: dict, bad: Callable[[str, str], None]) -> dict:
    """An image entry's ``objects`` (empty when missing, or, told to ``bad``, when not a JSON object)."""
    raw_objects = entry.get("objects")
    if raw_objects is None:
        return {}
    if not isinstance(raw_objects, dict):
        bad("object", f"'objects' is not a JSON object: {short(raw_objects, 40)}")
        return {}
    return raw_objects


def _object_relations(key: Any, raw: Any, bad: Callable[[str, str], None]) -> Iterator[dict]:
    """The relations of the object ``raw`` (keyed ``key``) that parse, in order; ``bad`` is told of the others."""
    if not isinstance(raw, dict):
        return
    try:
        subject_id = ident(key, "object_id")
        listed = list_field(raw, "relations")
    except Malformed as err:
        if raw.get("relations") not in (None, []):
            bad("relation", f"relations of object {short(key, 30)}: {err}")
        return
    for item in listed:
        try:
            yield parse_relation(subject_id, item)
        except Malformed as err:
            bad("relation", f"relation of object {short(key, 30)}: {err}")


def relation_predicates(image_id: Any, entry: Any) -> list[str] | None:
    """The raw predicates of the relations ``assemble_gqa`` gives the image's record, in order, without assembling
    it (no objects); None when the entry has no record."""
    if _image(image_id, entry)[0] is None:
        return None
    return [relation["predicate_raw"] for key, raw in _objects(entry, ignore).items()
            for relation in _object_relations(key, raw, ignore)]


def assemble_gqa(image_id: Any, entry: Any) -> Item:
    """The record and rejects of one GQA image entry (``image_id`` is its key in the file)."""
    image, rejects = _image(image_id, entry)
    if image is None:
        return None, rejects

    def bad(kind: str, detail: str) -> None:
        rejects.append(reject(SOURCE, image["image_id"], "malformed_record", detail, kind=kind))

    objects: list[dict] = []
    relations: list[dict] = []
    for key, raw in _objects(entry, bad).items():
        try:
            objects.append(parse_object(key, raw))
        except Malformed as err:
            bad("object", f"object {short(key, 30)}: {err}")
        relations.extend(_object_relations(key, raw, bad))
    return {**image, "objects": objects, "relations": relations, "regions": []}, rejects
