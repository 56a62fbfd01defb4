"""Rejects: what did not make it into the output, and why. Nothing is dropped without one."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from sgverbalise.schemas import REJECT_REASONS

KINDS = ("image", "object", "relation", "region")
_MAX_DETAIL = 300


def reject(source: str, image_id: str | None, reason: str, detail: str = "", kind: str = "image") -> dict:
    """One reject record, as rejects/*.jsonl holds it (``schemas/reject.schema.json``)."""
    if reason not in REJECT_REASONS:
        raise ValueError(f"unknown reject reason {reason!r}; known: {', '.join(REJECT_REASONS)}")
    if kind not in KINDS:
        raise ValueError(f"unknown reject kind {kind!r}; known: {', '.join(KINDS)}")
    detail = str(detail)
    if len(detail) > _MAX_DETAIL:
        detail = detail[:_MAX_DETAIL] + f"... ({len(detail)} chars)"
    return {
        "source": source,
        "image_id": None if image_id is None else str(image_id),
        "kind": kind,
        "reason": reason,
        "detail": detail,
    }


def count_by_reason(rejects: Iterable[dict]) -> dict[str, int]:
    """Counts keyed ``kind/reason``, sorted by key (the manifest's ``rejects`` field)."""
    counts = Counter(f"{r['kind']}/{r['reason']}" for r in rejects)
    return dict(sorted(counts.items()))
