"""The full relations experiment (``sgv experiment relations``) as a benchmark: results and wall time.

``python -m bench.experiment [--out bench/out/experiment] [--seeds 3] [--steps 1500] [--jobs 2]
[--plot docs/experiment-skills.png]``

Runs ALBEF, REALBEF, REALBEF + relation foils and the upper bound (X-VLM and REX-VLM with --models), each
with every seed, on the generated corpus and the held-out probes
(``training/experiment/``), then prints the table and writes ``OUT/results.{json,md}``, ``OUT/skills.png`` and
``bench/out/NAME.json`` for ``--out .../NAME`` (the wall time split into data, training and evaluation, the
machine, the table). ``--plot`` also copies the skill-over-steps plot there. A rerun reuses the data and complete runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import time
from dataclasses import replace
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    from sgverbalise.cli.experiment import ExperimentConfig, command_line, run_experiment
    from sgverbalise.training.experiment.report import table_markdown

    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--out", default="bench/out/experiment")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--ckpt-every", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--models", default=None, help="comma-separated configs of configs/experiment "
                        "(default: albef,realbef,realbef-foils,upper; also xvlm, rexvlm, rexvlm-foils, upper-xvlm)")
    parser.add_argument("--plot", default=None, help="copy skills.png here (e.g. docs/experiment-skills.png)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apache_beam").setLevel(logging.WARNING)

    cfg = ExperimentConfig(out=args.out, seeds=tuple(range(args.seeds)), jobs=args.jobs)
    changes = {"steps": args.steps, "ckpt_every": args.ckpt_every}
    if args.models:
        changes["models"] = tuple(m for m in args.models.split(",") if m)
    cfg = replace(cfg, **{k: v for k, v in changes.items() if v is not None})
    started = time.perf_counter()
    results = run_experiment(cfg, command_line(cfg))
    wall = time.perf_counter() - started
    runs = results["runs"]
    record = {
        "command": results["meta"]["command"],
        "wall_seconds": round(wall, 1),
        "timing": results["meta"]["timing"],
        "train_seconds_sum": round(sum(r["train_seconds"] for r in runs), 1),
        "eval_seconds_sum": round(sum(r["eval_seconds"] for r in runs), 1),
        "samples_per_run": results["samples_per_run"],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(),
                    "load_average_at_end": os.getloadavg()},
        "table": {m: {s: {k: v for k, v in c.items() if k != "values"} for s, c in cells.items()}
                  for m, cells in results["table"].items()},
        "differences": results["differences"],
    }
    Path("bench/out").mkdir(parents=True, exist_ok=True)
    record_file = Path("bench/out") / f"{Path(cfg.out).name}.json"  # one record per output folder
    record_file.write_text(json.dumps(record, indent=2) + "\n")
    if args.plot:
        shutil.copyfile(Path(cfg.out) / "skills.png", args.plot)
    print(table_markdown(results["table"], results["chance"]))
    print(f"wall time {wall / 60:.1f} min (data {record['timing']['data_seconds']:.0f} s); "
          f"{record['train_seconds_sum']:.0f} s of training and "
          f"{record['eval_seconds_sum']:.0f} s of evaluation "
          f"over {len(runs)} runs, {cfg.jobs} at a time ({record['timing'].get('runs_reused', 0)} complete runs "
          "reused: their seconds are from the run that made them)")
    print(f"results: {cfg.out}/results.md, {cfg.out}/skills.png; {record_file}")


if __name__ == "__main__":
    main()
