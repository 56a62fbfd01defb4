"""Streaming VG/GQA readers: real excerpts, every layout quirk, fsspec URLs, broken files, arbitrary JSON."""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
import uuid
import zipfile
from pathlib import Path

import fsspec
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sgverbalise.readers import READERS, iter_gqa, iter_vg
from sgverbalise.readers.vg import resolve_vg_files
from sgverbalise.schemas import SCENE_GRAPH_SCHEMA, validator

SPLIT_FILES = (
    "objects.json",
    "relationships.json",
    "attributes.json",
    "image_data.json",
    "region_descriptions.json",
)


def collect(items) -> tuple[list[dict], list[dict], int]:
    """Records, rejects and the number of items of a reader's output."""
    records, rejects, count = [], [], 0
    for record, rejected in items:
        count += 1
        if record is not None:
            records.append(record)
        rejects.extend(rejected)
    return records, rejects, count


def check_shapes(records: list[dict], rejects: list[dict]) -> None:
    """Records convert to the Arrow schema (types and nesting) and rejects satisfy reject.schema.json."""
    table = pa.Table.from_pylist(records, schema=SCENE_GRAPH_SCHEMA)
    assert table.num_rows == len(records)
    for record in records:
        assert list(record) == SCENE_GRAPH_SCHEMA.names
    check = validator("reject")
    for rej in rejects:
        check.validate(rej)


def write_json(path: Path, value) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


def copy_files(src: Path, dst: Path, names: tuple[str, ...]) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(src / name, dst / name)
    return dst


def by_id(records: list[dict]) -> dict[str, dict]:
    return {r["image_id"]: r for r in records}


# ----------------------------------------------------------------------------------------------------
# Real excerpts


def test_registry_names_both_readers():
    assert READERS == {"vg": iter_vg, "gqa": iter_gqa}


def test_vg_sample_split_layout_matches_json_load(vg_sample, tmp_path):
    root = copy_files(vg_sample, tmp_path / "vg", SPLIT_FILES)
    records, rejects, count = collect(iter_vg(str(root)))
    assert rejects == [] and count == 100
    check_shapes(records, rejects)

    relationships = json.loads((vg_sample / "relationships.json").read_text())
    objects = json.loads((vg_sample / "objects.json").read_text())
    attributes = json.loads((vg_sample / "attributes.json").read_text())
    image_data = json.loads((vg_sample / "image_data.json").read_text())
    regions = json.loads((vg_sample / "region_descriptions.json").read_text())
    got = by_id(records)
    assert [r["image_id"] for r in records] == [str(e["image_id"]) for e in image_data]
    for entry, obj_entry, attr_entry, meta, reg_entry in zip(
        relationships, objects, attributes, image_data, regions, strict=True
    ):
        record = got[str(entry["image_id"])]
        assert len(record["relations"]) == len(entry["relationships"])
        assert [r["relation_id"] for r in record["relations"]] == [
            str(r["relationship_id"]) for r in entry["relationships"]
        ]
        assert [r["predicate_raw"] for r in record["relations"]] == [
            r["predicate"] for r in entry["relationships"]
        ]
        listed = [str(o["object_id"]) for o in obj_entry["objects"]]
        embedded = []
        for rel in entry["relationships"]:
            for end in ("subject", "object"):
                oid = str(rel[end]["object_id"])
                if oid not in listed and oid not in embedded:
                    embedded.append(oid)
        assert [o["object_id"] for o in record["objects"]] == listed + embedded
        attrs = {str(a["object_id"]): a.get("attributes", []) for a in attr_entry["attributes"]}
        for obj in record["objects"]:
            assert obj["attributes"] == attrs.get(obj["object_id"], [])
        assert (record["width"], record["height"]) == (meta["width"], meta["height"])
        assert record["image_path"] == "/".join(meta["url"].split("/")[-2:])
        assert [r["region_id"] for r in record["regions"]] == [
            str(r["region_id"]) for r in reg_entry["regions"]
        ]
        assert [(r["w"], r["h"]) for r in record["regions"]] == [
            (r["width"], r["height"]) for r in reg_entry["regions"]
        ]
    assert got["1"]["image_path"] == "VG_100K_2/1.jpg"


def test_vg_sample_scene_graphs_layout_matches_json_load(vg_sample, tmp_path):
    root = copy_files(vg_sample, tmp_path / "vg", ("scene_graphs.json", "image_data.json"))
    records, rejects, count = collect(iter_vg(str(root)))
    assert rejects == [] and count == 100
    check_shapes(records, rejects)
    graphs = json.loads((vg_sample / "scene_graphs.json").read_text())
    got = by_id(records)
    for entry in graphs:
        record = got[str(entry["image_id"])]
        assert len(record["relations"]) == len(entry["relationships"])
        assert [(r["subject_id"], r["object_id"]) for r in record["relations"]] == [
            (str(r["subject_id"]), str(r["object_id"])) for r in entry["relationships"]
        ]
        assert [o["object_id"] for o in record["objects"]] == [str(o["object_id"]) for o in entry["objects"]]
        assert [o["attributes"] for o in record["objects"]] == [
            o.get("attributes", []) for o in entry["objects"]
        ]
        assert [o["names"] for o in record["objects"]] == [o["names"] for o in entry["objects"]]
        assert record["width"] is not None and record["regions"] == []


def test_vg_layout_rule_prefers_split_files(vg_sample, tmp_path):
    assert set(resolve_vg_files(str(vg_sample))) == {
        "objects",
        "relationships",
        "attributes",
        "image_data",
        "regions",
    }
    forced = resolve_vg_files(str(vg_sample), layout="scene_graphs", regions=False)
    assert set(forced) == {"scene_graphs", "image_data"}
    only_rels = copy_files(vg_sample, tmp_path / "rels", ("scene_graphs.json", "relationships.json"))
    assert set(resolve_vg_files(str(only_rels))) == {"relationships"}
    with pytest.raises(ValueError, match="layout"):
        resolve_vg_files(str(vg_sample), layout="bogus")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        resolve_vg_files(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError):
        resolve_vg_files(str(tmp_path / "empty"), layout="split")


def test_vg_limit_and_single_file_root(vg_sample, tmp_path):
    records, _, count = collect(iter_vg(str(vg_sample), limit=7))
    assert count == 7 and [r["image_id"] for r in records] == [str(i) for i in range(1, 8)]
    assert collect(iter_vg(str(vg_sample), limit=0))[2] == 0
    single = iter_vg(str(vg_sample / "scene_graphs.json"), images=str(vg_sample / "image_data.json"), limit=3)
    records, _, _ = collect(single)
    assert [r["image_path"] for r in records] == ["VG_100K_2/1.jpg", "VG_100K/2.jpg", "VG_100K/3.jpg"]


def test_gqa_sample_matches_json_load(gqa_sample):
    path = gqa_sample / "train_sceneGraphs.json"
    records, rejects, count = collect(iter_gqa(str(path)))
    assert rejects == [] and count == 100
    check_shapes(records, rejects)
    graphs = json.loads(path.read_text())
    assert [r["image_id"] for r in records] == list(graphs)
    for record in records:
        entry = graphs[record["image_id"]]
        assert (record["width"], record["height"]) == (entry["width"], entry["height"])
        assert record["location"] == entry.get("location") and record["weather"] == entry.get("weather")
        assert record["image_path"] == f"{record['image_id']}.jpg"
        assert [o["object_id"] for o in record["objects"]] == list(entry["objects"])
        assert [o["names"] for o in record["objects"]] == [[o["name"]] for o in entry["objects"].values()]
        expected = [
            (oid, rel["name"], rel["object"])
            for oid, obj in entry["objects"].items()
            for rel in obj["relations"]
        ]
        assert [
            (r["subject_id"], r["predicate_raw"], r["object_id"]) for r in record["relations"]
        ] == expected
        assert all(r["relation_id"] is None for r in record["relations"])
    assert any(r["location"] for r in records) and any(r["location"] is None for r in records)


# ----------------------------------------------------------------------------------------------------
# Hand-written fixtures: one quirk each


def _box(x=1, y=2, w=3, h=4) -> dict:
    return {"x": x, "y": y, "w": w, "h": h}


def quirk_folder(root: Path) -> Path:
    write_json(
        root / "objects.json",
        [
            {
                "image_id": 1,
                "image_url": "https://example.org/VG_100K/1.jpg",
                "objects": [
                    {"object_id": 10, "names": ["Man"], "merged_object_ids": [11], **_box(10, 10, 50, 80)},
                    {"object_id": 12, "names": ["horse"], "merged_object_ids": [], **_box()},
                ],
            }
        ],
    )
    write_json(
        root / "relationships.json",
        [
            {
                "image_id": 1,
                "relationships": [
                    {
                        "relationship_id": 100,
                        "predicate": "Riding",
                        "subject": {"object_id": 10, "name": "man", **_box(0, 0, 5, 5)},
                        "object": {"object_id": 12, "names": ["horse"], "merged_object_ids": [], **_box()},
                    },
                    {
                        "relationship_id": 101,
                        "predicate": "ON",
                        "subject": {"object_id": 13, "name": "hat", "merged_object_ids": [14], **_box()},
                        "object": {"object_id": 10, "name": "man", **_box()},
                    },
                    {
                        "relationship_id": 102,
                        "predicate": "on",
                        "subject": {"object_id": 13, "name": "cap", **_box()},
                        "object": {"object_id": 15, "names": ["head"], **_box()},
                    },
                ],
            }
        ],
    )
    write_json(
        root / "attributes.json",
        [
            {
                "image_id": 1,
                "attributes": [
                    {"object_id": 10, "names": ["man"], "attributes": ["tall"], **_box()},
                    {"object_id": 12, "names": ["horse"], **_box()},
                    {"object_id": 13, "names": ["hat"], "attributes": ["red", "Woolly "], **_box()},
                    {"object_id": 77, "names": ["gone"], "attributes": ["merged away"], **_box()},
                ],
            }
        ],
    )
    write_json(
        root / "image_data.json",
        [
            {
                "id": 1,
                "width": 640,
                "height": 480,
                "url": "https://cs.example/rak248/VG_100K_2/1.jpg",
                "coco_id": 123456,
                "flickr_id": 2**40,
            }
        ],
    )
    write_json(
        root / "region_descriptions.json",
        [
            {
                "id": 1,
                "regions": [
                    {
                        "region_id": 5,
                        "image_id": 1,
                        "phrase": "a man",
                        "x": 1,
                        "y": 2,
                        "width": 30,
                        "height": 40,
                    }
                ],
            }
        ],
    )
    return root


def test_vg_split_quirks(tmp_path):
    records, rejects, count = collect(iter_vg(str(quirk_folder(tmp_path / "vg"))))
    assert count == 1 and rejects == []
    check_shapes(records, rejects)
    (record,) = records
    assert record["coco_id"] == 123456 and record["flickr_id"] == 2**40
    assert (record["width"], record["height"], record["image_path"]) == (640, 480, "VG_100K_2/1.jpg")
    objects = {o["object_id"]: o for o in record["objects"]}
    assert list(objects) == ["10", "12", "13", "15"]  # listed objects first, then embedded ones not listed
    man = objects["10"]
    assert (man["names"], man["x"], man["w"], man["merged_object_ids"]) == (["Man"], 10, 50, ["11"])
    assert man["attributes"] == ["tall"]
    assert objects["12"]["attributes"] == []  # attributes missing in attributes.json
    hat = objects["13"]  # first embedded occurrence wins among embedded copies
    assert (hat["names"], hat["attributes"], hat["merged_object_ids"]) == (
        ["hat"],
        ["red", "Woolly "],
        ["14"],
    )
    assert objects["15"]["names"] == ["head"] and objects["15"]["attributes"] == []
    assert [
        (r["relation_id"], r["subject_id"], r["predicate_raw"], r["object_id"]) for r in record["relations"]
    ] == [
        ("100", "10", "Riding", "12"),
        ("101", "13", "ON", "10"),
        ("102", "13", "on", "15"),
    ]
    assert all(r["predicate"] is None for r in record["relations"])
    assert all(o["name"] is None and o["attributes_norm"] is None for o in record["objects"])
    assert record["regions"] == [{"region_id": "5", "phrase": "a man", "x": 1, "y": 2, "w": 30, "h": 40}]


def test_vg_scene_graphs_quirks(tmp_path):
    root = tmp_path / "vg"
    write_json(
        root / "scene_graphs.json",
        [
            {
                "image_id": 7,
                "objects": [
                    {"object_id": 1, "names": ["Dog"], **_box()},
                    {"object_id": 2, "name": "frisbee", "attributes": ["red"], **_box()},
                    {"id": 3, "names": ["grass", "lawn"], **_box()},
                ],
                "relationships": [
                    {"relationship_id": 9, "predicate": "Catching", "subject_id": 1, "object_id": 2},
                    {"relationship_id": 10, "predicate": "ON", "subject_id": 1, "object_id": 999},
                    {"id": 11, "predicate": "near", "subject_id": "2", "object_id": 3},
                ],
            }
        ],
    )
    records, rejects, _ = collect(iter_vg(str(root)))
    assert rejects == []
    check_shapes(records, rejects)
    (record,) = records
    assert [(o["object_id"], o["names"], o["attributes"]) for o in record["objects"]] == [
        ("1", ["Dog"], []),
        ("2", ["frisbee"], ["red"]),
        ("3", ["grass", "lawn"], []),
    ]
    # the relation to the absent object 999 is kept (a later stage rejects it as unknown_object)
    assert [(r["relation_id"], r["predicate_raw"], r["object_id"]) for r in record["relations"]] == [
        ("9", "Catching", "2"),
        ("10", "ON", "999"),
        ("11", "near", "3"),
    ]
    assert (record["width"], record["coco_id"], record["image_path"]) == (None, None, "7.jpg")


def test_vg_malformed_entries_become_rejects(tmp_path):
    root = tmp_path / "vg"
    write_json(
        root / "scene_graphs.json",
        [
            {
                "image_id": 1,
                "objects": [
                    {"object_id": 1, "names": ["cat"], **_box()},
                    {"object_id": 2, "names": ["mat"], "x": "1", "y": 0, "w": 1, "h": 1},
                    {"object_id": 3, **_box()},
                    {"object_id": 1, "names": ["again"], **_box()},
                    "not an object",
                    {"object_id": 4, "names": ["box"], "attributes": "red", **_box()},
                    {"object_id": 5, "names": ["big"], **_box(w=2**40)},
                ],
                "relationships": [
                    {"relationship_id": 1, "predicate": "on", "subject_id": 1, "object_id": 2},
                    {"relationship_id": 2, "subject_id": 1, "object_id": 2},
                    {"relationship_id": 3, "predicate": "on", "subject_id": None, "object_id": 2},
                    {"relationship_id": [3], "predicate": "on", "subject_id": 1, "object_id": 2},
                ],
            },
            [1, 2],
            {"image_id": None, "objects": []},
            {"image_id": 3, "objects": {"not": "a list"}, "relationships": None},
            {"image_id": 4, "width": "wide"},
            {"image_id": 5},
        ],
    )
    items = list(iter_vg(str(root)))
    assert len(items) == 6
    records, rejects, _ = collect(items)
    check_shapes(records, rejects)
    first, first_rejects = items[0]
    assert [o["object_id"] for o in first["objects"]] == ["1"]
    assert [r["relation_id"] for r in first["relations"]] == ["1"]
    kinds = [(r["kind"], r["reason"]) for r in first_rejects]
    assert kinds == [("object", "malformed_record")] * 6 + [("relation", "malformed_record")] * 3
    assert all(r["image_id"] == "1" and "scene_graphs.json" in r["detail"] for r in first_rejects)
    assert items[1][0] is None and items[1][1][0]["kind"] == "image" and items[1][1][0]["image_id"] is None
    assert items[2][0] is None and items[2][1][0]["reason"] == "malformed_record"
    assert items[3][0]["objects"] == [] and [r["kind"] for r in items[3][1]] == ["object"]
    assert items[4][0] is None and items[4][1][0]["image_id"] == "4" and "width" in items[4][1][0]["detail"]
    assert items[5][0]["objects"] == [] and items[5][1] == []


def test_gqa_quirks_and_malformed(tmp_path):
    path = write_json(
        tmp_path / "val_sceneGraphs.json",
        {
            "n123": {
                "width": 500,
                "height": 333,
                "location": "park",
                "objects": {
                    "1": {
                        "name": "man",
                        **_box(),
                        "attributes": ["tall"],
                        "relations": [{"name": "Holding", "object": "2"}, {"name": "near", "object": "404"}],
                    },
                    "2": {"name": "kite", **_box(), "relations": []},
                    "3": {
                        "name": "bad",
                        "x": None,
                        "y": 0,
                        "w": 1,
                        "h": 1,
                        "relations": [{"name": "left of", "object": "1"}, {"object": "2"}, "junk"],
                    },
                },
            },
            "7": "not a graph",
            "": {"width": 1},
            "8": {"width": 10, "height": 10, "weather": 3},
            "9": {"objects": []},
        },
    )
    items = list(iter_gqa(str(path)))
    assert len(items) == 5
    records, rejects, _ = collect(items)
    check_shapes(records, rejects)
    first, first_rejects = items[0]
    assert (first["image_id"], first["location"], first["weather"], first["image_path"]) == (
        "n123",
        "park",
        None,
        "n123.jpg",
    )
    assert [(o["object_id"], o["names"], o["attributes"]) for o in first["objects"]] == [
        ("1", ["man"], ["tall"]),
        ("2", ["kite"], []),
    ]
    # relations of an object with a bad box are kept (it is rejected by id later), dangling ids too
    assert [(r["subject_id"], r["predicate_raw"], r["object_id"]) for r in first["relations"]] == [
        ("1", "Holding", "2"),
        ("1", "near", "404"),
        ("3", "left of", "1"),
    ]
    assert [r["kind"] for r in first_rejects] == ["object", "relation", "relation"]
    assert [item[0] for item in items[1:4]] == [None, None, None]
    assert items[2][1][0]["image_id"] is None
    assert items[4][0]["objects"] == [] and [r["kind"] for r in items[4][1]] == ["object"]


# ----------------------------------------------------------------------------------------------------
# Storage: fsspec URLs and compression


def test_memory_urls(vg_sample, gqa_sample):
    base = f"memory://sgv-readers-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    try:
        for name in SPLIT_FILES:
            fs.pipe(f"{base}/vg/{name}", (vg_sample / name).read_bytes())
        fs.pipe(f"{base}/gqa/val_sceneGraphs.json", (gqa_sample / "train_sceneGraphs.json").read_bytes())
        local, _, _ = collect(iter_vg(str(vg_sample), limit=20))
        remote, rejects, _ = collect(iter_vg(f"{base}/vg", limit=20))
        assert remote == local and rejects == []
        gqa_local, _, _ = collect(iter_gqa(str(gqa_sample / "train_sceneGraphs.json"), limit=5))
        gqa_remote, _, _ = collect(iter_gqa(f"{base}/gqa/val_sceneGraphs.json", limit=5))
        assert gqa_remote == gqa_local and len(gqa_remote) == 5
    finally:
        fs.rm(base.removeprefix("memory://"), recursive=True)


def test_compressed_files(vg_sample, gqa_sample, tmp_path):
    for name in ("objects.json", "relationships.json", "image_data.json"):
        (tmp_path / "vg" / f"{name}.gz").parent.mkdir(exist_ok=True)
        (tmp_path / "vg" / f"{name}.gz").write_bytes(gzip.compress((vg_sample / name).read_bytes()))
    plain = copy_files(
        vg_sample, tmp_path / "plain", ("objects.json", "relationships.json", "image_data.json")
    )
    assert collect(iter_vg(str(tmp_path / "vg")))[0] == collect(iter_vg(str(plain)))[0]
    source = gqa_sample / "train_sceneGraphs.json"
    packed = tmp_path / "train_sceneGraphs.json.gz"
    packed.write_bytes(gzip.compress(source.read_bytes()))
    records, rejects, count = collect(iter_gqa(str(packed)))
    assert count == 100 and rejects == [] and records == collect(iter_gqa(str(source)))[0]
    zipped = tmp_path / "train_sceneGraphs.json.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(source, "train_sceneGraphs.json")
    assert collect(iter_gqa(str(zipped)))[0] == records


# ----------------------------------------------------------------------------------------------------
# Joining misaligned files


def _objects_entry(image_id: int) -> dict:
    return {
        "image_id": image_id,
        "objects": [{"object_id": image_id * 10, "names": [f"o{image_id}"], **_box()}],
    }


def _relations_entry(image_id: int) -> dict:
    subject = {"object_id": image_id * 10, "names": [f"o{image_id}"], **_box()}
    obj = {"object_id": image_id * 10 + 1, "name": f"e{image_id}", **_box()}
    return {
        "image_id": image_id,
        "relationships": [
            {"relationship_id": image_id, "predicate": f"p{image_id}", "subject": subject, "object": obj}
        ],
    }


def _meta_entry(image_id: int) -> dict:
    return {
        "image_id": image_id,
        "width": 100 + image_id,
        "height": 50,
        "url": f"http://h/VG_100K/{image_id}.jpg",
    }


def _write_split(root: Path, objects: list[int], relations: list[int], meta: list[int]) -> Path:
    write_json(root / "objects.json", [_objects_entry(i) for i in objects])
    write_json(root / "relationships.json", [_relations_entry(i) for i in relations])
    write_json(root / "image_data.json", [_meta_entry(i) for i in meta])
    return root


def test_misaligned_split_files_are_joined_right(tmp_path):
    ids = list(range(1, 9))
    aligned, _, _ = collect(iter_vg(str(_write_split(tmp_path / "a", ids, ids, ids))))
    assert [r["image_id"] for r in aligned] == [str(i) for i in ids]
    shuffled = _write_split(
        tmp_path / "b", [3, 1, 2, 8, 7, 4, 6, 5], [8, 7, 6, 5, 4, 3, 2, 1], [2, 4, 6, 8, 1, 3, 5, 7]
    )
    records, rejects, count = collect(iter_vg(str(shuffled)))
    assert rejects == [] and count == 8
    assert sorted(records, key=lambda r: int(r["image_id"])) == aligned
    # image 5 lacks objects, image 2 lacks relationships, image 9 exists only in relationships.json
    gappy = _write_split(tmp_path / "c", [1, 2, 3, 4, 6], [1, 3, 4, 5, 6, 9], [1, 2, 3, 4, 5, 6])
    records, rejects, count = collect(iter_vg(str(gappy)))
    got = by_id(records)
    assert sorted(got, key=int) == ["1", "2", "3", "4", "5", "6", "9"] and count == 7 and rejects == []
    assert [o["object_id"] for o in got["5"]["objects"]] == ["50", "51"]  # embedded ends only
    assert got["2"]["relations"] == [] and [o["object_id"] for o in got["2"]["objects"]] == ["20"]
    assert got["9"]["width"] is None and got["9"]["relations"][0]["predicate_raw"] == "p9"
    assert got["5"]["width"] == 105 and got["3"] == by_id(aligned)["3"]
    check_shapes(records, rejects)


# ----------------------------------------------------------------------------------------------------
# Broken files


def test_truncated_files_yield_then_raise(tmp_path):
    graphs = [{"image_id": i, "objects": [{"object_id": i, "names": ["x"], **_box()}]} for i in range(1, 6)]
    text = json.dumps(graphs)
    cut = text.index('{"image_id": 4')
    root = tmp_path / "vg"
    root.mkdir()
    (root / "scene_graphs.json").write_text(text[: cut + 20])
    seen = []
    with pytest.raises(ValueError, match="scene_graphs.json"):
        for record, _ in iter_vg(str(root)):
            seen.append(record["image_id"])
    assert seen == ["1", "2", "3"]

    gqa = {str(i): {"width": 10, "height": 10, "objects": {}} for i in range(5)}
    gqa_text = json.dumps(gqa)
    path = tmp_path / "val_sceneGraphs.json"
    path.write_text(gqa_text[: gqa_text.index('"3":') + 8])
    seen = []
    with pytest.raises(ValueError, match="val_sceneGraphs.json"):
        for record, _ in iter_gqa(str(path)):
            seen.append(record["image_id"])
    assert seen == ["0", "1", "2"]

    packed = gzip.compress(json.dumps(graphs * 50).encode())
    (root / "scene_graphs.json").unlink()
    (root / "scene_graphs.json.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(ValueError, match=r"scene_graphs\.json\.gz"):
        collect(iter_vg(str(root)))


def test_wrong_top_level_and_empty_files(tmp_path):
    root = write_json(tmp_path / "vg" / "scene_graphs.json", {"1": {}}).parent
    with pytest.raises(ValueError, match="not a list"):
        collect(iter_vg(str(root)))
    gqa = write_json(tmp_path / "val_sceneGraphs.json", [{"width": 1}])
    with pytest.raises(ValueError, match="not an object"):
        collect(iter_gqa(str(gqa)))
    gqa.write_text("  \n")
    with pytest.raises(ValueError, match="empty"):
        collect(iter_gqa(str(gqa)))


def test_integers_beyond_64_bits_do_not_stop_the_stream(tmp_path):
    root = write_json(
        tmp_path / "vg" / "scene_graphs.json",
        [
            {"image_id": 1, "objects": [{"object_id": 1, "names": ["a"], **_box()}]},
            {"image_id": 2, "objects": [{"object_id": 2, "names": ["b"], **_box(x=-(2**70))}]},
            {"image_id": 3, "objects": [{"object_id": 3, "names": ["c"], **_box()}]},
        ],
    ).parent
    items = list(iter_vg(str(root)))
    assert [r["image_id"] for r, _ in items] == ["1", "2", "3"]
    assert items[1][0]["objects"] == [] and "out of range" in items[1][1][0]["detail"]
    assert [o["object_id"] for o in items[2][0]["objects"]] == ["3"]


# ----------------------------------------------------------------------------------------------------
# Property: arbitrary JSON never raises past the reject path

_KEYS = (
    "image_id",
    "id",
    "objects",
    "relationships",
    "object_id",
    "names",
    "name",
    "attributes",
    "merged_object_ids",
    "x",
    "y",
    "w",
    "h",
    "subject_id",
    "subject",
    "object",
    "predicate",
    "relationship_id",
    "width",
    "height",
    "url",
    "coco_id",
    "flickr_id",
    "relations",
    "location",
    "weather",
)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)


def _json_values():
    return st.recursive(
        _scalars,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=4), inner, max_size=6)
        ),
        max_leaves=20,
    )


_ANY_JSON = _json_values()


def _near(valid):
    """Mostly a plausible value, sometimes any JSON value."""
    return st.integers(0, 7).flatmap(lambda draw: _ANY_JSON if draw == 3 else valid)


_ids = st.integers(0, 4) | st.sampled_from(["1", "2", "n3"])
_ints = st.integers(-5, 500)
_near_box = {k: _near(_ints) for k in "xywh"}
_vg_objects = st.fixed_dictionaries(
    {"object_id": _near(_ids), "names": _near(st.lists(st.text(max_size=5), max_size=2)), **_near_box},
    optional={
        "name": _near(st.text(max_size=5)),
        "attributes": _near(st.lists(st.text(max_size=5), max_size=2)),
        "merged_object_ids": _near(st.lists(_ids, max_size=2)),
    },
)
_vg_relations = st.fixed_dictionaries(
    {"relationship_id": _near(_ids), "predicate": _near(st.text(max_size=5))},
    optional={
        "subject_id": _near(_ids),
        "object_id": _near(_ids),
        "subject": _near(_vg_objects),
        "object": _near(_vg_objects),
    },
)
_vg_entries = _ANY_JSON | st.fixed_dictionaries(
    {"image_id": _near(_ids)},
    optional={
        "objects": _near(st.lists(_vg_objects, max_size=4)),
        "relationships": _near(st.lists(_vg_relations, max_size=4)),
        "width": _near(_ints),
        "url": _near(st.text(max_size=12)),
        "coco_id": _near(st.integers()),
    },
)
_gqa_objects = st.fixed_dictionaries(
    {"name": _near(st.text(max_size=5)), **_near_box},
    optional={
        "attributes": _near(st.lists(st.text(max_size=5), max_size=2)),
        "relations": _near(
            st.lists(
                st.fixed_dictionaries({"name": _near(st.text(max_size=5)), "object": _near(_ids)}), max_size=3
            )
        ),
    },
)
_gqa_entries = _ANY_JSON | st.fixed_dictionaries(
    {"width": _near(_ints), "height": _near(_ints)},
    optional={
        "objects": _near(st.dictionaries(st.text(max_size=3), _gqa_objects, max_size=4)),
        "location": _near(st.text(max_size=5)),
        "weather": _near(st.text(max_size=5)),
    },
)
_PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_PROPERTY
@given(entries=st.lists(_vg_entries, max_size=6))
def test_vg_reader_survives_arbitrary_json(entries):
    with tempfile.TemporaryDirectory() as tmp:
        root = write_json(Path(tmp) / "scene_graphs.json", entries).parent
        records, rejects, count = collect(iter_vg(str(root)))
    assert count == len(entries)
    check_shapes(records, rejects)


@_PROPERTY
@given(files=st.lists(st.lists(_vg_entries, max_size=4), min_size=3, max_size=3))
def test_vg_split_join_survives_arbitrary_json(files):
    with tempfile.TemporaryDirectory() as tmp:
        for name, entries in zip(
            ("objects.json", "relationships.json", "image_data.json"), files, strict=True
        ):
            write_json(Path(tmp) / name, entries)
        records, rejects, count = collect(iter_vg(tmp))
    # every entry lands in exactly one item and every item holds at least one entry
    assert max(len(f) for f in files) <= count <= sum(len(f) for f in files)
    check_shapes(records, rejects)


@_PROPERTY
@given(graphs=st.dictionaries(st.text(max_size=6), _gqa_entries, max_size=6))
def test_gqa_reader_survives_arbitrary_json(graphs):
    with tempfile.TemporaryDirectory() as tmp:
        path = write_json(Path(tmp) / "train_sceneGraphs.json", graphs)
        records, rejects, count = collect(iter_gqa(str(path)))
    assert count == len(graphs)
    check_shapes(records, rejects)
