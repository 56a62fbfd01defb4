"""How a run of a job (build-shards, ingest) publishes its output, written once for both: the run sequence
around the marker file (removed first, written last by the job, read back), reject files grouped by kind and
reason, the JSON bytes of every file, the removal of what an earlier run left, and the one error of a run that
lost elements on the way."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator

import apache_beam as beam

from sgverbalise.errors import InputError, InputFileError
from sgverbalise.pipelines.local_runner import local_runner_patches, new_pipeline
from sgverbalise.schemas.layout import rejects_name
from sgverbalise.storage import atomic_write, join, remove_leftovers, url_fs


class IncompleteRunError(RuntimeError):
    """Elements were lost or repeated between stages: the output is not marked complete (no marker file)."""


def dumps(obj) -> bytes:
    """The JSON bytes of every file the jobs write: sorted keys, fixed indent, trailing newline."""
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _reject_order(r: dict) -> tuple:
    return (r["source"], r["image_id"] or "", r["kind"], r["reason"], r["detail"])


class WriteRejectsFn(beam.DoFn):
    """One ``rejects/{kind}-{reason}.jsonl`` per kind and reason, lines sorted; yields (``kind/reason``, count,
    file name), so the manifest's counts come from the files themselves."""

    def __init__(self, out: str) -> None:
        self.out = out

    def process(self, element: tuple[str, Iterable[dict]]) -> Iterator[tuple[str, int, str]]:
        group, rejects = element
        lines = [json.dumps(r, sort_keys=True, ensure_ascii=False) for r in sorted(rejects, key=_reject_order)]
        name = rejects_name(group)
        atomic_write(join(self.out, name), ("\n".join(lines) + "\n").encode())
        yield group, len(lines), name


class WriteRejects(beam.PTransform):
    """Rejects grouped by ``kind/reason``, one file per group (``WriteRejectsFn``)."""

    def __init__(self, out: str) -> None:
        super().__init__()
        self.out = out

    def expand(self, rejects):
        return (rejects | "ByReason" >> beam.Map(lambda r: (f"{r['kind']}/{r['reason']}", r))
                | "GroupRejects" >> beam.GroupByKey() | "WriteRejects" >> beam.ParDo(WriteRejectsFn(self.out)))


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
    """Removes ``out/marker`` (it marks a complete run: none until this one completes), adds the job to a new
    pipeline with ``build``, runs it to the end; returns (the Beam result, the marker file the job wrote).
    An input file that breaks off fails the run as one InputError naming it (``raise_input_file_error``)."""
    fs, root = url_fs(out)
    marker_path = f"{root}/{marker}"
    if fs.exists(marker_path):
        fs.rm(marker_path)
    pipeline = new_pipeline(beam_argv)
    build(pipeline)
    try:
        with local_runner_patches(pipeline):
            result = pipeline.run()
            result.wait_until_finish()
    except Exception as exc:
        raise_input_file_error(exc, job)
        raise
    with fs.open(marker_path, "rb") as f:
        return result, json.load(f)
