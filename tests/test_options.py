"""Beam options of the shard job: the default runner, user options on top, Beam's own names told apart from
misspelt options of ours, the refused mode in both forms, and the options the workers are handed."""

from __future__ import annotations

import argparse

import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from sgverbalise.errors import InputError
from sgverbalise.pipelines.local_runner import direct_runner
from sgverbalise.pipelines.options import beam_args, check_ranges, parse_beam_args


def test_default_is_direct_runner_multi_processing_with_two_workers():
    args = beam_args([])
    assert "--runner=DirectRunner" in args and "--direct_running_mode=multi_processing" in args
    assert "--direct_num_workers=2" in args


@pytest.mark.parametrize("given", [["--direct_num_workers=1"], ["--direct_num_workers", "1"]])
def test_user_options_win_in_both_forms(given):
    args = beam_args(given)
    assert "--direct_num_workers=2" not in args
    assert PipelineOptions(args).get_all_options()["direct_num_workers"] == 1


def test_other_runners_drop_direct_defaults():
    args = beam_args(["--runner", "PortableRunner", "--job_endpoint=embed"])
    assert PipelineOptions(args).view_as(StandardOptions).runner == "PortableRunner"
    assert not [a for a in args if a.startswith("--direct_")] and "--runner=DirectRunner" not in args


@pytest.mark.parametrize("given", [["--direct_running_mode=multi_threading"],
                                   ["--direct_running_mode", "multi_threading"]])
def test_multi_threading_is_refused_in_both_forms(given):
    with pytest.raises(InputError, match="multi_threading is refused"):
        beam_args(given)


@pytest.mark.parametrize(("given", "named"), [
    (["--sampels-per-shard", "3"], "--sampels-per-shard 3"),  # a misspelt option of ours with its value
    (["--direct_num_workers=1", "stray"], "stray"),
    (["--samples_per_shard=3"], "--samples_per_shard=3"),
])
def test_what_is_no_beam_option_is_named(given, named):
    with pytest.raises(InputError, match=f"unrecognized arguments: {named}$"):
        parse_beam_args(given)


def test_bad_values_of_beam_options_are_input_errors():
    with pytest.raises(InputError, match="direct_num_workers"):
        parse_beam_args(["--direct_num_workers", "two"])
    with pytest.raises(InputError, match="invalid choice"):
        parse_beam_args(["--direct_running_mode=bogus"])


def test_beam_options_of_every_options_class_are_known():
    known = parse_beam_args(["--runner=PortableRunner", "--job_endpoint", "embed", "--environment_type=LOOPBACK",
                             "--save_main_session", "--experiments=a", "--experiments", "b"])
    assert known.job_endpoint == "embed" and known.save_main_session and known.experiments == ["a", "b"]


def test_workers_are_handed_only_options_they_can_parse():
    """Beam's defaults of its store_false flags (pipeline_type_check, ...) reached each worker as flags no parser
    knows, and every worker warned that it discards them."""
    handed = direct_runner(PipelineOptions(beam_args([])))._provision_info.provision_info.pipeline_options
    options = {key.split(":")[2]: value for key, value in handed.items()}
    assert options["direct_running_mode"] == "multi_processing"
    assert "pipeline_type_check" not in options and "direct_runner_use_stacked_bundle" not in options
    parse_beam_args(PipelineOptions.from_dictionary(options)._flags)  # raises on a flag Beam cannot parse


def test_ranges_name_the_option_and_its_bounds():
    args = argparse.Namespace(samples_per_shard=0, val_fraction=0.5, limit=None)
    with pytest.raises(InputError, match="--samples-per-shard must be at least 1, got 0"):
        check_ranges(args, {"--limit": (1, None), "--val-fraction": (0.0, 1.0), "--samples-per-shard": (1, None)})
    with pytest.raises(InputError, match="--val-fraction must be between 0.0 and 1.0, got 1.5"):
        check_ranges(argparse.Namespace(val_fraction=1.5), {"--val-fraction": (0.0, 1.0)})


def test_parsing_records_reads_nothing(tmp_path):
    # --records names an ingest run; its ingest.json is read when the job runs, not while arguments are parsed
    import argparse

    from sgverbalise.pipelines.options import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = config_from_args(parser.parse_args(["--records", str(tmp_path / "not-yet"), "--out", str(tmp_path)]))
    assert cfg.records == str(tmp_path / "not-yet") and cfg.record_sources == ()
