"""Zero-shot image-text retrieval as ALBEF and BLIP evaluate it, to per-query ranks.

* Captions pass through ``pre_caption`` (lower case, the punctuation ``,.'!?"()*#:;~`` removed, ``-`` and ``/``
  made spaces, at most 30 words), as ALBEF's and BLIP's retrieval datasets do.
* ITC similarity picks the top ``k`` candidates per query (ALBEF and BLIP: 256 for COCO, 128 for Flickr30K).
* Those are re-ranked by the ITM head's raw "match" logit: ALBEF's rule (``replace``) ranks them by the logit
  alone, BLIP's and BLIP-2's (``add``) by the logit plus the ITC similarity. BLIP's scorer puts ``[ENC]`` as
  the first text token for this logit. A scorer without ``itm_logit`` re-ranks by p(match) (``replace``).
* The candidates outside the top k stay below, in ITC order. Ties count against the model.

The output is one record per query: ``direction`` (``tr``: an image retrieves texts; ``ir``: a text retrieves
images), ``query`` and the 0-based rank of its best positive under ``itc`` and ``rerank``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from . import metrics

K_TEST = {"coco": 256, "coco_dev": 256, "flickr": 128}
MAX_WORDS = 30
_PUNCT = re.compile(r"([,.'!?\"()*#:;~])")
_SPACES = re.compile(r"\s{2,}")


def pre_caption(caption: str, max_words: int = MAX_WORDS) -> str:
    """ALBEF's and BLIP's caption normalisation (see the module docstring)."""
    text = _PUNCT.sub("", caption.lower()).replace("-", " ").replace("/", " ").replace("<person>", "person")
    text = _SPACES.sub(" ", text).rstrip("\n").strip(" ")
    words = text.split(" ")
    return " ".join(words[:max_words]) if len(words) > max_words else text


def rerank_rule(scorer: object) -> str:
    """``add`` (BLIP, BLIP-2: logit + ITC) or ``replace`` (ALBEF and ours: the logit alone)."""
    return getattr(scorer, "rerank_rule", "replace")


def reranked(itc: np.ndarray, itm: np.ndarray, mask: np.ndarray, rule: str) -> np.ndarray:
    """Scores after re-ranking: the masked candidates by ``itm`` (+ ``itc`` for ``add``), above all others."""
    itc = np.asarray(itc, dtype=np.float64)
    inside = np.asarray(itm, dtype=np.float64) + (itc if rule == "add" else 0.0)
    if not mask.any():
        return itc
    lift = float(itc.max()) - float(np.min(inside[mask])) + 1.0
    return np.where(mask, inside + lift, itc)


def query_ranks(
    sim: np.ndarray,
    text_image: list[int],
    itm_of: Callable[[np.ndarray], np.ndarray] | None,
    k: int,
    rule: str,
) -> dict[str, dict[str, list[int]]]:
    """Ranks per direction (``tr``, ``ir``) and mode (``itc``, ``rerank`` when ``itm_of`` is given).

    ``itm_of(mask)`` returns the ITM scores where ``mask`` is set (NaN where an image could not be read).
    """
    texts_of: dict[int, list[int]] = {}
    for t, i in enumerate(text_image):
        texts_of.setdefault(int(i), []).append(t)
    images = [i for i in range(sim.shape[0]) if i in texts_of]

    def both(tr_scores: np.ndarray, ir_scores: np.ndarray) -> dict[str, list[int]]:
        return {
            "tr": [metrics.best_rank(tr_scores[i], texts_of[i]) for i in images],
            "ir": [metrics.best_rank(ir_scores[:, t], [int(i)]) for t, i in enumerate(text_image)],
        }

    out = {"itc": both(sim, sim)}
    if itm_of is not None:
        mask_tr, mask_ir = metrics.top_k_mask(sim, k, axis=1), metrics.top_k_mask(sim, k, axis=0)
        itm = itm_of(mask_tr | mask_ir)
        floor = np.nanmin(itm) - 1.0 if np.isfinite(itm).any() else 0.0
        itm = np.where(np.isnan(itm), floor, itm)
        out["rerank"] = both(reranked(sim, itm, mask_tr, rule), reranked(sim, itm, mask_ir, rule))
    return out


def records(
    suite: str, found: dict[str, dict[str, list[int]]], image_ids: list[str], text_ids: list[str], mode: str
) -> list[dict]:
    """One record per query with its ranks (image queries first, then text queries)."""
    out = []
    for direction, ids in (("tr", image_ids), ("ir", text_ids)):
        for j, query in enumerate(ids):
            rec = {"suite": suite, "mode": mode, "direction": direction, "query": query}
            rec |= {f"rank_{m}": found[m][direction][j] for m in found}
            out.append(rec)
    return out
