"""``sgv show``: one sample, readable: VSG captions, triplets, entities (other WebDataset samples: their
members)."""

from __future__ import annotations

import argparse

from sgverbalise.tools.common import add_path, print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``sgv show``."""
    add_path(parser)
    parser.add_argument("key", metavar="KEY", help="the sample's key (e.g. vg-2343729)")
    parser.add_argument("--raw", action="store_true", help="print the .json member as it is, indented")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    """Print the sample; 0, or 2 when PATH or KEY is not found."""
    from sgverbalise.tools.paths import resolve
    from sgverbalise.tools.show import describe, find_sample, format_description

    sample = find_sample(resolve(args.path), args.key)
    desc = describe(sample)
    if args.json:
        print_json(desc)
    else:
        print(format_description(desc, raw=args.raw))
    return 0
