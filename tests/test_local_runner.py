"""The local runner of ``pipelines/local_runner.py``: which engine DirectRunner means, when its patches to Beam are
in place (only inside a run on that engine, with the tested apache-beam) and that it is needed: without it, Beam's
own code loses elements (flush guard). docs/runners.md says what the patch does and why, and why the patches the job
needed before its units (balanced split, chunked send) went.
"""

from __future__ import annotations

import logging
import re

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import fn_runner, worker_handlers
from helpers import REPO

from bench.runner_race import elements_seen
from sgverbalise.pipelines import local_runner
from sgverbalise.pipelines.local_runner import (
    BEAM_TESTED,
    PATCHES,
    beam_tested,
    direct_runner,
    local_runner_patches,
    new_pipeline,
)
from sgverbalise.pipelines.options import beam_args

ELEMENTS, SIZE = 25_000, 4_000
# Every attribute of Beam's that a patch replaces, as Beam defines it
TARGETS = [(worker_handlers, "DATA_BUFFER_TIME_LIMIT_MS")]


def beams_code() -> list:
    return [vars(owner).get(name) for owner, name in TARGETS]


BEAMS_OWN = beams_code()  # nothing is patched outside a run: this is Beam's own code


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


def test_pyproject_pins_the_tested_beam_and_it_is_the_installed_one():
    pins = re.findall(r'^\s*"apache-beam([^"]*)"', (REPO / "pyproject.toml").read_text(), re.MULTILINE)
    assert pins == [BEAM_TESTED]
    assert beam_tested()
    assert beam_tested("2.77.1") and beam_tested("2.77.2rc1")
    assert not any(beam_tested(v) for v in ("2.77.0rc1", "2.76.0", "2.78.0", "2.78.0.dev0"))


def test_patches_are_in_place_only_inside_the_block_even_when_it_fails():
    pipeline = new_pipeline([])
    assert beams_code() == BEAMS_OWN
    with local_runner_patches(pipeline) as in_place:
        assert in_place == PATCHES
        assert all(now is not own for now, own in zip(beams_code(), BEAMS_OWN, strict=True))
        assert worker_handlers.DATA_BUFFER_TIME_LIMIT_MS == 0
    assert beams_code() == BEAMS_OWN
    with pytest.raises(RuntimeError, match="the run failed"), local_runner_patches(pipeline):
        raise RuntimeError("the run failed")
    assert beams_code() == BEAMS_OWN
    with local_runner_patches(pipeline) as outer:  # overlapping runs share the patches until the last ends
        with local_runner_patches(new_pipeline([]), ()) as inner:
            assert inner == outer == PATCHES
        assert beams_code()[0] == 0  # the outer run still has them
    assert beams_code() == BEAMS_OWN
    with local_runner_patches(pipeline, ()) as in_place:  # a run may ask for none
        assert in_place == () and beams_code() == BEAMS_OWN
    assert beams_code() == BEAMS_OWN


@pytest.mark.parametrize("argv", [["--runner=PortableRunner", "--job_endpoint=embed"], ["--runner=PrismRunner"]])
def test_other_runners_run_on_beams_own_code(argv):
    pipeline = new_pipeline(argv)
    with local_runner_patches(pipeline) as in_place:
        assert in_place == () and beams_code() == BEAMS_OWN


def test_an_untested_beam_runs_on_its_own_code_after_one_warning(monkeypatch, caplog):
    monkeypatch.setattr(beam, "__version__", "2.78.0")
    monkeypatch.setattr(local_runner, "_warned", False)
    pipeline = new_pipeline([])
    with caplog.at_level(logging.WARNING, logger=local_runner.__name__):
        for _ in range(2):
            with local_runner_patches(pipeline) as in_place:
                assert in_place == () and beams_code() == BEAMS_OWN
    warnings = [r.getMessage() for r in caplog.records if r.name == local_runner.__name__]
    assert len(warnings) == 1 and "2.78.0" in warnings[0] and BEAM_TESTED in warnings[0]


@pytest.mark.slow
def test_flush_guard_is_needed_beam_loses_stage_input_to_its_timed_flush(monkeypatch):
    # Beam's own sending of a stage input races with the timed flush. It needs a large input at Beam's flush of once
    # a second (the shard job's 108k images lost samples in three runs of seven); with the flush every millisecond
    # 100 MB show it: a third to a half were lost in each run seen. It depends on timing: up to three runs, the
    # first that loses ends the test. The shard job's largest stage input now is its rejects, grouped by reason:
    # on the real VG with GQA's vocabulary that may reach this size (docs/runners.md).
    monkeypatch.setattr(worker_handlers, "DATA_BUFFER_TIME_LIMIT_MS", 1)
    seen = []
    for _ in range(3):
        seen.append(elements_seen(ELEMENTS, SIZE, patches=()))
        if seen[-1] < ELEMENTS:
            break
    assert any(n < ELEMENTS for n in seen), f"no element lost in {seen}: does this Beam still need the flush guard?"
    assert worker_handlers.DATA_BUFFER_TIME_LIMIT_MS == 1


@pytest.mark.slow
def test_with_the_flush_guard_beams_sending_keeps_every_element_and_its_code_is_back_after(monkeypatch):
    monkeypatch.setattr(worker_handlers, "DATA_BUFFER_TIME_LIMIT_MS", 1)  # the flush every millisecond
    assert elements_seen(ELEMENTS, SIZE, patches=("flush_guard",)) == ELEMENTS
    assert worker_handlers.DATA_BUFFER_TIME_LIMIT_MS == 1


@pytest.mark.slow
def test_a_failed_run_leaves_beams_own_code():
    def fail(x):
        raise ValueError(f"element {x}")

    pipeline = new_pipeline([])
    _ = pipeline | beam.Create([1, 2]) | beam.Map(fail)
    with pytest.raises(Exception, match="element"), local_runner_patches(pipeline) as in_place:
        assert in_place == PATCHES
        pipeline.run().wait_until_finish()
    assert beams_code() == BEAMS_OWN
