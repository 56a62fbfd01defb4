"""Beam's local runner can lose elements of a stage input when its timed flush of worker input races with its
writer. The jobs run on Beam's own code because their stage inputs are small; this probe checks a size.

``python -m bench.runner_race [--elements 25000] [--size 4000] [--flush-ms 1] [--runs 3] [--running-mode
multi_processing]`` runs, in this process on DirectRunner (``--running-mode``, 2 workers; ``multi_threading`` is
the mode the jobs refuse), a pipeline whose second stage reads a PCollection the runner streams to the workers
(``elements`` of ``size`` bytes; the stage waits for a side input computed from the same elements), with the
runner's flush every ``flush-ms`` milliseconds (Beam's default is 1,000), ``runs`` times. Prints the elements the
stage saw in each run. The defaults (100 MB) lose elements on apache-beam 2.77; the jobs' largest stage inputs
(docs/runners.md) should lose none.
"""

from __future__ import annotations

import argparse
import sys

# The jobs' largest stage inputs, as (elements, bytes each): the shards' manifest entries of a 386k-image corpus,
# and the partial predicate counts the vocabulary combines (one per worker bundle; VG's ~40k distinct predicates
# at ~19 pickled bytes each are ~0.75 MB). Everything else that crosses the runner is a file name or a count.
JOB_STAGE_SIZES = ((600, 200), (8, 750_000))


def elements_seen(elements: int, size: int, flush_ms: int = 1, running_mode: str = "multi_processing") -> int:
    """Runs the pipeline once on the local runner with its timed flush every ``flush_ms`` milliseconds (Beam's
    setting is back afterwards); how many elements the second stage saw."""
    import apache_beam as beam
    from apache_beam.metrics import Metrics
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    from sgverbalise.pipelines.local_runner import direct_runner

    def count(element, total):  # defined here to be pickled by value (workers may not import this module)
        Metrics.counter("runner_race", "seen").inc()
        return element[0]

    per_key = max(1, elements // 100)
    keys = min(100, elements)
    options = PipelineOptions(["--runner=DirectRunner", f"--direct_running_mode={running_mode}",
                               "--direct_num_workers=2"])
    pipeline = beam.Pipeline(runner=direct_runner(options), options=options)  # the Python engine, never Prism
    big = (pipeline | beam.Create(range(keys))
           | beam.FlatMap(lambda i: ((i, j, b"x" * size) for j in range(per_key))))
    total = big | beam.Map(lambda _: 1) | beam.CombineGlobally(sum)
    _ = big | "Count" >> beam.Map(count, total=beam.pvalue.AsSingleton(total))
    beams = worker_handlers.DATA_BUFFER_TIME_LIMIT_MS
    worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = flush_ms  # Beam's own knob, read by the runner when the run starts
    try:
        result = pipeline.run()
        result.wait_until_finish()
    finally:
        worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = beams
    return sum(c.committed or c.attempted for c in result.metrics().query()["counters"]
               if c.key.metric.name == "seen")


def sent(elements: int) -> int:
    """How many elements ``elements_seen`` sends for ``elements`` asked for."""
    return min(100, elements) * max(1, elements // 100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.runner_race", description=__doc__.split("\n\n")[0])
    parser.add_argument("--elements", type=int, default=25_000)
    parser.add_argument("--size", type=int, default=4_000, help="bytes per element")
    parser.add_argument("--flush-ms", type=int, default=1, help="the runner's timed flush (Beam's default: 1000)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--running-mode", default="multi_processing", choices=("multi_processing", "multi_threading"),
                        help="DirectRunner's mode (the jobs refuse multi_threading)")
    args = parser.parse_args(argv)
    print("| flush every | elements sent | bytes each | seen per run |\n|---:|---:|---:|---|")
    seen = [elements_seen(args.elements, args.size, args.flush_ms, args.running_mode) for _ in range(args.runs)]
    print(f"| {args.flush_ms} ms | {sent(args.elements):,} | {args.size:,} | {', '.join(f'{n:,}' for n in seen)} |",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
