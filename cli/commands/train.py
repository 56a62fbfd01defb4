"""``sgv train``: pretrain a model from a YAML run config and ``--set`` overrides (one process or torchrun).

    sgv train --config configs/rexvlm.yaml --set train.steps=1000 --set data.num_workers=8
    torchrun --nproc_per_node 8 -m sgverbalise.cli train --config configs/realbef.yaml --resume
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from sgverbalise.errors import InputError

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``sgv train``."""
    parser.add_argument("--config", default=None, help="run config YAML (configs/*.yaml)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        dest="overrides",
        metavar="SECTION.KEY=VALUE",
        help="override one config value, read as YAML, e.g. train.steps=500 (repeat)",
    )
    parser.add_argument("--out", default=None, help="run folder (same as --set train.out=...)")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint of --out")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    """Load the config, train, print a summary as JSON (rank 0)."""
    # torch is imported only when this command runs
    import yaml

    from sgverbalise.training.config import load_config
    from sgverbalise.training.loop import train

    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"train.out={args.out}")
    if args.resume:
        overrides.append("train.resume=true")
    if args.config and not Path(args.config).is_file():
        raise InputError(f"--config {args.config}: no such file")
    try:
        cfg = load_config(args.config, overrides)
    except yaml.YAMLError as exc:
        raise InputError(f"--config {args.config} is not valid YAML: {exc}") from exc
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0
    summary = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        shown = {k: v for k, v in summary.items() if k != "history"}
        print(json.dumps(shown, indent=2, sort_keys=True))
    return 0
