from __future__ import annotations

import random

import pytest

from sgverbalise.layout import plan_shards, split_of
from sgverbalise.schemas.layout import shard_name


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

