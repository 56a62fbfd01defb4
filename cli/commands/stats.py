"""``sgv stats``: relation, object and attribute frequencies, triplets per image, caption token lengths: a
table on the terminal, and with --out a stats.json and PNG plots (matplotlib, Agg)."""

from __future__ import annotations

import argparse

from sgverbalise.tools.common import add_path, print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``sgv stats``."""
    add_path(parser)
    parser.add_argument("--out", help="folder for stats.json and the PNG plots")
    parser.add_argument("--top", type=int, default=15, help="rows per frequency table on the terminal")
    parser.add_argument("--max-shards", type=int, default=None, help="read only the first N shards")
    parser.add_argument("--images", type=int, default=0, metavar="N",
                        help="also the per-channel pixel mean and std of the first N images (for a model trained "
                             "from scratch: model.vision.image_mean / image_std)")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    """Print the tables (or the JSON), write the files; 0, or 2 when PATH names no shards."""
    from sgverbalise.tools.paths import resolve
    from sgverbalise.tools.stats import compute_stats, format_stats, write_outputs

    stats = compute_stats(resolve(args.path), max_shards=args.max_shards, progress=args.progress,
                          images=args.images)
    written = write_outputs(stats, args.out) if args.out else []
    if args.json:
        print_json(stats)
    else:
        print(format_stats(stats, args.top))
        if written:
            print("wrote " + ", ".join(str(p) for p in written))
    return 0
