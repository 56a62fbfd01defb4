"""GQA reader: canonical scene-graph records streamed from ``{train,val}_sceneGraphs.json`` (fsspec URLs)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sgverbalise.readers._json import (
    Malformed,
    box,
    ident,
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


def assemble_gqa(image_id: Any, entry: Any) -> Item:
    """The record and rejects of one GQA image entry (``image_id`` is its key in the file)."""
    try:
        image_id = ident(image_id, "image_id")
    except Malformed as err:
        return None, [reject(SOURCE, None, "malformed_record", f"unusable image id: {err}", kind="image")]
    if not isinstance(entry, dict):
        detail = f"image entry is not a JSON object: {short(entry)}"
        return None, [reject(SOURCE, image_id, "malformed_record", detail, kind="image")]
    try:
        image = {
            "source": SOURCE,
            "image_id": image_id,
            "width": opt_int(entry.get("width"), "width"),
            "height": opt_int(entry.get("height"), "height"),
            "image_path": f"{image_id}.jpg",
            "coco_id": None,
            "flickr_id": None,
            "location": opt_str(entry.get("location"), "location"),
            "weather": opt_str(entry.get("weather"), "weather"),
        }
    except Malformed as err:
        return None, [reject(SOURCE, image_id, "malformed_record", f"image fields: {err}", kind="image")]

    rejects: list[dict] = []

    def bad(kind: str, detail: str) -> None:
        rejects.append(reject(SOURCE, image_id, "malformed_record", detail, kind=kind))

    raw_objects = entry.get("objects")
    if raw_objects is None:
        raw_objects = {}
    elif not isinstance(raw_objects, dict):
        bad("object", f"'objects' is not a JSON object: {short(raw_objects, 40)}")
        raw_objects = {}
    objects: list[dict] = []
    relations: list[dict] = []
    for key, raw in raw_objects.items():
        try:
            objects.append(parse_object(key, raw))
        except Malformed as err:
            bad("object", f"object {short(key, 30)}: {err}")
        if not isinstance(raw, dict):
            continue
        try:
            subject_id = ident(key, "object_id")
            listed = list_field(raw, "relations")
        except Malformed as err:
            if raw.get("relations") not in (None, []):
                bad("relation", f"relations of object {short(key, 30)}: {err}")
            continue
        for item in listed:
            try:
                relations.append(parse_relation(subject_id, item))
            except Malformed as err:
                bad("relation", f"relation of object {short(key, 30)}: {err}")
    return {**image, "objects": objects, "relations": relations, "regions": []}, rejects
