"""Synthetic corpora in the real Visual Genome and GQA on-disk formats (``synthesize``).

Two generators share one writer:

* Shape scenes (``scenes.make_scene``, drawn by ``render.render_scene``), used with ``with_images=True``: a
  few coloured shapes on a plain, lightly noisy background, whose graph is true in the picture.
* VG-like random graphs (``graphs.vg_random``, ``graphs.gqa_random``), used without images: about 35 objects
  and 21 relations per image, fast enough for a VG-sized corpus (108k images). Their boxes mean nothing.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import orjson

from .graphs import Ids, gqa_from_scene, gqa_image_id, gqa_random, vg_from_scene, vg_random
from .render import render_scene, save_jpeg
from .scenes import make_scene
from .vocabulary import OBJECT_ALIAS, RELATIONSHIP_ALIAS

LAYOUTS = ("split", "scene_graphs", "both")
_VG_FILES = ("image_data", "region_descriptions", "objects", "relationships", "attributes", "scene_graphs")


class _JsonArray:
    """A JSON array written one element at a time."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "wb", buffering=1 << 20)  # noqa: SIM115 - closed by close()
        self.file.write(b"[")
        self.first = True

    def add(self, item: dict) -> None:
        if not self.first:
            self.file.write(b", ")
        self.first = False
        self.file.write(orjson.dumps(item))

    def close(self) -> None:
        self.file.write(b"]")
        self.file.close()


class _JsonObject:
    """A JSON object written one key at a time."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "wb", buffering=1 << 20)  # noqa: SIM115 - closed by close()
        self.file.write(b"{")
        self.first = True

    def add(self, key: str, item: dict) -> None:
        self.file.write((b"" if self.first else b", ") + orjson.dumps(key) + b": " + orjson.dumps(item))
        self.first = False

    def close(self) -> None:
        self.file.write(b"}")
        self.file.close()


def _image_rng(seed: int, source: str, index: int) -> random.Random:
    return random.Random(f"sgv-synth:{seed}:{source}:{index}")


def _write_vg(vg_dir: Path, n: int, seed: int, with_images: bool, layout: str, image_size: int,
              progress: Callable[[str, int], None] | None) -> dict:
    vg_dir.mkdir(parents=True, exist_ok=True)
    names = ["image_data", "region_descriptions"]
    if layout in ("split", "both"):
        names += ["objects", "relationships", "attributes"]
    if layout in ("scene_graphs", "both"):
        names.append("scene_graphs")
    for stale in set(_VG_FILES) - set(names):  # left by an earlier run with another layout
        (vg_dir / f"{stale}.json").unlink(missing_ok=True)
    files = {name: _JsonArray(vg_dir / f"{name}.json") for name in names}
    ids = Ids()
    counts = {"images": 0, "objects": 0, "relations": 0, "regions": 0}
    try:
        for i in range(n):
            rng = _image_rng(seed, "vg", i)
            image_id = i + 1
            if with_images:
                scene = make_scene(rng, image_size)
                entry = vg_from_scene(rng, ids, image_id, scene)
                folder = entry.image["url"].rsplit("/", 2)[-2]
                image = render_scene(scene, noise_seed=rng.getrandbits(32))
                save_jpeg(image, vg_dir / folder / f"{image_id}.jpg")
            else:
                entry = vg_random(rng, ids, image_id)
            files["image_data"].add(entry.image)
            files["region_descriptions"].add({"regions": entry.regions, "id": image_id})
            if "objects" in files:
                url = entry.image["url"]
                files["objects"].add({"image_id": image_id, "objects": entry.objects, "image_url": url})
                files["relationships"].add({"relationships": entry.relationships, "image_id": image_id})
                files["attributes"].add({"image_id": image_id, "attributes": entry.sg_objects})
            if "scene_graphs" in files:
                objects = entry.sg_objects
                files["scene_graphs"].add(
                    {"relationships": entry.sg_relationships, "image_id": image_id, "objects": objects}
                )
            counts["images"] += 1
            counts["objects"] += len(entry.objects)
            counts["relations"] += len(entry.relationships)
            counts["regions"] += len(entry.regions)
            if progress and (i + 1) % 10_000 == 0:
                progress("vg", i + 1)
    finally:
        for f in files.values():
            f.close()
    (vg_dir / "object_alias.txt").write_text("\n".join(OBJECT_ALIAS) + "\n", encoding="utf-8")
    (vg_dir / "relationship_alias.txt").write_text("\n".join(RELATIONSHIP_ALIAS) + "\n", encoding="utf-8")
    return counts | {"files": sorted(f"{name}.json" for name in names) + ["object_alias.txt",
                                                                           "relationship_alias.txt"]}


def _write_gqa(gqa_dir: Path, n: int, seed: int, with_images: bool, image_size: int,
               progress: Callable[[str, int], None] | None) -> dict:
    gqa_dir.mkdir(parents=True, exist_ok=True)
    out = _JsonObject(gqa_dir / "train_sceneGraphs.json")
    ids = Ids()
    counts = {"images": 0, "objects": 0, "relations": 0}
    try:
        for i in range(n):
            rng = _image_rng(seed, "gqa", i)
            image_id = gqa_image_id(i)
            if with_images:
                scene = make_scene(rng, image_size)
                entry = gqa_from_scene(rng, ids, scene)
                image = render_scene(scene, noise_seed=rng.getrandbits(32))
                save_jpeg(image, gqa_dir / "images" / f"{image_id}.jpg")
            else:
                entry = gqa_random(rng, ids)
            out.add(image_id, entry)
            counts["images"] += 1
            counts["objects"] += len(entry["objects"])
            counts["relations"] += sum(len(o["relations"]) for o in entry["objects"].values())
            if progress and (i + 1) % 10_000 == 0:
                progress("gqa", i + 1)
    finally:
        out.close()
    return counts | {"files": ["train_sceneGraphs.json"]}


def synthesize(
    out: str,
    n_images: int,
    *,
    seed: int = 0,
    with_images: bool = False,
    gqa_fraction: float = 0.3,
    layout: str = "both",
    image_size: int = 256,
    progress: Callable[[str, int], None] | None = None,
) -> dict:
    """Write a synthetic VG (``out/vg``) and GQA (``out/gqa``) corpus; return counts and paths per source.

    ``n_images`` counts both sources; ``round(n_images * gqa_fraction)`` of them are GQA images. Files are
    written image by image (memory stays bounded whatever ``n_images``). ``out`` should be empty or hold an
    earlier output of this function (its files are overwritten). The summary (without paths) is written last,
    to ``out/synth_summary.json``.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    if not 0.0 <= gqa_fraction <= 1.0:
        raise ValueError(f"gqa_fraction must be within [0, 1], not {gqa_fraction}")
    if n_images < 0 or image_size < 32:
        raise ValueError("n_images must be >= 0 and image_size >= 32")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    (root / "synth_summary.json").unlink(missing_ok=True)  # written last: its presence means complete
    n_gqa = round(n_images * gqa_fraction)
    n_vg = n_images - n_gqa
    params = {"n_images": n_images, "seed": seed, "with_images": with_images, "gqa_fraction": gqa_fraction,
              "layout": layout, "image_size": image_size}
    summary: dict = {"params": params}
    if n_vg:
        summary["vg"] = _write_vg(root / "vg", n_vg, seed, with_images, layout, image_size, progress)
    if n_gqa:
        summary["gqa"] = _write_gqa(root / "gqa", n_gqa, seed, with_images, image_size, progress)
    (root / "synth_summary.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    if n_vg:
        summary["vg"] |= {"dir": str(root / "vg"), "images_root": str(root / "vg") if with_images else None}
    if n_gqa:
        summary["gqa"] |= {"path": str(root / "gqa" / "train_sceneGraphs.json"),
                           "images_root": str(root / "gqa" / "images") if with_images else None}
    return summary
