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
from helpers import beams_own, beams_own_split

from bench.runner_race import elements_seen
from sgverbalise.pipelines.local_runner import (
    balance_stage_inputs,
    direct_runner,
    disable_time_based_flush,
    element_chunks,
    send_inputs_in_chunks,
    split_by_size,
)
from sgverbalise.pipelines.options import beam_args

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


def test_element_chunks_cut_only_between_elements():
    from apache_beam.coders.coder_impl import create_InputStream, create_OutputStream
    from apache_beam.coders.coders import FastPrimitivesCoder

    impl = FastPrimitivesCoder().get_impl()
    elements = [(i, b"x" * (i * 37 % 500)) for i in range(400)]
    out = create_OutputStream()
    for element in elements:
        impl.encode_to_stream(element, out, True)
    data = out.get()
    chunks = element_chunks(data, impl, limit=4_000)
    assert len(chunks) > 10 and b"".join(chunks) == data
    assert all(len(c) >= 4_000 for c in chunks[:-1])
    decoded = []
    for chunk in chunks:  # each chunk decodes on its own: no element straddles two
        stream = create_InputStream(chunk)
        while stream.size() > 0:
            decoded.append(impl.decode_from_stream(stream, True))
    assert decoded == elements
    assert element_chunks(data, impl, limit=len(data)) == [data]


def _grouping_run(monkeypatch) -> list[int]:
    """A real run grouping 20 keys of 300 values of 5 KB (30 MB); the sizes of the data messages the runner
    sent to its workers. The group sizes and contents are checked inside the pipeline."""
    import apache_beam as beam
    from apache_beam.runners.worker import data_plane
    from apache_beam.testing.util import assert_that, equal_to

    sent: list[int] = []
    enqueue = data_plane._GrpcDataChannel._enqueue_to_send

    def record(self, elem):
        if getattr(elem, "data", b""):
            sent.append(len(elem.data))
        return enqueue(self, elem)

    monkeypatch.setattr(data_plane._GrpcDataChannel, "_enqueue_to_send", record)
    options = PipelineOptions(["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    with beam.Pipeline(runner=direct_runner(options), options=options) as pipeline:
        groups = (pipeline | beam.Create(range(20))
                  | beam.FlatMap(lambda k: ((k, bytes([k]) * 5_000) for _ in range(300)))
                  | beam.GroupByKey()
                  | beam.MapTuple(lambda k, vs: (k, len(list(vs)), {bytes(v) == bytes([k]) * 5_000 for v in vs})))
        assert_that(groups, equal_to([(k, 300, {True}) for k in range(20)]))
    return sent


@pytest.mark.slow
def test_stage_inputs_go_to_the_workers_in_messages_of_about_10_mb(monkeypatch):
    from apache_beam.runners.portability.fn_api_runner import execution

    disable_time_based_flush()
    # Beam's own sending first (a job run earlier in this process may have put the chunked one in place)
    beams_own(monkeypatch, fn_runner.BundleManager, "_send_input_to_worker")
    beams_own(monkeypatch, fn_runner.BundleManager, "process_bundle")
    beams_own(monkeypatch, execution.GroupingBuffer, "partition")
    assert max(_grouping_run(monkeypatch)) > 14 << 20  # each worker's half of the groups in one message
    assert send_inputs_in_chunks() is True
    sent = _grouping_run(monkeypatch)
    assert max(sent) < 11 << 20 and sum(sent) > 30_000_000  # chunks: 8 MB of groups and the group that passes it
    assert send_inputs_in_chunks() is False  # already in place
