"""How a run of a job (build-shards, ingest) publishes its output, written once for both: the run sequence
around the marker file (removed first, written last by the job, read back), the run's staging area (what units
write waits there until the last step moves it to its final name), each unit's rejects in a staging file and
their merge into one file per kind and reason, the JSON bytes of every file, the removal of what an earlier run
left, and the one error of a run that lost elements on the way."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

import apache_beam as beam

from sgverbalise.errors import InputError, InputFileError
from sgverbalise.pipelines.local_runner import new_pipeline
from sgverbalise.pipelines.progress import progress
from sgverbalise.pipelines.transforms import REJECT_FILES, REJECTS
from sgverbalise.rejects import group, merge_lines, sorted_lines
from sgverbalise.schemas.layout import MERGED_REJECTS, STAGING_DIR, UNIT_REJECTS, rejects_name
from sgverbalise.storage import AtomicFile, atomic_open, atomic_write, join, move, remove_leftovers, url_fs


class IncompleteRunError(RuntimeError):
    """Elements were lost or repeated between stages: the output is not marked complete (no marker file)."""


def dumps(obj) -> bytes:
    """The JSON bytes of every file the jobs write: sorted keys, fixed indent, trailing newline."""
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


class Staging:
    """The staging area of a run writing to ``out``: a file that will be published as ``out/NAME`` is written to
    ``out/.staging/NAME`` first (shards, records files, merged rejects) and moved to its final name by the run's
    last step, once the counts add up; the units' reject files wait there too. Emptied when a run starts, when it
    fails and when it ends, so a failed run leaves nothing under a final name."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.root = join(out, STAGING_DIR)

    def url(self, name: str) -> str:
        return join(self.root, name)

    def clear(self) -> None:
        fs, path = url_fs(self.root)
        if fs.exists(path):
            fs.rm(path, recursive=True)

    def publish(self, names: Iterable[str]) -> None:
        """Move each staged ``name`` to its final name. A name whose staged file is gone but whose final file
        exists was moved by an earlier attempt of this step (a runner's retry) and is left as it is."""
        fs, _ = url_fs(self.out)
        for name in sorted(names):
            try:
                move(self.url(name), join(self.out, name))
                progress().add("files_published")
            except FileNotFoundError:
                if not fs.exists(url_fs(join(self.out, name))[1]):
                    raise IncompleteRunError(f"{name}: neither staged nor published; run the job again") from None


# ------------------------------------------------------------------------------------------------------- rejects
# Each unit keeps its rejects until it ends, then writes them sorted to one staging file (UnitRejects); only the
# file's name and its counts by kind/reason cross the runner (REJECT_FILES). The last step merges those files,
# and the few rejects made outside units, into one sorted file per kind and reason (MergeRejects), holding one
# line of each file at a time.

MAX_RUNS = 64  # sorted reject files merged at once (one open file each); more are merged in rounds
READ_BLOCK = 1 << 20  # read-ahead of each open reject file on an object store
PROGRESS_EVERY_LINES = 10_000  # reject lines merged between two counts of the progress line


class UnitRejects:
    """The rejects of unit ``unit``, written sorted to its staging file by ``close``."""

    def __init__(self, out: str, unit: int) -> None:
        self.url = Staging(out).url(UNIT_REJECTS.format(unit=unit))
        self.rejects: list[dict] = []

    def add(self, r: dict) -> None:
        self.rejects.append(r)

    def close(self) -> dict | None:
        """Writes the file; returns what crosses the runner: ``{"file": URL, "counts": {kind/reason: n}}``, or
        None when the unit rejected nothing (no file)."""
        if not self.rejects:
            return None
        atomic_write(self.url, b"".join(line + b"\n" for line in sorted_lines(self.rejects)))
        counts = Counter(group(r) for r in self.rejects)
        self.rejects = []
        return {"file": self.url, "counts": dict(sorted(counts.items()))}


def rejects_to_file(outputs: Iterable, out: str, unit: int) -> Iterator:
    """The outputs of one unit's work with its rejects (REJECTS) taken out and written to the unit's staging file:
    the other outputs as they come, then the file's name and counts (REJECT_FILES), if it rejected anything."""
    rejects = UnitRejects(out, unit)
    for output in outputs:
        if isinstance(output, beam.pvalue.TaggedOutput) and output.tag == REJECTS:
            rejects.add(output.value)
        else:
            yield output
    if (info := rejects.close()) is not None:
        yield beam.pvalue.TaggedOutput(REJECT_FILES, info)


def read_lines(url: str) -> Iterator[bytes]:
    """The lines of a reject file (without their newlines), read as they are needed."""
    fs, path = url_fs(url)
    with fs.open(path, "rb", block_size=READ_BLOCK) as f:
        for line in f:
            if line := line.rstrip(b"\n"):
                yield line


def _write_lines(url: str, lines: Iterable[tuple[str, bytes]]) -> None:
    with atomic_open(url) as f:
        for _, line in lines:
            f.write(line + b"\n")


def merge_in_rounds(staging: Staging, urls: list[str], most: int = MAX_RUNS) -> list[str]:
    """Sorted reject files, merged ``most`` at a time into staging files until at most ``most`` are left."""
    round_ = 0
    while len(urls) > most:
        merged = []
        for k in range(0, len(urls), most):
            merged.append(staging.url(MERGED_REJECTS.format(round=round_, index=k // most)))
            _write_lines(merged[-1], merge_lines([read_lines(u) for u in urls[k:k + most]]))
        urls, round_ = merged, round_ + 1
    return urls


def write_groups(staging: Staging, lines: Iterable[tuple[str, bytes]]) -> Counter:
    """Each group's lines (consecutive in ``lines``) as the staged file ``rejects_name(group)``; returns the lines
    written per group."""
    written: Counter[str] = Counter()
    current: tuple[str, AtomicFile] | None = None
    pending = 0  # lines not yet counted in the progress line (counted in batches: this is the merge's hot path)
    try:
        for g, line in lines:
            if current is None or current[0] != g:
                if current is not None:
                    current[1].commit()
                if g in written:
                    raise ValueError(f"reject lines out of order: {g} again after another group")
                current = (g, AtomicFile(staging.url(rejects_name(g))))
            current[1].write(line + b"\n")
            written[g] += 1
            pending += 1
            if pending == PROGRESS_EVERY_LINES:
                progress().add("rejects_merged", pending)
                pending = 0
        if current is not None:
            current[1].commit()
        progress().add("rejects_merged", pending)
    except BaseException:
        if current is not None:
            current[1].abort()
        raise
    return written


class MergeRejectsFn(beam.DoFn):
    """The run's rejects as ``rejects/{kind}-{reason}.jsonl`` in the staging area, each sorted (``rejects.order``),
    from the rejects made outside units and the units' sorted reject files; yields (``kind/reason``, count, file
    name). The lines written must be the counts the units reported, or the run fails (IncompleteRunError)."""

    def __init__(self, out: str) -> None:
        self.out = out

    def process(self, _, rejects: list[dict], files: list[dict]) -> Iterator[tuple[str, int, str]]:
        staging = Staging(self.out)
        expected = Counter(group(r) for r in rejects)
        for info in files:
            expected.update(info["counts"])
        urls = sorted(info["file"] for info in files)
        if len(set(urls)) != len(urls):
            raise IncompleteRunError("a unit's reject file was reported twice: run the job again")
        runs = [read_lines(url) for url in merge_in_rounds(staging, urls)]
        written = write_groups(staging, merge_lines([iter(sorted_lines(rejects)), *runs]))
        if written != expected:
            raise IncompleteRunError(f"the reject files hold {dict(written)} rejects, the units reported "
                                     f"{dict(expected)}: elements were lost; no manifest was written: run the job "
                                     "again")
        for g, count in sorted(written.items()):
            yield g, count, rejects_name(g)


class MergeRejects(beam.PTransform):
    """(rejects, reject files) to the merged files' (``kind/reason``, count, name), one step (``MergeRejectsFn``)."""

    def __init__(self, out: str) -> None:
        super().__init__()
        self.out = out

    def expand(self, inputs):
        rejects, files = inputs
        return (rejects.pipeline | "Once" >> beam.Create([None])
                | "Merge" >> beam.ParDo(MergeRejectsFn(self.out), rejects=beam.pvalue.AsList(rejects),
                                        files=beam.pvalue.AsList(files)))


def remove_stale(out: str, keep: set[str], patterns: Iterable[str]) -> list[str]:
    """Remove the files under ``out`` that match ``patterns`` (relative globs) but are not in ``keep``, and temp
    leftovers; returns what was removed."""
    fs, root = url_fs(out)
    removed = remove_leftovers(out)
    for pattern in patterns:
        for path in fs.glob(f"{root}/{pattern}"):
            name = path[len(root):].lstrip("/")
            if name not in keep:
                fs.rm(path)
                removed.append(name)
    return removed


def sort_cuts(cuts: Iterable[dict]) -> list[dict]:
    """The cut input files as the manifests list them: by source and file."""
    return sorted(cuts, key=lambda c: (c["source"], c["file"]))


# How an InputFileError raised in a worker reads in the runner's error text: the last line of its traceback
# (a runner that runs the DoFn in its own process re-raises it, with the step appended).
_INPUT_FILE_ERROR = re.compile(r"InputFileError: (.+?)(?: \[while running '[^']*'\])*$", re.MULTILINE)


def input_file_error(exc: BaseException) -> InputFileError | None:
    """The InputFileError in the chain of ``exc`` (a runner that runs the DoFns in this process re-raises it, as
    its cause or context); None otherwise: a runner of worker processes only names it in its error text."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, InputFileError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def raise_input_file_error(exc: BaseException, job: str) -> None:
    """An ``InputError`` of one line naming the file and where it broke off, when ``exc`` (the failure of a run)
    comes from an input file that is cut or does not parse; nothing otherwise."""
    found = input_file_error(exc)
    text = str(found) if found is not None else None
    if text is None:
        matches = _INPUT_FILE_ERROR.findall(str(exc))
        text = matches[-1].strip() if matches else None
    if text is None:
        return
    text = re.sub(r"(?: \[while running '[^']*'\])+$", "", text)
    raise InputError(f"{text}; {job} failed and published nothing (--allow-partial-inputs accepts a cut file)") \
        from exc


def run_job(out: str, marker: str, build: Callable[[beam.Pipeline], object], beam_argv: list[str],
            job: str = "the run"):
    """Removes ``out/marker`` (it marks a complete run: none until this one completes) and what a killed run left
    in the staging area, adds the job to a new pipeline with ``build``, runs it to the end; returns (the Beam
    result, the marker file the job wrote). A run that fails empties the staging area: it published nothing.
    An input file that breaks off fails the run as one InputError naming it (``raise_input_file_error``)."""
    fs, root = url_fs(out)
    marker_path = f"{root}/{marker}"
    if fs.exists(marker_path):
        fs.rm(marker_path)
    staging = Staging(out)
    staging.clear()
    pipeline = new_pipeline(beam_argv)
    build(pipeline)
    try:
        result = pipeline.run()
        result.wait_until_finish()
    except Exception as exc:
        staging.clear()
        raise_input_file_error(exc, job)
        raise
    with fs.open(marker_path, "rb") as f:
        return result, json.load(f)
