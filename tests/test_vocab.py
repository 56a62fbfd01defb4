"""Relation vocabulary: ids by count then string, modes, excluded counts, relations.json, ``sgv vocab``."""

from __future__ import annotations

import json
from collections import Counter

import fsspec
import pytest

from sgverbalise.cli.main import main
from sgverbalise.normalise import Normaliser
from sgverbalise.schemas import validator
from sgverbalise.vocab import RelationVocab, count_predicates, vocabulary_sources

COUNTS = {"near": 3, "on": 5, "by": 3, "has": 5, "of": 1}


def test_ids_by_count_then_string() -> None:
    v = RelationVocab.from_counts(COUNTS)
    assert v.predicates == ["has", "on", "by", "near", "of"]
    assert [v.id(p) for p in v.predicates] == [0, 1, 2, 3, 4]
    assert v.id("under") is None
    assert "by" in v and "under" not in v and len(v) == 5
    assert v.predicate(2) == "by" and v.count("has") == 5 and v.count("under") is None
    assert v.excluded == {}
    # The same counts in another insertion order give the same vocabulary, byte for byte.
    assert RelationVocab.from_counts(dict(reversed(COUNTS.items()))).dumps() == v.dumps()


@pytest.mark.parametrize(
    ("kwargs", "kept", "excluded"),
    [
        ({"mode": "all"}, ["has", "on", "by", "near", "of"], {}),
        ({"mode": "top_k", "top_k": 2}, ["has", "on"], {"by": 3, "near": 3, "of": 1}),
        ({"mode": "top_k", "top_k": 3}, ["has", "on", "by"], {"near": 3, "of": 1}),  # tie broken by string
        ({"mode": "top_k", "top_k": 50}, ["has", "on", "by", "near", "of"], {}),
        ({"mode": "min_count", "min_count": 3}, ["has", "on", "by", "near"], {"of": 1}),
        ({"mode": "min_count", "min_count": 6}, [], {"by": 3, "has": 5, "near": 3, "of": 1, "on": 5}),
    ],
)
def test_modes_and_excluded(kwargs: dict, kept: list[str], excluded: dict) -> None:
    v = RelationVocab.from_counts(COUNTS, **kwargs)
    assert v.predicates == kept
    assert v.excluded == excluded
    assert list(v.excluded) == sorted(v.excluded)
    doc = v.to_json()
    validator("relations").validate(doc)
    assert doc["mode"]["name"] == kwargs["mode"]
    assert doc["mode"]["top_k"] == kwargs.get("top_k")
    assert doc["mode"]["min_count"] == kwargs.get("min_count")


LEFT_OUT = {"on": 2, "under": 4, "of": 7, "beside": 1, "near": 9}  # predicates of a source left out


@pytest.mark.parametrize("kwargs", [{"mode": "all"}, {"mode": "top_k", "top_k": 2},
                                    {"mode": "min_count", "min_count": 3}, {"mode": "min_count", "min_count": 6}])
def test_left_out_counts_added_later_give_the_vocabulary_counted_with_them(kwargs: dict) -> None:
    # the shard job counts a left-out source's predicates while it makes the samples, after the vocabulary:
    # merged then, relations.json must be what counting them beforehand (as excluded) gives
    beforehand = RelationVocab.from_counts(COUNTS, sources=["gqa"], **kwargs,
                                           excluded={p: n for p, n in LEFT_OUT.items() if p not in COUNTS})
    later = RelationVocab.from_counts(COUNTS, sources=["gqa"], **kwargs).with_left_out(LEFT_OUT)
    assert later.dumps() == beforehand.dumps()
    # "on" is a counted predicate: its left-out count never enters (dropped by the mode, it keeps its own)
    assert later.excluded["under"] == 4 and later.excluded.get("on") in (None, COUNTS["on"])


def test_excluded_given_by_the_caller_is_merged() -> None:
    v = RelationVocab.from_counts(
        COUNTS, mode="top_k", top_k=2, sources=["gqa"], excluded={"of": 4, "has": 9, "under": 2}
    )
    assert v.excluded == {"by": 3, "near": 3, "of": 5, "under": 2}  # "has" is in the vocabulary
    assert v.mode["sources"] == ["gqa"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "most"},
        {"mode": "top_k"},
        {"mode": "top_k", "top_k": 0},
        {"mode": "min_count", "min_count": 0},
    ],
)
def test_bad_modes(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        RelationVocab.from_counts(COUNTS, **kwargs)


def test_bad_counts() -> None:
    with pytest.raises(ValueError):
        RelationVocab.from_counts({"": 3})
    with pytest.raises(ValueError):
        RelationVocab.from_counts({"on": -1})
    with pytest.raises(ValueError):
        RelationVocab([("on", 1), ("has", 5)])  # not ranked


def test_json_round_trip_and_deterministic_save(tmp_path) -> None:
    v = RelationVocab.from_counts(
        {**COUNTS, "caf\u00e9 by": 2}, mode="min_count", min_count=2, normalise={"lemmatize": False}
    )
    assert RelationVocab.from_json(v.to_json()) == v
    a, b = tmp_path / "a" / "relations.json", tmp_path / "b.json"
    v.save(str(a))
    v.save(str(b))
    v.save(str(b))  # over an existing file
    data = a.read_bytes()
    assert data == b.read_bytes()
    assert data.endswith(b"}\n") and not data.endswith(b"\n\n")
    assert data == json.dumps(json.loads(data), sort_keys=True, indent=2, ensure_ascii=False).encode() + b"\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b.json", "relations.json"]  # no temp files
    doc = json.loads(data)
    validator("relations").validate(doc)
    assert [r["predicate"] for r in doc["relations"]] == ["has", "on", "by", "near", "caf\u00e9 by"]
    assert doc["excluded"] == {"of": 1}
    assert doc["mode"]["normalise"] == {"lemmatize": False}
    loaded = RelationVocab.load(str(a))
    assert loaded == v and loaded.id("caf\u00e9 by") == 4
    assert RelationVocab.load(f"file://{b}") == v


def test_save_and_load_through_fsspec_url() -> None:
    v = RelationVocab.from_counts(COUNTS, mode="top_k", top_k=1)
    v.save("memory://vocab-test/relations.json")
    with fsspec.open("memory://vocab-test/relations.json", "rb") as f:
        assert f.read() == v.dumps()
    assert RelationVocab.load("memory://vocab-test/relations.json") == v


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("relations"),
        lambda d: d["relations"][0].update(id=-1),
        lambda d: d["relations"][0].update(predicate=""),
        lambda d: d["relations"][0].update(extra=1),
        lambda d: d["relations"].reverse(),  # ids out of order
        lambda d: d["relations"][1].update(count=9),  # counts no longer ranked
        lambda d: d["relations"][1].update(predicate="has"),  # duplicate
    ],
)
def test_from_json_rejects_bad_documents(mutate) -> None:
    doc = RelationVocab.from_counts(COUNTS).to_json()
    mutate(doc)
    with pytest.raises(ValueError):
        RelationVocab.from_json(doc)


def test_count_predicates() -> None:
    records = [
        {"image_id": "1", "relations": [{"predicate": "on"}, {"predicate": ""}, {"predicate": "on"}]},
        {"image_id": "2", "relations": []},
        {"image_id": "3", "relations": [{"predicate": None, "predicate_raw": " ON. "}]},
    ]
    assert count_predicates(records, Normaliser()) == Counter({"on": 3})
    with pytest.raises(ValueError):
        count_predicates(records)
    assert count_predicates(records[:2]) == Counter({"on": 2})


# -- sgv vocab ----------


def _gqa_predicates(gqa_sample) -> Counter:
    graphs = json.loads((gqa_sample / "train_sceneGraphs.json").read_text(encoding="utf-8"))
    n = Normaliser()
    preds = (
        n.predicate(r["name"]) for g in graphs.values() for o in g["objects"].values() for r in o["relations"]
    )
    return Counter(p for p in preds if p)


def test_command_on_real_gqa(gqa_sample, tmp_path, capsys) -> None:
    out = tmp_path / "relations.json"
    gqa = str(gqa_sample / "train_sceneGraphs.json")
    assert main(["vocab", "--gqa", gqa, "--out", str(out)]) == 0
    expected = _gqa_predicates(gqa_sample)
    v = RelationVocab.load(str(out))
    assert len(v) == len(expected)
    assert {p: v.count(p) for p in v.predicates} == dict(expected)
    assert v.predicates[0] == expected.most_common(1)[0][0]
    assert v.mode["sources"] == ["gqa"] and v.mode["normalise"]["lemmatize"] is False
    assert f"vocab: {len(expected)} predicates" in capsys.readouterr().out
    first = out.read_bytes()
    assert main(["vocab", "--gqa", gqa, "--out", str(out)]) == 0
    assert out.read_bytes() == first


def test_command_vg_and_gqa_sources(gqa_sample, vg_sample, tmp_path) -> None:
    gqa = str(gqa_sample / "train_sceneGraphs.json")
    gqa_preds = _gqa_predicates(gqa_sample)
    out = tmp_path / "all.json"
    assert main(["vocab", "--vg", str(vg_sample), "--gqa", gqa, "--out", str(out)]) == 0
    v = RelationVocab.load(str(out))
    assert set(v.predicates) == set(gqa_preds)  # mode all with GQA: the GQA predicates alone
    assert v.excluded and not set(v.excluded) & set(gqa_preds)  # VG-only predicates, with their counts
    assert all(c > 0 for c in v.excluded.values())

    both = tmp_path / "both.json"
    argv = ["vocab", "--vg", str(vg_sample), "--gqa", gqa, "--out", str(both), "--mode", "min_count"]
    assert main([*argv, "--min-count", "2"]) == 0
    w = RelationVocab.load(str(both))
    assert w.mode["sources"] == ["gqa", "vg"]
    assert set(w.predicates) - set(gqa_preds)  # VG predicates count too
    assert all(w.count(p) >= 2 for p in w.predicates) and all(c < 2 for c in w.excluded.values())

    top = tmp_path / "top.json"
    argv = ["vocab", "--gqa", gqa, "--out", str(top), "--mode", "top_k", "--top-k", "5", "--lemmatize"]
    assert main(argv) == 0
    t = RelationVocab.load(str(top))
    assert len(t) == 5 and t.mode["normalise"]["lemmatize"] is True
    assert "to the leave of" in t  # the lookup pitfall, kept visible


def test_command_with_aliases_and_errors(gqa_sample, vg_sample, tmp_path, capsys) -> None:
    gqa = str(gqa_sample / "train_sceneGraphs.json")
    out = tmp_path / "r.json"
    aliases = str(vg_sample / "relationship_alias.txt")
    assert main(["vocab", "--gqa", gqa, "--out", str(out), "--relation-aliases", aliases]) == 0
    v = RelationVocab.load(str(out))
    assert "next to" not in v and "near" in v and "inside" not in v
    assert len(v) < len(_gqa_predicates(gqa_sample))
    assert main(["vocab", "--out", str(tmp_path / "x.json")]) == 2
    assert main(["vocab", "--gqa", gqa, "--sources", "vg", "--out", str(tmp_path / "y.json")]) == 2
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "y.json").exists()
    capsys.readouterr()


@pytest.mark.parametrize(
    ("choice", "mode", "given", "expected"),
    [
        ("auto", "all", ["vg", "gqa"], ["gqa"]),
        ("auto", "all", ["vg"], ["vg"]),
        ("auto", "top_k", ["vg", "gqa"], ["gqa", "vg"]),
        ("auto", "min_count", ["gqa"], ["gqa"]),
        ("all", "all", ["vg", "gqa"], ["gqa", "vg"]),
        ("vg", "all", ["vg", "gqa"], ["vg"]),
    ],
)
def test_vocabulary_sources(choice: str, mode: str, given: list[str], expected: list[str]) -> None:
    assert vocabulary_sources(choice, mode, given) == expected


def test_vocabulary_sources_needs_the_chosen_input() -> None:
    with pytest.raises(ValueError):
        vocabulary_sources("vg", "all", ["gqa"])
    with pytest.raises(ValueError):
        vocabulary_sources("all", "all", [])
