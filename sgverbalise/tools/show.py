"""``sgv show``: find one sample by key and describe it readably (VSG captions, triplets, entities, regions
for our samples; text, JSON and image headers for any WebDataset sample). Pickled members are never
unpickled."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator
from typing import Any

from sgverbalise.schemas.layout import Shard, ShardSet
from sgverbalise.tools import ToolError
from sgverbalise.tools.scan import Sample, ShardStream, ext_kind, image_info, is_sgv_sample, parse_json

_TEXT_PREVIEW = 2000


def _candidates(shardset: ShardSet, key: str) -> list[Shard]:
    """Shards in the order to search: those whose manifest key range or img2dataset-style name (the key starts
    with the shard's number) covers the key first, then the rest."""

    def likely(shard: Shard) -> bool:
        entry = shard.entry or {}
        first, last = entry.get("first_key"), entry.get("last_key")
        if isinstance(first, str) and isinstance(last, str):
            return first <= key <= last
        stem = posixpath.basename(shard.url).split(".", 1)[0]
        return stem.isdigit() and key.startswith(stem)

    first = [s for s in shardset.shards if likely(s)]
    return first + [s for s in shardset.shards if not likely(s)]


def iter_from(shardset: ShardSet, key: str | None = None, **storage_options: Any) -> Iterator[Sample]:
    """Samples of the set in order, starting at ``key`` (from the first when None); problems are ignored.

    The shard holding ``key`` is read once: the samples after it come from the same pass that found it.
    Raises ToolError (when iterated) if no shard holds ``key``."""
    if key is None:
        for shard in shardset.shards:
            yield from ShardStream(shard, None, storage_options)
        return
    for shard in _candidates(shardset, key):
        samples = iter(ShardStream(shard, None, storage_options))
        for sample in samples:
            if sample.key == key:
                yield sample
                yield from samples
                start = next(i for i, s in enumerate(shardset.shards) if s is shard)
                for later in shardset.shards[start + 1 :]:
                    yield from ShardStream(later, None, storage_options)
                return
    raise ToolError(f"no sample with key {key!r} in {len(shardset.shards)} shard(s)")


def find_sample(shardset: ShardSet, key: str, **storage_options: Any) -> Sample:
    """The sample with key ``key`` (raises ToolError when no shard holds it)."""
    return next(iter_from(shardset, key, **storage_options))


def describe(sample: Sample) -> dict:
    """A JSON-able description of a sample: every member by kind, and the decoded .json as ``sample``."""
    out: dict[str, Any] = {"key": sample.key, "shard": sample.shard.name, "members": {}}
    for ext in sorted(sample.members):
        data = sample.members[ext]
        kind = ext_kind(ext)
        member: dict[str, Any] = {"kind": kind, "bytes": len(data)}
        if kind == "pickled":
            member["refused"] = "pickled data: never unpickled (it could run code)"
        elif kind == "image":
            info, error = image_info(data)
            member.update(info or {"error": error})
        elif kind == "json":
            obj, error = parse_json(data)
            if error:
                member["error"] = error
            else:
                member["sgverbalise"] = is_sgv_sample(obj)
                if ext == "json":
                    out["sample"] = obj
                else:
                    member["value"] = obj
        elif kind == "text":
            member["text"] = data.decode("utf-8", "replace")
        out["members"][ext] = member
    return out


def _box(box: Any) -> str:
    if isinstance(box, list) and len(box) == 4:
        return "[" + ", ".join(f"{v:g}" if isinstance(v, (int, float)) else str(v) for v in box) + "]"
    return str(box)


def _sgv_lines(s: dict) -> list[str]:
    lines = [
        f"  source {s.get('source')}, image {s.get('image_id')}, {s.get('width')}x{s.get('height')} px"
        + (f", COCO {s['coco_id']}" if s.get("coco_id") is not None else "")
        + (f", Flickr {s['flickr_id']}" if s.get("flickr_id") is not None else ""),
        f"  relations in the source graph {s.get('num_relations')}, valid triplets {s.get('num_triplets')}, "
        f"MRC triplets {len(s.get('triplets') or [])}",
    ]
    vsg = s.get("vsg") or []
    lines.append(f"  VSG captions ({len(vsg)}):")
    for n, caption in enumerate(vsg, 1):
        lines.append(f"    {n}. " + caption.replace(" [SEP] ", "\n       [SEP] "))
    triplets = s.get("triplets") or []
    lines.append(f"  triplets ({len(triplets)}):")
    for t in triplets:
        lines.append(
            f"    {t.get('subject')} {_box(t.get('subject_box'))} --{t.get('predicate')} "
            f"(id {t.get('relation_id')})--> {t.get('object')} {_box(t.get('object_box'))}"
            + (
                f"   raw {t['predicate_raw']!r}"
                if t.get("predicate_raw") not in (None, t.get("predicate"))
                else ""
            )
        )
    entities = s.get("entities") or []
    lines.append(f"  entities ({len(entities)}):")
    for e in entities:
        attributes = ", ".join(e.get("attributes") or [])
        lines.append(
            f"    {e.get('object_id')}: {e.get('name')} {_box(e.get('box'))}"
            + (f"  ({attributes})" if attributes else "")
        )
    regions = s.get("regions") or []
    if regions:
        lines.append(f"  regions ({len(regions)}):")
        lines += [f"    {r.get('phrase')!r} {_box(r.get('box'))}" for r in regions]
    return lines


def format_description(desc: dict, raw: bool = False) -> str:
    """The description as text: our samples laid out (or raw JSON with ``raw``), other members summarised."""
    lines = [f"{desc['key']}  (in {desc['shard']})"]
    sample = desc.get("sample")
    if sample is not None:
        if raw or not is_sgv_sample(sample):
            lines.append("  .json:")
            lines += ["    " + line for line in json.dumps(sample, indent=2, ensure_ascii=False).splitlines()]
        else:
            lines += _sgv_lines(sample)
    lines.append("  members:")
    for ext, m in desc["members"].items():
        if m["kind"] == "pickled":
            detail = f"REFUSED: {m['refused']}"
        elif m["kind"] == "image":
            detail = m.get("error") or f"{m['format']} {m['width']}x{m['height']} {m['mode']}"
        elif m["kind"] == "text":
            text = m["text"]
            detail = repr(text if len(text) <= _TEXT_PREVIEW else text[:_TEXT_PREVIEW] + "...")
        elif m["kind"] == "json":
            detail = m.get("error") or ("shown above" if ext == "json" else json.dumps(m.get("value"))[:200])
        else:
            detail = "binary"
        lines.append(f"    .{ext}  {m['bytes']} bytes  {detail}")
    return "\n".join(lines)
