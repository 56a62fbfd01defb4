"""Visual Genome reader (releases 1.0/1.2/1.4): canonical scene-graph records, streamed from fsspec URLs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import fsspec

from sgverbalise.readers._json import (
    Malformed,
    box,
    first_present,
    id_list,
    ident,
    ignore,
    iter_list,
    join_by_image,
    list_field,
    names_of,
    opt_ident,
    opt_int,
    opt_str,
    req_str,
    short,
    str_list,
)
from sgverbalise.rejects import reject

SOURCE = "vg"
LAYOUTS = ("scene_graphs", "split")
# role -> file stem; each file may also be compressed (the suffix picks the codec).
STEMS = {
    "scene_graphs": "scene_graphs",
    "objects": "objects",
    "relationships": "relationships",
    "attributes": "attributes",
    "image_data": "image_data",
    "regions": "region_descriptions",
}
SUFFIXES = (".json", ".json.gz", ".json.zip", ".json.bz2", ".json.xz")
# Read order of the joined files.
_ORDER = ("scene_graphs", "objects", "relationships", "attributes", "regions", "image_data")
# Files that carry image fields; a later one overrides an earlier one (image_data.json wins).
_IMAGE_ROLES = ("scene_graphs", "objects", "image_data")
_IMAGE_FIELDS = ("width", "height", "url", "image_url", "coco_id", "flickr_id")
# The files whose entries decide an image's relations and whether it has a record: all ``relation_predicates``
# reads.
PREDICATE_ROLES = ("scene_graphs", "objects", "relationships", "image_data")

Item = tuple[dict | None, list[dict]]
# a relationship's ends: (end, key of its id, what an embedded end's id is called in a reject)
_ENDS = (("subject", "subject_id", "subject.object_id"), ("object", "object_id", "object.object_id"))


def _basenames(fs: Any, path: str) -> dict[str, str]:
    try:
        listing = fs.ls(path, detail=False)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"Visual Genome folder not found: {path}") from err
    return {p.rstrip("/").rsplit("/", 1)[-1]: p for p in listing}


def _pick(names: dict[str, str], stem: str, fs: Any) -> str | None:
    for suffix in SUFFIXES:
        if stem + suffix in names:
            return fs.unstrip_protocol(names[stem + suffix])
    return None


def resolve_vg_files(
    root: str, *, images: str | None = None, regions: bool = True, layout: str | None = None
) -> dict[str, str]:
    """The files ``iter_vg`` reads under ``root``, as role -> URL (roles: keys of ``STEMS``)."""
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"unknown Visual Genome layout {layout!r}; known: {', '.join(LAYOUTS)}")
    fs, path = fsspec.core.url_to_fs(root)
    if fs.isfile(path):
        if layout == "split":
            raise ValueError(f"{root} is a single file; the split layout needs a folder")
        found = {"scene_graphs": root}
        folder: dict[str, str] = {}
    else:
        folder = _basenames(fs, path)
        found = {role: url for role, stem in STEMS.items() if (url := _pick(folder, stem, fs)) is not None}
        has_split = "objects" in found or "relationships" in found
        chosen = layout or ("split" if has_split else "scene_graphs")
        if chosen == "split":
            if not has_split:
                raise FileNotFoundError(f"{root}: no objects.json or relationships.json for the split layout")
            found.pop("scene_graphs", None)
        else:
            if "scene_graphs" not in found:
                raise FileNotFoundError(
                    f"{root}: no scene_graphs.json, objects.json or relationships.json (Visual Genome files)"
                )
            for role in ("objects", "relationships", "attributes"):
                found.pop(role, None)
    if images is not None:
        images_fs, images_path = fsspec.core.url_to_fs(images)
        if not images_fs.isfile(images_path):
            raise FileNotFoundError(f"image metadata file not found: {images}")
        found["image_data"] = images
    if not regions:
        found.pop("regions", None)
    return {role: found[role] for role in _ORDER if role in found}


def iter_vg(
    root: str,
    *,
    images: str | None = None,
    regions: bool = True,
    limit: int | None = None,
    layout: str | None = None,
) -> Iterator[Item]:
    """Yield ``(record | None, rejects)`` per Visual Genome image under ``root`` (a folder path or URL).

    Layouts: ``"split"`` reads ``objects.json`` and/or ``relationships.json`` (+ ``attributes.json``); it is
    chosen whenever either file is there. ``"scene_graphs"`` reads ``scene_graphs.json`` and is chosen only
    when both split files are absent (or when ``root`` is that file itself). ``layout`` forces one. Both
    layouts join ``image_data.json`` (width, height, url, coco_id, flickr_id; ``images`` names another copy
    of it) and, with ``regions``, ``region_descriptions.json``. Any file may be compressed (``.json.gz``,
    ``.json.zip``, ``.json.bz2``, ``.json.xz``).

    The files are streamed once, side by side, and joined by image id (see ``join_by_image``): memory stays
    bounded while they are in the same image order, as in the official releases; misaligned files are joined
    right but cost memory for the images read ahead. ``limit`` stops after that many yielded items.

    Objects come from the object lists, then from relationship subjects/objects not listed there (the listed
    entry wins); attributes.json sets the attributes of the object with the same id. Relations pointing at
    absent objects are kept. A malformed object, relation or region is left out with a reject; an entry
    without a usable image id, or with wrongly typed image fields, yields ``(None, [reject])``. A file that is
    not valid JSON raises ValueError (naming it) after everything before the break has been yielded.
    """
    files = resolve_vg_files(root, images=images, regions=regions, layout=layout)
    if limit is not None and limit <= 0:
        return
    streams = [(role, iter_list(url)) for role, url in files.items()]
    joined = join_by_image(streams, image_key)
    count = 0
    try:
        for image_id, group in joined:
            yield assemble_vg(image_id, group, files)
            count += 1
            if limit is not None and count >= limit:
                break
    finally:
        joined.close()


def image_key(entry: Any) -> str | None:
    """The image id of an entry of any VG file (None when it has no usable one)."""
    if not isinstance(entry, dict):
        return None
    try:
        return ident(first_present(entry, "image_id", "id"), "image_id")
    except Malformed:
        return None


def _file_name(files: dict[str, str], role: str) -> str:
    url = files.get(role, STEMS[role] + ".json")
    return url.rstrip("/").rsplit("/", 1)[-1]


def image_path_from_url(url: str | None, image_id: str) -> str:
    """The image's path relative to an image root: the url's last two path parts, else ``{image_id}.jpg``."""
    if url:
        parts = [p for p in urlsplit(url).path.split("/") if p]
        if parts:
            return "/".join(parts[-2:])
    return f"{image_id}.jpg"


def parse_object(entry: Any) -> dict:
    """One VG object (objects.json, scene_graphs.json or embedded in a relationship) in record shape."""
    if not isinstance(entry, dict):
        raise Malformed(f"object is not a JSON object: {short(entry, 40)}")
    return {
        "object_id": ident(first_present(entry, "object_id", "id"), "object_id"),
        "names": names_of(entry),
        "name": None,
        "attributes": str_list(entry.get("attributes"), "attributes"),
        "attributes_norm": None,
        "merged_object_ids": id_list(entry.get("merged_object_ids"), "merged_object_ids"),
        **box(entry),
    }


def parse_relation(entry: Any) -> tuple[dict, list[tuple[str, Any]]]:
    """One VG relationship in record shape, and its embedded (object id, subject/object entry) pairs."""
    if not isinstance(entry, dict):
        raise Malformed(f"relationship is not a JSON object: {short(entry, 40)}")
    embedded: list[tuple[str, Any]] = []
    ends: list[str] = []
    for end, id_key, embedded_key in _ENDS:
        end_id = entry.get(id_key)
        if end_id is not None:
            ends.append(ident(end_id, id_key))
        elif isinstance(end_entry := entry.get(end), dict):
            ends.append(ident(first_present(end_entry, "object_id", "id"), embedded_key))
            embedded.append((ends[-1], end_entry))
        else:
            raise Malformed(f"no {end}_id and no embedded {end}")
    relation = {
        "relation_id": opt_ident(first_present(entry, "relationship_id", "id"), "relationship_id"),
        "subject_id": ends[0],
        "predicate_raw": req_str(entry.get("predicate"), "predicate"),
        "predicate": None,
        "object_id": ends[1],
    }
    return relation, embedded


def parse_region(entry: Any) -> dict:
    """One region description in record shape (``width``/``height`` accepted for ``w``/``h``)."""
    if not isinstance(entry, dict):
        raise Malformed(f"region is not a JSON object: {short(entry, 40)}")
    return {
        "region_id": ident(first_present(entry, "region_id", "id"), "region_id"),
        "phrase": req_str(entry.get("phrase"), "phrase"),
        **box(entry, ("w", "width"), ("h", "height")),
    }


def _oid_hint(entry: Any) -> str:
    if isinstance(entry, dict):
        value = first_present(entry, "object_id", "id", "relationship_id", "region_id")
        if value is not None:
            return f" {short(value, 30)}"
    return ""


def _image(image_id: str, group: dict[str, Any]) -> dict:
    """The image fields of a record from its joined entries (a later role's field wins); Malformed when one is
    wrongly typed."""
    fields: dict[str, Any] = {}
    for role in _IMAGE_ROLES:
        entry = group.get(role)
        if entry is not None:
            fields.update({k: entry[k] for k in _IMAGE_FIELDS if entry.get(k) is not None})
    url = opt_str(first_present(fields, "url", "image_url"), "url")
    return {
        "source": SOURCE,
        "image_id": image_id,
        "width": opt_int(fields.get("width"), "width"),
        "height": opt_int(fields.get("height"), "height"),
        "image_path": image_path_from_url(url, image_id),
        "coco_id": opt_int(fields.get("coco_id"), "coco_id", wide=True),
        "flickr_id": opt_int(fields.get("flickr_id"), "flickr_id", wide=True),
        "location": None,
        "weather": None,
    }


def _listed(group: dict[str, Any], roles: tuple[str, ...], key: str, kind: str, bad: Callable) \
        -> Iterator[tuple[str, Any]]:
    """(role, item) of each item of the ``key`` lists of an image's entries of ``roles``, in order; ``bad`` is
    told of a ``key`` that is not a list."""
    for role in roles:
        entry = group.get(role)
        if entry is None:
            continue
        try:
            listed = list_field(entry, key)
        except Malformed as err:
            bad(kind, role, None, err)
            continue
        for raw in listed:
            yield role, raw


def _relations(group: dict[str, Any], bad: Callable[[str, str, Any, Exception], None]) \
        -> Iterator[tuple[str, dict, list[tuple[str, Any]]]]:
    """(role, relation, embedded ends) of each relationship of an image's entries that parses, in order; ``bad``
    is told of each one that does not."""
    for role, raw in _listed(group, ("scene_graphs", "relationships"), "relationships", "relation", bad):
        try:
            relation, embedded = parse_relation(raw)
        except Malformed as err:
            bad("relation", role, raw, err)
            continue
        yield role, relation, embedded


def relation_predicates(image_id: str | None, group: dict[str, Any]) -> list[str] | None:
    """The raw predicates of the relations ``assemble_vg`` gives the image's record, in order, without assembling
    it (no objects, attributes or regions); None when the image has no record. Reads only the entries of
    ``PREDICATE_ROLES``."""
    if image_id is None:
        return None
    try:
        _image(image_id, group)
    except Malformed:
        return None
    return [relation["predicate_raw"] for _, relation, _ in _relations(group, ignore)]


def assemble_vg(image_id: str | None, group: dict[str, Any], files: dict[str, str] | None = None) -> Item:
    """The record and rejects of one image from its joined entries (role -> entry of that role's file)."""
    files = files or {}
    if image_id is None:
        ((role, entry),) = group.items()
        detail = f"{_file_name(files, role)}: entry without a usable image id: {short(entry)}"
        return None, [reject(SOURCE, None, "malformed_record", detail, kind="image")]
    rejects: list[dict] = []

    def bad(kind: str, role: str, entry: Any, err: Exception) -> None:
        what = {"object": "object", "relation": "relationship", "region": "region"}[kind]
        detail = f"{_file_name(files, role)}: {what}{_oid_hint(entry)}: {err}"
        rejects.append(reject(SOURCE, image_id, "malformed_record", detail, kind=kind))

    try:
        image = _image(image_id, group)
    except Malformed as err:
        return None, [reject(SOURCE, image_id, "malformed_record", f"image fields: {err}", kind="image")]

    objects: dict[str, dict] = {}
    for role, raw in _listed(group, ("scene_graphs", "objects"), "objects", "object", bad):
        try:
            obj = parse_object(raw)
        except Malformed as err:
            bad("object", role, raw, err)
            continue
        if obj["object_id"] in objects:
            bad("object", role, raw, Malformed("duplicate object id"))
            continue
        objects[obj["object_id"]] = obj

    relations: list[dict] = []
    unparsed_ends: dict[str, tuple[str, Any, Malformed]] = {}
    for role, relation, embedded in _relations(group, bad):
        relations.append(relation)
        for object_id, end in embedded:
            if object_id in objects:
                continue
            try:
                objects[object_id] = parse_object(end)
            except Malformed as err:
                unparsed_ends.setdefault(object_id, (role, end, err))
    for object_id, (role, end, err) in unparsed_ends.items():
        if object_id not in objects:
            bad("object", role, end, err)

    entry = group.get("attributes")
    if entry is not None:
        try:
            listed = list_field(entry, "attributes") or list_field(entry, "objects")
        except Malformed as err:
            bad("object", "attributes", None, err)
            listed = []
        for raw in listed:
            try:
                if not isinstance(raw, dict):
                    raise Malformed(f"not a JSON object: {short(raw, 40)}")
                object_id = ident(first_present(raw, "object_id", "id"), "object_id")
                attributes = raw.get("attributes")
                if attributes is not None and object_id in objects:
                    objects[object_id]["attributes"] = str_list(attributes, "attributes")
            except Malformed as err:
                bad("object", "attributes", raw, Malformed(f"attributes not applied: {err}"))

    record_regions: list[dict] = []
    for role, raw in _listed(group, ("regions",), "regions", "region", bad):
        try:
            record_regions.append(parse_region(raw))
        except Malformed as err:
            bad("region", role, raw, err)

    record = {**image, "objects": list(objects.values()), "relations": relations, "regions": record_regions}
    return record, rejects
