"""DirectRunner as the jobs use it.

``direct_runner`` makes ``--runner=DirectRunner`` (the default) mean Beam's Python engine, the FnApiRunner, never
Prism. The jobs run on Beam's own code on every runner: docs/runners.md says why no patch to the local engine is
needed any more (no stage input of the jobs is large) and how to re-check that after a Beam upgrade.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineRunner

from sgverbalise.pipelines.options import beam_args

DIRECT_RUNNER_NAMES = ("DirectRunner", "direct")


def direct_runner(options: PipelineOptions) -> PipelineRunner | None:
    """The Python engine of DirectRunner when ``options`` ask for DirectRunner (or no runner), with the options
    handed to its workers as DirectRunner hands them; None for any other runner (Beam builds it from the options)."""
    if (options.view_as(StandardOptions).runner or "DirectRunner") not in DIRECT_RUNNER_NAMES:
        return None
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    # only the options set: a default True of a store_false flag (pipeline_type_check) reaches the workers as
    # --pipeline_type_check, which no parser knows, and each worker warns that it discards it
    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options(drop_default=True))
    info = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    return fn_runner.FnApiRunner(provision_info=info)


def new_pipeline(argv: list[str]) -> beam.Pipeline:
    """A pipeline with the Beam options ``argv`` on top of the jobs' defaults (``options.beam_args``), on
    DirectRunner's Python engine unless another runner is asked for."""
    options = PipelineOptions(beam_args(argv))
    return beam.Pipeline(runner=direct_runner(options), options=options)
