"""``sgv ingest``: VG and GQA scene graphs read once into Parquet files of canonical records.

    sgv ingest --vg DIR --gqa FILE --out URL [--records-per-file N] [--limit N] [Beam options]

Writes ``records-00000.parquet, ...`` (the Arrow schema of ``schemas/records.py``): file k holds the records
of unit k of the shard job's plan (``--images-per-unit`` = ``--records-per-file``), in input order; the read
rejects as ``rejects/*.jsonl`` and ``ingest.json`` (files with rows, bytes and sha256; the read counts; reject
counts; input fingerprints). ``sgv build-shards --records URL`` then reads those files in parallel, one unit per
file, instead of parsing the giant JSON files and joining VG's split files again: with the same unit size it
writes the same shards. Same guarantees as the shard job: deterministic bytes,
each file atomic, no ``ingest.json`` unless every record read is in a file.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import logging
from collections.abc import Iterator

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq

from sgverbalise.errors import InputError
from sgverbalise.pipelines import options as opts
from sgverbalise.pipelines import preflight
from sgverbalise.pipelines.finalise import input_fingerprints
from sgverbalise.pipelines.ingested import load_manifest, records_units
from sgverbalise.pipelines.progress import progress
from sgverbalise.pipelines.publish import (
    IncompleteRunError,
    MergeRejects,
    Staging,
    dumps,
    rejects_to_file,
    remove_stale,
    run_job,
    sort_cuts,
)
from sgverbalise.pipelines.transforms import CUTS, REJECT_FILES, STATS, RecordsCounter
from sgverbalise.pipelines.units import PlanUnits, SpreadUnits, loaded, unit_records
from sgverbalise.sample import sample_key
from sgverbalise.schemas import SCHEMA_VERSION
from sgverbalise.schemas.layout import INGEST_MANIFEST, INGEST_OUTPUTS, RECORDS_FILE
from sgverbalise.schemas.records import SCENE_GRAPH_SCHEMA
from sgverbalise.storage import atomic_write, join, redact

log = logging.getLogger(__name__)


def record_key(record: dict) -> str:
    return sample_key(record["source"], record["image_id"])


def parquet_bytes(records: list[dict]) -> bytes:
    """One Parquet file of ``records`` (in this order) with the canonical schema."""
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(records, schema=SCENE_GRAPH_SCHEMA), buf, compression="zstd")
    return buf.getvalue()


class IngestUnitFn(RecordsCounter):
    """Reads one unit of the inputs and writes its records, in input order, as ``records-{unit}.parquet``
    (written even when empty, so that file k is unit k) and its read rejects to its own sorted file, both in the
    staging area; yields the file's entry for ingest.json, and the reject file's name and counts (tagged)."""

    def __init__(self, out: str, allow_partial: bool) -> None:
        self.out, self.allow_partial = out, allow_partial

    def process(self, unit) -> Iterator:
        yield from rejects_to_file(self._unit(loaded(unit)), self.out, unit.index)

    def _unit(self, unit) -> Iterator:
        records = []
        for output in unit_records(self, unit, self.allow_partial):
            if isinstance(output, beam.pvalue.TaggedOutput):
                yield output
            else:
                records.append(output)
        data = parquet_bytes(records)
        name = RECORDS_FILE.format(index=unit.index)
        atomic_write(Staging(self.out).url(name), data)
        progress().add("records_written")
        yield {"name": name, "rows": len(records), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


class FinaliseIngestFn(beam.DoFn):
    """Checks that every record read is in a file, publishes the staged files, writes ingest.json, removes files
    an earlier run left."""

    def __init__(self, out: str, config: dict, inputs: list[dict]) -> None:
        self.out, self.config, self.inputs = out, config, inputs

    def process(self, _, files, stats, reject_files, cuts) -> Iterator[dict]:
        files = sorted(files, key=lambda f: f["name"])
        stats = dict(sorted(stats))
        if (planned := stats.pop("units_planned", 0)) != len(files):  # one file per unit, even an empty one
            raise IncompleteRunError(f"{planned} units planned, {len(files)} records files written: elements were "
                                     "lost; run the job again")
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
        keep = {f["name"] for f in files} | {name for _, _, name in reject_files}
        staging = Staging(self.out)
        staging.publish(keep)
        atomic_write(join(self.out, INGEST_MANIFEST), dumps(manifest))
        remove_stale(self.out, keep, INGEST_OUTPUTS)
        staging.clear()
        yield manifest


def build_ingest(pipeline: beam.Pipeline, cfg: opts.BuildConfig, per_file: int) -> beam.PCollection:
    """Adds the ingest job to ``pipeline``; returns the one-element PCollection of its manifest."""
    units, plan_rejects, plan_stats, plan_cuts, _ = pipeline | "Plan" >> PlanUnits(
        dataclasses.replace(cfg, images_per_unit=per_file))
    read = units | "Units" >> beam.ParDo(IngestUnitFn(cfg.out, cfg.allow_partial_inputs)).with_outputs(
        REJECT_FILES, STATS, CUTS, main="files")
    files = read.files
    read_stats = (plan_stats, read[STATS]) | "AllStats" >> beam.Flatten()
    cuts = (plan_cuts, read[CUTS]) | "AllCuts" >> beam.Flatten()
    reject_files = (plan_rejects, read[REJECT_FILES]) | "Rejects" >> MergeRejects(cfg.out)
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
    parser.add_argument("--records-per-file", type=int, default=2_000,
                        help="images per file: the units of the shard job's plan; as its --images-per-unit (default), "
                        "build-shards --records writes the same shards as build-shards on the JSON")
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




class IngestedUnits(beam.PTransform):
    """The units of ``build-shards --records`` (one per Parquet file of the ingest run, spread over the workers),
    with the read rejects (ingest's sorted reject files, as units' reject files are: name and counts), read counts
    and cuts that ingest recorded."""

    def __init__(self, records: str) -> None:
        super().__init__()
        self.records = records

    def expand(self, pbegin):
        manifest = load_manifest(self.records)
        reject_files = [{"file": join(self.records, r["file"]), "counts": {group: r["count"]}}
                        for group, r in sorted(manifest["rejects"].items())]
        units = (pbegin | "RecordFiles" >> beam.Create(records_units(self.records, manifest["files"]))
                 | "Spread" >> SpreadUnits())
        rejects = pbegin | "RejectFiles" >> beam.Create(reject_files)
        read_counts = sorted(manifest["stats"].items()) + [("units_planned", len(manifest["files"]))]
        stats = pbegin | "ReadCounts" >> beam.Create(read_counts)
        cuts = pbegin | "ReadCuts" >> beam.Create(manifest.get("cuts", []))  # none before ingest recorded them
        return units, rejects, stats, cuts
