"""DirectRunner as the jobs use it, and patches to Beam's local engine while a job runs on it.

``direct_runner`` makes ``--runner=DirectRunner`` (the default) mean Beam's Python engine, the FnApiRunner, never
Prism. ``local_runner_patches`` wraps a run: on that engine, and with the apache-beam release they were tested on
(``BEAM_TESTED``, the pin in pyproject.toml), it puts in place a guard against the engine's element loss, an even
split of each stage's input over its workers, and that input sent in chunks; it takes them out again when the run
ends, however it ends. Other runners, and other Beam releases (one warning), run on Beam's own code. What each patch
does and why, the test that shows it is needed, and how to re-check after a Beam upgrade: docs/runners.md.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineRunner

from sgverbalise.pipelines.options import beam_args

log = logging.getLogger(__name__)
DIRECT_RUNNER_NAMES = ("DirectRunner", "direct")
# The apache-beam releases the patches were tested on; pyproject.toml pins the same range (a test checks).
BEAM_TESTED = ">=2.77,<2.78"
PATCHES = ("flush_guard", "balanced_split", "chunked_send")


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


Patch = tuple[Any, str, Any]  # (class or module, attribute, Beam's replacement while a run lasts)


def _flush_guard() -> list[Patch]:
    """The engine's timed flush of worker input off: it races with the runner's writer and drops what it wrote."""
    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    return [(worker_handlers, "DATA_BUFFER_TIME_LIMIT_MS", 0)]


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


def _balanced_split() -> list[Patch]:
    """A stage's input chunks dealt to its workers by size (``split_by_size``) instead of round-robin."""
    from apache_beam.runners.portability.fn_api_runner.execution import ListBuffer

    original = ListBuffer.partition

    def partition(self, n: int) -> list[list[bytes]]:
        chunks = getattr(self, "_inputs", None)
        if getattr(self, "cleared", True) or not isinstance(chunks, list) or len(chunks) < n:
            return original(self, n)  # cleared (Beam raises), or fewer chunks than workers (Beam splits elements)
        return split_by_size(chunks, n)

    return [(ListBuffer, "partition", partition)]


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


def _chunked_send() -> list[Patch]:
    """Each stage input sent to its workers as one data message per chunk (a grouping's output cut into chunks of
    about ``GROUPED_CHUNK_BYTES`` first) instead of one message for a worker's whole share, from a thread of its
    own while the bundle starts; the bundle's end waits for that thread."""
    from apache_beam.runners.portability.fn_api_runner.execution import GroupingBuffer
    from apache_beam.runners.portability.fn_api_runner.fn_runner import BundleManager

    partition_original, process_original = GroupingBuffer.partition, BundleManager.process_bundle

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

    return [(BundleManager, "_send_input_to_worker", send), (BundleManager, "process_bundle", process_bundle),
            (GroupingBuffer, "partition", partition)]


_BUILDERS = {"flush_guard": _flush_guard, "balanced_split": _balanced_split, "chunked_send": _chunked_send}
_lock = threading.Lock()
_applied: list[tuple[Any, str, Any]] = []  # (owner, attribute, what its own __dict__ held before: Beam's own)
_in_place: tuple[str, ...] = ()
_users = 0
_warned = False
_MISSING = object()


def beam_tested(version: str | None = None) -> bool:
    """Whether apache-beam ``version`` (the installed one by default) is in ``BEAM_TESTED``."""
    from packaging.specifiers import SpecifierSet

    return SpecifierSet(BEAM_TESTED).contains(version or beam.__version__, prereleases=True)


def on_local_engine(pipeline: beam.Pipeline) -> bool:
    """Whether ``pipeline`` runs on DirectRunner's Python engine in this process (what ``direct_runner`` builds),
    as opposed to PortableRunner, Prism, Dataflow or any other runner."""
    from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner

    return isinstance(pipeline.runner, FnApiRunner)


def _restore() -> None:
    while _applied:
        owner, name, saved = _applied.pop()
        if saved is _MISSING:
            delattr(owner, name)
        else:
            setattr(owner, name, saved)


@contextmanager
def local_runner_patches(pipeline: beam.Pipeline, patches: tuple[str, ...] = PATCHES) -> Iterator[tuple[str, ...]]:
    """Run ``pipeline`` inside this block: when it runs on the local engine and the installed apache-beam is in
    ``BEAM_TESTED``, ``patches`` (by default all of ``PATCHES``) are in place until the block ends, however it ends.
    Yields the names of the patches in place (none on another runner; none, after one warning per process, on an
    untested Beam release). The patches change the whole process: runs that overlap share those of the first, and
    Beam's own code is back when the last of them ends."""
    global _users, _warned, _in_place
    if not on_local_engine(pipeline):
        yield ()
        return
    if not beam_tested():
        if not _warned:
            _warned = True
            log.warning("apache-beam %s is not the release the local runner patches were tested on (%s): running "
                        "on Beam's own code (see docs/runners.md to re-check them)", beam.__version__, BEAM_TESTED)
        yield ()
        return
    with _lock:
        if _users == 0:
            try:
                for name in patches:
                    for owner, attribute, value in _BUILDERS[name]():
                        _applied.append((owner, attribute, vars(owner).get(attribute, _MISSING)))
                        setattr(owner, attribute, value)
            except BaseException:
                _restore()
                raise
            _in_place = tuple(patches)
            log.debug("local runner patched for the run: %s", ", ".join(_in_place))
        _users += 1  # a run already in progress put its patches in place: this one shares them
        active = _in_place
    try:
        yield active
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                _restore()
                _in_place = ()


def new_pipeline(argv: list[str]) -> beam.Pipeline:
    """A pipeline with the Beam options ``argv`` on top of the jobs' defaults (``options.beam_args``), on
    DirectRunner's Python engine unless another runner is asked for. Run it inside ``local_runner_patches``."""
    options = PipelineOptions(beam_args(argv))
    return beam.Pipeline(runner=direct_runner(options), options=options)
