"""Beam's local runner loses elements when its timed flush of worker input races with its writer; the flush guard
of ``pipelines/local_runner.py`` turns that flush off while a job runs.

``python -m bench.runner_race [--elements 25000] [--size 4000] [--flush-ms 1] [--runs 3] [--running-mode
multi_processing]`` runs, in this process on DirectRunner (``--running-mode``, 2 workers; ``multi_threading`` is
the mode the jobs refuse), a pipeline whose second stage reads a PCollection the runner
streams to the workers (``elements`` of ``size`` bytes; the stage waits for a side input computed from the same
elements), with the runner's flush every ``flush-ms`` milliseconds: ``runs`` times on Beam's own code, then ``runs``
times with the guard alone. Prints the elements the stage saw in each run. After a Beam upgrade, runs without the
guard that lose nothing say the guard may no longer be needed (docs/runners.md).
"""

from __future__ import annotations

import argparse
import sys


def elements_seen(elements: int, size: int, running_mode: str = "multi_processing",
                  patches: tuple[str, ...] = ()) -> int:
    """Runs the pipeline once on the local runner with the job's local runner ``patches`` (names from
    ``local_runner.PATCHES``; none by default); how many elements the second stage saw."""
    import apache_beam as beam
    from apache_beam.metrics import Metrics
    from apache_beam.options.pipeline_options import PipelineOptions

    from sgverbalise.pipelines.local_runner import direct_runner, local_runner_patches

    def count(element, total):  # defined here to be pickled by value (workers may not import this module)
        Metrics.counter("runner_race", "seen").inc()
        return element[0]

    per_key = max(1, elements // 100)
    options = PipelineOptions(["--runner=DirectRunner", f"--direct_running_mode={running_mode}",
                               "--direct_num_workers=2"])
    pipeline = beam.Pipeline(runner=direct_runner(options), options=options)  # the Python engine, never Prism
    big = (pipeline | beam.Create(range(100))
           | beam.FlatMap(lambda i: ((i, j, b"x" * size) for j in range(per_key))))
    total = big | beam.Map(lambda _: 1) | beam.CombineGlobally(sum)
    _ = big | "Count" >> beam.Map(count, total=beam.pvalue.AsSingleton(total))
    with local_runner_patches(pipeline, patches) as in_place:
        assert in_place == patches, f"the patches {patches} are not in place (apache-beam outside the tested range?)"
        result = pipeline.run()
        result.wait_until_finish()
    return sum(c.committed or c.attempted for c in result.metrics().query()["counters"]
               if c.key.metric.name == "seen")


def main(argv: list[str] | None = None) -> int:
    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    parser = argparse.ArgumentParser(prog="python -m bench.runner_race", description=__doc__.split("\n\n")[0])
    parser.add_argument("--elements", type=int, default=25_000)
    parser.add_argument("--size", type=int, default=4_000, help="bytes per element")
    parser.add_argument("--flush-ms", type=int, default=1, help="the runner's timed flush (Beam's default: 1000)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--running-mode", default="multi_processing", choices=("multi_processing", "multi_threading"),
                        help="DirectRunner's mode (the jobs refuse multi_threading)")
    args = parser.parse_args(argv)
    expected = 100 * max(1, args.elements // 100)
    print("| guard | flush every | elements sent | seen per run |\n|---|---:|---:|---|")
    worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = args.flush_ms  # Beam's own value while no job runs
    for guarded in (False, True):
        patches = ("flush_guard",) if guarded else ()
        seen = [elements_seen(args.elements, args.size, args.running_mode, patches) for _ in range(args.runs)]
        print(f"| {'on' if guarded else 'off'} | {args.flush_ms} ms | {expected:,} | "
              f"{', '.join(f'{n:,}' for n in seen)} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
