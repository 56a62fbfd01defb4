"""Ranking primitives of the retrieval protocol as pure functions (no model, no I/O).

Conventions: recall is in percent; a wrong candidate that ties with the best correct one ranks above it, so a
constant scorer gets no credit. The other protocols' rules live with their tables (``tables``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def best_rank(scores: np.ndarray, positives: Sequence[int]) -> int:
    """0-based rank of the best-scoring positive: the number of negatives scoring at least as high."""
    scores = np.asarray(scores, dtype=np.float64)
    mask = np.zeros(scores.shape[0], dtype=bool)
    mask[list(positives)] = True
    top = scores[mask].max()
    return int(np.count_nonzero(scores[~mask] >= top))


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
