"""Where each sample goes: the train/val split by a hash of its key, and the shard plan of a split (the names
of splits and shards are the layout contract's, ``sgverbalise.schemas.layout``).

Both depend only on the samples' keys and sizes, never on the order they arrive in, so any runner and any number
of workers lay the output out the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sgverbalise.schemas.layout import SPLITS

TRAIN, VAL = SPLITS
_BUCKETS = 1_000_000


def split_of(key: str, val_fraction: float) -> str:
    """``val`` for about ``val_fraction`` of keys, chosen by a hash of the key; ``train`` otherwise."""
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1], got {val_fraction}")
    bucket = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % _BUCKETS
    return VAL if bucket < val_fraction * _BUCKETS else TRAIN


def plan_shards(sizes: Iterable[tuple[str, int]], max_count: int, max_bytes: int | None) -> dict[str, int]:
    """Shard index of each key: keys sorted, a new shard when the next sample would pass ``max_count`` samples
    or ``max_bytes`` bytes (a sample larger than ``max_bytes`` alone gets a shard of its own)."""
    if max_count < 1:
        raise ValueError("max_count must be at least 1")
    plan: dict[str, int] = {}
    index, count, size = 0, 0, 0
    for key, nbytes in sorted(sizes):
        if key in plan:
            raise ValueError(f"duplicate sample key {key!r}")
        if count and (count >= max_count or (max_bytes and size + nbytes > max_bytes)):
            index, count, size = index + 1, 0, 0
        plan[key] = index
        count, size = count + 1, size + nbytes
    return plan

