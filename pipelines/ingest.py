"""``sgv ingest``: VG and GQA scene graphs read once into Parquet files of canonical records.

    sgv ingest --vg DIR --gqa FILE --out URL [--records-per-file N] [--limit N] [Beam options]

Writes ``records-00000.parquet, ...`` (the Arrow schema of ``schemas/records.py``; records sorted by
``{source}-{image_id}``, each file at most ``--records-per-file``), the read rejects as ``rejects/*.jsonl`` and
``ingest.json`` (files with rows, bytes and sha256; the read counts; reject counts; input fingerprints).
``sgv build-shards --records URL`` then reads those files in parallel, one per element, instead of parsing the
giant JSON files and joining VG's split files again. Same guarantees as the shard job: deterministic bytes,
each file atomic, no ``ingest.json`` unless every record read is in a file.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq

from sgverbalise.errors import InputError
from sgverbalise.pipelines import options as opts
from sgverbalise.pipelines import preflight
from sgverbalise.pipelines.finalise import input_fingerprints
from sgverbalise.pipelines.ingested import load_manifest
from sgverbalise.pipelines.progress import progress
from sgverbalise.pipelines.publish import IncompleteRunError, WriteRejects, dumps, remove_stale, run_job, sort_cuts
from sgverbalise.pipelines.transforms import ReadSceneGraphs, shard_plan
from sgverbalise.sample import sample_key
from sgverbalise.schemas import SCHEMA_VERSION
from sgverbalise.schemas.layout import INGEST_MANIFEST, INGEST_OUTPUTS, RECORDS_FILE
from sgverbalise.schemas.records import SCENE_GRAPH_SCHEMA
from sgverbalise.storage import atomic_write, join, read_bytes, redact

log = logging.getLogger(__name__)


class IncompleteIngestError(IncompleteRunError):
    """The files under ``--records`` are not the complete ingest run its ingest.json lists (one was changed or
    replaced): the shard job stops before reading records that are not the ones ingest wrote. The name is
    what a user sees in the runner's error text (a pinned test looks for it)."""


def record_key(record: dict) -> str:
    return sample_key(record["source"], record["image_id"])


def parquet_bytes(records: list[dict]) -> bytes:
    """One Parquet file of ``records`` (in this order) with the canonical schema."""
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(records, schema=SCENE_GRAPH_SCHEMA), buf, compression="zstd")
    return buf.getvalue()


def read_records(data: bytes) -> list[dict]:
    """The records of one file written by ``parquet_bytes``."""
    return pq.read_table(io.BytesIO(data), schema=SCENE_GRAPH_SCHEMA).to_pylist()


class WriteRecordsFn(beam.DoFn):
    """Writes one file of records, sorted by key, atomically; checks the group against its plan first."""

    def __init__(self, out: str) -> None:
        self.out = out

    def process(self, element: tuple[int, Iterable[dict]], plan: tuple[dict[str, int], Counter[int]]) -> Iterator[dict]:
        index, records = element
        ordered, planned = sorted(records, key=record_key), plan[1][index]
        if len(ordered) != planned or len({record_key(r) for r in ordered}) != planned:
            raise IncompleteRunError(f"file {index}: {len(ordered)} records arrived, {planned} planned")
        data = parquet_bytes(ordered)
        name = RECORDS_FILE.format(index=index)
        atomic_write(join(self.out, name), data)
        progress().add("records_written")
        yield {"name": name, "rows": len(ordered), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


class FinaliseIngestFn(beam.DoFn):
    """Checks that every record read is in a file, writes ingest.json, removes files an earlier run left."""

    def __init__(self, out: str, config: dict, inputs: list[dict]) -> None:
        self.out, self.config, self.inputs = out, config, inputs

    def process(self, _, files, stats, reject_files, cuts) -> Iterator[dict]:
        files = sorted(files, key=lambda f: f["name"])
        stats = dict(sorted(stats))
        rows, read = sum(f["rows"] for f in files), stats.get("images_read", 0)
        rejected = stats.get("images_rejected", 0)
        if rows != read - rejected or stats.get("vg_entries_read", 0) != stats.get("vg_entries_joined", 0):
            raise IncompleteRunError(f"{rows} records in the files, {read} images read with {rejected} rejected, "
                                        f"VG file entries read {stats.get('vg_entries_read', 0)}, joined "
                                        f"{stats.get('vg_entries_joined', 0)}: elements were lost; run the job again")
        manifest = {"schema_version": SCHEMA_VERSION, "kind": "sgverbalise-records", "config": self.config,
                    "inputs": self.inputs, "files": files, "stats": stats, "cuts": sort_cuts(cuts),
                    "rejects": {group: {"count": count, "file": name}
                                for group, count, name in sorted(reject_files)}}
        atomic_write(join(self.out, INGEST_MANIFEST), dumps(manifest))
        keep = {f["name"] for f in files} | {name for _, _, name in reject_files}
        remove_stale(self.out, keep, INGEST_OUTPUTS)
        yield manifest


def build_ingest(pipeline: beam.Pipeline, cfg: opts.BuildConfig, per_file: int) -> beam.PCollection:
    """Adds the ingest job to ``pipeline``; returns the one-element PCollection of its manifest."""
    records, rejects, read_stats, cuts = pipeline | "Read" >> ReadSceneGraphs(cfg)
    # the file plan from the keys alone (108k VG keys are a few MB), as shards are planned: (assignment, per file)
    plan = (records | "Keys" >> beam.Map(lambda r: (None, (record_key(r), 1))) | "AllKeys" >> beam.GroupByKey()
            | "Plan" >> beam.Map(lambda kv: shard_plan(kv, per_file, None)[1]))
    plan_side = beam.pvalue.AsSingleton(plan, default_value=({}, Counter()))
    files = (records
             | "ToFile" >> beam.Map(lambda r, p: (p[0][record_key(r)], r), p=plan_side)
             | "GroupFiles" >> beam.GroupByKey()
             | "Write" >> beam.ParDo(WriteRecordsFn(cfg.out), plan=plan_side))
    reject_files = rejects | "Rejects" >> WriteRejects(cfg.out)
    stats = read_stats | "SumStats" >> beam.CombinePerKey(sum)
    config = {"vg": redact(cfg.vg) if cfg.vg else None, "gqa": [redact(u) for u in cfg.gqa], "limit": cfg.limit,
              "records_per_file": per_file, "allow_partial_inputs": cfg.allow_partial_inputs}
    return (pipeline | "Once" >> beam.Create([None])
            | "Finalise" >> beam.ParDo(FinaliseIngestFn(cfg.out, config, input_fingerprints(cfg)),
                                       files=beam.pvalue.AsList(files), stats=beam.pvalue.AsList(stats),
                                       reject_files=beam.pvalue.AsList(reject_files),
                                       cuts=beam.pvalue.AsList(cuts)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sgv ingest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vg", help="Visual Genome folder (scene_graphs.json, or objects/relationships/... files)")
    parser.add_argument("--gqa", action="append", default=[], help="GQA *_sceneGraphs.json (repeatable)")
    parser.add_argument("--out", required=True, help="output prefix for the Parquet files and ingest.json")
    parser.add_argument("--limit", type=int, help="read at most this many images per input file (for trials)")
    parser.add_argument("--records-per-file", type=int, default=10_000)
    opts.add_partial_argument(parser)


def run_ingest(args: argparse.Namespace, beam_argv: list[str]) -> dict:
    """Runs the ingest job; returns the manifest it wrote."""
    if not args.vg and not args.gqa:
        raise InputError("give --vg and/or --gqa")
    opts.check_ranges(args, {"--records-per-file": (1, None), "--limit": (1, None)})
    cfg = opts.BuildConfig(out=args.out.rstrip("/"), vg=args.vg, gqa=tuple(args.gqa), limit=args.limit,
                           allow_partial_inputs=args.allow_partial_inputs)
    preflight.check_job(cfg, beam_argv)
    _, manifest = run_job(cfg.out, INGEST_MANIFEST, lambda p: build_ingest(p, cfg, args.records_per_file), beam_argv,
                          job="ingest")
    for cut in manifest["cuts"]:
        log.warning("input cut, accepted: %s", cut)
    log.info("ingest done: %d records in %d files", sum(f["rows"] for f in manifest["files"]), len(manifest["files"]))
    return manifest


def run(argv: list[str] | None = None) -> dict:
    args, beam_argv = build_parser().parse_known_args(argv)
    return run_ingest(args, beam_argv)




class ReadRecordFileFn(beam.DoFn):
    """The records of one Parquet file of an ingest run, after checking its sha256 against the manifest."""

    def process(self, element: tuple[str, str]) -> Iterator[dict]:
        url, sha256 = element
        data = read_bytes(url)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise IncompleteIngestError(f"{redact(url)} is not the file its ingest.json lists (sha256 differs)")
        yield from read_records(data)


def _reject_lines(url: str) -> Iterator[dict]:
    for line in read_bytes(url).decode("utf-8").splitlines():
        if line.strip():
            yield json.loads(line)


class ReadIngested(beam.PTransform):
    """The records, read rejects and read counts of an ingest run, as ``ReadSceneGraphs`` gives them: the files
    are read in parallel, one element per file."""

    def __init__(self, records: str) -> None:
        super().__init__()
        self.records = records

    def expand(self, pbegin):
        manifest = load_manifest(self.records)
        files = [(join(self.records, f["name"]), f["sha256"]) for f in manifest["files"]]
        reject_files = sorted(join(self.records, r["file"]) for r in manifest["rejects"].values())
        records = (pbegin | "RecordFiles" >> beam.Create(files) | "Reshuffle" >> beam.Reshuffle()
                   | "ReadRecords" >> beam.ParDo(ReadRecordFileFn()))
        rejects = pbegin | "RejectFiles" >> beam.Create(reject_files) | "ReadRejects" >> beam.FlatMap(_reject_lines)
        stats = pbegin | "ReadCounts" >> beam.Create(sorted(manifest["stats"].items()))
        cuts = pbegin | "ReadCuts" >> beam.Create(manifest.get("cuts", []))  # none before ingest recorded them
        return records, rejects, stats, cuts
