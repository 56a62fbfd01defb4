"""``sgv inspect``: what a shard set holds (samples, bytes, member extensions, key range, source mix), with
the manifest's relation and caption summaries for our shards and img2dataset's download counts for theirs."""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from sgverbalise.schemas.layout import ShardSet
from sgverbalise.storage import redact
from sgverbalise.tools.scan import (
    ext_kind,
    first_shards,
    is_sgv_sample,
    parse_json,
    progress_bar,
    read_relations,
    streams,
)
from sgverbalise.tools.sidecars import read_parquet, read_stats, summarise_stats

TOP = 10


def _top(counter: Counter, n: int = TOP) -> dict[str, int]:
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:n])


def _source(key: str, meta: Any) -> str:
    if isinstance(meta, dict) and isinstance(meta.get("source"), str):
        return meta["source"]
    prefix, dash, _ = key.partition("-")
    return prefix if dash and prefix.isalpha() else "(none)"


def relations_summary(shardset: ShardSet, **storage_options: Any) -> dict | None:
    """Size, mode and most frequent predicates of the set's ``relations.json`` (None when absent)."""
    found = read_relations(shardset, **storage_options)
    if found is None or shardset.manifest is None:
        return None
    _, vocab, error = found
    info = shardset.manifest.get("relations") or {}
    out: dict[str, Any] = {"file": info.get("file"), "size": info.get("size"), "mode": info.get("mode")}
    if isinstance(vocab, dict) and isinstance(vocab.get("relations"), list):
        rel = [r for r in vocab["relations"] if isinstance(r, dict)]
        out["top"] = {r.get("predicate"): r.get("count") for r in rel[:TOP]}
        out["excluded"] = len(vocab.get("excluded") or {})
    elif error:
        out["error"] = error
    return out


def manifest_summary(shardset: ShardSet) -> dict | None:
    """The manifest's generator, splits, totals, caption settings and reject counts."""
    m = shardset.manifest
    if m is None:
        return None
    splits = {
        name: {"samples": s.get("samples"), "bytes": s.get("bytes"), "shards": len(s.get("shards") or [])}
        for name, s in (m.get("splits") or {}).items()
        if isinstance(s, dict)
    }
    totals = m.get("totals") or {}
    rejects = m.get("rejects") or {}
    vsg = ((m.get("config") or {}).get("vsg")) or {}
    return {
        "file": redact(shardset.manifest_url or ""),
        "whole_set": shardset.whole,
        "generator": m.get("generator"),
        "schema_version": m.get("schema_version"),
        "splits": splits,
        "totals": totals,
        "captions": {
            "vsg_captions": totals.get("vsg_captions"),
            "captions_per_image": vsg.get("captions"),
            "max_triplets_per_caption": vsg.get("k"),
            "separator": vsg.get("separator"),
            "order": vsg.get("sort"),
        },
        "rejects": {
            "total": sum(v for v in rejects.values() if isinstance(v, int)),
            "by_reason": _top(Counter({k: v for k, v in rejects.items() if isinstance(v, int)})),
        },
    }


def inspect_set(
    shardset: ShardSet, *, max_shards: int | None = None, progress: bool | None = None, **storage_options: Any
) -> dict:
    """The inspection report of a shard set (a JSON-able dict); reads every shard once, streaming."""
    ext_samples: Counter = Counter()
    ext_bytes: Counter = Counter()
    sources: Counter = Counter()
    domains: Counter = Counter()
    splits: dict[str, Counter] = {}
    keys: list[str] = []  # first and last only
    samples = total_bytes = scanned = 0
    problems: list[str] = []
    ours = 0
    stats_files: list[dict] = []
    parquet_rows = 0
    parquet_files = 0
    shards = first_shards(shardset, max_shards)
    with progress_bar(sum(s.size or 0 for s in shards) or None, "inspect", progress) as bar:
        for stream in streams(shardset, bar, max_shards, **storage_options):
            split = (stream.shard.entry or {}).get("split", "(all)")
            per_split = splits.setdefault(split, Counter())
            for sample in stream:
                samples += 1
                per_split["samples"] += 1
                keys = (
                    [min(keys[0], sample.key), max(keys[1], sample.key)] if keys else [sample.key, sample.key]
                )
                meta = None
                for ext, data in sample.members.items():
                    ext_samples[ext] += 1
                    ext_bytes[ext] += len(data)
                    if ext == "json":
                        meta, _ = parse_json(data)
                ours += is_sgv_sample(meta)
                sources[_source(sample.key, meta)] += 1
                if isinstance(meta, dict) and isinstance(meta.get("url"), str):
                    domains[urlsplit(meta["url"]).hostname or "(none)"] += 1
            scanned += 1
            total_bytes += stream.size
            per_split["shards"] += 1
            per_split["bytes"] += stream.size
            problems += [p.line() for p in stream.problems]
            try:
                stats = read_stats(stream.shard.url, **storage_options)
                table = read_parquet(stream.shard.url, **storage_options)
            except (OSError, ValueError) as exc:
                problems.append(f"{stream.shard.name}: img2dataset side file: {exc}")
                stats = table = None
            if stats is not None:
                stats_files.append(stats)
            if table is not None:
                parquet_files += 1
                parquet_rows += table["rows"]
    report: dict[str, Any] = {
        "path": redact(shardset.spec),
        "format": "sgverbalise" if samples and ours == samples else ("webdataset" if not ours else "mixed"),
        "shards": len(shardset.shards),
        "shards_scanned": scanned,
        "samples": samples,
        "bytes": total_bytes,
        "splits": {k: dict(v) for k, v in sorted(splits.items())},
        "extensions": {
            ext: {"samples": ext_samples[ext], "bytes": ext_bytes[ext], "kind": ext_kind(ext)}
            for ext in sorted(ext_samples)
        },
        "key_range": keys or None,
        "sources": _top(sources),
        "problems": problems,
    }
    if domains:
        report["domains"] = _top(domains)
    if stats_files or parquet_files:
        report["img2dataset"] = {
            "stats_files": len(stats_files),
            **summarise_stats(stats_files),
            "parquet_files": parquet_files,
            "parquet_rows": parquet_rows,
        }
    if shardset.manifest is not None:
        report["manifest"] = manifest_summary(shardset)
        report["relations"] = relations_summary(shardset, **storage_options)
    return report


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


def format_report(report: dict) -> str:
    """The inspection report as text for the terminal."""
    lines = [f"{report['path']}: {report['format']} shards"]
    scanned = report["shards_scanned"]
    shards = f"{report['shards']}" + ("" if scanned == report["shards"] else f" ({scanned} scanned)")
    lines.append(
        f"  shards {shards}, samples {report['samples']}, bytes {report['bytes']} ({_size(report['bytes'])})"
    )
    for split, info in report["splits"].items():
        lines.append(
            f"  {split}: {info.get('samples', 0)} samples in {info.get('shards', 0)} shards, "
            f"{_size(info.get('bytes', 0))}"
        )
    if report["key_range"]:
        lines.append(f"  keys {report['key_range'][0]} .. {report['key_range'][1]}")
    lines.append(
        "  members: "
        + ", ".join(
            f".{ext} {info['samples']} ({_size(info['bytes'])}"
            + (", never unpickled)" if info["kind"] == "pickled" else ")")
            for ext, info in report["extensions"].items()
        )
    )
    lines.append("  sources: " + ", ".join(f"{k} {v}" for k, v in report["sources"].items()))
    if "domains" in report:
        lines.append("  top domains: " + ", ".join(f"{k} {v}" for k, v in report["domains"].items()))
    if "img2dataset" in report:
        i2d = report["img2dataset"]
        lines.append("  img2dataset: " + ", ".join(f"{k} {v}" for k, v in i2d.items()))
    manifest = report.get("manifest")
    if manifest:
        t = manifest["totals"]
        lines.append(
            f"  manifest {manifest['file']} ({manifest['generator']}, schema {manifest['schema_version']})"
            + ("" if manifest["whole_set"] else "; its figures are of the whole set")
        )
        lines.append(
            f"    images read {t.get('images_read')}, samples {t.get('samples')}, relations read "
            f"{t.get('relations_read')}, MRC triplets {t.get('triplets')}"
        )
        c = manifest["captions"]
        lines.append(
            f"    VSG captions {c['vsg_captions']} ({c['captions_per_image']} per image, up to "
            f"{c['max_triplets_per_caption']} triplets each, order {c['order']})"
        )
        r = manifest["rejects"]
        lines.append(f"    rejects {r['total']}: " + ", ".join(f"{k} {v}" for k, v in r["by_reason"].items()))
    relations = report.get("relations")
    if relations:
        lines.append(
            f"    relation vocabulary {relations.get('size')} ({(relations.get('mode') or {}).get('name')})"
            + (
                ": " + ", ".join(f"{k} {v}" for k, v in relations["top"].items())
                if relations.get("top")
                else ""
            )
        )
    if report["problems"]:
        lines.append(f"  problems ({len(report['problems'])}; run sgv validate for all checks):")
        lines += [f"    {p}" for p in report["problems"][:20]]
    return "\n".join(lines)
