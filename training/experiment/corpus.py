"""The training side of the experiment: web shards and a scene-graph exclusion list, with no held-out pair.

* ``write_web_shards``: an img2dataset-style web set (``{shard:05d}.tar`` with ``{key}.jpg``, ``.txt``,
  ``.json``, and ``{shard:05d}.parquet`` beside each tar) of training scenes (``heldout.training_scene``)
  whose captions read like alt-text: they name one to three of the objects ("a red circle and a blue
  square") and only with ``relation_rate`` one relation ("red circle left of blue square"). The ``.json``
  also lists the scene's objects under ``objects`` (an additional column, as img2dataset keeps them).
* ``heldout_image_keys``: the sample keys (``vg-12``, ``gqa-2500003``) of the images of a synthetic VG/GQA
  corpus that show a held-out pair, for ``build-shards --exclude-image-ids``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from sgverbalise.readers import iter_gqa, iter_vg
from sgverbalise.shards import ShardWriter
from sgverbalise.synth import COLOURS, SHAPES, Scene, render_scene

from .heldout import is_heldout, training_scene

_TEMPLATES = ("{objs}", "{objs}", "photo of {objs}", "picture of {objs}", "stock image: {objs}")
_WEB_COLUMNS = ("url", "key", "status", "error_message", "width", "height", "caption", "sha256")


def with_article(label: str) -> str:
    """``a red circle``, ``an orange square``."""
    return ("an " if label[0] in "aeiou" else "a ") + label


def name_list(labels: list[str]) -> str:
    """``a red circle``, ``a red circle and a blue square``, ``a red circle, a blue square and a ...``."""
    items = [with_article(label) for label in labels]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def alt_text(scene: Scene, rng: random.Random, relation_rate: float) -> str:
    """An alt-text-like caption: one to three objects named, one relation only with ``relation_rate``."""
    if scene.relations and rng.random() < relation_rate:
        s, predicate, o = rng.choice(scene.relations)
        return f"{scene.objects[s].label} {predicate} {scene.objects[o].label}"
    k = rng.randint(1, min(3, len(scene.objects)))
    labels = [scene.objects[i].label for i in sorted(rng.sample(range(len(scene.objects)), k))]
    return rng.choice(_TEMPLATES).format(objs=name_list(labels))


def write_web_shards(
    out: str | Path,
    n: int,
    seed: int = 0,
    samples_per_shard: int = 500,
    image_size: int = 128,
    relation_rate: float = 0.1,
) -> dict:
    """``n`` web samples of training scenes under ``out``; returns ``{"samples", "shards"}``. Same arguments,
    same bytes."""
    # imported here, not at the top: importing training.data loads torch and transformers
    from sgverbalise.training.data.webshards import jpeg_bytes

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"sgv-experiment-web:{seed}")
    rows: list[dict] = []
    shards: list[dict] = []

    def post(info: dict) -> None:
        table = pa.Table.from_pylist(rows[: info["samples"]], schema=_web_schema())
        pq.write_table(table, out / f"{len(shards):05d}.parquet")
        del rows[: info["samples"]]
        shards.append(info)

    digits = len(str(max(samples_per_shard - 1, 1)))
    with ShardWriter(str(out / "%05d.tar"), max_count=samples_per_shard, post=post) as writer:
        for i in range(n):
            shard, within = divmod(i, samples_per_shard)
            key = f"{shard:05d}{within:0{digits}d}"
            scene = training_scene(rng, image_size)
            jpg = jpeg_bytes(render_scene(scene, noise_seed=rng.getrandbits(32)))
            caption = alt_text(scene, rng, relation_rate)
            meta = {"url": f"https://images.invalid/{seed}/{i}.jpg", "key": key, "status": "success",
                    "error_message": None, "width": image_size, "height": image_size, "caption": caption,
                    "sha256": hashlib.sha256(jpg).hexdigest()}
            rows.append(meta)
            doc = meta | {"objects": [o.label for o in scene.objects]}
            writer.write(key, {"jpg": jpg, "txt": caption.encode(), "json": orjson.dumps(doc)})
    return {"samples": n, "shards": len(shards)}


def _web_schema() -> pa.Schema:
    ints = ("width", "height")
    return pa.schema([(c, pa.int64() if c in ints else pa.string()) for c in _WEB_COLUMNS])


def object_pairs(names: Iterable[str], attributes: Iterable[str]) -> list[tuple[str, str]]:
    """The (colour, shape) pairs an object's names and attributes describe ("red circle", or "circle" with
    the attribute "red")."""
    words = [w for text in [*names, *attributes] for w in text.lower().split()]
    colours = [w for w in words if w in COLOURS]
    shapes = [w for w in words if w in SHAPES]
    return [(c, s) for c in colours for s in shapes]


def _records(vg: str | None, gqa: str | None) -> Iterator[tuple[str, dict]]:
    if vg:
        for record, _ in iter_vg(vg, regions=False):
            if record is not None:
                yield "vg", record
    if gqa:
        for record, _ in iter_gqa(gqa):
            if record is not None:
                yield "gqa", record


def heldout_image_keys(vg: str | None, gqa: str | None) -> list[str]:
    """Sample keys (``{source}-{image_id}``) of the corpus images with an object that is a held-out pair."""
    keys = []
    for source, record in _records(vg, gqa):
        for obj in record["objects"]:
            if any(is_heldout(c, s) for c, s in object_pairs(obj["names"], obj["attributes"])):
                keys.append(f"{source}-{record['image_id']}")
                break
    return keys
