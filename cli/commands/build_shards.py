"""``sgv build-shards``: the Beam job (pipelines/build_shards.py); other arguments must be Beam options."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sgverbalise.pipelines.options import add_arguments as add

    add(parser)
    parser.epilog = (
        "Any other --option must be one of Beam's pipeline options and is passed to Beam (e.g. "
        "--runner=PortableRunner, --direct_num_workers 2); anything else is an error. The default, "
        "DirectRunner, is Beam's Python engine in multi_processing mode with 2 workers (never Prism: "
        "--runner=PrismRunner for that)."
    )


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from sgverbalise.pipelines.build_shards import run_config
    from sgverbalise.pipelines.options import config_from_args

    run_config(config_from_args(args), extra)  # logs the manifest summary
    return 0
