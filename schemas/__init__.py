"""Record contracts of sgverbalise: one source of truth, versioned.

- ``SCENE_GRAPH_SCHEMA``: the canonical scene-graph record (Arrow), as readers produce it and ingest writes it.
- ``sample.schema.json``: the ``.json`` member of one shard sample.
- ``manifest.schema.json``: the ``manifest.json`` of a shard set.
- ``relations.schema.json``: the ``relations.json`` relation vocabulary.

Validators are built from these files (``validator("sample")``); nothing copies them by hand.
"""

from sgverbalise.schemas.records import (
    REJECT_REASONS,
    SCENE_GRAPH_SCHEMA,
    SCHEMA_VERSION,
    load_json_schema,
    validator,
)

__all__ = [
    "REJECT_REASONS",
    "SCENE_GRAPH_SCHEMA",
    "SCHEMA_VERSION",
    "load_json_schema",
    "validator",
]
