"""The synthetic corpus: real VG/GQA formats, determinism, quirks, relations true in the rendered pixels."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sgverbalise.cli.main import main as cli_main
from sgverbalise.readers import iter_gqa, iter_vg
from sgverbalise.synth import (
    COLOURS,
    GQA_PHRASES,
    PREDICATES,
    Scene,
    SceneObject,
    make_scene,
    near_distance,
    relation_between,
    render_scene,
    shape_area,
    synthesize,
)

VG_JSON = ("image_data", "objects", "relationships", "attributes", "region_descriptions", "scene_graphs")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _load(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def pictured(tmp_path_factory) -> Path:
    """A small corpus with rendered images."""
    out = tmp_path_factory.mktemp("pictured")
    synthesize(str(out), 40, seed=7, with_images=True, gqa_fraction=0.25)
    return out


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    """A small VG-like corpus without images."""
    out = tmp_path_factory.mktemp("plain")
    synthesize(str(out), 120, seed=3, gqa_fraction=0.25)
    return out


# ------------------------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    for with_images in (True, False):
        runs = {}
        for name, seed in (("a", 5), ("b", 5), ("c", 6)):
            synthesize(str(tmp_path / f"{name}{with_images}"), 12, seed=seed, with_images=with_images)
            runs[name] = _files(tmp_path / f"{name}{with_images}")
        a, b, c = runs["a"], runs["b"], runs["c"]
        assert any(k.endswith(".jpg") for k in a) == with_images
        assert a.keys() == b.keys()
        assert all(a[k] == b[k] for k in a), [k for k in a if a[k] != b[k]]
        assert a["vg/relationships.json"] != c["vg/relationships.json"]
        assert a["gqa/train_sceneGraphs.json"] != c["gqa/train_sceneGraphs.json"]


# -------------------------------------------------------------------------------------- formats, readers


def _key_shapes(entries: list, list_key: str | None = None) -> set[tuple]:
    if list_key is None:
        return {tuple(e) for e in entries}
    return {tuple(x) for e in entries for x in e[list_key]}


def test_vg_files_have_the_real_key_layout(plain: Path, vg_sample: Path) -> None:
    for name, inner in (("image_data", None), ("objects", "objects"), ("attributes", "attributes"),
                        ("region_descriptions", "regions"), ("scene_graphs", "objects"),
                        ("scene_graphs", "relationships"), ("relationships", "relationships")):
        ours, real = _load(plain / "vg" / f"{name}.json"), _load(vg_sample / f"{name}.json")
        assert _key_shapes(ours) == _key_shapes(real), name
        if inner:
            assert _key_shapes(ours, inner) == _key_shapes(real, inner), (name, inner)
    ours, real = _load(plain / "vg" / "relationships.json"), _load(vg_sample / "relationships.json")
    for end in ("subject", "object"):
        shapes = {tuple(r[end]) for e in ours for r in e["relationships"]}
        assert shapes == {tuple(r[end]) for e in real for r in e["relationships"]}, end


def test_gqa_file_has_the_real_key_layout(plain: Path, gqa_sample: Path) -> None:
    ours, real = _load(plain / "gqa" / "train_sceneGraphs.json"), _load(gqa_sample / "train_sceneGraphs.json")
    assert {frozenset(v) for v in ours.values()} == {frozenset(v) for v in real.values()}
    objects = {frozenset(o) for v in ours.values() for o in v["objects"].values()}
    assert objects == {frozenset(o) for v in real.values() for o in v["objects"].values()}
    relations = {frozenset(r) for v in ours.values() for o in v["objects"].values() for r in o["relations"]}
    assert relations == {frozenset({"object", "name"})}


def _read_all(items) -> tuple[list[dict], list[dict]]:
    records, rejects = [], []
    for record, rej in items:
        rejects += rej
        if record is not None:
            records.append(record)
    return records, rejects


@pytest.mark.parametrize("corpus", ["plain", "pictured"])
@pytest.mark.parametrize("layout", ["split", "scene_graphs"])
def test_readers_parse_the_corpus_and_counts_match(corpus: str, layout: str, request) -> None:
    out: Path = request.getfixturevalue(corpus)
    summary = _load(out / "synth_summary.json")
    records, rejects = _read_all(iter_vg(str(out / "vg"), layout=layout))
    assert rejects == []
    assert len(records) == summary["vg"]["images"]
    assert sum(len(r["objects"]) for r in records) == summary["vg"]["objects"]
    assert sum(len(r["relations"]) for r in records) == summary["vg"]["relations"]
    assert sum(len(r["regions"]) for r in records) == summary["vg"]["regions"]
    for r in records:
        ids = {o["object_id"] for o in r["objects"]}
        assert all(rel["subject_id"] in ids and rel["object_id"] in ids for rel in r["relations"])
        assert r["image_path"].split("/")[0] in ("VG_100K", "VG_100K_2")
    records, rejects = _read_all(iter_gqa(str(out / "gqa" / "train_sceneGraphs.json")))
    assert rejects == []
    assert len(records) == summary["gqa"]["images"]
    assert sum(len(r["objects"]) for r in records) == summary["gqa"]["objects"]
    assert sum(len(r["relations"]) for r in records) == summary["gqa"]["relations"]


def test_layout_option_picks_the_vg_files(tmp_path: Path) -> None:
    synthesize(str(tmp_path / "s"), 4, layout="split", gqa_fraction=0)
    synthesize(str(tmp_path / "g"), 4, layout="scene_graphs", gqa_fraction=0)
    split = {p.name for p in (tmp_path / "s" / "vg").iterdir()}
    graphs = {p.name for p in (tmp_path / "g" / "vg").iterdir()}
    assert {"objects.json", "relationships.json", "attributes.json"} <= split
    assert "scene_graphs.json" not in split and not (tmp_path / "s" / "gqa").exists()
    assert "scene_graphs.json" in graphs and "objects.json" not in graphs
    assert {"image_data.json", "region_descriptions.json", "relationship_alias.txt"} <= split & graphs
    with pytest.raises(ValueError):
        synthesize(str(tmp_path / "x"), 4, layout="flat")


# --------------------------------------------------------------------------------------------- quirks


def test_vg_quirks_are_present(plain: Path) -> None:
    rels = [r for e in _load(plain / "vg" / "relationships.json") for r in e["relationships"]]
    ends = Counter("names" if "names" in r[end] else "name" for r in rels for end in ("subject", "object"))
    assert ends["name"] > 0 and ends["names"] > 0
    merged = [r[end] for r in rels for end in ("subject", "object") if "names" in r[end]]
    assert all(e["merged_object_ids"] for e in merged)
    predicates = {r["predicate"] for r in rels}
    assert {"on", "ON"} <= predicates and any(p != p.lower() and p.lower() in predicates for p in predicates)
    attrs = [o for e in _load(plain / "vg" / "attributes.json") for o in e["attributes"]]
    assert any("attributes" not in o for o in attrs) and any(o.get("attributes") for o in attrs)
    regions = [g for e in _load(plain / "vg" / "region_descriptions.json") for g in e["regions"]]
    assert all("width" in g and "height" in g and "w" not in g for g in regions)
    images = _load(plain / "vg" / "image_data.json")
    assert any(i["coco_id"] for i in images) and any(i["flickr_id"] for i in images)
    assert any(i["coco_id"] is None for i in images)
    assert {i["url"].rsplit("/", 2)[-2] for i in images} == {"VG_100K", "VG_100K_2"}
    gqa = _load(plain / "gqa" / "train_sceneGraphs.json")
    assert 0 < sum("location" in v for v in gqa.values()) < len(gqa)
    assert 0 < sum("weather" in v for v in gqa.values()) < len(gqa)
    assert not set(gqa) & {str(i["image_id"]) for i in images}
    assert any(not k.isdigit() for k in gqa)


def test_pictured_names_carry_colour_in_name_or_attribute(pictured: Path) -> None:
    objects = [o for e in _load(pictured / "vg" / "attributes.json") for o in e["attributes"]]
    with_colour_name = [o for o in objects if o["names"][0].split()[0] in COLOURS]
    with_colour_attr = [o for o in objects if o.get("attributes", [None])[0] in COLOURS]
    assert with_colour_name and with_colour_attr
    assert all("attributes" not in o for o in with_colour_name)
    gqa = _load(pictured / "gqa" / "train_sceneGraphs.json")
    names = {r["name"] for v in gqa.values() for o in v["objects"].values() for r in o["relations"]}
    assert names <= set(GQA_PHRASES.values()) and "left of" not in names


# ----------------------------------------------------------------------------------- relation geometry


def _obj(x: int, y: int, w: int, h: int, shape: str = "square") -> SceneObject:
    return SceneObject("red", shape, x, y, w, h)


def test_relation_definitions_on_hand_made_boxes() -> None:
    size = 256
    near = near_distance(size)
    big = _obj(100, 100, 60, 60)
    assert relation_between(_obj(110, 110, 20, 20), big, size) == "inside"
    assert relation_between(big, _obj(110, 110, 20, 20), size) is None  # contains: no predicate
    assert relation_between(_obj(100, 110, 20, 20), big, size) is None  # shares an edge: not strictly inside
    assert relation_between(_obj(120, 80, 20, 20), big, size) == "on"
    assert relation_between(big, _obj(120, 80, 20, 20), size) == "under"
    assert relation_between(_obj(120, 79, 20, 20), big, size) == "above"  # one row of gap: not touching
    assert relation_between(_obj(160 + near, 110, 40, 40), big, size) == "next to"
    assert relation_between(_obj(161 + near, 110, 40, 40), big, size) == "right of"
    assert relation_between(_obj(10, 150, 40, 40), big, size) == "left of"
    assert relation_between(_obj(110, 200, 40, 40), big, size) == "below"
    assert relation_between(_obj(10, 10, 20, 20), big, size) == "smaller than"  # diagonal, much smaller
    assert relation_between(_obj(10, 10, 50, 50), big, size) is None  # diagonal, similar size
    # bigger/smaller compare the drawn area: a triangle fills half its box
    tri = _obj(200, 10, 40, 40, "triangle")
    assert shape_area(tri) == 800
    assert relation_between(_obj(10, 200, 21, 20), tri, size) is None
    assert relation_between(_obj(10, 200, 20, 20), tri, size) == "smaller than"
    assert relation_between(tri, _obj(10, 200, 20, 20), size) == "bigger than"


def test_scenes_relations_hold_and_cover_every_predicate() -> None:
    rng = random.Random(11)
    seen = Counter()
    for _ in range(300):
        scene = make_scene(rng, 256)
        assert 1 <= len(scene.objects) <= 7
        assert len({o.colour for o in scene.objects}) == len(scene.objects)
        pairs = set()
        for s, predicate, o in scene.relations:
            assert relation_between(scene.objects[s], scene.objects[o], scene.size) == predicate
            pairs.add(frozenset((s, o)))
            seen[predicate] += 1
        assert len(pairs) == len(scene.relations)  # one relation per pair
        for i, a in enumerate(scene.objects):  # every pair with a relation is listed
            for j in range(i + 1, len(scene.objects)):
                b = scene.objects[j]
                if relation_between(a, b, 256) or relation_between(b, a, 256):
                    assert frozenset((i, j)) in pairs
            assert 0 < a.x and a.x2 < 256 and 0 < a.y and a.y2 < 256
    assert set(seen) == set(PREDICATES), seen


def test_written_relations_are_true_for_the_written_boxes(pictured: Path) -> None:
    for e in _load(pictured / "vg" / "scene_graphs.json"):
        boxes = {o["object_id"]: SceneObject("", o["names"][0].split()[-1], o["x"], o["y"], o["w"], o["h"])
                 for o in e["objects"]}
        for r in e["relationships"]:
            a, b = boxes[r["subject_id"]], boxes[r["object_id"]]
            assert relation_between(a, b, 256) == r["predicate"].lower()
    inverse = {v: k for k, v in GQA_PHRASES.items()}
    for v in _load(pictured / "gqa" / "train_sceneGraphs.json").values():
        objects = v["objects"]
        boxes = {k: SceneObject("", o["name"], o["x"], o["y"], o["w"], o["h"]) for k, o in objects.items()}
        for k, o in v["objects"].items():
            for r in o["relations"]:
                assert relation_between(boxes[k], boxes[r["object"]], v["width"]) == inverse[r["name"]]


# -------------------------------------------------------------------------------------------- pixels

_PALETTE = np.array([(236, 236, 236), *COLOURS.values()], dtype=np.int32)
_NAMES = [None, *COLOURS]


def _masks(image: Image.Image) -> dict[str, np.ndarray]:
    """Pixels whose nearest palette colour (background included) is each colour, within a tight distance."""
    px = np.asarray(image.convert("RGB"), dtype=np.int32)
    dist = ((px[:, :, None, :] - _PALETTE[None, None]) ** 2).sum(-1)
    nearest = dist.argmin(-1)
    close = dist.min(-1) < 40**2
    return {name: (nearest == k) & close for k, name in enumerate(_NAMES) if name}


def _extent(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _check_pixels(scene: Scene, image: Image.Image) -> Counter:
    masks = _masks(image)
    checked = Counter()
    area = {}  # drawn pixels of each shape, counting those covered by the shapes inside it
    for obj in scene.objects:
        inner = [o for o in scene.objects if relation_between(o, obj, scene.size) == "inside"]
        area[obj] = masks[obj.colour].sum() + sum(masks[o.colour].sum() for o in inner)
    for obj in scene.objects:  # each shape is drawn where its box says (the picture matches the boxes)
        x0, y0, x1, y1 = _extent(masks[obj.colour])
        tol = 4
        assert abs(x0 - obj.x) <= tol and abs(x1 - obj.x2) <= tol, (obj, (x0, y0, x1, y1))
        assert abs(y0 - obj.y) <= tol and abs(y1 - obj.y2) <= tol, (obj, (x0, y0, x1, y1))
    for s, predicate, o in scene.relations:
        a, b = masks[scene.objects[s].colour], masks[scene.objects[o].colour]
        ax, ay = np.nonzero(a)[1], np.nonzero(a)[0]
        bx, by = np.nonzero(b)[1], np.nonzero(b)[0]
        if predicate == "left of" or (predicate == "next to" and scene.objects[s].x < scene.objects[o].x):
            assert np.percentile(ax, 98) < np.percentile(bx, 2)
        elif predicate == "next to":
            assert np.percentile(ax, 2) > np.percentile(bx, 98)
        elif predicate == "right of":
            assert np.percentile(ax, 2) > np.percentile(bx, 98)
        elif predicate == "above":
            assert np.percentile(ay, 98) < np.percentile(by, 2)
        elif predicate == "below":
            assert np.percentile(ay, 2) > np.percentile(by, 98)
        elif predicate in ("on", "under"):
            top, bottom = (ay, by) if predicate == "on" else (by, ay)
            assert abs(top.max() + 1 - bottom.min()) <= 2  # touching
        elif predicate == "inside":
            (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = _extent(a), _extent(b)
            assert bx0 < ax0 and by0 < ay0 and ax1 < bx1 and ay1 < by1
        elif predicate == "bigger than":
            assert area[scene.objects[s]] > 1.5 * area[scene.objects[o]]
        elif predicate == "smaller than":
            assert area[scene.objects[o]] > 1.5 * area[scene.objects[s]]
        else:
            continue
        checked[predicate] += 1
    return checked


def test_rendered_scenes_show_their_relations() -> None:
    rng = random.Random(5)
    checked = Counter()
    for k in range(40):
        scene = make_scene(rng, 256)
        image = render_scene(scene, noise_seed=k)
        assert image.size == (256, 256) and image.mode == "RGB"
        checked += _check_pixels(scene, image)
    assert set(checked) == set(PREDICATES), checked


def test_written_jpegs_are_valid_match_the_metadata_and_show_the_relations(pictured: Path) -> None:
    summary = _load(pictured / "synth_summary.json")
    images = _load(pictured / "vg" / "image_data.json")
    graphs = {e["image_id"]: e for e in _load(pictured / "vg" / "scene_graphs.json")}
    jpegs = list((pictured / "vg").rglob("*.jpg"))
    assert len(jpegs) == summary["vg"]["images"] == len(images)
    checked = Counter()
    for meta in images:
        path = pictured / "vg" / "/".join(meta["url"].rsplit("/", 2)[-2:])
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.size == (meta["width"], meta["height"]) == (256, 256)
            im.load()
            objects = graphs[meta["image_id"]]["objects"]
            index = {o["object_id"]: i for i, o in enumerate(objects)}
            scene_objects = []
            for o in objects:
                colour = o["attributes"][0] if "attributes" in o else o["names"][0].split()[0]
                shape = o["names"][0].split()[-1]
                scene_objects.append(SceneObject(colour, shape, o["x"], o["y"], o["w"], o["h"]))
            rels = tuple((index[r["subject_id"]], r["predicate"].lower(), index[r["object_id"]])
                         for r in graphs[meta["image_id"]]["relationships"])
            checked += _check_pixels(Scene(256, tuple(scene_objects), rels), im)
    assert checked["left of"] + checked["right of"] > 0 and checked["above"] + checked["below"] > 0
    gqa = _load(pictured / "gqa" / "train_sceneGraphs.json")
    for image_id, entry in gqa.items():
        with Image.open(pictured / "gqa" / "images" / f"{image_id}.jpg") as im:
            assert im.format == "JPEG" and im.size == (entry["width"], entry["height"])


def test_cli_writes_the_corpus(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    code = cli_main(["synth", "--out", str(out), "--images", "6", "--with-images", "--seed", "2",
                     "--gqa-fraction", "0.5", "--layout", "split", "--image-size", "128"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["vg"]["images"] == 3 and summary["gqa"]["images"] == 3
    assert not (out / "vg" / "scene_graphs.json").exists()
    jpeg = next((out / "gqa" / "images").glob("*.jpg"))
    with Image.open(jpeg) as im:
        assert im.size == (128, 128)
