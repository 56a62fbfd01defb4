"""Rejects: what did not make it into the output, and why. Nothing is dropped without one.

A reject file (``rejects/{kind}-{reason}.jsonl``) holds one group's rejects, one JSON line each
(``reject_line``), in ``order``: by source, image id, detail, then the line itself, so that the order depends on
nothing but the rejects. Sorted runs of lines (a unit's, a file's) become one sorted stream with ``merge_lines``,
which holds one line of each run at a time.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter
from collections.abc import Iterable, Iterator

import orjson

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
    counts = Counter(group(r) for r in rejects)
    return dict(sorted(counts.items()))


def group(r: dict) -> str:
    """``kind/reason``: the reject file a reject goes to (``schemas.layout.rejects_name``)."""
    return f"{r['kind']}/{r['reason']}"


def reject_line(r: dict) -> bytes:
    """A reject as a line of its file (without the newline): JSON with sorted keys, UTF-8."""
    return json.dumps(r, sort_keys=True, ensure_ascii=False).encode()


def order(r: dict, line: bytes) -> tuple:
    """Where the reject ``r`` (written as ``line``) goes among all rejects: its group, then source, image id and
    detail, then its line (which settles ties: the order depends on the rejects only)."""
    return (group(r), r["source"], r["image_id"] or "", r["detail"], line)


def line_order(line: bytes) -> tuple:
    """``order`` of a reject line."""
    return order(orjson.loads(line), line)


def sorted_lines(rejects: Iterable[dict]) -> list[bytes]:
    """The lines of ``rejects`` in ``order`` (all groups: each group's lines are consecutive)."""
    keyed = [(order(r, line), line) for r in rejects for line in (reject_line(r),)]
    keyed.sort(key=lambda pair: pair[0])
    return [line for _, line in keyed]


def merge_lines(runs: Iterable[Iterable[bytes]]) -> Iterator[tuple[str, bytes]]:
    """The lines of ``runs`` (each in ``order``) as one stream in ``order``, each with its group."""
    keyed = [((line_order(line), line) for line in run) for run in runs]
    for key, line in heapq.merge(*keyed):
        yield key[0], line
