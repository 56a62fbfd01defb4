"""What the experiment checks besides the probes' own figures: does ITM tell true pairs from shuffled ones, and
does it tell a true relation from its opposite in scenes like the training ones?

``itm_check`` scores every retrieval test image of the probes with its first caption (true pairs) and with
the first caption of the next image (shuffled pairs: a caption that names another scene's objects, a pair
whose caption happens to fit its image too is left out) and reports the mean p(match) of each and the AUC
(the probability that a true pair scores higher than a shuffled one; 50 = no separation). ``itc_retrieval``
reads the ITC-only retrieval figures a sweep step wrote (the headline's retrieval is ITC's top k re-ranked by
ITM, which is noise while ITM sits at its prior). ``relation_check`` asks the relation question without the held-out
colour/shape pairs: on fresh training-like scenes, does ITM score a true statement ("blue square left of cyan
diamond") above the same statement with the opposite predicate? Overall and per predicate, so a model that
learnt only a text prior (always "below" over "above", whatever the picture) shows as 0% and 100% per predicate.
``position_check`` asks whether the fusion knows where a named object is at all, the precondition of every
spatial relation: a ridge regression from the fused [CLS] of an object's name with the picture to the object's
centre, fitted on some fresh scenes and tested on others.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from sgverbalise.synth import render_scene
from sgverbalise.training.eval.scorefiles import read_project_file

from .heldout import MUTUAL, OPPOSITE, training_relation, training_scene

RELATION_CHECK_SEED = "sgv-experiment-relation-check"
POSITION_CHECK_SEED = "sgv-experiment-position-check"

KARPATHY = Path("coco") / "karpathy_test.json"
IMAGES = Path("images") / "coco"


def _objects(text: str) -> set[str]:
    return {part.strip() for part in text.replace(" and ", ", ").split(",") if part.strip()}


def auc(positives: list[float], negatives: list[float]) -> float:
    """P(positive > negative) in %, ties counting half (the Mann-Whitney statistic)."""
    if not positives or not negatives:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return 100.0 * wins / (len(positives) * len(negatives))


def itm_check(scorer: Any, probes: str | Path, limit: int | None = None) -> dict[str, float]:
    """Mean p(match) on true and on shuffled pairs of the retrieval test probe, their difference and AUC."""
    root = Path(probes)
    entries = [e for e in json.loads((root / KARPATHY).read_text())["images"] if e["split"] == "test"]
    entries = entries[:limit] if limit else entries
    images = [Image.open(root / IMAGES / e["filepath"] / e["filename"]).convert("RGB") for e in entries]
    captions = [e["sentences"][0]["raw"] for e in entries]
    shuffled = captions[1:] + captions[:1]
    keep = [i for i, text in enumerate(shuffled) if not _objects(text) <= _objects(captions[i])]
    true_p = scorer.itm(images, captions)
    false_p = scorer.itm([images[i] for i in keep], [shuffled[i] for i in keep])
    mean_true, mean_false = sum(true_p) / len(true_p), sum(false_p) / max(len(false_p), 1)
    return {"p_true": 100.0 * mean_true, "p_shuffled": 100.0 * mean_false,
            "separation": 100.0 * (mean_true - mean_false), "auc": auc(true_p, false_p), "pairs": len(keep)}


def itc_retrieval(step_results: str | Path, suite: str = "coco") -> dict[str, float]:
    """``{suite}_itc_tr1`` / ``_ir1``: R@1 of the ITC ranking alone, from a sweep step's results.json (the
    retrieval table's ``itc_tr_r1`` / ``itc_ir_r1``); empty when the suite did not run."""
    doc = json.loads(Path(step_results).read_text())
    res = doc["suites"].get(suite, {})
    figures = res.get("tables", {}).get(suite, {}).get("figures", {}) if res.get("status") == "ok" else {}
    if "itc_tr_r1" not in figures:
        return {}
    return {f"{suite}_itc_tr1": figures["itc_tr_r1"], f"{suite}_itc_ir1": figures["itc_ir_r1"]}


def vsr_auc(step_sweep: str | Path) -> dict[str, float]:
    """AUC of the VSR-style p(match) of true against false captions, per split, from a checkpoint's
    per-example scores (``scores/vsr.jsonl`` of its sweep folder): whether the scores rank true above false
    whatever their level. The published accuracy counts p(match) > 0.5 as "true"; an ITM trained with one
    positive to two or three negatives rarely says more than 0.5 about a statement, and then that accuracy is
    50 whatever the ranking."""
    by_split: dict[str, tuple[list[float], list[float]]] = {}
    for row in read_project_file(str(Path(step_sweep) / "scores" / "vsr.jsonl")):
        true, false = by_split.setdefault(row["split"], ([], []))
        (true if row["label"] == 1 else false).append(row["score"])
    return {f"vsr_{split}_auc": auc(true, false) for split, (true, false) in sorted(by_split.items())}


def relation_check(scorer: Any, n: int = 200, size: int = 128, seed: str = RELATION_CHECK_SEED) -> dict[str, Any]:
    """% of ``n`` fresh training-like scenes (no held-out pair) whose true statement of one of their relations gets
    a higher p(match) than the same statement with the opposite predicate; overall and per predicate. Scene
    ``i`` is about ``MUTUAL[i % 8]``, so a text prior scores 100 and 0 on the two words of a pair and 50 overall
    (when ``n`` is a multiple of 8)."""
    rng = random.Random(seed)
    images, true, false, predicates = [], [], [], []
    for i in range(n):
        scene, (s, predicate, o) = training_relation(rng, size, MUTUAL[i % len(MUTUAL)])
        images.append(render_scene(scene, noise_seed=rng.getrandbits(32)))
        true.append(scene.statement((s, predicate, o)))
        false.append(scene.statement((s, OPPOSITE[predicate], o)))
        predicates.append(predicate)
    wins = [t > f for t, f in zip(scorer.itm(images, true), scorer.itm(images, false), strict=True)]
    per: dict[str, list[bool]] = {}
    for predicate, win in zip(predicates, wins, strict=True):
        per.setdefault(predicate, []).append(win)
    return {"accuracy": 100.0 * sum(wins) / n, "n": n,
            "per_predicate": {p: {"accuracy": 100.0 * sum(v) / len(v), "n": len(v)} for p, v in sorted(per.items())}}


def position_check(
    scorer: Any, n: int = 600, test: int = 200, size: int = 128, seed: str = POSITION_CHECK_SEED,
    ridge: float = 1.0, batch: int = 50,
) -> dict[str, Any]:
    """Does the fusion know where a named object is? On ``n`` fresh training-like scenes, the fused [CLS] of one
    object's name ("blue square") with the picture (``scorer.fused_cls``); a ridge regression on standardised
    features, fitted on the first ``n - test``, predicts the object's centre (x and y as fractions of the side)
    on the other ``test``. Returns R^2 per axis (0: no better than the mean), the % of test objects put on the
    right side of the middle (x and y averaged) and that figure for always guessing the fitted set's commoner
    side (``majority``)."""
    if not 0 < test < n:
        raise ValueError(f"position_check: test must be between 0 and n ({test} of {n})")
    rng = random.Random(seed)
    images, names, centres = [], [], []
    for _ in range(n):
        scene = training_scene(rng, size)
        obj = rng.choice(scene.objects)
        images.append(render_scene(scene, noise_seed=rng.getrandbits(32)))
        names.append(obj.label)
        centres.append(((obj.x + obj.w / 2) / size, (obj.y + obj.h / 2) / size))
    features = torch.cat([scorer.fused_cls(images[i:i + batch], names[i:i + batch]).double().cpu()
                          for i in range(0, n, batch)])
    target = torch.tensor(centres, dtype=torch.float64)
    fit, held = slice(0, n - test), slice(n - test, n)
    mean, std = features[fit].mean(0), features[fit].std(0) + 1e-6
    x = torch.cat([(features - mean) / std, torch.ones(n, 1, dtype=torch.float64)], 1)
    gram = x[fit].T @ x[fit] + ridge * torch.eye(x.shape[1], dtype=torch.float64)
    predicted = x[held] @ torch.linalg.solve(gram, x[fit].T @ target[fit])
    r2 = 1 - ((predicted - target[held]) ** 2).sum(0) / ((target[held] - target[fit].mean(0)) ** 2).sum(0)
    side = ((predicted > 0.5) == (target[held] > 0.5)).double().mean(0)
    commoner = (target[fit] > 0.5).double().mean(0) > 0.5
    majority = (commoner == (target[held] > 0.5)).double().mean(0)
    return {"x_r2": round(float(r2[0]), 4), "y_r2": round(float(r2[1]), 4),
            "side_accuracy": 100.0 * float(side.mean()), "majority": 100.0 * float(majority.mean()),
            "n": n, "test": test}
