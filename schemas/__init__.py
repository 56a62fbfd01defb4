"""Record contracts of sgverbalise: one source of truth, versioned.

- ``SCENE_GRAPH_SCHEMA``: the canonical scene-graph record (Arrow), as readers produce it and ingest writes it.
- ``sample.schema.json``: the ``.json`` member of one shard sample.
- ``manifest.schema.json``: the ``manifest.json`` of a shard set.
- ``relations.schema.json``: the ``relations.json`` relation vocabulary.
- ``layout.py``: the shard-set layout (file names, splits, shard names) and the one resolver of a shard spec.
- ``sample.py``: the fields of a sample's ``.json`` as TypedDicts, for readers of samples.
- ``urls.py``: joining names onto a URL, showing a URL without credentials.

Nothing here imports the rest of sgverbalise (tests/test_layers.py).

Validators are built from these files (``validator("sample")``); nothing copies them by hand.
"""

from sgverbalise.schemas.records import (
    MANIFEST_SCHEMA_VERSION,
    MANIFEST_SCHEMA_VERSIONS,
    REJECT_REASONS,
    SCENE_GRAPH_SCHEMA,
    SCHEMA_VERSION,
    load_json_schema,
    validator,
)

__all__ = [
    "MANIFEST_SCHEMA_VERSION",
    "MANIFEST_SCHEMA_VERSIONS",
    "REJECT_REASONS",
    "SCENE_GRAPH_SCHEMA",
    "SCHEMA_VERSION",
    "load_json_schema",
    "validator",
]
