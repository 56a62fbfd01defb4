"""``sgv eval``: zero-shot fine-grained evaluation (VSR, VALSE, SVO-Probes, Winoground, retrieval).

``--check`` needs no model: it reads and validates the benchmark files and reports, per suite, the examples
found, kept after filtering and those whose image is missing. The expected layout is in docs/evaluation.md.
``--from-scores SOURCE`` recomputes every table from per-example score files (ours or the companion study's
released outputs); ``--compare A B`` compares two of them on the same examples. Neither needs a model.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from sgverbalise.training.eval.benchmarks import SUITES as ALL_SUITES

log = logging.getLogger(__name__)

MODEL_KINDS = ("auto", "ours", "clip", "blip", "blip2")


def add_suite_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``sgv eval`` and ``sgv sweep``: data, suites, images, batching."""
    parser.add_argument(
        "--suite",
        default=",".join(ALL_SUITES),
        help=f"comma-separated suites (default: all of {','.join(ALL_SUITES)})",
    )
    parser.add_argument("--data", metavar="DIR", help="benchmark folder or fsspec URL (needed unless from scores)")
    parser.add_argument(
        "--images", metavar="DIR", help="image root holding <suite>/ folders (default: DATA/images)"
    )
    parser.add_argument(
        "--image-root",
        action="append",
        default=[],
        metavar="SUITE=DIR",
        help="image folder of one suite (repeat), e.g. vsr=/data/coco2017",
    )
    parser.add_argument(
        "--vsr-split", choices=("random", "zeroshot"), default="random", help="VSR split folder"
    )
    parser.add_argument("--valse-min-votes", type=int, default=2, help="VALSE validity: mturk.caption >= N")
    parser.add_argument("--batch-size", type=int, default=64, help="pairs per model call")
    parser.add_argument(
        "--k-test",
        type=int,
        default=None,
        help="retrieval: ITC candidates re-ranked by ITM (default: per suite, COCO 256, Flickr30K 128)",
    )
    parser.add_argument(
        "--no-pre-caption", action="store_true", help="retrieval: captions as written (no ALBEF/BLIP pre_caption)"
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="seeded stratified sample: N examples per VALSE instrument, VSR split and category, SVO negated part, "
        "Winoground tag; N images per retrieval gallery",
    )
    parser.add_argument("--limit-seed", type=int, default=0, help="seed of the --limit sample")
    parser.add_argument(
        "--model",
        choices=MODEL_KINDS,
        default="auto",
        help="scorer: ours or a Hugging Face CLIP/BLIP/BLIP-2 folder (auto: from config.json)",
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--bootstrap", type=int, default=1000, metavar="N", help="resamples for the 95%% intervals (0: none)"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``sgv eval``."""
    parser.add_argument("--checkpoint", metavar="DIR", help="model folder (ours or a Hugging Face model)")
    parser.add_argument(
        "--check", action="store_true", help="no model: validate the benchmark files and images"
    )
    parser.add_argument("--out", metavar="DIR", help="where to write results (default: CHECKPOINT/eval)")
    parser.add_argument(
        "--from-scores",
        metavar="SOURCE",
        help="no model: recompute the tables from score files (a file, a folder, or the companion study's "
        "outputs/ folder; SOURCE@MODEL picks a companion model)",
    )
    parser.add_argument(
        "--compare", nargs=2, metavar=("A", "B"), help="no model: paired comparison of two score sources, A - B"
    )
    add_suite_options(parser)


def parse_suites(text: str) -> tuple[str, ...]:
    """The suites of a comma-separated list (ValueError for unknown names)."""
    suites = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in suites if s not in ALL_SUITES]
    if unknown or not suites:
        raise ValueError(f"unknown suite(s) {unknown}; choose from {','.join(ALL_SUITES)}")
    return suites


def config_from_args(args: argparse.Namespace):
    """The EvalConfig of the shared options."""
    from sgverbalise.training.eval.benchmarks import ReadOptions
    from sgverbalise.training.eval.runner import EvalConfig

    roots = {}
    for item in args.image_root:
        suite, sep, url = item.partition("=")
        if not sep or suite not in ALL_SUITES:
            raise ValueError(
                f"--image-root wants SUITE=DIR with SUITE in {','.join(ALL_SUITES)}, got {item!r}"
            )
        roots[suite] = url
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit wants a positive number, got {args.limit}")
    if args.bootstrap < 0:
        raise ValueError(f"--bootstrap wants 0 or more resamples, got {args.bootstrap}")
    return EvalConfig(
        data=args.data,
        suites=parse_suites(args.suite),
        images=args.images,
        image_roots=roots,
        read=ReadOptions(vsr_split=args.vsr_split, valse_min_votes=args.valse_min_votes),
        batch_size=args.batch_size,
        k_test=args.k_test,
        limit=args.limit,
        limit_seed=args.limit_seed,
        pre_caption=not args.no_pre_caption,
        bootstrap=args.bootstrap,
        progress=not args.no_progress,
    )


def _print_check(reports: dict[str, dict]) -> None:
    for suite, r in reports.items():
        if r["status"] != "ok":
            print(f"{suite}: MISSING - {r['error']}")
            continue
        dropped = ", ".join(f"{k}: {v}" for k, v in r["dropped"].items()) or "none"
        if "texts" in r:
            affected = f"{r['texts_with_missing_image']} of {r['texts']} captions affected"
        else:
            affected = f"{r.get('examples_with_missing_image', 0)} examples affected"
        print(
            f"{suite}: found {r['found']}, kept {r['kept']} (dropped: {dropped}); images {r['images']}, "
            f"missing {r['missing_images']} under {r['image_root']} ({affected})"
        )
        if r["missing_sample"]:
            print(f"  e.g. missing: {', '.join(r['missing_sample'][:5])}")


def _from_scores(args: argparse.Namespace) -> int:
    from sgverbalise.training.eval.provenance import scores_meta
    from sgverbalise.training.eval.reports import dumps, flat, headline_markdown, table_markdown
    from sgverbalise.training.eval.rescore import split_source, tables_from_scores
    from sgverbalise.training.eval.tables import VSR_THRESHOLD

    tables, files = tables_from_scores(args.from_scores, VSR_THRESHOLD, args.bootstrap, args.data)
    source, model = split_source(args.from_scores)
    meta = scores_meta(source, files, model, VSR_THRESHOLD, args.bootstrap)
    doc = {"tables": flat(tables), "ci95": {n: t.get("ci95", {}) for n, t in tables.items()}, "meta": meta}
    doc["details"] = {n: {"n": t["n"], "labels": t["labels"], **t["details"]} for n, t in tables.items()}
    if args.out:
        from sgverbalise.storage import atomic_write, join

        atomic_write(join(args.out, "tables.json"), dumps(doc))
    if args.json:
        print(dumps(doc).decode())
    else:
        print(headline_markdown(tables, args.from_scores))
        print("\n".join(table_markdown(n, t) for n, t in tables.items()))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from sgverbalise.training.eval.reports import dumps, markdown_table
    from sgverbalise.training.eval.rescore import compare_sources

    a, b = args.compare
    found = compare_sources(a, b, samples=args.bootstrap or 1000)
    if args.json:
        print(dumps({"a": a, "b": b, "tables": found}).decode())
        return 0
    print(f"# {a} - {b} (paired, same examples)\n")
    for name, cmp in found.items():
        rows = [(f, c["a"], c["b"], c["diff"], c["ci95"], f"{c['p']:.3g}") for f, c in cmp["figures"].items()]
        units = ", ".join(f"{k}: {v['common']} common" for k, v in cmp["units"].items())
        print(f"## {name} ({units})\n")
        print(markdown_table(["figure", "A", "B", "A - B", "95% CI", "p"], rows) + "\n")
    return 0


def run(args: argparse.Namespace, extra: list[str]) -> int:
    """Check the data, evaluate a checkpoint, or recompute / compare tables from score files."""
    try:
        if args.from_scores or args.compare:
            return _from_scores(args) if args.from_scores else _compare(args)
        if not args.data:
            raise ValueError("give --data (the benchmark folder), or --from-scores / --compare")
        cfg = config_from_args(args)
    except (ValueError, FileNotFoundError) as err:  # ScoreFileError, BenchmarkMissing among them
        print(f"sgv eval: {err}", file=sys.stderr)
        return 2
    if args.check:
        from sgverbalise.training.eval.runner import check_suites

        reports = check_suites(cfg)
        if args.json:
            print(json.dumps(reports, indent=2, sort_keys=True))
        else:
            _print_check(reports)
        return 0 if all(r["status"] == "ok" for r in reports.values()) else 1
    if not args.checkpoint:
        print("sgv eval: give --checkpoint (or --check to validate the data only)", file=sys.stderr)
        return 2

    from sgverbalise.training.eval.provenance import eval_meta
    from sgverbalise.training.eval.reports import dumps, headline, summary_markdown, write_results
    from sgverbalise.training.eval.runner import evaluate
    from sgverbalise.training.eval.scorers import detect_kind, load_scorer

    kind = detect_kind(args.checkpoint) if args.model == "auto" else args.model
    scorer = load_scorer(args.checkpoint, kind, device=args.device)
    results = evaluate(scorer, cfg)
    out = args.out or f"{args.checkpoint.rstrip('/')}/eval"
    written = write_results(results, out, eval_meta(cfg, results, args.checkpoint, kind))
    log.info("wrote %s", ", ".join(written))
    if args.json:
        suites = {s: {k: v for k, v in r.items() if k != "records"} for s, r in results.items()}
        print(dumps({"headline": headline(results), "suites": suites, "out": out}).decode())
    else:
        print(summary_markdown(results, args.checkpoint))
        print(f"reports in {out}")
    return 0 if any(r["status"] == "ok" for r in results.values()) else 1
