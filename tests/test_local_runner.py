"""The guard against the local runner's element loss (``pipelines/local_runner.py``), on real Beam runs.

Without the guard, the pipeline below loses elements when the runner's timed flush of worker input runs every
millisecond: about half of 25,000 elements of 4 KB (100 MB) were gone in each of five runs on a 2-core machine,
and the run still succeeded. (At Beam's default of one flush a second it takes a larger stage input: the shard
job's 108k-image runs lost samples in three of seven.) The test that it happens is not part of the suite, since
it depends on timing; this one checks that with the guard nothing is lost at the same setting.
"""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import worker_handlers

from pipelines.local_runner import disable_time_based_flush

pytestmark = pytest.mark.slow

ELEMENTS, SIZE = 25_000, 4_000


def _elements_seen() -> int:
    """Runs a pipeline whose second stage reads a 100 MB PCollection that the runner streams to 2 workers (it
    waits for a side input computed from the same elements); returns how many elements that stage saw."""
    def count(element, total):  # defined here to be pickled by value: workers cannot import this test module
        Metrics.counter("test", "seen").inc()
        return element[0]

    pipeline = beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner",
                                                      "--direct_running_mode=multi_processing",
                                                      "--direct_num_workers=2"]))
    big = (pipeline | beam.Create(range(100))
           | beam.FlatMap(lambda i: ((i, j, b"x" * SIZE) for j in range(ELEMENTS // 100))))
    total = big | beam.Map(lambda _: 1) | beam.CombineGlobally(sum)
    _ = big | "Count" >> beam.Map(count, total=beam.pvalue.AsSingleton(total))
    result = pipeline.run()
    result.wait_until_finish()
    return sum(c.committed or c.attempted for c in result.metrics().query()["counters"] if c.key.metric.name == "seen")


def test_with_the_guard_the_local_runner_keeps_every_element(monkeypatch):
    monkeypatch.setattr(worker_handlers, "DATA_BUFFER_TIME_LIMIT_MS", 1)  # the flush every millisecond
    assert disable_time_based_flush() is True
    assert worker_handlers.DATA_BUFFER_TIME_LIMIT_MS == 0
    assert _elements_seen() == ELEMENTS
    assert disable_time_based_flush() is False  # already off: nothing to do
