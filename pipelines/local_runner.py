"""A guard against element loss in Beam's local runner (DirectRunner, and PortableRunner with an embedded job
server), which runs in this process.

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

log = logging.getLogger(__name__)


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
