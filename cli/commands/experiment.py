"""``sgv experiment relations``: ALBEF vs REALBEF (and X-VLM vs REX-VLM) on held-out relation probes."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from dataclasses import replace

log = logging.getLogger(__name__)

EXPERIMENTS = ("relations",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``sgv experiment``."""
    parser.add_argument("experiment", choices=EXPERIMENTS,
                        help="relations: does VSG + MRC data teach relations?")
    parser.add_argument("--out", default="out/experiment", help="output folder (data/, runs/, results.*)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds per model: 0 .. N-1 (default 3; smoke 1)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per run (default 1500)")
    parser.add_argument("--ckpt-every", type=int, default=None, help="checkpoint (and sweep) interval")
    parser.add_argument("--models", default=None, help="comma-separated configs of configs/experiment "
                        "(default: albef,realbef,realbef-foils,upper; also xvlm, rexvlm)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="runs at a time, one CPU thread each (default: 2, or 1 on a one-CPU machine)")
    parser.add_argument("--smoke", action="store_true", help="one seed, a few steps, tiny data (CI)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="config override for every run (repeatable), e.g. train.lr=5e-4")


def command(args: argparse.Namespace) -> str:
    """The command line of these arguments (what results.md records)."""
    parts = ["sgv", "experiment", args.experiment, "--out", args.out]
    options = (("--seeds", args.seeds), ("--steps", args.steps), ("--ckpt-every", args.ckpt_every),
               ("--models", args.models), ("--jobs", args.jobs))
    for flag, value in options:
        if value is not None:
            parts += [flag, str(value)]
    parts += ["--smoke"] if args.smoke else []
    for item in args.overrides:
        parts += ["--set", item]
    return shlex.join(parts)


def run(args: argparse.Namespace, extra: list[str]) -> int:
    """Run the experiment, print the table and the files written."""
    from sgverbalise.cli.experiment import ExperimentConfig, run_experiment
    from sgverbalise.training.experiment.report import table_markdown

    cfg = ExperimentConfig(out=args.out, overrides=tuple(args.overrides), jobs=min(2, os.cpu_count() or 1))
    if args.smoke:
        cfg = cfg.smoke()
    changes = {"steps": args.steps, "ckpt_every": args.ckpt_every, "jobs": args.jobs}
    if args.seeds is not None:
        changes["seeds"] = tuple(range(args.seeds))
    if args.models:
        changes["models"] = tuple(m.strip() for m in args.models.split(",") if m.strip())
    cfg = replace(cfg, **{k: v for k, v in changes.items() if v is not None})
    if cfg.steps < 1 or cfg.ckpt_every < 1 or not cfg.seeds or cfg.jobs < 1:
        print("sgv experiment: --steps, --ckpt-every, --seeds and --jobs must be positive", file=sys.stderr)
        return 2
    try:
        results = run_experiment(cfg, command(args))
    except ValueError as err:
        print(f"sgv experiment: {err}", file=sys.stderr)
        return 2
    print(table_markdown(results["table"], results["chance"]))
    print(f"results: {cfg.out}/results.md, {cfg.out}/results.json, {cfg.out}/skills.png")
    print(f"command: {results['meta']['command']}")
    return 0
