"""Synthetic web image-text shards in img2dataset's output format, for tests and the demo.

Like img2dataset (``output_format="webdataset"``): shards ``{shard:05d}.tar`` holding ``{key}.jpg``,
``{key}.txt`` (the caption) and ``{key}.json`` (url, key, status, error_message, width, height,
original_width, original_height, exif, sha256, caption), with ``{shard:05d}.parquet`` (the same fields, one
row per sample) and ``{shard:05d}_stats.json`` beside each tar. Keys are the shard number then the index in
the shard, zero-padded.

Pictures are shape scenes (``sgverbalise.synth``); captions read like alt-text: they name some of the objects
("a red circle and a blue square") and only rarely one of their relations ("red circle left of blue square").
Same arguments, same bytes.
"""

from __future__ import annotations

import hashlib
import io
import random
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from sgverbalise.schemas.layout import PARQUET_SIDECAR, STATS_SIDECAR
from sgverbalise.shards import ShardWriter
from sgverbalise.storage import atomic_write, join
from sgverbalise.synth import JPEG_QUALITY, Scene, make_scene, render_scene

_TEMPLATES = ("{objs}", "a {objs}", "photo of a {objs}", "{objs} on a grey background", "stock image: {objs}")
FIELDS = (
    "url",
    "key",
    "status",
    "error_message",
    "width",
    "height",
    "original_width",
    "original_height",
    "exif",
    "sha256",
    "caption",
)
_INT_FIELDS = frozenset({"width", "height", "original_width", "original_height"})
_SCHEMA = pa.schema([(name, pa.int64() if name in _INT_FIELDS else pa.string()) for name in FIELDS])


def _join_names(names: list[str]) -> str:
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " and " + names[-1]


def alt_text(scene: Scene, rng: random.Random, relation_rate: float = 0.1) -> str:
    """An alt-text-like caption: some of the objects named, a relation only with ``relation_rate``."""
    if scene.relations and rng.random() < relation_rate:
        s, predicate, o = rng.choice(scene.relations)
        return f"{scene.objects[s].label} {predicate} {scene.objects[o].label}"
    k = rng.randint(1, min(3, len(scene.objects)))
    names = [scene.objects[i].label for i in sorted(rng.sample(range(len(scene.objects)), k))]
    text = _join_names(names)
    return rng.choice(_TEMPLATES).format(objs=text.replace(", ", ", a ").replace(" and ", " and a "))


def jpeg_bytes(image: Any) -> bytes:
    """A rendered scene as the web set's JPEG (fixed quality and subsampling: same image, same bytes)."""
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0, optimize=False)
    return buf.getvalue()


def _sidecars(out: str, index: int, rows: list[dict], **storage_options: Any) -> None:
    table = pa.Table.from_pylist(rows, schema=_SCHEMA)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write(join(out, f"{index:05d}{PARQUET_SIDECAR}"), buf.getvalue(), **storage_options)
    stats = {
        "count": len(rows),
        "successes": len(rows),
        "failed_to_download": 0,
        "failed_to_resize": 0,
        "duration": 0.0,
        "start_time": 0.0,
        "end_time": 0.0,
        "status_dict": {"success": len(rows)},
    }
    atomic_write(
        join(out, f"{index:05d}{STATS_SIDECAR}"),
        orjson.dumps(stats, option=orjson.OPT_INDENT_2),
        **storage_options,
    )


def write_web_shards(
    out: str,
    n: int,
    seed: int = 0,
    samples_per_shard: int = 100,
    image_size: int = 128,
    relation_rate: float = 0.1,
    **storage_options: Any,
) -> dict:
    """Write ``n`` samples as img2dataset-style shards under ``out`` (local or fsspec URL); returns a summary
    ``{"samples", "shards"}``."""
    rng = random.Random(seed)
    digits = len(str(max(samples_per_shard - 1, 1)))
    rows: list[dict] = []
    shards: list[dict] = []

    def post(info: dict) -> None:
        index = len(shards)
        _sidecars(out, index, rows[: info["samples"]], **storage_options)
        del rows[: info["samples"]]
        shards.append(info)

    writer = ShardWriter(join(out, "%05d.tar"), max_count=samples_per_shard, post=post, **storage_options)
    with writer:
        for i in range(n):
            shard, within = divmod(i, samples_per_shard)
            key = f"{shard:05d}{within:0{digits}d}"
            scene = make_scene(rng, image_size)
            jpg = jpeg_bytes(render_scene(scene, noise_seed=rng.getrandbits(32)))
            caption = alt_text(scene, rng, relation_rate)
            meta = {
                "url": f"https://images.invalid/{seed}/{i}.jpg",
                "key": key,
                "status": "success",
                "error_message": None,
                "width": image_size,
                "height": image_size,
                "original_width": image_size,
                "original_height": image_size,
                "exif": None,
                "sha256": hashlib.sha256(jpg).hexdigest(),
                "caption": caption,
            }
            rows.append(meta)
            writer.write(key, {"jpg": jpg, "txt": caption.encode(), "json": orjson.dumps(meta)})
    return {"samples": n, "shards": shards}
