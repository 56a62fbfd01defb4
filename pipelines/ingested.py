"""The manifest of a finished ``sgv ingest`` run (``ingest.json``), as the jobs that read its records need it."""

from __future__ import annotations

import json

from sgverbalise.errors import InputError
from sgverbalise.schemas.layout import INGEST_MANIFEST
from sgverbalise.storage import join, read_bytes, redact


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
