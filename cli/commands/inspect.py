"""``sgv inspect``: what a shard set holds (samples, bytes, member extensions, key range, source mix, the
manifest's relation and caption summaries); streams the tars, never extracts them."""

from __future__ import annotations

import argparse

from sgverbalise.tools.common import add_path, print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``sgv inspect``."""
    add_path(parser)
    parser.add_argument("--max-shards", type=int, default=None, help="scan only the first N shards")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    """Print the inspection report; 0, or 2 when PATH names no shards."""
    from sgverbalise.tools.inspect import format_report, inspect_set
    from sgverbalise.tools.paths import resolve

    report = inspect_set(resolve(args.path), max_shards=args.max_shards, progress=args.progress)
    if args.json:
        print_json(report)
    else:
        print(format_report(report))
    return 0
