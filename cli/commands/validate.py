"""``sgv validate``: tar integrity, every sample against the JSON Schema, duplicate keys, manifest consistency
(counts, bytes, sha256). Exit 0 when all holds, 1 otherwise, with one line per problem saying where."""

from __future__ import annotations

import argparse
import sys

from sgverbalise.tools.common import add_path, print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``sgv validate``."""
    add_path(parser)
    parser.add_argument(
        "--format",
        choices=["auto", "sgverbalise", "webdataset"],
        default="auto",
        help="sample checks: ours (schemas/sample.schema.json) or any WebDataset's; auto: ours "
        "when there is a manifest or the samples look like ours",
    )
    parser.add_argument(
        "--decode-images",
        action="store_true",
        help="decode every image fully (default: read image headers only)",
    )


def run(args: argparse.Namespace, extra: list[str]) -> int:
    """Print the problems; 0 when there are none, 1 otherwise (2 when PATH names no shards)."""
    from sgverbalise.tools.paths import resolve
    from sgverbalise.tools.validate import validate_set

    report = validate_set(
        resolve(args.path), fmt=args.format, decode_images=args.decode_images, progress=args.progress
    )
    if args.json:
        print_json(report.to_json())
    else:
        for problem in report.problems:
            print(problem.line())
        for warning in report.warnings:
            print(f"warning: {warning.line()}")
        verdict = "OK" if report.ok else f"{len(report.problems)} problem(s)"
        print(
            f"{verdict}: {report.samples} samples in {report.shards} shards ({report.format})",
            file=sys.stderr,
        )
    return 0 if report.ok else 1
