"""Beam options of the shard job: the default runner, user options on top, and the refused mode."""

from __future__ import annotations

import pytest

from sgverbalise.pipelines.options import beam_args


def test_default_is_direct_runner_multi_processing_with_two_workers():
    args = beam_args([])
    assert "--runner=DirectRunner" in args and "--direct_running_mode=multi_processing" in args
    assert "--direct_num_workers=2" in args


def test_user_options_win_and_other_runners_drop_direct_defaults():
    assert "--direct_num_workers=2" not in beam_args(["--direct_num_workers=1"])
    args = beam_args(["--runner", "PortableRunner", "--job_endpoint=embed"])
    assert "--runner=PortableRunner" in args and not [a for a in args if a.startswith("--direct_")]
    assert "--runner=DirectRunner" not in args


def test_multi_threading_is_refused():
    with pytest.raises(SystemExit, match="multi_threading"):
        beam_args(["--direct_running_mode=multi_threading"])


def test_parsing_records_reads_nothing(tmp_path):
    # --records names an ingest run; its ingest.json is read when the job runs, not while arguments are parsed
    import argparse

    from sgverbalise.pipelines.options import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = config_from_args(parser.parse_args(["--records", str(tmp_path / "not-yet"), "--out", str(tmp_path)]))
    assert cfg.records == str(tmp_path / "not-yet") and cfg.record_sources == ()
