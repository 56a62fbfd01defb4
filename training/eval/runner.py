"""Run the benchmark suites with a scorer: resolve images, score pairs in batches, apply metrics, report.

Per suite the result is a dict ``{"suite", "status", "score", "counts", "missing_sample", "metrics"}``;
``status`` is ``ok``, ``missing`` (benchmark files absent), ``skipped`` (the scorer cannot run the protocol,
e.g. VSR's p > 0.5 rule needs an ITM head) or ``empty`` (nothing left to evaluate). Examples whose image is
missing or unreadable are counted in ``counts`` and left out; they never stop a run.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import orjson
from tqdm.auto import tqdm

from sgverbalise.storage import atomic_write, join

from . import metrics
from .benchmarks import (
    RETRIEVAL_FILES,
    SUITES,
    BenchmarkMissing,
    ImageRef,
    Loaded,
    ReadOptions,
    image_refs,
    read_suite,
    vsr_category,
)
from .images import ImageStore, missing_refs

log = logging.getLogger(__name__)

# Suites that share another suite's image folder.
IMAGE_FOLDER = {"coco_dev": "coco"}


@dataclass
class EvalConfig:
    """Where the benchmarks and images are and how to run them."""

    data: str
    suites: tuple[str, ...] = SUITES
    images: str | None = None  # root holding <suite>/ image folders (default: <data>/images)
    image_roots: dict[str, str] = field(default_factory=dict)  # per-suite override
    read: ReadOptions = field(default_factory=ReadOptions)
    batch_size: int = 64
    k_test: int = 256
    limit: int | None = None  # at most this many examples per suite (per split for VSR; images for retrieval)
    progress: bool = True
    missing_listed: int = 20

    def image_root(self, suite: str) -> str:
        """The image folder of ``suite``."""
        if suite in self.image_roots:
            return self.image_roots[suite]
        folder = IMAGE_FOLDER.get(suite, suite)
        return join(self.images, folder) if self.images else join(self.data, "images", folder)


def _ref_name(ref: ImageRef) -> str:
    return ref[0] if ref else ""


def _counts(loaded: Loaded) -> dict:
    return {"found": loaded.found, "kept": loaded.kept, "dropped": dict(sorted(loaded.dropped.items()))}


def check_suite(cfg: EvalConfig, suite: str) -> dict:
    """Read and validate one suite without a model: examples found, kept, and those whose image is missing."""
    try:
        loaded = read_suite(suite, cfg.data, cfg.read)
    except BenchmarkMissing as err:
        return {"suite": suite, "status": "missing", "error": str(err)}
    store = ImageStore(cfg.image_root(suite))
    refs = image_refs(loaded)
    missing = missing_refs(store, refs)
    missing_set = set(missing)
    missing_names = list(dict.fromkeys(_ref_name(r) for r in missing))
    found = {store.resolve(r) for r in set(refs) - missing_set}
    report = {
        "suite": suite,
        "status": "ok",
        "files": loaded.files,
        "image_root": store.root,
        **_counts(loaded),
        "images": len(found) + len(missing_names),
        "missing_images": len(missing_names),
        "missing_sample": missing_names[: cfg.missing_listed],
    }
    if loaded.examples and suite not in RETRIEVAL_FILES:
        report["examples_with_missing_image"] = sum(
            any(r in missing_set for r in image_refs(Loaded(suite, [ex], 0))) for ex in loaded.examples
        )
    elif loaded.examples:
        gallery = loaded.examples[0]
        report["texts"] = len(gallery.texts)
        report["texts_with_missing_image"] = sum(gallery.images[i] in missing_set for i in gallery.text_image)
    return report


def check_suites(cfg: EvalConfig) -> dict[str, dict]:
    """``check_suite`` for every configured suite."""
    return {suite: check_suite(cfg, suite) for suite in cfg.suites}


class PairScorer:
    """Scores (image path, text) pairs in batches, each image loaded once; None where it is unreadable."""

    def __init__(self, scorer, store: ImageStore, batch_size: int, progress: bool) -> None:
        self.scorer = scorer
        self.store = store
        self.batch_size = batch_size
        self.progress = progress

    def _batch_scores(self, images: list, texts: list[str], mode: str) -> list[float]:
        if mode == "itm":
            return list(self.scorer.itm(images, texts))
        from .scorers import pair_similarity

        distinct: dict[int, int] = {}
        order = [distinct.setdefault(id(im), len(distinct)) for im in images]
        uniques = list({id(im): im for im in images}.values())
        image_emb = self.scorer.itc_image(uniques)[order]
        return pair_similarity(image_emb, self.scorer.itc_text(texts)).tolist()

    def score(self, pairs: Sequence[tuple[str, str]], mode: str, desc: str = "") -> list[float | None]:
        """Scores of ``pairs`` in their order; ``mode`` is ``itm`` (p(match)) or ``itc`` (cosine)."""
        out: list[float | None] = [None] * len(pairs)
        by_image: dict[str, list[int]] = {}
        for i, (path, _) in enumerate(pairs):
            by_image.setdefault(path, []).append(i)
        pending: list[tuple[int, object, str]] = []

        def flush() -> None:
            scores = self._batch_scores([p[1] for p in pending], [p[2] for p in pending], mode)
            for (i, _, _), s in zip(pending, scores, strict=True):
                out[i] = float(s)
            bar.update(len(pending))
            pending.clear()

        with tqdm(total=len(pairs), desc=desc or mode, disable=hidden(self.progress), leave=False) as bar:
            for path in sorted(by_image):
                image = self.store.load(path)
                if image is None:
                    bar.update(len(by_image[path]))
                    continue
                for i in by_image[path]:
                    pending.append((i, image, pairs[i][1]))
                    if len(pending) >= self.batch_size:
                        flush()
            if pending:
                flush()
        return out


def _limited(examples: list, limit: int | None, key: Callable[[object], str] | None = None) -> list:
    if limit is None:
        return examples
    if key is None:
        return examples[:limit]
    taken: dict[str, int] = {}
    out = []
    for ex in examples:
        k = key(ex)
        if taken.get(k, 0) < limit:
            taken[k] = taken.get(k, 0) + 1
            out.append(ex)
    return out


def _score_examples(
    pair_scorer: PairScorer,
    store: ImageStore,
    examples: list,
    pairs_of: Callable[[object], list[tuple[ImageRef, str]]],
    mode: str,
    desc: str,
) -> tuple[list[tuple[object, list[float]]], dict]:
    """Score every example's pairs; examples with a missing or unreadable image are counted and left out."""
    flat: list[tuple[str, str]] = []
    spans: list[tuple[object, int, int]] = []
    missing_examples = 0
    missing: list[str] = []
    for ex in examples:
        pairs = pairs_of(ex)
        paths = [store.resolve(ref) for ref, _ in pairs]
        if any(p is None for p in paths):
            missing_examples += 1
            missing += [_ref_name(ref) for (ref, _), p in zip(pairs, paths, strict=True) if p is None]
            continue
        spans.append((ex, len(flat), len(flat) + len(pairs)))
        flat += [(p, text) for p, (_, text) in zip(paths, pairs, strict=True)]
    scores = pair_scorer.score(flat, mode, desc)
    done, unreadable = [], 0
    for ex, a, b in spans:
        s = scores[a:b]
        if any(v is None for v in s):
            unreadable += 1
        else:
            done.append((ex, s))
    counts = {
        "evaluated": len(done),
        "skipped_missing_image": missing_examples,
        "skipped_unreadable_image": unreadable,
    }
    return done, {"counts": counts, "missing": list(dict.fromkeys(missing))}


def _eval_vsr(ctx: _Context) -> dict:
    if not ctx.scorer.has_itm:
        return {"status": "skipped", "reason": "VSR's p > 0.5 rule needs an ITM head (p(match))"}
    examples = _limited(ctx.loaded.examples, ctx.cfg.limit, key=lambda ex: ex.split)
    done, info = ctx.score(examples, lambda ex: [(ex.image, ex.caption)], "itm", "vsr")
    splits = sorted({ex.split for ex, _ in done})
    out = {}
    for split in splits:
        rows = [(ex, s[0]) for ex, s in done if ex.split == split]
        out[split] = metrics.vsr_metrics(
            [s for _, s in rows],
            [ex.label for ex, _ in rows],
            [ex.relation for ex, _ in rows],
            [vsr_category(ex.relation) for ex, _ in rows],
        )
    return {"score": "itm", "metrics": out, **info}


def _eval_valse(ctx: _Context) -> dict:
    mode = ctx.mode
    examples = _limited(ctx.loaded.examples, ctx.cfg.limit)
    done, info = ctx.score(examples, lambda ex: [(ex.image, ex.caption), (ex.image, ex.foil)], mode, "valse")
    m = metrics.valse_metrics(
        [s[0] for _, s in done], [s[1] for _, s in done], [ex.instrument for ex, _ in done]
    )
    return {"score": mode, "metrics": m, **info}


def _eval_svo(ctx: _Context) -> dict:
    mode = ctx.mode
    examples = _limited(ctx.loaded.examples, ctx.cfg.limit)
    done, info = ctx.score(
        examples, lambda ex: [(ex.pos_image, ex.sentence), (ex.neg_image, ex.sentence)], mode, "svo"
    )
    m = metrics.svo_metrics([s[0] for _, s in done], [s[1] for _, s in done], [ex.negated for ex, _ in done])
    return {"score": mode, "metrics": m, **info}


def _winoground_pairs(ex) -> list[tuple[ImageRef, str]]:
    # order: (c0,i0), (c0,i1), (c1,i0), (c1,i1) -> s[c][i]
    return [
        (ex.image_0, ex.caption_0),
        (ex.image_1, ex.caption_0),
        (ex.image_0, ex.caption_1),
        (ex.image_1, ex.caption_1),
    ]


def _eval_winoground(ctx: _Context) -> dict:
    examples = _limited(ctx.loaded.examples, ctx.cfg.limit)
    modes = (["itm"] if ctx.scorer.has_itm else []) + ["itc"]
    out: dict = {}
    info: dict = {}
    for mode in modes:
        done, info = ctx.score(examples, _winoground_pairs, mode, f"winoground {mode}")
        tables = [[[s[0], s[1]], [s[2], s[3]]] for _, s in done]
        out[mode] = metrics.winoground_scores(tables) | {"n": len(tables)}
    return {"score": modes[0], "metrics": out, **info}


def hidden(progress: bool) -> bool:
    """tqdm's ``disable``: bars only when asked for and stderr is a terminal (no carriage returns in log files)."""
    return not (progress and sys.stderr.isatty())


def _load_images(ctx: _Context, paths: list[str], desc: str) -> Iterable[tuple[int, object]]:
    for i, path in enumerate(tqdm(paths, desc=desc, disable=hidden(ctx.cfg.progress), leave=False)):
        yield i, ctx.store.load(path)


def _image_embeddings(ctx: _Context, paths: list[str]):
    """ITC embeddings of the readable images and the indices (into ``paths``) they belong to."""
    import torch

    embs, kept, batch, idx = [], [], [], []
    for i, image in _load_images(ctx, paths, f"{ctx.suite} images (itc)"):
        if image is None:
            continue
        batch.append(image)
        idx.append(i)
        if len(batch) >= ctx.cfg.batch_size:
            embs.append(ctx.scorer.itc_image(batch).cpu())
            kept += idx
            batch, idx = [], []
    if batch:
        embs.append(ctx.scorer.itc_image(batch).cpu())
        kept += idx
    return (torch.cat(embs) if embs else None), kept


def _similarity(image_emb, text_emb, chunk: int = 256) -> np.ndarray:
    from .scorers import itc_similarity

    rows = [
        itc_similarity(image_emb[a : a + chunk], text_emb).numpy()
        for a in range(0, image_emb.shape[0], chunk)
    ]
    return np.concatenate(rows, axis=0).astype(np.float64)


def _itm_matrix(ctx: _Context, paths: list[str], texts: list[str], mask: np.ndarray) -> np.ndarray:
    """ITM p(match) where ``mask`` is set (NaN elsewhere), each image loaded once with all its candidates."""
    itm = np.full(mask.shape, np.nan)
    where = list(zip(*np.nonzero(mask), strict=True))
    pairs = [(paths[i], texts[t]) for i, t in where]
    scores = ctx.pair_scorer.score(pairs, "itm", f"{ctx.suite} re-rank (itm)")
    for (i, t), s in zip(where, scores, strict=True):
        itm[i, t] = np.nan if s is None else s
    return itm


def _eval_retrieval(ctx: _Context) -> dict:
    import torch

    if not ctx.loaded.examples:
        return {"status": "empty", "reason": "no images of the split in the file"}
    gallery = ctx.loaded.examples[0]
    n_images = len(gallery.images) if ctx.cfg.limit is None else min(ctx.cfg.limit, len(gallery.images))
    resolved = [ctx.store.resolve(ref) for ref in gallery.images[:n_images]]
    present = [i for i, p in enumerate(resolved) if p is not None]
    missing = [_ref_name(gallery.images[i]) for i, p in enumerate(resolved) if p is None]
    image_emb, kept_local = _image_embeddings(ctx, [resolved[i] for i in present])
    kept = [present[j] for j in kept_local]
    new_index = {old: new for new, old in enumerate(kept)}
    text_ids = [t for t, i in enumerate(gallery.text_image) if i in new_index]
    counts = {
        "images": len(kept),
        "texts": len(text_ids),
        "skipped_missing_image": len(missing),
        "skipped_unreadable_image": len(present) - len(kept),
        "texts_skipped": sum(1 for i in gallery.text_image if i < n_images) - len(text_ids),
    }
    if not kept or not text_ids:
        return {"status": "empty", "reason": "no image found", "counts": counts, "missing": missing}
    texts = [gallery.texts[t] for t in text_ids]
    text_image = [new_index[gallery.text_image[t]] for t in text_ids]
    text_emb = torch.cat(
        [
            ctx.scorer.itc_text(texts[a : a + ctx.cfg.batch_size]).cpu()
            for a in range(0, len(texts), ctx.cfg.batch_size)
        ]
    )
    sim = _similarity(image_emb, text_emb)
    out = {"itc": metrics.retrieval_metrics(sim, sim, text_image)}
    if ctx.scorer.has_itm:
        k = ctx.cfg.k_test
        mask_tr, mask_ir = metrics.top_k_mask(sim, k, axis=1), metrics.top_k_mask(sim, k, axis=0)
        itm = _itm_matrix(ctx, [resolved[i] for i in kept], texts, mask_tr | mask_ir)
        itm = np.nan_to_num(itm, nan=-1.0)
        out["itm_rerank"] = metrics.retrieval_metrics(
            metrics.reranked(sim, itm, mask_tr), metrics.reranked(sim, itm, mask_ir), text_image
        )
        out["k_test"] = k
    return {
        "score": "itm_rerank" if ctx.scorer.has_itm else "itc",
        "metrics": out,
        "counts": counts,
        "missing": missing,
    }


@dataclass
class _Context:
    """What a suite evaluator works with."""

    suite: str
    cfg: EvalConfig
    scorer: object
    loaded: Loaded
    store: ImageStore
    pair_scorer: PairScorer

    @property
    def mode(self) -> str:
        """The pairwise score: ITM p(match) when the scorer has the head, else ITC cosine."""
        return "itm" if self.scorer.has_itm else "itc"

    def score(self, examples, pairs_of, mode, desc):
        """``_score_examples`` with this context's scorer and store."""
        return _score_examples(self.pair_scorer, self.store, examples, pairs_of, mode, desc)


EVALUATORS: dict[str, Callable[[_Context], dict]] = {
    "vsr": _eval_vsr,
    "valse": _eval_valse,
    "svo": _eval_svo,
    "winoground": _eval_winoground,
    **{suite: _eval_retrieval for suite in RETRIEVAL_FILES},
}


def evaluate_suite(scorer, cfg: EvalConfig, suite: str) -> dict:
    """Read, score and measure one suite."""
    try:
        loaded = read_suite(suite, cfg.data, cfg.read)
    except BenchmarkMissing as err:
        log.warning("%s", err)
        return {"suite": suite, "status": "missing", "reason": str(err)}
    store = ImageStore(cfg.image_root(suite))
    ctx = _Context(suite, cfg, scorer, loaded, store, PairScorer(scorer, store, cfg.batch_size, cfg.progress))
    result = EVALUATORS[suite](ctx)
    counts = _counts(loaded) | result.pop("counts", {})
    missing = result.pop("missing", [])
    if missing:
        log.warning("%s: %d missing images under %s (e.g. %s)", suite, len(missing), store.root, missing[0])
    return {
        "suite": suite,
        "status": result.pop("status", "ok"),
        **result,
        "counts": counts,
        "image_root": store.root,
        "missing_sample": missing[: cfg.missing_listed],
    }


def evaluate(scorer, cfg: EvalConfig) -> dict[str, dict]:
    """``evaluate_suite`` for every configured suite."""
    return {suite: evaluate_suite(scorer, cfg, suite) for suite in cfg.suites}


# ---- headline numbers, Markdown and files ------------------------------------------------------------------


def headline(results: dict[str, dict]) -> dict[str, float]:
    """One number per skill (the sweep's columns): VSR dev/test, VALSE, SVO, Winoground, retrieval R@1."""
    out: dict[str, float] = {}
    for suite, res in results.items():
        if res.get("status") != "ok":
            continue
        m = res["metrics"]
        if suite == "vsr":
            out |= {f"vsr_{split}": v["acc"] for split, v in m.items()}
        elif suite in ("valse", "svo"):
            out[suite] = m["acc"]
        elif suite == "winoground":
            out |= {f"winoground_{k}": m[res["score"]][k] for k in ("text", "image", "group")}
        elif suite in RETRIEVAL_FILES:
            r = m[res["score"]]
            out |= {f"{suite}_tr1": r["tr_r1"], f"{suite}_ir1": r["ir_r1"]}
    return out


def _fmt(value: float) -> str:
    return f"{value:.1f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += [
        "| " + " | ".join(_fmt(c) if isinstance(c, float) else str(c) for c in row) + " |" for row in rows
    ]
    return "\n".join(lines)


def _counts_line(res: dict) -> str:
    c = res.get("counts", {})
    parts = [f"{k.replace('_', ' ')}: {v}" for k, v in c.items() if k != "dropped"]
    parts += [f"dropped ({k}): {v}" for k, v in c.get("dropped", {}).items()]
    return "; ".join(parts)


def suite_markdown(res: dict) -> str:
    """A Markdown report of one suite's result."""
    suite, lines = res["suite"], [f"## {res['suite']}", ""]
    if res.get("status") != "ok":
        return "\n".join(lines + [f"{res.get('status')}: {res.get('reason', '')}", ""])
    m = res["metrics"]
    lines.append(f"score: {res['score']}; {_counts_line(res)}")
    lines.append("")
    if suite == "vsr":
        lines.append(_table(["split", "acc", "n"], [(s, v["acc"], v["n"]) for s, v in m.items()]))
        for split, v in m.items():
            lines += [
                "",
                f"### {split} by category",
                "",
                _table(
                    ["category", "acc", "n"], [(k, g["acc"], g["n"]) for k, g in v["per_category"].items()]
                ),
                "",
                f"### {split} by relation",
                "",
                _table(
                    ["relation", "acc", "n"], [(k, g["acc"], g["n"]) for k, g in v["per_relation"].items()]
                ),
            ]
    elif suite == "valse":
        rows = [(k, g["acc"], g["n"]) for k, g in m["per_instrument"].items()]
        rows += [
            ("average (example-weighted)", m["acc"], m["n"]),
            ("mean of instruments", m["macro_acc"], ""),
        ]
        lines.append(_table(["instrument", "acc", "n"], rows))
    elif suite == "svo":
        rows = [(k, g["acc"], g["n"]) for k, g in m["per_negation"].items()] + [("all", m["acc"], m["n"])]
        lines.append(_table(["negated", "acc", "n"], rows))
    elif suite == "winoground":
        lines.append(
            _table(
                ["score", "text", "image", "group", "n"],
                [(k, v["text"], v["image"], v["group"], v["n"]) for k, v in m.items()],
            )
        )
    else:
        keys = ["tr_r1", "tr_r5", "tr_r10", "ir_r1", "ir_r5", "ir_r10", "r_mean"]
        rows = [(k, *[v[x] for x in keys]) for k, v in m.items() if isinstance(v, dict)]
        lines.append(_table(["score", "TR@1", "TR@5", "TR@10", "IR@1", "IR@5", "IR@10", "mean"], rows))
    if res.get("missing_sample"):
        lines += ["", "missing images (first): " + ", ".join(res["missing_sample"])]
    return "\n".join(lines) + "\n"


def summary_markdown(results: dict[str, dict], title: str = "") -> str:
    """One table of the headline numbers and the counts per suite."""
    lines = [f"# {title}" if title else "# evaluation", ""]
    lines.append(_table(["skill", "value"], list(headline(results).items())))
    lines += [
        "",
        _table(
            ["suite", "status", "counts"],
            [(s, r.get("status"), _counts_line(r) or r.get("reason", "")) for s, r in results.items()],
        ),
    ]
    return "\n".join(lines) + "\n"


def dumps(obj: object) -> bytes:
    """Indented JSON with sorted keys (same results, same bytes)."""
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def write_results(results: dict[str, dict], out: str, meta: dict | None = None) -> list[str]:
    """``results.json``, ``summary.md`` and ``<suite>.md`` under ``out``; returns the URLs written."""
    written = []
    doc = {"meta": meta or {}, "headline": headline(results), "suites": results}
    for name, data in [
        ("results.json", dumps(doc)),
        ("summary.md", summary_markdown(results, (meta or {}).get("checkpoint", "")).encode()),
        *[(f"{s}.md", suite_markdown(r).encode()) for s, r in results.items()],
    ]:
        url = join(out, name)
        atomic_write(url, data)
        written.append(url)
    return written
