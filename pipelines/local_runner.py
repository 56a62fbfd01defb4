"""Beam's local runner as the jobs use it: which engine DirectRunner means, a guard against its element loss, an
even split of each stage's input over its workers, and that input sent in chunks. ``new_pipeline`` applies them
all.

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

The split: the local runner keeps a stage's input as the chunks its workers sent it (up to 10 MB each) and deals
them to the next stage's workers round-robin. With few chunks of unequal size that is uneven, and it depends on the
order in which the chunks arrived: the shard job's records (six chunks for 20,000 images) went 31 MB to one worker
and 14 MB to the other in about half the runs, and its sample stage then took 11-13 s instead of 8-10 s.
``balance_stage_inputs`` deals the chunks by size instead, each to the worker with the fewest bytes so far (the
same chunks, whole and in order; only who gets which changes), so the split is even whatever the arrival order.

The chunks: the local runner writes a worker's whole share of a stage input into one output stream and sends it
as one data message when the stream is closed, and a grouping's output is one encoded block per worker. Building,
measuring and serialising one message of hundreds of MB kept the runner's single process busy: at 108k images
the shard job's grouping and writing steps spent 19 and 16 s of the runner's CPU, most of their wall time, and
its memory peaked at 8.4 GB while it handed the shard groups over. ``send_inputs_in_chunks`` sends each chunk
as its own message, and cuts a grouping's output between elements into chunks of about 8 MB first (the same
elements, in the same order, to the same worker). The runner sends a bundle's whole input before it asks the
worker to process the bundle, through send queues of 100 MB: in chunks, a larger input would wait for a worker
not yet asked to read it (the 108k-image job hung), so a thread of its own sends the input while the bundle
starts, and the bundle's end waits for it. The workers' own sending is untouched: it already flushes every 10 MB.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineRunner

from sgverbalise.pipelines.options import beam_args

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

    # only the options set: a default True of a store_false flag (pipeline_type_check) reaches the workers as
    # --pipeline_type_check, which no parser knows, and each worker warns that it discards it
    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options(drop_default=True))
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


def split_by_size(chunks: list[bytes], n: int) -> list[list[bytes]]:
    """``chunks`` dealt to ``n`` parts, largest first, each to the part with the fewest bytes so far (ties: the
    lowest index); each part keeps its chunks in their original order."""
    loads, owner = [0] * n, {}
    for i in sorted(range(len(chunks)), key=lambda i: (-len(chunks[i]), i)):
        part = min(range(n), key=lambda k: (loads[k], k))
        owner[i] = part
        loads[part] += len(chunks[i])
    parts: list[list[bytes]] = [[] for _ in range(n)]
    for i, chunk in enumerate(chunks):
        parts[owner[i]].append(chunk)
    return parts


def balance_stage_inputs() -> bool:
    """Make the local runner deal a stage's input chunks to its workers by size; True when this changed it.
    Beam's own split stays in use where the buffer is not the list of chunks this expects."""
    try:
        from apache_beam.runners.portability.fn_api_runner.execution import ListBuffer
    except ImportError:
        return False
    original = ListBuffer.partition
    if hasattr(original, "beam_original"):
        return False

    def partition(self, n: int) -> list[list[bytes]]:
        chunks = getattr(self, "_inputs", None)
        if getattr(self, "cleared", True) or not isinstance(chunks, list) or len(chunks) < n:
            return original(self, n)  # cleared (Beam raises), or fewer chunks than workers (Beam splits elements)
        return split_by_size(chunks, n)

    partition.beam_original = original  # every patch here keeps Beam's own method under this name
    ListBuffer.partition = partition
    log.debug("local runner: stage inputs dealt to workers by size")
    return True


GROUPED_CHUNK_BYTES = 8 << 20


def element_chunks(data: bytes, coder_impl: Any, limit: int) -> list[bytes]:
    """``data`` (encoded elements, one after another) cut at element boundaries into chunks of at least
    ``limit`` bytes (the last may be smaller); ``data`` itself when it is no larger than ``limit``."""
    if len(data) <= limit:
        return [data]
    from apache_beam.coders.coder_impl import create_InputStream

    stream, chunks, start = create_InputStream(data), [], 0
    while stream.size() > 0:
        coder_impl.decode_from_stream(stream, True)
        end = len(data) - stream.size()
        if end - start >= limit:
            chunks.append(data[start:end])
            start = end
    if start < len(data):
        chunks.append(data[start:])
    return chunks


def send_inputs_in_chunks() -> bool:
    """Make the local runner send each stage input to its workers as one data message per chunk (up to about
    10 MB) instead of one message for the whole input; True when this changed it."""
    try:
        from apache_beam.runners.portability.fn_api_runner.execution import GroupingBuffer
        from apache_beam.runners.portability.fn_api_runner.fn_runner import BundleManager
    except ImportError:
        return False
    send_original, partition_original = BundleManager._send_input_to_worker, GroupingBuffer.partition
    process_original = BundleManager.process_bundle
    if hasattr(send_original, "beam_original"):
        return False

    def send(self, process_bundle_id: str, read_transform_id: str, byte_streams) -> None:
        data_out = self._worker_handler.data_conn.output_stream(process_bundle_id, read_transform_id)
        chunks, failed = list(byte_streams or []), []

        def write() -> None:
            try:
                for chunk in chunks:
                    data_out.write(chunk)
                    data_out.flush()  # a message per chunk: chunks hold whole elements
                data_out.close()
            except BaseException as exc:  # raised again where the bundle ends
                failed.append(exc)

        # Beam sends a bundle's whole input before it asks the worker to process the bundle, and its send queues
        # hold 100 MB: an input sent in chunks that is larger than the queues would wait for a worker that has not
        # been asked to read it yet. A thread of its own writes the input while the bundle starts.
        sender = threading.Thread(target=write, name="send_stage_input", daemon=True)
        sender.start()
        self.senders = [*getattr(self, "senders", []), (sender, failed)]

    def process_bundle(self, *args: Any, **kwargs: Any) -> Any:
        try:
            result = process_original(self, *args, **kwargs)
        except BaseException:
            # the bundle failed: its worker drops the input still coming; the bundle's own error is the one raised
            for sender, _ in getattr(self, "senders", []):
                sender.join(timeout=60)
            self.senders = []
            raise
        senders, self.senders = getattr(self, "senders", []), []
        for sender, failed in senders:  # the worker has read the whole input: these end at once
            sender.join()
            if failed:
                raise failed[0]
        return result

    def partition(self, n: int) -> list[list[bytes]]:
        parts = partition_original(self, n)
        if not getattr(self, "chunked", False):
            coder_impl = self._post_grouped_coder.get_impl()
            self._grouped_output = [[c for data in part for c in element_chunks(data, coder_impl, GROUPED_CHUNK_BYTES)]
                                    for part in parts]
            self.chunked = True
        return self._grouped_output

    send.beam_original, partition.beam_original = send_original, partition_original
    process_bundle.beam_original = process_original
    BundleManager._send_input_to_worker, GroupingBuffer.partition = send, partition
    BundleManager.process_bundle = process_bundle
    log.debug("local runner: stage inputs sent in chunks")
    return True


def new_pipeline(argv: list[str]) -> beam.Pipeline:
    """A pipeline with the Beam options ``argv`` on top of the jobs' defaults (``options.beam_args``), on
    DirectRunner's Python engine unless another runner is asked for, with the local runner guarded and balanced."""
    options = PipelineOptions(beam_args(argv))
    disable_time_based_flush()
    balance_stage_inputs()
    send_inputs_in_chunks()
    return beam.Pipeline(runner=direct_runner(options), options=options)
