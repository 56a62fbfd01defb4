from __future__ import annotations

import random

import pytest

from sgverbalise.layout import plan_shards, split_of
from sgverbalise.schemas.layout import ShardSpecError, relations_for, resolve, shard_name


def test_split_is_a_stable_fraction_of_keys():
    keys = [f"vg-{i}" for i in range(20_000)]
    val = [k for k in keys if split_of(k, 0.1) == "val"]
    assert 1700 < len(val) < 2300
    assert all(split_of(k, 0.1) == "val" for k in val)
    assert {split_of(k, 0.0) for k in keys} == {"train"} and {split_of(k, 1.0) for k in keys} == {"val"}
    with pytest.raises(ValueError):
        split_of("vg-1", 1.5)


def test_plan_rolls_over_on_count_and_bytes_whatever_the_order():
    sizes = [(f"k{i:02d}", 10) for i in range(10)] + [("k05x", 100)]
    shuffled = sizes[:]
    random.Random(1).shuffle(shuffled)
    plan = plan_shards(shuffled, max_count=4, max_bytes=35)
    assert plan == plan_shards(sizes, max_count=4, max_bytes=35)
    # sorted: k00..k05 (10 each), k05x (100), k06..k09: bytes close shards at 3 samples, k05x stands alone
    assert plan == {"k00": 0, "k01": 0, "k02": 0, "k03": 1, "k04": 1, "k05": 1, "k05x": 2, "k06": 3, "k07": 3,
                    "k08": 3, "k09": 4}
    assert max(plan_shards(sizes, max_count=4, max_bytes=None).values()) == 2
    with pytest.raises(ValueError):
        plan_shards([("a", 1), ("a", 2)], 2, None)
    assert shard_name("val", 3) == "val/shard-000003.tar"



def _tars(root, names):
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"\0" * 1024)


def test_a_folder_without_a_manifest_gives_its_split_when_it_has_one(tmp_path):
    _tars(tmp_path, ["train/a.tar", "train/b.tar", "val/c.tar", "train/.a.tar.tmp-0", "notes.txt"])
    assert resolve(str(tmp_path), "train").urls == [str(tmp_path / "train" / n) for n in ("a.tar", "b.tar")]
    assert [s.name for s in resolve(str(tmp_path)).shards] == ["train/a.tar", "train/b.tar", "val/c.tar"]
    assert resolve(str(tmp_path), "test").urls == resolve(str(tmp_path)).urls  # no such split folder: all
    with pytest.raises(ShardSpecError, match="no such file"):
        resolve(str(tmp_path / "nothing"))


def test_specs_join_with_double_colons_and_pipes_pass_through(tmp_path):
    _tars(tmp_path, ["x/a.tar", "y/b.tar"])
    spec = f"{tmp_path}/x::pipe:cat {{0..1}}.tar::{tmp_path}/y/b.tar"
    assert resolve(spec).urls == [str(tmp_path / "x" / "a.tar"), "pipe:cat 0.tar", "pipe:cat 1.tar",
                                  str(tmp_path / "y" / "b.tar")]
    assert resolve([f"{tmp_path}/y/b.tar", f"{tmp_path}/x/a.tar"]).urls == [str(tmp_path / "y" / "b.tar"),
                                                                              str(tmp_path / "x" / "a.tar")]
    # a brace pattern's tar names are taken unchecked; other expansions resolve by the rules
    assert resolve(f"{tmp_path}/{{x/a.tar,y}}").urls == [str(tmp_path / "x" / "a.tar"), str(tmp_path / "y" / "b.tar")]


def test_relations_json_sits_in_the_set_two_levels_above_a_shard(tmp_path):
    _tars(tmp_path, ["set/train/shard-000000.tar"])
    assert relations_for(f"{tmp_path}/set") == f"{tmp_path}/set/relations.json"
    assert relations_for(f"{tmp_path}/set/manifest.json") == f"{tmp_path}/set/relations.json"
    assert relations_for(f"{tmp_path}/set/train/*.tar") == f"{tmp_path}/set/relations.json"
    assert relations_for(f"{tmp_path}/other.json") == f"{tmp_path}/other.json"
