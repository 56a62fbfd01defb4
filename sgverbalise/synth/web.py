"""Synthetic web image-text shards in img2dataset's output format: shape scenes with alt-text captions.

Like img2dataset (``output_format="webdataset"``): shards ``{shard:05d}.tar`` holding ``{key}.jpg``,
``{key}.txt`` (the caption) and ``{key}.json`` (the style's ``columns``), with ``{shard:05d}.parquet`` (the
same columns, one row per sample) and, if the style says so, ``{shard:05d}_stats.json`` beside each tar. Keys
are the shard number then the index in the shard, zero-padded.

Captions read like alt-text: they name one to three of the objects ("a red circle and a blue square") and,
only with ``relation_rate``, one of their relations ("red circle left of blue square"). With
``captions="statements"`` every caption is one true relation of the scene, ``subject predicate object`` (as
the experiment's probes write them), and the ``.json`` also carries ``"foil"``: a false statement about the
same two objects (``sgverbalise.foils.foil_triplet``, balanced: no word is false more often than true), for
the trainer's ``data.foils``. A ``WebStyle`` holds
what else differs between web sets: ``IMG2DATASET`` (the demo's, the tests' and the benchmarks') and the
experiment's (``training.experiment.corpus.WEB_STYLE``: scenes without held-out pairs). Same arguments, same
bytes.
"""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from sgverbalise import foils
from sgverbalise.shards import ShardWriter
from sgverbalise.storage import atomic_write, join

from .render import jpeg_bytes, render_scene
from .scenes import Scene, make_scene

IMG2DATASET_COLUMNS = (
    "url", "key", "status", "error_message", "width", "height", "original_width", "original_height", "exif",
    "sha256", "caption",
)
_INT_COLUMNS = frozenset({"width", "height", "original_width", "original_height"})
CAPTION_KINDS = ("alt-text", "statements")


@dataclass(frozen=True)
class WebStyle:
    """What a web set looks like, besides its size, seed, shard size, image size and relation rate."""

    scenes: Callable[[random.Random, int], Scene] = make_scene  # draws one scene of a given size
    stream: str = ""  # names the random stream, Random(f"{stream}:{seed}"); unnamed, Random(seed)
    # Caption templates: {objs} lists the objects, each with its article; {bare} the same but the first article.
    templates: tuple[str, ...] = (
        "{bare}", "{objs}", "photo of {objs}", "{bare} on a grey background", "stock image: {bare}"
    )
    an: bool = False  # "an" before a vowel (otherwise always "a")
    columns: tuple[str, ...] = IMG2DATASET_COLUMNS  # of the .json and the parquet, in this order
    list_objects: bool = False  # the .json also lists the labels of the scene's objects, under "objects"
    stats: bool = True  # a {shard:05d}_stats.json beside each tar
    # How many of a scene's objects a caption names: one to three of them (noisy alt-text), or with True all
    # of them, in a random order (so the order says nothing about where they are).
    name_all: bool = False
    # "alt-text" (above) or "statements": one true relation per caption, its foil under "foil" in the .json;
    # scenes without a relation are drawn again.
    captions: str = "alt-text"

    def __post_init__(self) -> None:
        if self.captions not in CAPTION_KINDS:
            raise ValueError(f"WebStyle.captions must be one of {CAPTION_KINDS}, got {self.captions!r}")


IMG2DATASET = WebStyle()


def name_list(labels: list[str], an: bool = True) -> str:
    """``a red circle``, ``a red circle and a blue square``, ``an orange square, a red circle and a ...``."""
    items = [("an " if an and label[0] in "aeiou" else "a ") + label for label in labels]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def alt_text(scene: Scene, rng: random.Random, relation_rate: float = 0.1, style: WebStyle = IMG2DATASET) -> str:
    """An alt-text-like caption: one to three objects named (all with ``style.name_all``), one relation only
    with ``relation_rate``."""
    if scene.relations and rng.random() < relation_rate:
        return scene.statement(rng.choice(scene.relations))
    if style.name_all:
        order = rng.sample(range(len(scene.objects)), len(scene.objects))
    else:
        order = sorted(rng.sample(range(len(scene.objects)), rng.randint(1, min(3, len(scene.objects)))))
    labels = [scene.objects[i].label for i in order]
    objs = name_list(labels, style.an)
    return rng.choice(style.templates).format(objs=objs, bare=objs.partition(" ")[2])


def _draw_scene(style: WebStyle, rng: random.Random, size: int, max_tries: int = 1000) -> Scene:
    """A scene of the style; for statements, drawn until one has a relation with a foil."""
    for _ in range(max_tries):
        scene = style.scenes(rng, size)
        if style.captions != "statements" or any(foils.foil_options(*r, balanced=True) for r in scene.relations):
            return scene
    raise RuntimeError(f"no scene with a relation in {max_tries} draws")


def relation_statement(scene: Scene, rng: random.Random) -> tuple[str, str]:
    """One of the scene's relations with a balanced foil, drawn at random, as ``subject predicate object``, and
    its foil: a false statement about the same two objects."""
    relations = [r for r in scene.relations if foils.foil_options(*r, balanced=True)]
    if not relations:
        raise ValueError("the scene has no relation with a foil")
    relation = rng.choice(relations)
    foil = foils.foil_triplet(*relation, rng, balanced=True)
    assert foil is not None
    return scene.statement(relation), scene.statement(foil)


def _sidecars(out: str, index: int, rows: list[dict], style: WebStyle, **storage_options: Any) -> None:
    schema = pa.schema([(c, pa.int64() if c in _INT_COLUMNS else pa.string()) for c in style.columns])
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), buf)
    atomic_write(join(out, f"{index:05d}.parquet"), buf.getvalue(), **storage_options)
    if not style.stats:
        return
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
    stats_json = orjson.dumps(stats, option=orjson.OPT_INDENT_2)
    atomic_write(join(out, f"{index:05d}_stats.json"), stats_json, **storage_options)


def write_web_shards(
    out: str | Path,
    n: int,
    seed: int = 0,
    samples_per_shard: int = 100,
    image_size: int = 128,
    relation_rate: float = 0.1,
    *,
    style: WebStyle = IMG2DATASET,
    **storage_options: Any,
) -> dict:
    """Write ``n`` samples as img2dataset-style shards under ``out`` (local or fsspec URL); returns a summary
    ``{"samples", "shards"}`` (``shards``: the shard writer's record of each tar)."""
    out = str(out)
    rng = random.Random(f"{style.stream}:{seed}" if style.stream else seed)
    digits = len(str(max(samples_per_shard - 1, 1)))
    rows: list[dict] = []
    shards: list[dict] = []

    def post(info: dict) -> None:
        _sidecars(out, len(shards), rows[: info["samples"]], style, **storage_options)
        del rows[: info["samples"]]
        shards.append(info)

    writer = ShardWriter(join(out, "%05d.tar"), max_count=samples_per_shard, post=post, **storage_options)
    with writer:
        for i in range(n):
            shard, within = divmod(i, samples_per_shard)
            key = f"{shard:05d}{within:0{digits}d}"
            scene = _draw_scene(style, rng, image_size)
            jpg = jpeg_bytes(render_scene(scene, noise_seed=rng.getrandbits(32)))
            foil = None
            if style.captions == "statements":
                caption, foil = relation_statement(scene, rng)
            else:
                caption = alt_text(scene, rng, relation_rate, style)
            values = {
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
            meta = {c: values[c] for c in style.columns}
            rows.append(meta)
            doc = (meta | {"objects": [o.label for o in scene.objects]}) if style.list_objects else meta
            if foil is not None:
                doc = doc | {"foil": foil}
            writer.write(key, {"jpg": jpg, "txt": caption.encode(), "json": orjson.dumps(doc)})
    return {"samples": n, "shards": shards}
