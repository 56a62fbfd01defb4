"""img2dataset's files beside each tar: ``{stem}_stats.json`` (counts of the download) and ``{stem}.parquet``
(one row per input URL, with its key and status; rows with status "success" are the samples in the tar)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from sgverbalise.schemas.layout import PARQUET_SIDECAR, STATS_SIDECAR, shard_stem
from sgverbalise.storage import read_bytes, url_fs

STATS_FIELDS = ("count", "successes", "failed_to_download", "failed_to_resize")


def stats_url(shard_url: str) -> str:
    """URL of the shard's ``_stats.json``."""
    return shard_stem(shard_url) + STATS_SIDECAR


def parquet_url(shard_url: str) -> str:
    """URL of the shard's ``.parquet``."""
    return shard_stem(shard_url) + PARQUET_SIDECAR


def read_stats(shard_url: str, **storage_options: Any) -> dict | None:
    """The shard's ``_stats.json`` as a dict (None when there is none); raises ValueError when unreadable."""
    try:  # one request: no separate existence check
        data = json.loads(read_bytes(stats_url(shard_url), **storage_options))
    except (FileNotFoundError, IsADirectoryError):
        return None
    if not isinstance(data, dict):
        raise ValueError("_stats.json is not a JSON object")
    return data


def read_parquet(shard_url: str, **storage_options: Any) -> dict | None:
    """``{rows, status: {status: n}, success_keys}`` from the shard's ``.parquet`` (None when there is none;
    status and keys only when those columns exist); raises ValueError when unreadable."""
    import pyarrow.parquet as pq

    fs, path = url_fs(parquet_url(shard_url), **storage_options)
    if not fs.isfile(path):
        return None
    try:
        with fs.open(path, "rb") as f:
            pf = pq.ParquetFile(f)
            names = set(pf.schema_arrow.names)
            columns = [c for c in ("key", "status") if c in names]
            table = pf.read(columns=columns) if columns else None
            rows = pf.metadata.num_rows
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise ValueError(f"unreadable parquet ({type(exc).__name__}: {exc})") from exc
    out: dict[str, Any] = {"rows": rows}
    if table is not None and "status" in columns:
        statuses = table.column("status").to_pylist()
        out["status"] = dict(Counter(str(s) for s in statuses))
        if "key" in columns:
            keys = table.column("key").to_pylist()
            out["success_keys"] = sorted(
                str(k) for k, s in zip(keys, statuses, strict=True) if s == "success"
            )
    return out


def summarise_stats(all_stats: list[dict]) -> dict:
    """Sums of the numeric ``_stats.json`` fields over shards."""
    total: Counter = Counter()
    for stats in all_stats:
        for name in STATS_FIELDS:
            if isinstance(stats.get(name), int):
                total[name] += stats[name]
    return {name: total[name] for name in STATS_FIELDS if name in total}
