"""Metrics of the evaluation protocols as pure functions over scores (no model, no I/O).

Conventions: every accuracy and recall is in percent; comparisons are strict (a tie is not a win), and in
retrieval a wrong candidate that ties with the best correct one ranks above it, so a constant scorer gets no
credit.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np


def accuracy(correct: Sequence[bool]) -> float:
    """Percentage of True values (0.0 for no values)."""
    return float(100.0 * sum(bool(c) for c in correct) / len(correct)) if len(correct) else 0.0


def grouped_accuracy(correct: Sequence[bool], keys: Sequence[Hashable]) -> dict[Hashable, dict[str, float]]:
    """Accuracy and count per key, keys sorted."""
    groups: dict[Hashable, list[bool]] = {}
    for flag, key in zip(correct, keys, strict=True):
        groups.setdefault(key, []).append(bool(flag))
    return {
        k: {"acc": accuracy(v), "n": len(v)} for k, v in sorted(groups.items(), key=lambda kv: str(kv[0]))
    }


def vsr_correct(p_match: float, label: int) -> bool:
    """VSR: a true caption is right when p > 0.5, a false one when p < 0.5."""
    return p_match > 0.5 if label == 1 else p_match < 0.5


def pair_correct(positive: float, negative: float) -> bool:
    """Pairwise protocols (VALSE, SVO-Probes): the positive scores strictly higher."""
    return positive > negative


def winoground_example(s: Sequence[Sequence[float]]) -> dict[str, bool]:
    """Text, image and group success of one example; ``s[c][i]`` scores caption c with image i."""
    text = s[0][0] > s[1][0] and s[1][1] > s[0][1]
    image = s[0][0] > s[0][1] and s[1][1] > s[1][0]
    return {"text": text, "image": image, "group": text and image}


def winoground_scores(scores: Sequence[Sequence[Sequence[float]]]) -> dict[str, float]:
    """Winoground text, image and group scores over examples (each a 2 x 2 caption-by-image score table)."""
    outcomes = [winoground_example(s) for s in scores]
    return {k: accuracy([o[k] for o in outcomes]) for k in ("text", "image", "group")}


def best_rank(scores: np.ndarray, positives: Sequence[int]) -> int:
    """0-based rank of the best-scoring positive: the number of negatives scoring at least as high."""
    scores = np.asarray(scores, dtype=np.float64)
    mask = np.zeros(scores.shape[0], dtype=bool)
    mask[list(positives)] = True
    top = scores[mask].max()
    return int(np.count_nonzero(scores[~mask] >= top))


def recall_at_k(ranks: Sequence[int], ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@k in percent from 0-based ranks."""
    ranks_arr = np.asarray(ranks)
    return {f"r{k}": float(100.0 * np.mean(ranks_arr < k)) if len(ranks_arr) else 0.0 for k in ks}


def retrieval_metrics(
    tr_scores: np.ndarray, ir_scores: np.ndarray, text_image: Sequence[int], ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Text retrieval (image query) and image retrieval (text query) R@k and their mean.

    Both score matrices are ``[images, texts]``; they differ when re-ranking picks different candidates per
    direction.
    """
    tr_scores, ir_scores = np.asarray(tr_scores), np.asarray(ir_scores)
    texts_of: dict[int, list[int]] = {}
    for t, i in enumerate(text_image):
        texts_of.setdefault(int(i), []).append(t)
    tr = recall_at_k(
        [best_rank(tr_scores[i], texts_of[i]) for i in range(tr_scores.shape[0]) if i in texts_of], ks
    )
    ir = recall_at_k([best_rank(ir_scores[:, t], [int(i)]) for t, i in enumerate(text_image)], ks)
    out = {f"tr_{k}": v for k, v in tr.items()} | {f"ir_{k}": v for k, v in ir.items()}
    out["r_mean"] = float(np.mean(list(tr.values()) + list(ir.values())))
    return out


def top_k_mask(scores: np.ndarray, k: int, axis: int, chunk: int = 1024) -> np.ndarray:
    """Boolean mask of the k highest scores along ``axis`` of a 2-D array (ties broken by lower index)."""
    scores = np.asarray(scores)
    rows = scores if axis == 1 else scores.T
    k = min(k, rows.shape[1])
    mask = np.zeros(rows.shape, dtype=bool)
    for a in range(0, rows.shape[0], chunk):
        top = np.argsort(-rows[a : a + chunk], axis=1, kind="stable")[:, :k]
        np.put_along_axis(mask[a : a + chunk], top, True, axis=1)
    return mask if axis == 1 else mask.T


def reranked(itc: np.ndarray, itm: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Scores after re-ranking: masked candidates by ITM p(match), above the others (left in ITC order)."""
    itc = np.asarray(itc, dtype=np.float64)
    offset = 2.0 + max(0.0, float(np.abs(itc).max(initial=0.0)))
    return np.where(mask, offset + np.asarray(itm, dtype=np.float64), itc)


def vsr_metrics(
    p_match: Sequence[float], labels: Sequence[int], relations: Sequence[str], categories: Sequence[str]
) -> dict:
    """VSR accuracy overall, per relation and per meta-category."""
    correct = [vsr_correct(p, y) for p, y in zip(p_match, labels, strict=True)]
    return {
        "acc": accuracy(correct),
        "n": len(correct),
        "per_relation": grouped_accuracy(correct, relations),
        "per_category": grouped_accuracy(correct, categories),
    }


def valse_metrics(caption: Sequence[float], foil: Sequence[float], instruments: Sequence[str]) -> dict:
    """VALSE pairwise accuracy per instrument, the example-weighted average and the instruments' mean."""
    correct = [pair_correct(c, f) for c, f in zip(caption, foil, strict=True)]
    per = grouped_accuracy(correct, instruments)
    return {
        "acc": accuracy(correct),
        "n": len(correct),
        "macro_acc": float(np.mean([v["acc"] for v in per.values()])) if per else 0.0,
        "per_instrument": per,
    }


def svo_metrics(positive: Sequence[float], negative: Sequence[float], negated: Sequence[str]) -> dict:
    """SVO-Probes accuracy overall and by which of subject, verb, object is negated."""
    correct = [pair_correct(p, n) for p, n in zip(positive, negative, strict=True)]
    return {"acc": accuracy(correct), "n": len(correct), "per_negation": grouped_accuracy(correct, negated)}
