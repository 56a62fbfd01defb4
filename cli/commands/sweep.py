"""``sgv sweep``: evaluate every ``step-<N>/`` checkpoint of a run: table and plots with intervals, checkpoints
selected on dev sets only (COCO dev TR@1 overall, VSR dev for VSR test)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict

from sgverbalise.cli.commands.eval import add_suite_options, config_from_args

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``sgv sweep``."""
    parser.add_argument(
        "--checkpoints", required=True, metavar="RUN_DIR", help="run folder with step-<N>/ folders"
    )
    parser.add_argument("--out", metavar="DIR", help="where to write the sweep (default: RUN_DIR/sweep)")
    parser.add_argument(
        "--select-by",
        default="coco_dev_tr1",
        help="dev skill that selects the checkpoint (default: coco_dev_tr1, the paper's signal)",
    )
    parser.add_argument("--no-resume", action="store_true", help="re-evaluate checkpoints that have results")
    add_suite_options(parser)


def run(args: argparse.Namespace, extra: list[str]) -> int:
    """Evaluate the checkpoints, write sweep.{json,md,csv} and plots, print the table."""
    try:
        if not args.data:
            raise ValueError("give --data (the benchmark folder)")
        cfg = config_from_args(args)
    except ValueError as err:
        print(f"sgv sweep: {err}", file=sys.stderr)
        return 2
    from sgverbalise.training.eval.scorers import load_scorer
    from sgverbalise.training.eval.sweep import is_dev_skill, sweep, sweep_markdown, write_sweep

    out = args.out or f"{args.checkpoints.rstrip('/')}/sweep"
    if not is_dev_skill(args.select_by):
        print(f"sgv sweep: --select-by {args.select_by} is not a dev-set skill (e.g. coco_dev_tr1, vsr_dev)",
              file=sys.stderr)
        return 2
    try:
        result = sweep(
            args.checkpoints,
            cfg,
            lambda ckpt: load_scorer(ckpt, args.model, device=args.device),
            out,
            resume=not args.no_resume,
            select_by=args.select_by,
            model=args.model,
        )
    except FileNotFoundError as err:
        print(f"sgv sweep: {err}", file=sys.stderr)
        return 2
    written = write_sweep(result, out)
    log.info("wrote %d files under %s", len(written), out)
    if args.json:
        print(json.dumps(asdict(result) | {"out": out}, indent=2, sort_keys=True))
    else:
        print(sweep_markdown(result))
        print(f"sweep in {out}")
    return 0
