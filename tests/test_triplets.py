"""Validation and extraction of triplets: every relation ends as an MRC triplet or a reject with its reason."""

from __future__ import annotations

import json
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from sgverbalise.schemas import REJECT_REASONS
from sgverbalise.triplets import _box, _exact_size, extract


class Vocab:
    def __init__(self, predicates):
        self.ids = {p: i for i, p in enumerate(predicates)}

    def id(self, predicate):
        return self.ids.get(predicate)


def obj(oid, name, x=0, y=0, w=10, h=10, merged=(), attrs=()):
    return {"object_id": oid, "names": [name], "name": name, "attributes": list(attrs),
            "attributes_norm": list(attrs), "merged_object_ids": list(merged), "x": x, "y": y, "w": w, "h": h}


def rel(s, p, o, rid=None):
    return {"relation_id": rid, "subject_id": s, "predicate_raw": p.upper(), "predicate": p, "object_id": o}


def record(objects, relations, width=100, height=100, regions=()):
    return {"source": "vg", "image_id": "7", "width": width, "height": height, "objects": objects,
            "relations": relations, "regions": list(regions)}


def reasons(extraction, kind=None):
    return Counter(r["reason"] for r in extraction.rejects if kind is None or r["kind"] == kind)


def test_each_rule_gives_its_reason():
    objects = [
        obj("1", "man", 10, 10, 20, 40),
        obj("2", "horse", 30, 40, 50, 40),
        obj("3", "", 0, 0, 5, 5),  # empty name
        obj("4", "kite", 0, 0, 0, 5),  # zero width
        obj("5", "moon", 200, 200, 10, 10),  # outside a 100x100 image
        obj("6", "hat", 90, 90, 30, 30),  # sticks out: clipped to 10x10
    ]
    relations = [
        rel("1", "riding", "2"),
        rel("1", "riding", "2"),  # duplicate
        rel("1", "near", "99"),  # unknown object
        rel("1", "holding", "4"),  # object with a bad box
        rel("5", "above", "1"),  # subject outside the image
        rel("3", "on", "2"),  # subject with an empty name
        rel("2", "near", "2"),  # self relation
        rel("1", "", "2"),  # empty predicate
        rel("6", "on", "1"),  # fine (clipped box)
        rel("2", "flying", "1"),  # valid but not in the vocabulary
    ]
    ex = extract(record(objects, relations), Vocab(["riding", "on", "near", "holding", "above"]))
    assert reasons(ex, "object") == Counter({"empty_name": 1, "bad_box": 1, "box_outside_image": 1})
    assert reasons(ex, "relation") == Counter(
        {"duplicate_triplet": 1, "unknown_object": 1, "bad_box": 1, "box_outside_image": 1, "empty_name": 2,
         "self_relation": 1, "out_of_vocabulary": 1}
    )
    assert [(t["subject"], t["predicate"], t["object"]) for t in ex.triplets] == [
        ("man", "riding", "horse"), ("hat", "on", "man"), ("horse", "flying", "man")]
    assert [t["predicate"] for t in ex.mrc] == ["riding", "on"]
    assert ex.triplets[1]["subject_box"] == [90, 90, 10, 10]
    assert len(ex.mrc) + len([r for r in ex.rejects if r["kind"] == "relation"]) == len(relations)
    assert {r["reason"] for r in ex.rejects} <= set(REJECT_REASONS)


def test_merged_object_ids_resolve_to_the_kept_object():
    objects = [obj("10", "sidewalk", 0, 50, 100, 50, merged=["11"]), obj("12", "shade", 10, 60, 20, 20)]
    ex = extract(record(objects, [rel("12", "on", "11")]))
    assert [(t["subject"], t["object"], t["object_id"]) for t in ex.triplets] == [("shade", "sidewalk", "10")]
    assert ex.rejects == []


def test_no_graph_is_an_image_reject_and_sizes_unknown_skip_the_outside_check():
    ex = extract(record([], []))
    assert not ex.has_graph and reasons(ex, "image") == Counter({"no_graph": 1})
    ex = extract(record([obj("1", "tree", 5000, 5000, 10, 10)], [], width=None, height=None))
    assert ex.has_graph and ex.rejects == []


def test_regions_are_validated():
    regions = [{"region_id": "1", "phrase": "  a man   riding ", "x": 0, "y": 0, "w": 10, "h": 10},
               {"region_id": "2", "phrase": "", "x": 0, "y": 0, "w": 10, "h": 10},
               {"region_id": "3", "phrase": "x", "x": 0, "y": 0, "w": -1, "h": 10}]
    ex = extract(record([obj("1", "man")], [], regions=regions))
    assert [r["phrase"] for r in ex.regions] == ["a man riding"]
    assert reasons(ex, "region") == Counter({"empty_name": 1, "bad_box": 1})


ids = st.sampled_from(["1", "2", "3", "4", "9"])
boxes = st.tuples(st.integers(-50, 150), st.integers(-50, 150), st.integers(-5, 60), st.integers(-5, 60))


@given(
    objects=st.lists(st.tuples(ids, st.sampled_from(["", "man", "dog"]), boxes), max_size=6),
    relations=st.lists(st.tuples(ids, st.sampled_from(["", "on", "near", "xyz"]), ids), max_size=12),
)
def test_relations_read_equal_mrc_triplets_plus_relation_rejects(objects, relations):
    objs = {oid: obj(oid, name, *box) for oid, name, box in objects}  # ids unique within an image
    rels = [rel(s, p, o) for s, p, o in relations]
    ex = extract(record(list(objs.values()), rels), Vocab(["on", "near"]))
    relation_rejects = [r for r in ex.rejects if r["kind"] == "relation"]
    assert len(ex.mrc) + len(relation_rejects) == len(rels) == ex.num_relations
    assert len(ex.entities) + len([r for r in ex.rejects if r["kind"] == "object"]) == len(objs)


_COORD = st.one_of(st.integers(-(2**60), 2**60), st.floats(allow_nan=True, allow_infinity=True), st.booleans())
_SIZES = [(100, 80), (None, None), (0, 80), (100, None), (1, 1), (2**31 - 1, 3), (2**60, 5), (100.0, 80)]


@given(st.tuples(_COORD, _COORD, _COORD, _COORD), st.sampled_from(_SIZES))
def test_integer_boxes_are_clipped_as_through_floats(xywh, size) -> None:
    """``_box``'s integer arithmetic (taken when ``_exact_size`` allows) gives the bytes the float path gives."""
    item = dict(zip("xywh", xywh, strict=True))
    fast, slow = _box(item, *size, exact_size=_exact_size(*size)), _box(item, *size)
    assert json.dumps(fast) == json.dumps(slow)  # ints stay ints; the float path's may pass 64 bits
