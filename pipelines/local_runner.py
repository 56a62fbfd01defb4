"""Beam's local runner as the jobs use it: which engine DirectRunner means, and a guard against its element loss.

DirectRunner, as Beam (2.6x and later) resolves it, first tries Prism, a Go runner it downloads from GitHub on
first use, and falls back to its Python engine (the FnApiRunner) when that fails. The jobs' default, and
``--runner=DirectRunner``, mean the Python engine: ``direct_runner`` builds it as DirectRunner's fallback does,
so ``--direct_running_mode=multi_processing`` and ``--direct_num_workers`` apply, the guard below holds, and a
machine without access to GitHub neither waits for a download nor runs a different engine from one that has
it. Prism stays available with ``--runner=PrismRunner``.

The guard: the local runner (DirectRunner, and PortableRunner with an embedded job server) runs in this process.

The local runner streams each bundle's input to its SDK workers through an output stream that a timer thread
flushes every second (``worker_handlers.DATA_BUFFER_TIME_LIMIT_MS``). That flush takes the buffer, hands it to
the send queue (which may block while the queue is full) and then clears the buffer; bytes the runner's main
thread wrote in between are cleared with it. Whole chunks of encoded elements vanish and the pipeline still
succeeds. It shows when a stage's input is large (the shard job lost records and shard samples at 108k
images) and, with the flush every millisecond, on 100 MB (``python -m bench.runner_race``).

With the time-based flush off, each bundle's input is sent when it is complete, from one thread. Remote runners
(Dataflow, Flink, Spark) do not run this code and are not affected by the guard.
"""

from __future__ import annotations

import logging

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineRunner

log = logging.getLogger(__name__)
DIRECT_RUNNER_NAMES = ("DirectRunner", "direct")


def direct_runner(options: PipelineOptions) -> PipelineRunner | None:
    """The Python engine of DirectRunner when ``options`` ask for DirectRunner (or no runner), with the options
    handed to its workers as DirectRunner hands them; None for any other runner (Beam builds it from the options)."""
    if (options.view_as(StandardOptions).runner or "DirectRunner") not in DIRECT_RUNNER_NAMES:
        return None
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    info = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    return fn_runner.FnApiRunner(provision_info=info)


def disable_time_based_flush() -> bool:
    """Turn the local runner's timed flush of worker input off; True when it was on."""
    try:
        from apache_beam.runners.portability.fn_api_runner import worker_handlers
    except ImportError:  # a Beam without the local runner's worker handlers: nothing to guard
        return False
    if not getattr(worker_handlers, "DATA_BUFFER_TIME_LIMIT_MS", 0):
        return False
    log.debug("local runner: time-based flush of worker input turned off (it races with the writer)")
    worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = 0
    return True
