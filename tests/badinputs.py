"""A corpus of broken inputs in the real VG and GQA formats, with what the shard job must make of each element.

``write_bad_corpus(out, seed)`` writes, under the local folder ``out``:

* ``vg/scene_graphs.json`` and ``vg/image_data.json`` (VG's scene-graph layout), images in ``vg_images/VG_100K/``;
* ``gqa/train_sceneGraphs.json`` and ``gqa/val_sceneGraphs.json`` (the latter cut in the middle of an entry),
  images in ``gqa_images/``.

Good images (a small graph whose boxes lie in a real JPEG) sit between bad elements of every kind: entries
that are not objects, wrongly typed fields, boxes outside the image or of zero size, empty names, relations to
absent objects, lone UTF-16 surrogates (names that cannot be written as UTF-8), huge strings where numbers
belong, files that are not images, a JPEG whose header claims 60000x60000 pixels (a decompression bomb),
missing images and a truncated JSON file. The returned ``BadCorpus`` lists the key and MRC triplet count of
every sample the job must write, and one expected reject (source, image id, kind, reason) per bad element.
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

WIDTH, HEIGHT = 64, 48
PREDICATES = ("left of", "on", "near")  # every good GQA image uses all three: the vocabulary holds them
NAMES = ("cup", "table", "dog", "man", "tree", "lamp", "chair", "book")
HUGE = 200_000  # characters of the huge strings
VG_URL = "https://cs.stanford.edu/people/rak248/VG_100K/{}.jpg"


@dataclass
class BadCorpus:
    """Where the corpus is and what the shard job must make of it."""

    root: str
    samples: dict[str, int] = field(default_factory=dict)  # sample key -> MRC triplets it must hold
    rejects: list[dict] = field(default_factory=list)  # one per bad element: source, image_id, kind, reason, what

    @property
    def vg(self) -> str:
        return f"{self.root}/vg"

    @property
    def gqa(self) -> tuple[str, str]:
        return f"{self.root}/gqa/train_sceneGraphs.json", f"{self.root}/gqa/val_sceneGraphs.json"

    def args(self, out: str) -> list[str]:
        """``sgv build-shards`` arguments that read the whole corpus and write to ``out`` (accepting its cut file:
        without ``--allow-partial-inputs`` the run fails on it)."""
        return ["--vg", self.vg, "--vg-images", f"{self.root}/vg_images", "--gqa", self.gqa[0], "--gqa", self.gqa[1],
                "--gqa-images", f"{self.root}/gqa_images", "--out", out, "--allow-partial-inputs"]

    def expect(self, source: str, image_id: str | None, kind: str, reason: str, what: str) -> None:
        self.rejects.append({"source": source, "image_id": image_id, "kind": kind, "reason": reason, "what": what})


def jpeg(rng: random.Random, width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """A small plain JPEG of a random colour."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height), tuple(rng.randrange(256) for _ in range(3))).save(buf, format="JPEG")
    return buf.getvalue()


def bomb_jpeg(side: int = 60_000) -> bytes:
    """A valid small JPEG whose frame header claims ``side`` x ``side`` pixels (what a decompression bomb shows)."""
    data = bytearray(jpeg(random.Random(0), 8, 8))
    sof = data.find(b"\xff\xc0")
    if sof < 0:
        raise ValueError("no baseline frame header in the encoded JPEG")
    data[sof + 5:sof + 9] = side.to_bytes(2, "big") * 2  # height, width
    return bytes(data)


def _box(rng: random.Random) -> dict[str, int]:
    w, h = rng.randint(4, 20), rng.randint(4, 16)
    return {"x": rng.randint(0, WIDTH - w), "y": rng.randint(0, HEIGHT - h), "w": w, "h": h}


def _good_gqa(rng: random.Random, prefix: str) -> dict:
    """A GQA image entry with three objects and one relation of each predicate (3 MRC triplets)."""
    a, b, c = (f"{prefix}{i}" for i in range(3))
    names = rng.sample(NAMES, 3)
    rels = {a: [(PREDICATES[0], b)], b: [(PREDICATES[1], c)], c: [(PREDICATES[2], a)]}
    objects = {oid: {"name": name, "attributes": [rng.choice(["red", "small"])], **_box(rng),
                     "relations": [{"name": p, "object": o} for p, o in rels[oid]]}
               for oid, name in zip((a, b, c), names, strict=True)}
    return {"width": WIDTH, "height": HEIGHT, "objects": objects}


def _good_vg(rng: random.Random, image_id: int) -> tuple[dict, int]:
    """A VG scene_graphs.json entry with three objects and two relations; returns it and its triplet count."""
    ids = [image_id * 100 + i for i in range(3)]
    names = rng.sample(NAMES, 3)
    objects = [{"object_id": oid, "names": [name], **_box(rng)} for oid, name in zip(ids, names, strict=True)]
    relations = [{"relationship_id": image_id * 100 + 50 + i, "predicate": PREDICATES[i],
                  "subject_id": ids[i], "object_id": ids[i + 1]} for i in range(2)]
    return {"image_id": image_id, "objects": objects, "relationships": relations}, len(relations)


def _write_json(path: Path, value) -> bytes:
    """JSON with ASCII escapes (so lone surrogates are written as \\ud800 escapes, as JSON allows)."""
    data = json.dumps(value, ensure_ascii=True).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def _write_gqa(corpus: BadCorpus, rng: random.Random, root: Path) -> None:
    images = root / "gqa_images"
    images.mkdir(parents=True, exist_ok=True)
    entries: dict[str, object] = {}

    def good(image_id: str, image: bytes | None = b"") -> dict:
        entry = _good_gqa(rng, f"{image_id}0")
        entries[image_id] = entry
        if image is not None:
            (images / f"{image_id}.jpg").write_bytes(image or jpeg(rng))
        return entry

    for image_id in ("2000", "2011"):
        good(image_id)
        corpus.samples[f"gqa-{image_id}"] = 3

    entries["2001"] = [1, 2]
    corpus.expect("gqa", "2001", "image", "malformed_record", "image entry is a list")
    entries["2002"] = {"width": "wide", "height": HEIGHT, "objects": {}}
    corpus.expect("gqa", "2002", "image", "malformed_record", "width is a string")
    entries["\ud800"] = _good_gqa(rng, "9")
    corpus.expect("gqa", None, "image", "malformed_record", "image id is a lone surrogate")

    # a good image with bad objects and relations around its good graph
    entry = good("2004")
    corpus.samples["gqa-2004"] = 3
    objects = entry["objects"]
    a, b, _ = list(objects)
    objects["b1"] = {"name": "kite", "x": 500, "y": 500, "w": 10, "h": 10}
    corpus.expect("gqa", "2004", "object", "box_outside_image", "box outside the image")
    objects[a]["relations"] += [{"name": "near", "object": "zzz"}, {"name": "near", "object": "b1"},
                                {"name": "\udcff", "object": b}]
    corpus.expect("gqa", "2004", "relation", "unknown_object", "relation to an absent object")
    corpus.expect("gqa", "2004", "relation", "box_outside_image", "relation to an object outside the image")
    corpus.expect("gqa", "2004", "relation", "malformed_record", "predicate is a lone surrogate")
    objects["b2"] = {"name": 12345, "x": 1, "y": 1, "w": 3, "h": 3}
    corpus.expect("gqa", "2004", "object", "malformed_record", "name is a number")
    objects["b3"] = {"name": "cat", "x": "9" * HUGE, "y": 1, "w": 3, "h": 3}
    corpus.expect("gqa", "2004", "object", "malformed_record", "huge string where a number belongs")
    objects["b4"] = {"names": ["\ud800abc"], "x": 1, "y": 1, "w": 3, "h": 3}
    corpus.expect("gqa", "2004", "object", "malformed_record", "name is not UTF-8")
    objects["b5"] = {"name": "hat", "x": 1, "y": 1, "w": 3, "h": 3, "relations": "left of"}
    corpus.expect("gqa", "2004", "relation", "malformed_record", "relations is a string")
    objects["b6"] = {"name": "pen", "x": 1, "y": 1, "w": 0, "h": 3}
    corpus.expect("gqa", "2004", "object", "bad_box", "zero-width box")
    objects["b7"] = {"name": "  ", "x": 2, "y": 2, "w": 3, "h": 3}
    corpus.expect("gqa", "2004", "object", "empty_name", "blank name")

    good("2005", b"this is not an image at all\n" * 10)
    corpus.expect("gqa", "2005", "image", "image_unreadable", "image file is text")
    good("2006", None)
    corpus.expect("gqa", "2006", "image", "image_missing", "no image file")
    good("2007", bomb_jpeg())
    corpus.expect("gqa", "2007", "image", "image_too_large", "decompression bomb")
    entries["2008"] = {"width": WIDTH, "height": HEIGHT, "objects": {}}
    (images / "2008.jpg").write_bytes(jpeg(rng))
    corpus.expect("gqa", "2008", "image", "no_graph", "no objects")
    entries["2009"] = {"width": WIDTH, "height": HEIGHT, "objects": {"1": {"name": "cup", "x": 1, "y": 1, "w": 0,
                                                                          "h": 0}}}
    (images / "2009.jpg").write_bytes(jpeg(rng))
    corpus.expect("gqa", "2009", "object", "bad_box", "zero-size box")
    corpus.expect("gqa", "2009", "image", "no_graph", "its only object is bad")
    entries["2010"] = {"width": WIDTH, "height": HEIGHT, "objects": [{"name": "cup"}]}
    (images / "2010.jpg").write_bytes(jpeg(rng))
    corpus.expect("gqa", "2010", "object", "malformed_record", "objects is a list")
    corpus.expect("gqa", "2010", "image", "no_graph", "no usable objects")

    order = list(entries)
    rng.shuffle(order)
    _write_json(root / "gqa" / "train_sceneGraphs.json", {k: entries[k] for k in order})

    # a second file cut in the middle of its third entry: the first two are read, the rest is one reject
    entries = {}
    for image_id in ("3001", "3002", "3003"):
        good(image_id)
    for image_id in ("3001", "3002"):
        corpus.samples[f"gqa-{image_id}"] = 3
    data = json.dumps(entries).encode()
    cut = data.index(b'"3003"') + 40
    (root / "gqa" / "val_sceneGraphs.json").write_bytes(data[:cut])
    corpus.expect("gqa", None, "image", "malformed_record", "file cut in the middle of an entry")


def _write_vg(corpus: BadCorpus, rng: random.Random, root: Path) -> None:
    images = root / "vg_images" / "VG_100K"
    images.mkdir(parents=True, exist_ok=True)
    graphs: list[object] = []
    image_data: list[dict] = []

    def add(entry: dict, image_id: int, width: object = WIDTH) -> None:
        graphs.append(entry)
        image_data.append({"image_id": image_id, "width": width, "height": HEIGHT, "url": VG_URL.format(image_id),
                           "coco_id": None, "flickr_id": None})
        (images / f"{image_id}.jpg").write_bytes(jpeg(rng))

    for image_id in (10, 16):
        entry, n = _good_vg(rng, image_id)
        add(entry, image_id)
        corpus.samples[f"vg-{image_id}"] = n

    entry, n = _good_vg(rng, 11)
    entry["relationships"].append({"relationship_id": 1199, "predicate": "on", "subject_id": 1100,
                                   "object_id": 999999})
    add(entry, 11)
    corpus.samples["vg-11"] = n
    corpus.expect("vg", "11", "relation", "unknown_object", "dangling object id")

    graphs.append({"image_id": None, "objects": [], "relationships": []})
    corpus.expect("vg", None, "image", "malformed_record", "null image id")
    graphs.append(42)
    corpus.expect("vg", None, "image", "malformed_record", "entry is a number")

    add({"image_id": 13, "objects": "nope", "relationships": []}, 13)
    corpus.expect("vg", "13", "object", "malformed_record", "objects is a string")
    corpus.expect("vg", "13", "image", "no_graph", "no usable objects")

    entry, _ = _good_vg(rng, 14)
    add(entry, 14, width="x")
    corpus.expect("vg", "14", "image", "malformed_record", "width is a string")

    entry, n = _good_vg(rng, 15)
    entry["relationships"].append({"relationship_id": 1598, "predicate": "on", "object_id": 1501})
    entry["relationships"].append({"relationship_id": 1599, "predicate": ["on"], "subject_id": 1500,
                                   "object_id": 1501})
    add(entry, 15)
    corpus.samples["vg-15"] = n
    corpus.expect("vg", "15", "relation", "malformed_record", "relationship without a subject")
    corpus.expect("vg", "15", "relation", "malformed_record", "predicate is a list")

    _write_json(root / "vg" / "scene_graphs.json", graphs)
    _write_json(root / "vg" / "image_data.json", image_data)


def write_bad_corpus(out: str, seed: int = 0) -> BadCorpus:
    """Write the broken corpus under the local folder ``out``; returns what the job must make of it."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    corpus = BadCorpus(str(root))
    rng = random.Random(seed)
    _write_gqa(corpus, rng, root)
    _write_vg(corpus, rng, root)
    return corpus
