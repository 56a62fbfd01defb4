"""The manifest of a finished ``sgv ingest`` run (``ingest.json``), as the jobs that read its records need it."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass

import pyarrow.parquet as pq

from sgverbalise.errors import InputError
from sgverbalise.pipelines.publish import IncompleteRunError
from sgverbalise.schemas.layout import INGEST_MANIFEST
from sgverbalise.schemas.records import SCENE_GRAPH_SCHEMA
from sgverbalise.storage import join, read_bytes, redact


class IncompleteIngestError(IncompleteRunError):
    """The files under ``--records`` are not the complete ingest run its ingest.json lists (one was changed or
    replaced): the shard job stops before reading records that are not the ones ingest wrote. The name is
    what a user sees in the runner's error text (a pinned test looks for it)."""


@dataclass(frozen=True)
class RecordsUnit:
    """A unit of ``build-shards --records``: one Parquet file of an ingest run (``index``: its place in
    ingest.json, which numbers the unit's shards)."""

    index: int
    url: str
    sha256: str


def records_units(records: str, files: list[dict]) -> list[RecordsUnit]:
    return [RecordsUnit(i, join(records, f["name"]), f["sha256"]) for i, f in enumerate(files)]


def read_records(data: bytes) -> list[dict]:
    """The records of one Parquet file written by ingest."""
    return pq.read_table(io.BytesIO(data), schema=SCENE_GRAPH_SCHEMA).to_pylist()


def read_records_unit(unit: RecordsUnit) -> list[dict]:
    """The records of one ingest file, after checking its sha256 against ingest.json."""
    data = read_bytes(unit.url)
    if hashlib.sha256(data).hexdigest() != unit.sha256:
        raise IncompleteIngestError(f"{redact(unit.url)} is not the file its ingest.json lists (sha256 differs)")
    return read_records(data)


def record_sources(records: str) -> tuple[str, ...]:
    """The sources (``vg``, ``gqa``) an ingest run under ``records`` read."""
    config = load_manifest(records)["config"]
    return (("vg",) if config.get("vg") else ()) + (("gqa",) if config.get("gqa") else ())


def load_manifest(records: str) -> dict:
    """The ``ingest.json`` of a complete ingest run under ``records``."""
    try:
        manifest = json.loads(read_bytes(join(records, INGEST_MANIFEST)))
    except FileNotFoundError:
        raise InputError(f"no {INGEST_MANIFEST} under {redact(records)}: run sgv ingest first "
                         "(or it did not finish)") from None
    if manifest.get("kind") != "sgverbalise-records":
        raise InputError(f"{redact(records)}/{INGEST_MANIFEST} is not a records manifest")
    return manifest
