"""The VSG format, its order and its determinism; the sample JSON against its schema."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sgverbalise.sample import _normalised, build_sample, sample_key
from sgverbalise.schemas import validator
from sgverbalise.triplets import extract
from sgverbalise.verbalise import VSGConfig, triplet_text, verbalise


def t(subject, predicate, obj, box, attrs=()):
    return {"subject": subject, "subject_box": list(box), "subject_attributes": list(attrs), "predicate": predicate,
            "object": obj, "object_box": [0, 0, 1, 1], "object_attributes": []}


SCENE = [
    t("grass", "under", "horse", (0, 80, 100, 20)),  # centre y 90
    t("man", "riding", "horse", (40, 10, 20, 20)),  # centre (50, 20)
    t("hat", "on", "man", (42, 0, 10, 6)),  # centre y 3: top of the image
    t("dog", "near", "horse", (0, 30, 10, 10)),  # centre (5, 35)
    t("tree", "behind", "horse", (80, 10, 20, 40)),  # centre (90, 30)
]


def test_format_and_order_top_to_bottom_then_left_to_right():
    [caption] = verbalise(SCENE, VSGConfig(k=8), "vg", "1")
    assert caption == ("hat on man [SEP] man riding horse [SEP] tree behind horse [SEP] dog near horse "
                       "[SEP] grass under horse")


def test_ties_in_y_break_by_x():
    scene = [t("b", "r", "o", (50, 0, 10, 10)), t("a", "r", "o", (10, 0, 10, 10))]
    assert verbalise(scene, VSGConfig(), "vg", "1") == ["a r o [SEP] b r o"]


def test_k_limits_the_triplets_and_captions_are_distinct_samples():
    captions = verbalise(SCENE, VSGConfig(k=2, captions=4), "gqa", "42")
    assert 2 <= len(captions) <= 4 and len(set(captions)) == len(captions)
    for caption in captions:
        parts = caption.split(" [SEP] ")
        assert len(parts) == 2 and set(parts) <= {triplet_text(x) for x in SCENE}


def test_small_graph_gives_one_caption_and_none_for_no_triplets():
    assert len(verbalise(SCENE, VSGConfig(k=8, captions=3), "vg", "1")) == 1
    assert verbalise([], VSGConfig(), "vg", "1") == []


def test_attributes_before_names_and_no_sorting():
    scene = [t("shirt", "on", "man", (0, 0, 5, 5), attrs=["white", "striped"])]
    assert verbalise(scene, VSGConfig(attributes=1), "vg", "1") == ["white shirt on man"]
    unsorted = verbalise(SCENE, VSGConfig(sort="none", k=5), "vg", "1")[0].split(" [SEP] ")
    assert sorted(unsorted) == sorted(triplet_text(x) for x in SCENE)


def test_bad_config_is_refused():
    with pytest.raises(ValueError):
        VSGConfig(k=0)
    with pytest.raises(ValueError):
        VSGConfig(sort="diagonal")


@given(seed=st.integers(0, 2**31), image_id=st.text(min_size=1, max_size=8), k=st.integers(1, 6))
def test_deterministic_from_seed_source_and_image(seed, image_id, k):
    cfg = VSGConfig(k=k, captions=3, seed=seed)
    assert verbalise(SCENE, cfg, "vg", image_id) == verbalise(list(SCENE), cfg, "vg", image_id)


def test_same_captions_in_another_process_with_another_hash_seed():
    code = ("from tests.test_verbalise import SCENE; from sgverbalise.verbalise import VSGConfig, verbalise; "
            "print(verbalise(SCENE, VSGConfig(k=3, captions=3, seed=5), 'vg', '123'))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": str(h), "PATH": ""}).stdout for h in (1, 2)}
    assert outs == {str(verbalise(SCENE, VSGConfig(k=3, captions=3, seed=5), "vg", "123")) + "\n"}


def test_sample_matches_schema_and_scales_boxes():
    objects = [{"object_id": "1", "names": ["Man"], "name": "man", "attributes": [], "attributes_norm": [],
                "merged_object_ids": [], "x": 100, "y": 50, "w": 200, "h": 100},
               {"object_id": "2", "names": ["horse"], "name": "horse", "attributes": ["brown"],
                "attributes_norm": ["brown"], "merged_object_ids": [], "x": 0, "y": 0, "w": 400, "h": 200}]
    record = {"source": "gqa", "image_id": "n12.3", "width": 400, "height": 200, "coco_id": None,
              "flickr_id": None, "objects": objects, "regions": [],
              "relations": [{"relation_id": None, "subject_id": "1", "predicate_raw": "riding",
                             "predicate": "riding", "object_id": "2"}]}

    class Vocab:
        def id(self, p):
            return 3

    ex = extract(record, Vocab())
    sample = build_sample(record, ex, verbalise(ex.triplets, VSGConfig(), "gqa", "n12.3"), width=200, height=100,
                          scale=0.5)
    assert list(validator("sample").iter_errors(sample)) == []
    assert sample["key"] == "gqa-n12_3" == sample_key("gqa", "n12.3")
    [triplet] = sample["triplets"]
    assert triplet["subject_box"] == [50, 25, 100, 50] and triplet["subject_box_norm"] == [0.25, 0.25, 0.5, 0.5]
    assert triplet["relation_id"] == 3 and sample["vsg"] == ["man riding horse"]
    bad = dict(sample, key="gqa-n12.3")
    assert list(validator("sample").iter_errors(bad))


_VALUE = st.one_of(st.integers(-(2**40), 2**40), st.floats(allow_nan=False, allow_infinity=False, width=32))


@given(st.tuples(_VALUE, _VALUE, _VALUE, _VALUE), st.integers(1, 20_000), st.integers(1, 20_000))
def test_normalised_boxes_are_the_clamped_and_rounded_values(box, width, height):
    """``_normalised`` written out with comparisons gives the bytes of its definition through min, max and round."""
    x, y, w, h = box
    x0, y0 = min(max(x / width, 0.0), 1.0), min(max(y / height, 0.0), 1.0)
    expected = [round(v * 1e6) / 1e6 for v in (x0, y0, min(w / width, 1.0 - x0), min(h / height, 1.0 - y0))]
    assert orjson.dumps(_normalised(box, width, height)) == orjson.dumps(expected)
