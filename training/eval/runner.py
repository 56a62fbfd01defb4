"""Run the benchmark suites with a scorer: resolve images, score pairs in batches, keep per-example records.

Per suite the result is a dict ``{"suite", "status", "score", "counts", "missing_sample", "records",
"tables"}``: ``records`` are the per-example scores (``scorefiles`` documents them), ``tables`` the figures
computed from them (``tables``), with bootstrap intervals (``uncertainty``). ``status`` is ``ok``, ``missing``
(benchmark files absent), ``skipped`` (the scorer cannot run the protocol, e.g. VSR's p >= 0.5 rule needs an
ITM head) or ``empty`` (nothing left to evaluate). Examples whose image is missing or unreadable are counted in
``counts`` and left out; they never stop a run.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from sgverbalise.storage import join

from . import retrieval
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
from .sampling import sample_indices, stratified_sample
from .tables import VSR_THRESHOLD, suite_tables
from .uncertainty import BOOTSTRAP_SAMPLES, table_doc

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
    k_test: int | None = None  # retrieval candidates re-ranked; None: per suite (COCO 256, Flickr30K 128)
    limit: int | None = None  # seeded stratified sample: at most this many per stratum (see ``sampling``)
    limit_seed: int = 0
    pre_caption: bool = True  # ALBEF/BLIP caption normalisation for retrieval
    vsr_threshold: float = VSR_THRESHOLD
    bootstrap: int = BOOTSTRAP_SAMPLES  # resamples for the 95% intervals (0: none)
    progress: bool = True
    missing_listed: int = 20

    def k_for(self, suite: str) -> int:
        """The re-ranking depth of a retrieval suite."""
        return self.k_test if self.k_test is not None else retrieval.K_TEST.get(suite, 256)

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
        if mode in ("itm", "itm_logit"):
            return list(getattr(self.scorer, mode)(images, texts))
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


def _limit(ctx: _Context) -> list:
    return stratified_sample(ctx.loaded.examples, ctx.cfg.limit, ctx.cfg.limit_seed)


VSR_RELEASES = {
    (1012, 2024): "older release of the random split, as the companion study scored (dev 1,012 / test 2,024)",
    (1097, 2195): "current release of the random split (dev 1,097 / test 2,195)",
}


def vsr_release(rows: dict[str, int]) -> dict:
    """Rows per split file and which release of the random split those counts are."""
    return {"rows": rows, "release": VSR_RELEASES.get((rows.get("dev"), rows.get("test")), "unknown")}


def _eval_vsr(ctx: _Context) -> dict:
    if not ctx.scorer.has_itm:
        return {"status": "skipped", "reason": "VSR's p >= 0.5 rule needs an ITM head (p(match))"}
    done, info = ctx.score(_limit(ctx), lambda ex: [(ex.image, ex.caption)], "itm", "vsr")
    records = [
        {
            "suite": "vsr",
            "mode": "itm",
            "split": ex.split,
            "id": str(ex.index),
            "label": ex.label,
            "relation": ex.relation,
            "category": vsr_category(ex.relation),
            "score": s[0],
        }
        for ex, s in done
    ]
    protocol = {"threshold": ctx.cfg.vsr_threshold, "split": ctx.cfg.read.vsr_split}
    protocol |= vsr_release(ctx.loaded.rows)
    return {"score": "itm", "records": records, "protocol": protocol, **info}


def _eval_valse(ctx: _Context) -> dict:
    mode = ctx.mode
    done, info = ctx.score(_limit(ctx), lambda ex: [(ex.image, ex.caption), (ex.image, ex.foil)], mode, "valse")
    records = [
        {
            "suite": "valse",
            "mode": mode,
            "id": f"{ex.instrument}/{ex.index}",
            "key": ex.key,
            "instrument": ex.instrument,
            "piece": ex.piece,
            "caption": s[0],
            "foil": s[1],
        }
        for ex, s in done
    ]
    return {"score": mode, "records": records, **info}


def _eval_svo(ctx: _Context) -> dict:
    mode = ctx.mode
    done, info = ctx.score(
        _limit(ctx), lambda ex: [(ex.pos_image, ex.sentence), (ex.neg_image, ex.sentence)], mode, "svo"
    )
    records = [
        {
            "suite": "svo",
            "mode": mode,
            "id": str(ex.index),
            "sentence": ex.sentence,
            "pos_image": _ref_name(ex.pos_image),
            "neg_image": _ref_name(ex.neg_image),
            "negated": ex.negated,
            "pos": s[0],
            "neg": s[1],
        }
        for ex, s in done
    ]
    return {"score": mode, "records": records, **info}


def _winoground_pairs(ex) -> list[tuple[ImageRef, str]]:
    # order: (c0,i0), (c0,i1), (c1,i0), (c1,i1) -> s[c][i]
    return [
        (ex.image_0, ex.caption_0),
        (ex.image_1, ex.caption_0),
        (ex.image_0, ex.caption_1),
        (ex.image_1, ex.caption_1),
    ]


def _eval_winoground(ctx: _Context) -> dict:
    examples = _limit(ctx)
    modes = (["itm"] if ctx.scorer.has_itm else []) + ["itc"]
    records: list[dict] = []
    info: dict = {}
    for mode in modes:
        done, info = ctx.score(examples, _winoground_pairs, mode, f"winoground {mode}")
        records += [
            {"suite": "winoground", "mode": mode, "id": ex.id, "scores": [[s[0], s[1]], [s[2], s[3]]]}
            | dict(ex.tags)
            for ex, s in done
        ]
    return {"score": modes[0], "records": records, **info}


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
    """The re-ranking score (ITM logit, else p(match)) where ``mask`` is set, NaN elsewhere."""
    itm = np.full(mask.shape, np.nan)
    where = list(zip(*np.nonzero(mask), strict=True))
    pairs = [(paths[i], texts[t]) for i, t in where]
    mode = "itm_logit" if hasattr(ctx.scorer, "itm_logit") else "itm"
    scores = ctx.pair_scorer.score(pairs, mode, f"{ctx.suite} re-rank ({mode})")
    for (i, t), s in zip(where, scores, strict=True):
        itm[i, t] = np.nan if s is None else s
    return itm


def _eval_retrieval(ctx: _Context) -> dict:
    import torch

    if not ctx.loaded.examples:
        return {"status": "empty", "reason": "no images of the split in the file"}
    gallery = ctx.loaded.examples[0]
    chosen = sample_indices(len(gallery.images), ctx.cfg.limit, ctx.cfg.limit_seed)
    resolved = {i: ctx.store.resolve(gallery.images[i]) for i in chosen}
    present = [i for i in chosen if resolved[i] is not None]
    missing = [_ref_name(gallery.images[i]) for i in chosen if resolved[i] is None]
    image_emb, kept_local = _image_embeddings(ctx, [resolved[i] for i in present])
    kept = [present[j] for j in kept_local]
    new_index = {old: new for new, old in enumerate(kept)}
    text_ids = [t for t, i in enumerate(gallery.text_image) if i in new_index]
    chosen_set = set(chosen)
    counts = {
        "images": len(kept),
        "texts": len(text_ids),
        "skipped_missing_image": len(missing),
        "skipped_unreadable_image": len(present) - len(kept),
        "texts_skipped": sum(1 for i in gallery.text_image if i in chosen_set) - len(text_ids),
    }
    if not kept or not text_ids:
        return {"status": "empty", "reason": "no image found", "counts": counts, "missing": missing}
    normalise = retrieval.pre_caption if ctx.cfg.pre_caption else str
    texts = [normalise(gallery.texts[t]) for t in text_ids]
    text_image = [new_index[gallery.text_image[t]] for t in text_ids]
    text_emb = torch.cat(
        [
            ctx.scorer.itc_text(texts[a : a + ctx.cfg.batch_size]).cpu()
            for a in range(0, len(texts), ctx.cfg.batch_size)
        ]
    )
    sim = _similarity(image_emb, text_emb)
    k = ctx.cfg.k_for(ctx.suite)
    rule = retrieval.rerank_rule(ctx.scorer)
    paths = [resolved[i] for i in kept]
    itm_of = (lambda mask: _itm_matrix(ctx, paths, texts, mask)) if ctx.scorer.has_itm else None
    found = retrieval.query_ranks(sim, text_image, itm_of, k, rule)
    image_names = [_ref_name(gallery.images[i]) for i in kept]
    records = retrieval.records(ctx.suite, found, image_names, [str(t) for t in text_ids], ctx.mode)
    protocol = {"k_test": k, "pre_caption": ctx.cfg.pre_caption, "max_words": retrieval.MAX_WORDS}
    if itm_of is not None:
        protocol |= {
            "rerank_rule": rule,
            "rerank_score": "itm_logit" if hasattr(ctx.scorer, "itm_logit") else "itm p(match)",
        }
    return {
        "score": "rerank" if itm_of else "itc",
        "records": records,
        "protocol": protocol,
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
    status = result.pop("status", "ok")
    records = result.pop("records", [])
    if status == "ok" and not records:
        status, result["reason"] = "empty", "no example could be scored"
    return {
        "suite": suite,
        "status": status,
        **result,
        "records": records,
        "tables": tables_of(suite, records, cfg.vsr_threshold, cfg.bootstrap),
        "files": loaded.files,
        "counts": counts,
        "image_root": store.root,
        "missing_sample": missing[: cfg.missing_listed],
    }


def tables_of(suite: str, records: list[dict], vsr_threshold: float = VSR_THRESHOLD, bootstrap: int = 0) -> dict:
    """name -> table document (figures, counts, labels, details, intervals) of one suite's records."""
    return {t.name: table_doc(t, bootstrap) for t in suite_tables(suite, records, vsr_threshold)}


def evaluate(scorer, cfg: EvalConfig) -> dict[str, dict]:
    """``evaluate_suite`` for every configured suite."""
    return {suite: evaluate_suite(scorer, cfg, suite) for suite in cfg.suites}


