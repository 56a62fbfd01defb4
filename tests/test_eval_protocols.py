"""The evaluation protocols on hand-computed cases: VSR's >= rule and baseline, VALSE's two averages, the
official SVO-Probes metric beside the pairwise rule, Winoground, retrieval re-ranking per model family,
pre_caption, the stratified --limit sample, bootstrap intervals and the paired comparison."""

from __future__ import annotations

import numpy as np
import pytest

from sgverbalise.training.eval import metrics, retrieval
from sgverbalise.training.eval.benchmarks import ValseExample, vsr_category
from sgverbalise.training.eval.sampling import sample_indices, stratified_sample
from sgverbalise.training.eval.tables import (
    retrieval_table,
    suite_tables,
    svo_table,
    valse_table,
    vsr_table,
    winoground_outcomes,
)
from sgverbalise.training.eval.uncertainty import bootstrap, compare


def _vsr(rows):
    return [
        {"id": str(i), "split": "dev", "label": y, "relation": rel, "score": p}
        for i, (p, y, rel) in enumerate(rows)
    ]


def test_vsr_counts_a_true_caption_right_at_one_half_and_prints_the_majority_baseline():
    table = vsr_table(_vsr([(0.5, 1, "on"), (0.5, 0, "on"), (0.49, 0, "near"), (0.7, 1, "under")]), "dev")
    figures = table.figures
    # 0.5 on a true caption is right (>=), on a false one wrong (not < 0.5)
    assert figures["overall"] == 75.0
    assert figures["topological"] == 50.0 and figures["proximity"] == 100.0 and figures["projective"] == 100.0
    assert table.details["baseline"] == {"majority_class": 1, "accuracy": 50.0}
    assert table.details["per_relation"]["on"] == 50.0
    assert vsr_table(_vsr([(0.5, 1, "on")]), "dev", threshold=0.6).figures["overall"] == 0.0
    skewed = vsr_table(_vsr([(0.9, 0, "on"), (0.1, 0, "on"), (0.2, 1, "on")]), "test")
    assert skewed.details["baseline"] == {"majority_class": 0, "accuracy": pytest.approx(200 / 3)}


def test_vsr_categories_follow_the_paper_table():
    assert vsr_category("on top of") == "projective"
    assert vsr_category("At the edge of") == "adjacency"
    assert vsr_category("among") == "unallocated"
    assert vsr_category("at the far end of") == "other"


def _valse(rows):
    return [
        {"id": f"{ins}/{i}", "instrument": ins, "piece": piece, "caption": c, "foil": f}
        for i, (ins, piece, c, f) in enumerate(rows)
    ]


def test_valse_reports_both_averages_labelled_and_the_pieces():
    rows = _valse(
        [
            ("counting-hard", "counting", 0.9, 0.1),
            ("counting-hard", "counting", 0.1, 0.2),
            ("counting-hard", "counting", 0.8, 0.7),
            ("counting-small-quant", "counting", 0.5, 0.5),  # a tie is not a win
            ("existence", "existence", 0.6, 0.4),
        ]
    )
    table = valse_table(rows)
    f = table.figures
    assert f["overall"] == 60.0  # 3 of 5, example-weighted
    assert f["instrument_mean"] == pytest.approx((200 / 3 + 0 + 100) / 3)
    assert "companion" in table.labels["overall"] and "VALSE paper" in table.labels["instrument_mean"]
    assert table.details["pieces"] == {"counting": 50.0, "existence": 100.0}
    assert ValseExample("counting-hard", "k", ("x",), "a", "b").piece == "counting"


def _svo(rows):
    return [
        {"id": str(i), "sentence": s, "pos_image": pi, "neg_image": ni, "negated": neg, "pos": p, "neg": n}
        for i, (s, pi, ni, neg, p, n) in enumerate(rows)
    ]


def test_svo_official_metric_deduplicates_and_counts_single_negation_rows_only():
    rows = _svo(
        [
            ("dog runs", "p1", "n1", "subj", 0.9, 0.2),  # pos match, neg no match; pairwise right
            ("dog runs", "p1", "n2", "subj", 0.9, 0.7),  # same positive pair (deduplicated); neg says match
            ("cat sits", "p2", "n3", "verb", 0.4, 0.1),  # pos misses (0.4), neg right; pairwise right
            ("car goes", "p3", "n4", "mixed", 0.1, 0.9),  # not single-negation: only in pairwise
        ]
    )
    table = svo_table(rows)
    f = table.figures
    assert f["pos"] == 50.0  # distinct positives (dog runs|p1), (cat sits|p2): one right
    assert f["neg"] == pytest.approx(200 / 3)  # n1, n2, n3: n2 wrong
    assert f["overall"] == pytest.approx((50 + 200 / 3) / 2)
    assert (f["subj_pos"], f["subj_neg"], f["verb_pos"], f["verb_neg"]) == (100.0, 50.0, 0.0, 100.0)
    assert f["pairwise"] == 75.0  # 3 of 4 rows, the mixed row included
    assert table.details["pairwise_by_negated"]["mixed"] == 0.0
    assert table.n == {"rows": 4, "pos": 2, "pos_part": 2, "neg": 3, "neg_part": 3}
    itc_only = suite_tables("svo", [r | {"mode": "itc"} for r in rows])[0].figures
    assert set(itc_only) == {"pairwise"}  # the official metric needs p(match)


def test_winoground_text_image_group():
    s = np.array(
        [
            [[0.9, 0.1], [0.2, 0.8]],  # all
            [[0.6, 0.5], [0.7, 0.9]],  # image only
            [[0.5, 0.6], [0.1, 0.9]],  # text only
            [[0.5, 0.5], [0.5, 0.5]],  # ties fail
        ]
    )
    out = winoground_outcomes(s)
    assert out["text"].tolist() == [True, False, True, False]
    assert out["image"].tolist() == [True, True, False, False]
    assert out["group"].tolist() == [True, False, False, False]


def test_winoground_breakdown_by_tag():
    rows = [
        {"id": "0", "scores": [[0.9, 0.1], [0.2, 0.8]], "collapsed_tag": "Object", "num_main_preds": "1"},
        {"id": "1", "scores": [[0.6, 0.5], [0.7, 0.9]], "collapsed_tag": "Relation", "num_main_preds": "1",
         "secondary_tag": "Symbolic, Pragmatics"},
    ]
    (table,) = suite_tables("winoground", rows)
    tags = table.details["by_tag"]
    assert tags["collapsed_tag"]["Object"] == {"text": 100.0, "image": 100.0, "group": 100.0, "n": 1}
    assert tags["num_main_preds"]["1"]["group"] == 50.0
    # the exact value, as Winoground's statistics script and the companion study filter ...
    assert set(tags["secondary_tag"]) == {"Symbolic, Pragmatics"}
    # ... and every value of the comma-separated tag under its own name
    assert tags["secondary_tag_any"]["Pragmatics"]["image"] == 100.0 and tags["secondary_tag_any"]["Symbolic"]["n"] == 1


def test_ranks_with_ties_count_against_the_model():
    assert metrics.best_rank(np.array([0.5, 0.5, 0.2]), [1]) == 1
    assert metrics.best_rank(np.array([0.3, 0.1, 0.2, 0.4]), [1, 2]) == 2
    assert metrics.best_rank(np.full(4, 0.7), [0]) == 3  # a constant scorer gets no credit


def test_retrieval_ranks_and_recall_small_matrix():
    # 2 images, 3 texts: texts 0, 1 describe image 0; text 2 describes image 1.
    sim = np.array([[0.1, 0.9, 0.3], [0.8, 0.2, 0.3]])
    found = retrieval.query_ranks(sim, [0, 0, 1], None, k=2, rule="replace")
    assert found == {"itc": {"tr": [0, 1], "ir": [1, 0, 1]}}
    recs = retrieval.records("coco", found, ["a.jpg", "b.jpg"], ["0", "1", "2"], "itc")
    f = retrieval_table(recs, "coco").figures
    assert (f["tr_r1"], f["tr_r5"], f["ir_r1"]) == (50.0, 100.0, pytest.approx(100 / 3))
    assert f["r_mean"] == pytest.approx(np.mean([50, 100, 100, 100 / 3, 100, 100]))


def test_reranking_rules_albef_replaces_blip_adds():
    itc = np.array([[0.9, 0.8, 0.1]])
    logit = np.array([[1.0, 1.05, np.nan]])
    mask = metrics.top_k_mask(itc, 2, axis=1)
    assert mask.tolist() == [[True, True, False]]
    # ALBEF: the logit alone reorders the top 2; BLIP: logit + ITC keeps 0 first (1.9 > 1.85)
    assert np.argsort(-retrieval.reranked(itc, logit, mask, "replace")[0]).tolist() == [1, 0, 2]
    assert np.argsort(-retrieval.reranked(itc, logit, mask, "add")[0]).tolist() == [0, 1, 2]
    # negative logits still rank the top k above every other candidate
    low = retrieval.reranked(itc, np.array([[-9.0, -8.0, np.nan]]), mask, "replace")
    assert np.argsort(-low[0]).tolist() == [1, 0, 2]
    assert metrics.top_k_mask(np.array([[0.5, 0.5, 0.5]]), 1, axis=1).tolist() == [[True, False, False]]


def test_k_per_suite_and_pre_caption():
    assert retrieval.K_TEST == {"coco": 256, "coco_dev": 256, "flickr": 128}
    assert retrieval.pre_caption("A Man's  dog-toy, on the \"mat\"!\n") == "a mans dog toy on the mat"
    assert retrieval.pre_caption(" ".join(f"w{i}" for i in range(40))).split() == [f"w{i}" for i in range(30)]


def test_limit_is_a_seeded_stratified_sample():
    examples = [ValseExample(ins, str(i), ("x",), "c", "f") for ins in ("a", "b") for i in range(10)]
    examples += [ValseExample("c", "0", ("x",), "c", "f")]
    picked = stratified_sample(examples, 3, seed=1)
    assert [sum(e.instrument == ins for e in picked) for ins in "abc"] == [3, 3, 1]
    assert picked == stratified_sample(examples, 3, seed=1)
    assert picked != stratified_sample(examples, 3, seed=2)
    assert picked == sorted(picked, key=examples.index)  # original order kept
    assert picked[:3] != examples[:3] or picked[3:6] != examples[10:13]
    assert stratified_sample(examples, None) is examples
    assert sample_indices(10, 4, seed=0) == sorted(sample_indices(10, 4, seed=0)) and len(sample_indices(10, 4)) == 4


def test_bootstrap_interval_contains_the_figure_and_shrinks_with_more_examples():
    rng = np.random.default_rng(3)
    small = valse_table(_valse([("x", "x", float(v), 0.5) for v in rng.random(50)]))
    large = valse_table(_valse([("x", "x", float(v), 0.5) for v in rng.random(2000)]))
    for table in (small, large):
        lo, hi = bootstrap(table, 300)["overall"]
        assert lo <= table.figures["overall"] <= hi
    width = [np.diff(bootstrap(t, 300)["overall"])[0] for t in (small, large)]
    assert width[1] < width[0] / 3
    assert bootstrap(small, 100, seed=5) == bootstrap(small, 100, seed=5)


def test_paired_comparison_detects_a_real_difference_and_not_a_null_one():
    rng = np.random.default_rng(0)
    caps = rng.random(400)
    base = _valse([("x", "x", float(c), 0.5) for c in caps])
    better = [r | {"caption": r["caption"] + 0.2} for r in base]  # more captions above the foil
    same = valse_table(base)
    found = compare(valse_table(better), same, samples=300)["figures"]["overall"]
    assert found["diff"] > 0 and found["ci95"][0] > 0 and found["p"] < 0.01
    null = compare(same, valse_table(base), samples=300)
    assert null["figures"]["overall"]["diff"] == 0.0 and null["figures"]["overall"]["p"] == 1.0
    # only the examples both files have are compared
    partial = compare(valse_table(better[:300]), same, samples=50)
    assert partial["units"]["pairs"] == {"common": 300, "only_a": 0, "only_b": 100}


def test_vsr_release_named_from_the_split_files_row_counts():
    from sgverbalise.training.eval.runner import vsr_release

    assert "companion" in vsr_release({"dev": 1012, "test": 2024})["release"]
    assert "current" in vsr_release({"dev": 1097, "test": 2195})["release"]
    assert vsr_release({"dev": 1097})["release"] == "unknown"
