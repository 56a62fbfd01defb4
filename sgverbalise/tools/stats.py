"""``sgv stats``: relation, object and attribute frequencies, triplets per image and caption token lengths
(whitespace tokens, ``[SEP]`` counted as one) of a shard set: a terminal table, ``stats.json``, PNG plots.
With ``images=N`` also the per-channel pixel mean and std of the first N images (``[0, 1]`` scale), the
values a model trained from scratch takes as ``model.vision.image_mean`` / ``image_std``."""

from __future__ import annotations

import io
import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from sgverbalise.schemas.layout import ShardSet
from sgverbalise.storage import redact
from sgverbalise.tools.scan import SGV, detect_format, ext_kind, first_shards, parse_json, progress_bar, streams

PLOT_TOP = 30


class PixelMoments:
    """Running per-channel sums of RGB pixels in [0, 1] (float64), for their mean and std."""

    def __init__(self) -> None:
        import numpy as np

        self.images = 0
        self.pixels = 0
        self.total = np.zeros(3)
        self.squares = np.zeros(3)

    def add(self, data: bytes) -> str | None:
        """Add one encoded image; the reason when it does not decode (then nothing is added)."""
        import numpy as np
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as image:
                pixels = np.asarray(image.convert("RGB"), dtype=np.float64).reshape(-1, 3) / 255.0
        except Exception as exc:  # Pillow raises many types for bad bytes
            return f"{type(exc).__name__}: {exc}"
        self.images += 1
        self.pixels += pixels.shape[0]
        self.total += pixels.sum(axis=0)
        self.squares += np.square(pixels).sum(axis=0)
        return None

    def result(self) -> dict[str, Any]:
        """``{images, mean, std}`` (mean and std None before any image)."""
        if not self.pixels:
            return {"images": 0, "mean": None, "std": None}
        mean = self.total / self.pixels
        std = (self.squares / self.pixels - mean**2).clip(min=0) ** 0.5
        return {"images": self.images, "mean": [round(float(v), 4) for v in mean],
                "std": [round(float(v), 4) for v in std]}


def _ranked(counter: Counter) -> dict[str, int]:
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


def _distribution(counter: Counter) -> dict:
    """Histogram ``{value: count}`` (keys as strings, numeric order) with mean, median and max."""
    values = sorted(counter.elements())
    if not values:
        return {"histogram": {}, "mean": None, "median": None, "max": None}
    return {
        "histogram": {str(k): counter[k] for k in sorted(counter)},
        "mean": round(statistics.fmean(values), 4),
        "median": statistics.median(values),
        "max": values[-1],
    }


def compute_stats(
    shardset: ShardSet,
    *,
    max_shards: int | None = None,
    progress: bool | None = None,
    images: int = 0,
    **storage_options: Any,
) -> dict:
    """The statistics of a shard set (JSON-able), read in one streaming pass; ``images``: measure the pixel
    mean and std of the first that many images."""
    fmt = detect_format(shardset, **storage_options)
    relations: Counter = Counter()
    objects: Counter = Counter()
    attributes: Counter = Counter()
    sources: Counter = Counter()
    per_image: Counter = Counter()
    vsg_tokens: Counter = Counter()
    txt_tokens: Counter = Counter()
    samples = triplets = vsg_captions = shards = 0
    problems: list[str] = []
    moments = PixelMoments()
    complete = True
    shards_read = first_shards(shardset, max_shards)
    with progress_bar(sum(s.size or 0 for s in shards_read) or None, "stats", progress) as bar:
        for stream in streams(shardset, bar, max_shards, **storage_options):
            for sample in stream:
                samples += 1
                if moments.images < images:
                    ext = next((e for e in sample.members if ext_kind(e) == "image"), None)
                    failed = moments.add(sample.members[ext]) if ext else None
                    if failed:
                        problems.append(f"{sample.key}: image does not decode ({failed})")
                if "txt" in sample.members:
                    txt_tokens[len(sample.members["txt"].decode("utf-8", "replace").split())] += 1
                obj, _ = parse_json(sample.members["json"]) if "json" in sample.members else (None, None)
                if not isinstance(obj, dict):
                    continue
                if isinstance(obj.get("source"), str):
                    sources[obj["source"]] += 1
                ts = obj.get("triplets") if isinstance(obj.get("triplets"), list) else []
                if fmt == SGV:
                    per_image[len(ts)] += 1
                triplets += len(ts)
                relations.update(str(t.get("predicate")) for t in ts if isinstance(t, dict))
                for e in obj.get("entities") or []:
                    if isinstance(e, dict):
                        objects[str(e.get("name"))] += 1
                        attributes.update(str(a) for a in e.get("attributes") or [])
                for caption in obj.get("vsg") or []:
                    if isinstance(caption, str):
                        vsg_captions += 1
                        vsg_tokens[len(caption.split())] += 1
            shards += 1
            complete &= stream.complete
            problems += [p.line() for p in stream.problems]
    out: dict[str, Any] = {
        "path": redact(shardset.spec),
        "format": fmt,
        "shards": shards,
        "samples": samples,
        "triplets": triplets,
        "vsg_captions": vsg_captions,
        "sources": _ranked(sources),
        "relations": _ranked(relations),
        "objects": _ranked(objects),
        "attributes": _ranked(attributes),
        "triplets_per_image": _distribution(per_image),
        "caption_tokens": {"vsg": _distribution(vsg_tokens), "txt": _distribution(txt_tokens)},
        "problems": problems,
    }
    if images:
        out["pixels"] = moments.result()
    m = shardset.manifest
    if m is not None and shardset.whole and max_shards is None and isinstance(m.get("totals"), dict):
        checks = {}
        for name in ("samples", "triplets", "vsg_captions"):
            said = m["totals"].get(name)
            checks[name] = {"counted": out[name], "manifest": said, "match": said == out[name]}
        out["manifest_totals"] = {"complete": complete, **checks}
    return out


def _table(title: str, counts: dict[str, int], top: int) -> list[str]:
    if not counts:
        return []
    total = sum(counts.values())
    width = max(len(k) for k in list(counts)[:top])
    lines = [f"{title} ({len(counts)} distinct, {total} in all)"]
    for name, n in list(counts.items())[:top]:
        lines.append(f"  {name:<{width}}  {n:>8}  {100 * n / total:5.1f}%")
    if len(counts) > top:
        lines.append(f"  ... {len(counts) - top} more")
    return lines


def _dist_line(title: str, d: dict) -> str:
    if d["max"] is None:
        return f"{title}: none"
    return f"{title}: mean {d['mean']:.2f}, median {d['median']}, max {d['max']}"


def format_stats(stats: dict, top: int = 15) -> str:
    """The statistics as terminal tables."""
    lines = [
        f"{stats['path']}: {stats['samples']} samples in {stats['shards']} shards ({stats['format']}), "
        f"{stats['triplets']} triplets, {stats['vsg_captions']} VSG captions"
    ]
    if stats["sources"]:
        lines.append("sources: " + ", ".join(f"{k} {v}" for k, v in stats["sources"].items()))
    for title, name in (("relations", "relations"), ("objects", "objects"), ("attributes", "attributes")):
        table = _table(title, stats[name], top)
        if table:
            lines += ["", *table]
    lines.append("")
    lines.append(_dist_line("triplets per image", stats["triplets_per_image"]))
    lines.append(_dist_line("VSG caption tokens", stats["caption_tokens"]["vsg"]))
    lines.append(_dist_line(".txt caption tokens", stats["caption_tokens"]["txt"]))
    pixels = stats.get("pixels")
    if pixels and pixels["images"]:
        lines.append(f"pixels of {pixels['images']} images (0-1): mean {pixels['mean']}, std {pixels['std']}")
    check = stats.get("manifest_totals")
    if check:
        parts = [
            f"{k} {v['counted']}" + ("" if v["match"] else f" (manifest {v['manifest']})")
            for k, v in check.items()
            if isinstance(v, dict)
        ]
        ok = all(v["match"] for v in check.values() if isinstance(v, dict))
        lines.append(("manifest totals match: " if ok else "manifest totals DIFFER: ") + ", ".join(parts))
    for p in stats["problems"][:20]:
        lines.append(f"problem: {p}")
    return "\n".join(lines)


def write_outputs(stats: dict, out_dir: str | Path) -> list[Path]:
    """``stats.json`` and PNG plots (top relations, objects, attributes; triplets per image; caption tokens)
    in ``out_dir``; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "stats.json"]
    written[0].write_text(
        json.dumps(stats, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    for name in ("relations", "objects", "attributes"):
        items = list(stats[name].items())[:PLOT_TOP]
        if not items:
            continue
        fig, ax = plt.subplots(figsize=(7, 0.25 * len(items) + 1.2))
        ax.barh([k for k, _ in reversed(items)], [v for _, v in reversed(items)], color="#3c78b4")
        ax.set_xlabel("count")
        ax.set_title(f"{name}: top {len(items)} of {len(stats[name])}")
        fig.tight_layout()
        written.append(out / f"{name}.png")
        fig.savefig(written[-1], dpi=100, metadata={"Software": None})
        plt.close(fig)
    for name, title, dist in (
        ("triplets_per_image", "triplets per image", stats["triplets_per_image"]),
        ("caption_tokens_vsg", "VSG caption tokens", stats["caption_tokens"]["vsg"]),
        ("caption_tokens_txt", ".txt caption tokens", stats["caption_tokens"]["txt"]),
    ):
        hist = dist["histogram"]
        if not hist:
            continue
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.bar([int(k) for k in hist], list(hist.values()), width=1.0, color="#3c78b4")
        ax.set_xlabel(title)
        ax.set_ylabel("samples" if name == "triplets_per_image" else "captions")
        ax.set_title(f"{title}: mean {dist['mean']:.2f}, median {dist['median']}, max {dist['max']}")
        fig.tight_layout()
        written.append(out / f"{name}.png")
        fig.savefig(written[-1], dpi=100, metadata={"Software": None})
        plt.close(fig)
    return written
