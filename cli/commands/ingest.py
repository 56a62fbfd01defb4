"""``sgv ingest``: VG and GQA scene graphs to Parquet records (pipelines/ingest.py); other arguments must be Beam
options."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sgverbalise.pipelines.ingest import add_arguments as add

    add(parser)
    parser.epilog = ("Any other --option must be one of Beam's pipeline options and is passed to Beam. "
                     "Then: sgv build-shards --records OUT ...")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from sgverbalise.pipelines.ingest import run_ingest

    run_ingest(args, extra)
    return 0
