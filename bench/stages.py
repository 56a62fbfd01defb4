"""Wall time of each stage of the shard job on the local runner, to compare two versions of the code step by step.

``python -m bench.stages [--images 20000] [--image-mode passthrough] [--runs 2] [--code PATH ...] [--out bench/out]``
reuses (or generates) the image corpus of ``bench.images`` (with ``--image-mode none``, the graphs-only corpus of
``bench.read_json``) and runs ``build-shards`` on it (job options as ``bench.images``), each run in a fresh
interpreter whose local runner times every stage: from the start of its first worker's part to the end of its
last. With ``--code`` (a checkout, or a
copy of its ``pipelines``, ``sgverbalise`` and ``schemas``), the runs import that tree: it is their working
directory, which ``python -m`` puts first on ``sys.path`` (the run fails if the job's code came from elsewhere).
Several ``--code`` values are run in turn, ``--runs`` rounds of each, so that old and new code meet the same load.
Prints one row per stage, named by the transforms it fuses, with each run's seconds (stages under 0.05 s in
every run left out), then the CPU seconds the runner's own process spent in each stage (carrying elements
between stages, grouping; the SDK workers excluded): a stage whose runner CPU is close to its wall time waits
on the runner, not on its workers; and the runner process's peak RSS by the end of each stage (where the
local runner's memory goes).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.images import image_corpus, job_argv
from bench.read_json import corpus_for

_TRANSFORM = re.compile(r"ref_AppliedPTransform_([A-Za-z]+(?:-[A-Za-z]+)*)")


def stage_label(name: str) -> str:
    """A short name for a fused stage: its transforms' names in order (a composite's inner name after its own)."""
    seen: list[str] = []
    for label in _TRANSFORM.findall(name):
        parts = label.split("-")
        short = parts[1] if parts[0] in ("Read", "Shards") and len(parts) > 1 else parts[0]
        if short not in seen:
            seen.append(short)
    return "+".join(seen) or name[:40]


def _child(argv: list[str]) -> tuple[str, list[dict]]:
    """One job run with every stage timed (in the measured interpreter); also the tree its code came from."""
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    import sgverbalise.pipelines as pipelines
    from sgverbalise.pipelines.build_shards import run

    start, stages = time.perf_counter(), []
    execute = fn_runner.FnApiRunner._execute_bundle

    def timed(self, runner_context, bundle_context_manager, bundle_input):
        began, cpu = time.perf_counter(), time.process_time()
        result = execute(self, runner_context, bundle_context_manager, bundle_input)
        stages.append({"stage": stage_label(bundle_context_manager.stage.name), "start_s": began - start,
                       "seconds": time.perf_counter() - began, "runner_cpu_s": time.process_time() - cpu,
                       "runner_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
        return result

    fn_runner.FnApiRunner._execute_bundle = timed
    run(argv)
    return str(Path(pipelines.__file__).resolve().parents[1]), stages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stages", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--max-side", type=int, default=128)
    parser.add_argument("--image-mode", default="passthrough", choices=("none", "resize", "passthrough"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=2, help="rounds; each round runs every --code once")
    parser.add_argument("--code", action="append", default=[], help="a tree to import first (repeatable); "
                        "default: the installed code")
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("job_args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.job_args)))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.image_mode == "none":  # the graphs-only corpus of bench.read_json and bench.build_shards
        corpus, _, _ = corpus_for(out, args.images, args.seed)
    else:
        corpus, _, _ = image_corpus(out, args.images, args.seed, args.image_size)
    corpus, shards = corpus.resolve(), (out / "stages-job").resolve()
    repo = Path(__file__).resolve().parents[1]
    mode = None if args.image_mode == "none" else args.image_mode
    jargv = job_argv(corpus, shards, mode, args.max_side, args.workers)
    codes = args.code or [""]
    runs: list[tuple[str, list[dict]]] = []
    for round_ in range(1, args.runs + 1):
        for code in codes:
            shutil.rmtree(shards, ignore_errors=True)
            # `python -m` puts the working directory first on sys.path, in this interpreter and in the runner's
            # SDK workers (started in the same directory): run in the tree to import, find bench via PYTHONPATH
            tree = Path(code).resolve() if code else repo
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(
                p for p in (str(tree), str(repo), os.environ.get("PYTHONPATH")) if p))
            print(f"round {round_}: {code or 'installed code'} ...", file=sys.stderr, flush=True)
            done = subprocess.run([sys.executable, "-m", "bench.stages", "--child", "--", *jargv], env=env,
                                  stdout=subprocess.PIPE, check=True, cwd=tree)
            imported, stages = json.loads(done.stdout.decode().strip().splitlines()[-1])
            if Path(imported) != tree:
                raise RuntimeError(f"the job imported its code from {imported}, not {tree}")
            runs.append((code or "installed", stages))
    shutil.rmtree(shards, ignore_errors=True)
    names = list(dict.fromkeys(s["stage"] for _, stages in runs for s in stages))
    for field, what in (("seconds", "wall seconds per stage"),
                        ("runner_cpu_s", "CPU seconds of the runner's own process (its SDK workers excluded)"),
                        ("runner_peak_mb", "peak RSS of the runner's own process by the end of the stage (MB)")):
        print(f"{args.image_mode}, {args.images:,} images: {what}\n")
        print("| stage | " + " | ".join(f"{Path(c).name or c} (round {i // len(codes) + 1})"
                                        for i, (c, _) in enumerate(runs)) + " |")
        print("|---|" + "---:|" * len(runs))
        for name in names:
            # a stage label may cover several stages: seconds add up, a peak is the last one's
            cells = [(max if field == "runner_peak_mb" else sum)([s[field] for s in stages if s["stage"] == name])
                     for _, stages in runs]
            walls = [sum(s["seconds"] for s in stages if s["stage"] == name) for _, stages in runs]
            if max(walls) < 0.05:  # bookkeeping stages (counts, rejects, the plan's inputs)
                continue
            print(f"| {name} | " + " | ".join(f"{c:,.0f}" if field == "runner_peak_mb" else f"{c:.2f}"
                                              for c in cells) + " |")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
