"""DirectRunner as the jobs use it, and patches to Beam's local engine while a job runs on it.

``direct_runner`` makes ``--runner=DirectRunner`` (the default) mean Beam's Python engine, the FnApiRunner, never
Prism. ``local_runner_patches`` wraps a run: on that engine, and with the apache-beam release it was tested on
(``BEAM_TESTED``, the pin in pyproject.toml), it puts in place a guard against the engine's element loss; it takes
it out again when the run ends, however it ends. Other runners, and other Beam releases (one warning), run on
Beam's own code. What the patch does and why, the test that shows it is needed, and how to re-check after a Beam
upgrade: docs/runners.md (which also says why the job's earlier patches, balanced split and chunked send, went).
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
PATCHES = ("flush_guard",)


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


_BUILDERS = {"flush_guard": _flush_guard}
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
