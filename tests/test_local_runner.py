"""The guard against the local runner's element loss (``pipelines/local_runner.py``), on real Beam runs.

Without the guard, the pipeline of ``bench/runner_race.py`` loses elements when the runner's timed flush of
worker input runs every millisecond: a third to a half of 25,000 elements of 4 KB (100 MB) were gone in each
of seven runs on a 2-core machine, and every run still succeeded. (At Beam's default of one flush a second it
takes a larger stage input: the shard job's 108k-image runs lost samples in three of seven.) That it happens
depends on timing, so ``python -m bench.runner_race`` shows it and this test does not assert it; this test
checks that with the guard nothing is lost.
"""

from __future__ import annotations

import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import fn_runner, worker_handlers
from helpers import beams_own_split

from bench.runner_race import elements_seen
from pipelines.local_runner import balance_stage_inputs, direct_runner, disable_time_based_flush, split_by_size
from pipelines.options import beam_args

ELEMENTS, SIZE = 25_000, 4_000


@pytest.mark.parametrize("argv", [[], ["--runner=DirectRunner"], ["--runner", "direct"]])
def test_direct_runner_means_the_python_engine_with_the_options_for_its_workers(argv):
    options = PipelineOptions(beam_args([*argv, "--direct_num_workers=3"]))
    runner = direct_runner(options)
    assert isinstance(runner, fn_runner.FnApiRunner)
    handed = runner._provision_info.provision_info.pipeline_options
    assert handed["beam:option:direct_num_workers:v1"] in (3, "3")
    assert handed["beam:option:direct_running_mode:v1"] == "multi_processing"


@pytest.mark.parametrize("runner", ["PrismRunner", "PortableRunner", "DataflowRunner", "FlinkRunner"])
def test_other_runners_are_left_to_beam(runner):
    assert direct_runner(PipelineOptions(beam_args([f"--runner={runner}"]))) is None


def test_split_by_size_evens_out_chunks_that_round_robin_would_not():
    chunks = [b"a" * 10, b"b" * 10, b"c" * 10, b"d" * 3, b"e" * 10, b"f" * 2]  # arrival order of the runs seen
    parts = split_by_size(chunks, 2)
    assert sorted(sum(map(len, p)) for p in parts) == [22, 23]  # round-robin gives 30 and 15
    assert sorted(c for p in parts for c in p) == sorted(chunks)  # every chunk once, whole
    assert all(p == sorted(p, key=chunks.index) for p in parts)  # in arrival order within a part
    assert split_by_size(chunks, 2) == parts
    assert [len(p) for p in split_by_size(chunks[:3], 3)] == [1, 1, 1]


def test_the_local_runner_deals_stage_inputs_by_size(monkeypatch):
    from apache_beam.runners.portability.fn_api_runner import execution

    beams_own_split(monkeypatch)
    buffer = execution.ListBuffer(None)
    buffer._inputs = [b"a" * 10, b"b" * 10, b"c" * 10, b"d" * 3, b"e" * 10, b"f" * 2]
    assert [len(b"".join(p)) for p in buffer.partition(2)] == [30, 15]  # Beam's round-robin
    assert balance_stage_inputs() is True
    assert sorted(len(b"".join(p)) for p in buffer.partition(2)) == [22, 23]
    assert balance_stage_inputs() is False  # already in place
    buffer.clear()
    with pytest.raises(RuntimeError):  # Beam's own checks still apply
        buffer.partition(2)


@pytest.mark.slow
def test_with_the_guard_the_local_runner_keeps_every_element(monkeypatch):
    monkeypatch.setattr(worker_handlers, "DATA_BUFFER_TIME_LIMIT_MS", 1)  # the flush every millisecond
    assert disable_time_based_flush() is True
    assert worker_handlers.DATA_BUFFER_TIME_LIMIT_MS == 0
    assert elements_seen(ELEMENTS, SIZE) == ELEMENTS
    assert disable_time_based_flush() is False  # already off: nothing to do
