"""Relation foils (``sgverbalise.foils``): the table of opposites, triplet, VSG and caption foils, their truth
in the shape scenes, and the experiment's foil configs."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from sgverbalise import foils
from sgverbalise.foils import (
    OPPOSITE,
    SYMMETRIC,
    foil_options,
    foil_triplet,
    parse_segment,
    vsg_foil,
)
from sgverbalise.synth import PREDICATES, make_scene, relation_between
from sgverbalise.verbalise import triplet_text

ROOT = Path(__file__).resolve().parents[1]


def _t(subject: str, predicate: str, obj: str) -> dict:
    return {"subject": subject, "predicate": predicate, "object": obj}


# ------------------------------------------------------------------------------------------------ the table


@pytest.mark.parametrize(
    ("triplet", "expected"),
    [
        (("cup", "on", "table"), [("table", "on", "cup"), ("cup", "under", "table")]),
        (("red circle", "left of", "blue square"),
         [("blue square", "left of", "red circle"), ("red circle", "right of", "blue square")]),
        (("lamp", "to the left of", "bed"), [("bed", "to the left of", "lamp"), ("lamp", "to the right of", "bed")]),
        (("car", "in front of", "house"), [("house", "in front of", "car"), ("car", "behind", "house")]),
        (("dog", "bigger than", "cat"), [("cat", "bigger than", "dog"), ("dog", "smaller than", "cat")]),
        (("ball", "inside", "box"), [("box", "inside", "ball"), ("ball", "on", "box")]),
        (("man", "wearing", "hat"), [("hat", "wearing", "man")]),  # asymmetric, no opposite: the swap only
        (("tree", "next to", "house"), [("tree", "above", "house")]),  # symmetric, with a contradiction
        (("tree", "near", "house"), [("tree", "far from", "house")]),
        (("tree", "by", "house"), []),  # symmetric, no contradiction: no foil
        (("man", "with", "umbrella"), []),
        (("window", "left of", "window"), [("window", "right of", "window")]),  # same text: no swap
        (("shirt", "Left  Of", "man"), [("man", "Left  Of", "shirt"), ("shirt", "right of", "man")]),
    ],
)
def test_foil_options_by_hand(triplet, expected):
    assert foil_options(*triplet) == expected


def test_converses_are_pairs_and_symmetric_predicates_are_not_swapped():
    pairs = [("left of", "right of"), ("to the left of", "to the right of"), ("above", "below"),
             ("in front of", "behind"), ("bigger than", "smaller than"), ("taller than", "shorter than"),
             ("higher than", "lower than"), ("on", "under"), ("near", "far from")]
    for a, b in pairs:
        assert OPPOSITE[a] == b and OPPOSITE[b] == a
    assert OPPOSITE["inside"] == "on" and OPPOSITE["next to"] == "above"
    assert all(p == foils.canonical(p) for p in [*OPPOSITE, *OPPOSITE.values(), *SYMMETRIC])
    for predicate in SYMMETRIC:
        assert all(f[0] == "a" for f in foil_options("a", predicate, "b"))


def test_the_experiment_probes_use_the_same_table():
    from sgverbalise.training.experiment import heldout

    # the probes' table, as it was written before the domain table existed: the probes' files stay the same
    assert heldout.OPPOSITE == {
        "left of": "right of", "right of": "left of", "above": "below", "below": "above", "on": "under",
        "under": "on", "bigger than": "smaller than", "smaller than": "bigger than", "inside": "on",
        "next to": "above",
    }
    assert heldout.OPPOSITE == {p: OPPOSITE[p] for p in PREDICATES}
    assert heldout.SYMMETRIC == {"next to"}
    rng_a, rng_b = random.Random(5), random.Random(5)
    for relation in [(0, "left of", 1), (2, "next to", 3), (1, "inside", 0)] * 5:
        assert heldout.false_variant(rng_a, relation) == foil_triplet(*relation, rng_b)


def test_foil_triplet_is_deterministic_and_draws_both_kinds():
    draws = [foil_triplet("cup", "on", "table", random.Random(seed)) for seed in range(40)]
    assert set(draws) == {("table", "on", "cup"), ("cup", "under", "table")}
    assert draws == [foil_triplet("cup", "on", "table", random.Random(seed)) for seed in range(40)]
    rng = random.Random(0)
    state = rng.getstate()
    assert foil_triplet("tree", "next to", "house", rng) == ("tree", "above", "house")
    assert rng.getstate() == state  # one option: no draw
    assert foil_triplet("tree", "by", "house", rng) is None


def test_foils_are_false_in_the_synthetic_scenes():
    # the ground truth of the shape scenes: at most one predicate holds for an ordered pair (relation_between)
    rng = random.Random(11)
    seen: dict[str, int] = {}
    for _ in range(300):
        scene = make_scene(rng, 96)
        for s, predicate, o in scene.relations:
            assert relation_between(scene.objects[s], scene.objects[o], 96) == predicate  # the statement is true
            options = foil_options(s, predicate, o)
            assert options, predicate
            for fs, fp, fo in options:
                assert relation_between(scene.objects[fs], scene.objects[fo], 96) != fp
                seen[predicate] = seen.get(predicate, 0) + 1
    assert set(seen) == set(PREDICATES)


# ------------------------------------------------------------------------------------------------ VSG foils

TRIPLETS = [
    _t("circle", "left of", "square"),
    _t("square", "above", "triangle"),
    _t("triangle", "next to", "diamond"),
]


def _segments(caption: str) -> list[str]:
    return caption.split(" [SEP] ")


def test_vsg_foil_replaces_exactly_one_segment_by_its_foil():
    attrs = [{"subject_attributes": ["red"], "object_attributes": ["blue"]},
             {"subject_attributes": ["blue"], "object_attributes": ["green"]},
             {"subject_attributes": ["green"], "object_attributes": ["pink"]}]
    caption = " [SEP] ".join(triplet_text(t | a, attributes=1) for t, a in zip(TRIPLETS, attrs, strict=True))
    assert caption == ("red circle left of blue square [SEP] blue square above green triangle "
                       "[SEP] green triangle next to pink diamond")
    made = set()
    for seed in range(60):
        foil = vsg_foil(caption, TRIPLETS, random.Random(seed))
        assert foil == vsg_foil(caption, TRIPLETS, random.Random(seed))  # deterministic given the rng
        old, new = _segments(caption), _segments(foil)
        assert len(new) == len(old)
        changed = [i for i in range(len(old)) if old[i] != new[i]]
        assert len(changed) == 1
        (i,) = changed
        assert tuple(new[i].split(" ")) != tuple(old[i].split(" "))
        assert new[i] in {" ".join(f) for f in foil_options(*parse_segment(old[i], TRIPLETS))}
        made.add(new[i])
    assert made == {
        "blue square left of red circle", "red circle right of blue square",
        "green triangle above blue square", "blue square below green triangle",
        "green triangle above pink diamond",
    }


def test_vsg_foil_skips_segments_without_a_foil_and_foils_the_sample_states():
    # "a looking at b" and "b looking at a" are both true: the swap of either is no foil; "by": none at all
    triplets = [_t("man", "looking at", "woman"), _t("woman", "looking at", "man"), _t("cat", "by", "dog")]
    caption = "man looking at woman [SEP] woman looking at man [SEP] cat by dog"
    assert vsg_foil(caption, triplets, random.Random(0)) is None
    caption = "man looking at woman [SEP] cat by dog [SEP] cup on table"
    triplets = [*triplets, _t("cup", "on", "table")]
    for seed in range(20):
        foil = vsg_foil(caption, triplets, random.Random(seed))
        assert foil in {"man looking at woman [SEP] cat by dog [SEP] table on cup",
                        "man looking at woman [SEP] cat by dog [SEP] cup under table"}
    assert vsg_foil("hat on man", [], random.Random(0)) is None  # no triplets to read it with
    # a segment no triplet writes is left alone, and counts as stated: "b looking at a" is no foil of "a ... b"
    caption = "man looking at woman [SEP] woman looking at man"
    assert vsg_foil(caption, [_t("man", "looking at", "woman")], random.Random(0)) is None


def test_parse_segment_reads_names_that_contain_the_predicate():
    triplets = [_t("man on left", "on", "horse")]
    assert parse_segment("tall man on left on horse", triplets) == ("tall man on left", "on", "horse")
    assert parse_segment("horse on man", triplets) is None


# -------------------------------------------------------------------------------------------------- configs


@pytest.mark.parametrize(("name", "base"), [("realbef-foils", "realbef"), ("upper", "albef")])
def test_foil_configs_are_their_base_configs_plus_foils(name, base):
    pytest.importorskip("torch")
    from sgverbalise.training.config import load_config

    cfg = load_config(ROOT / "configs" / "experiment" / f"{name}.yaml").to_dict()
    ref = load_config(ROOT / "configs" / "experiment" / f"{base}.yaml").to_dict()
    assert cfg["data"].pop("foils") is True and ref["data"].pop("foils") is False
    if name == "upper":
        assert cfg["data"]["sources"]["caption"][0]["urls"] == "out/experiment/data/web-statements"
        cfg["data"].pop("sources"), ref["data"].pop("sources")
    assert cfg["train"].pop("out") == f"out/experiment/runs/{name}-seed0"
    ref["train"].pop("out")
    assert cfg == ref
