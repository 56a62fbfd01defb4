"""``sgv vocab``: count normalised predicates of VG and/or GQA and write relations.json.

Which sources the vocabulary is built from (``--sources``): ``auto`` (the default) takes the GQA predicates
alone in mode ``all`` when GQA is given (the paper's relation classes are the distinct GQA relation strings)
and every given source otherwise. Predicates seen only in the sources left out are listed in ``excluded``
with their counts, next to what the mode itself leaves out.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from collections.abc import Iterator

from sgverbalise.normalise import NormaliseConfig, Normaliser
from sgverbalise.pipelines.preflight import check_inputs
from sgverbalise.rejects import count_by_reason
from sgverbalise.vocab import MODES, RelationVocab, count_predicates, vocabulary_sources

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``sgv vocab``."""
    parser.add_argument("--vg", metavar="DIR", help="Visual Genome folder (or fsspec URL)")
    parser.add_argument(
        "--gqa", metavar="FILE", action="append", default=[], help="GQA scene-graph file (repeat)"
    )
    parser.add_argument("--out", required=True, metavar="URL", help="where to write relations.json")
    parser.add_argument(
        "--mode", choices=MODES, default="all", help="which predicates to keep (default: all)"
    )
    parser.add_argument("--top-k", type=int, default=None, metavar="N", help="mode top_k: how many to keep")
    parser.add_argument(
        "--min-count", type=int, default=1, metavar="N", help="mode min_count: least count kept"
    )
    parser.add_argument(
        "--sources",
        choices=("auto", "gqa", "vg", "all"),
        default="auto",
        help="sources the vocabulary is built from (auto: GQA alone in mode all when given, else all given)",
    )
    parser.add_argument(
        "--lemmatize", action="store_true", help="lemmatise with spaCy lookup tables (see docs)"
    )
    parser.add_argument("--relation-aliases", metavar="URL", help="VG relationship_alias.txt")
    parser.add_argument("--object-aliases", metavar="URL", help="VG object_alias.txt (recorded for names)")
    parser.add_argument(
        "--limit", type=int, default=None, metavar="N", help="read at most N images per input"
    )


def _records(items: Iterator, rejects: list[dict], stats: Counter, source: str) -> Iterator[dict]:
    """The records of a reader's ``(record | None, rejects)`` items, rejects collected on the side."""
    for record, item_rejects in items:
        rejects.extend(item_rejects)
        if record is not None:
            stats[source] += 1
            yield record


def run(args: argparse.Namespace, extra: list[str]) -> int:
    """Read, normalise, count and write relations.json; print one summary line."""
    if not args.vg and not args.gqa:
        print("sgv vocab: give --vg and/or --gqa", file=sys.stderr)
        return 2
    check_inputs([("--vg", args.vg), *(("--gqa", url) for url in args.gqa),
                  ("--relation-aliases", args.relation_aliases), ("--object-aliases", args.object_aliases)])
    given = (["gqa"] if args.gqa else []) + (["vg"] if args.vg else [])
    try:
        sources = vocabulary_sources(args.sources, args.mode, given)
    except ValueError as err:
        print(f"sgv vocab: {err}", file=sys.stderr)
        return 2

    config = NormaliseConfig(
        lemmatize=args.lemmatize, object_aliases=args.object_aliases, relation_aliases=args.relation_aliases
    )
    normaliser = Normaliser(config)
    counts: dict[str, Counter[str]] = {}
    rejects: list[dict] = []
    images: Counter[str] = Counter()
    if args.gqa:
        from sgverbalise.readers.gqa import iter_gqa

        counts["gqa"] = Counter()
        for url in args.gqa:
            items = iter_gqa(url, limit=args.limit)
            counts["gqa"].update(count_predicates(_records(items, rejects, images, "gqa"), normaliser))
    if args.vg:
        from sgverbalise.readers.vg import iter_vg

        items = iter_vg(args.vg, regions=False, limit=args.limit)
        counts["vg"] = count_predicates(_records(items, rejects, images, "vg"), normaliser)

    chosen: Counter[str] = Counter()
    others: Counter[str] = Counter()
    for source, source_counts in counts.items():
        (chosen if source in sources else others).update(source_counts)
    vocab = RelationVocab.from_counts(
        chosen,
        mode=args.mode,
        top_k=args.top_k,
        min_count=args.min_count,
        sources=sources,
        excluded=others,
        normalise=config.to_dict(),
    )
    vocab.save(args.out)

    read = ", ".join(f"{images[s]} {s} images ({sum(counts[s].values())} relations)" for s in counts)
    reasons = count_by_reason(rejects)
    if reasons:
        log.info("rejects while reading: %s", reasons)
    print(
        f"vocab: {len(vocab)} predicates (mode {args.mode}, from {'+'.join(sources)}), "
        f"{len(vocab.excluded)} excluded; read {read}; {len(rejects)} rejects -> {args.out}"
    )
    return 0
