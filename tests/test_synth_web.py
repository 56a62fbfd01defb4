"""Web shards of shape scenes (``sgverbalise.synth.web``): img2dataset's layout, what a style changes, and the
same bytes for the same arguments."""

from __future__ import annotations

import json
import random
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from sgverbalise.shards import read_shard
from sgverbalise.synth import make_scene
from sgverbalise.synth.web import WebStyle, alt_text, name_list, write_web_shards

ARGS = {"samples_per_shard": 8, "image_size": 48}


def _files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


def _samples(root: Path) -> list[tuple[str, dict[str, bytes]]]:
    return [sample for tar in sorted(root.glob("*.tar")) for sample in read_shard(str(tar))]


def test_same_arguments_same_bytes(tmp_path: Path):
    a = write_web_shards(tmp_path / "a", 20, seed=3, **ARGS)
    write_web_shards(str(tmp_path / "b"), 20, seed=3, **ARGS)
    write_web_shards(tmp_path / "c", 20, seed=4, **ARGS)
    assert a["samples"] == 20 and [s["samples"] for s in a["shards"]] == [8, 8, 4]
    assert sorted(_files(tmp_path / "a")) == [f"{i:05d}{suffix}" for i in range(3)
                                              for suffix in (".parquet", ".tar", "_stats.json")]
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    other = _files(tmp_path / "c")
    assert all(other[name] != data for name, data in _files(tmp_path / "a").items() if name.endswith(".tar"))


def test_default_style_is_img2datasets_layout(tmp_path: Path):
    write_web_shards(tmp_path, 10, seed=1, **ARGS)
    samples = _samples(tmp_path)
    assert [key for key, _ in samples] == [f"0000{s}{i}" for s, n in ((0, 8), (1, 2)) for i in range(n)]
    meta = json.loads(samples[0][1]["json"])
    assert list(meta) == ["url", "key", "status", "error_message", "width", "height", "original_width",
                          "original_height", "exif", "sha256", "caption"]
    assert meta["caption"] == samples[0][1]["txt"].decode() and meta["width"] == 48
    table = pq.read_table(tmp_path / "00001.parquet")
    assert table.column_names == list(meta) and table.column("key").to_pylist() == [k for k, _ in samples[8:]]
    assert json.loads((tmp_path / "00001_stats.json").read_text())["successes"] == 2


def test_style_sets_stream_columns_objects_and_sidecars(tmp_path: Path):
    style = WebStyle(stream="other", columns=("key", "caption"), list_objects=True, stats=False)
    write_web_shards(tmp_path / "styled", 5, seed=3, style=style, **ARGS)
    write_web_shards(tmp_path / "plain", 5, seed=3, **ARGS)
    assert sorted(_files(tmp_path / "styled")) == ["00000.parquet", "00000.tar"]
    assert pq.read_table(tmp_path / "styled" / "00000.parquet").column_names == ["key", "caption"]
    styled, plain = _samples(tmp_path / "styled"), _samples(tmp_path / "plain")
    for _, members in styled:
        meta = json.loads(members["json"])
        assert list(meta) == ["key", "caption", "objects"] and 3 <= len(meta["objects"]) <= 7
        assert any(label in meta["caption"] for label in meta["objects"])
    assert styled[0][1]["jpg"] != plain[0][1]["jpg"]  # another random stream, other scenes
    with tarfile.open(tmp_path / "styled" / "00000.tar") as tar:
        assert sorted(m.name for m in tar.getmembers())[:3] == ["000000.jpg", "000000.json", "000000.txt"]


def test_captions_name_objects_with_articles_and_rarely_a_relation():
    assert name_list(["orange square"]) == "an orange square"
    assert name_list(["orange square", "red circle", "blue diamond"], an=False) == (
        "a orange square, a red circle and a blue diamond")
    scene = make_scene(random.Random(2), 64)
    assert scene.relations
    labels = {o.label for o in scene.objects}
    bare = alt_text(scene, random.Random(1), 0.0, WebStyle(templates=("{bare}",), an=True))
    assert not bare.startswith(("a ", "an ")) and any(bare.startswith(label) for label in labels)
    full = alt_text(scene, random.Random(1), 0.0, WebStyle(templates=("photo of {objs}",), an=True))
    assert full == "photo of " + ("an " if bare[0] in "aeiou" else "a ") + bare
    statements = {f"{scene.objects[s].label} {p} {scene.objects[o].label}" for s, p, o in scene.relations}
    assert alt_text(scene, random.Random(1), 1.0) in statements
    every = WebStyle(templates=("{objs}",), an=True, name_all=True)
    orders = {alt_text(scene, random.Random(seed), 0.0, every) for seed in range(20)}
    assert all(sorted(c.replace(" and ", ", ").split(", ")) == sorted(name_list([o.label], an=True)
               for o in scene.objects) for c in orders)
    assert len(orders) > 1  # in random order


def _predicate(statement: str) -> str:
    from sgverbalise.synth import PREDICATES

    return max((p for p in PREDICATES if f" {p} " in statement), key=len)


def test_statement_captions_are_true_relations_with_a_false_foil(tmp_path: Path):
    from sgverbalise.foils import OPPOSITE, REVERSIBLE
    from sgverbalise.synth import relation_between
    from sgverbalise.synth.web import relation_statement

    rng = random.Random(4)
    pairs = []
    for _ in range(200):
        scene = make_scene(rng, 64)
        if not [r for r in scene.relations if r[1] != "next to"]:
            with pytest.raises(ValueError, match="no relation with a foil"):
                relation_statement(scene, rng)
            continue
        caption, foil = relation_statement(scene, rng)
        pairs.append((_predicate(caption), _predicate(foil)))
        by_label = {o.label: o for o in scene.objects}
        truths = {f"{a.label} {relation_between(a, b, 64)} {b.label}" for a in scene.objects for b in scene.objects
                  if a is not b and relation_between(a, b, 64)}
        assert caption in truths and foil not in truths and foil != caption
        assert sorted(label for label in by_label if label in caption) == sorted(
            label for label in by_label if label in foil)  # the same two objects
    # balanced: a foil swaps the objects or takes the converse of a converse pair, never a one-way opposite
    # (inside -> on, next to -> above would make "on" and "above" false more often than true)
    assert all(q == p or (p in REVERSIBLE and q == OPPOSITE[p]) for p, q in pairs)
    assert {p for p, _ in pairs} >= {"inside", "left of", "above", "bigger than"} and "next to" not in dict(pairs)
    assert {q for p, q in pairs if q != p} >= {"right of", "below", "smaller than"}
    write_web_shards(tmp_path / "s", 24, seed=1, style=WebStyle(captions="statements"), **ARGS)
    write_web_shards(tmp_path / "t", 24, seed=1, style=WebStyle(captions="statements", name_all=True), **ARGS)
    assert _files(tmp_path / "s") == _files(tmp_path / "t")  # name_all is about alt-text captions only
    for _, members in _samples(tmp_path / "s"):
        meta = json.loads(members["json"])
        assert meta["caption"] == members["txt"].decode() and meta["foil"] != meta["caption"]
        assert len(meta["caption"].split()) >= 5 and "a " not in meta["caption"]
    write_web_shards(tmp_path / "d", 8, seed=1, **ARGS)
    assert all("foil" not in json.loads(m["json"]) for _, m in _samples(tmp_path / "d"))


def test_unknown_caption_kind_is_refused():
    with pytest.raises(ValueError, match="captions"):
        WebStyle(captions="tweets")
