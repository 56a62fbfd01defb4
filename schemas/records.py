"""The canonical scene-graph record (Arrow) and loaders for the JSON Schemas beside this file."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

import pyarrow as pa

# Bump the minor version for additive changes, the major one for anything a reader of old shards would misread.
SCHEMA_VERSION = "1.0"
# manifest.json: 1.1 adds ``cuts`` (input files accepted cut, --allow-partial-inputs); readers take 1.0 and 1.1
MANIFEST_SCHEMA_VERSION = "1.2"  # 1.1: cuts; 1.2: train shards per unit of work, joins
MANIFEST_SCHEMA_VERSIONS = ("1.0", "1.1", MANIFEST_SCHEMA_VERSION)

_BOX = [("x", pa.int32()), ("y", pa.int32()), ("w", pa.int32()), ("h", pa.int32())]

OBJECT_TYPE = pa.struct(
    [
        ("object_id", pa.string()),
        ("names", pa.list_(pa.string())),  # as written in the source
        ("name", pa.string()),  # normalised primary name (null before normalisation)
        ("attributes", pa.list_(pa.string())),  # as written
        ("attributes_norm", pa.list_(pa.string())),  # normalised (null before normalisation)
        ("merged_object_ids", pa.list_(pa.string())),
        *_BOX,
    ]
)

RELATION_TYPE = pa.struct(
    [
        ("relation_id", pa.string()),  # VG relationship_id; GQA has none (null)
        ("subject_id", pa.string()),
        ("predicate_raw", pa.string()),  # as written in the source
        ("predicate", pa.string()),  # normalised (null before normalisation)
        ("object_id", pa.string()),
    ]
)

REGION_TYPE = pa.struct([("region_id", pa.string()), ("phrase", pa.string()), *_BOX])

SCENE_GRAPH_SCHEMA = pa.schema(
    [
        ("source", pa.string()),  # "vg" | "gqa"
        ("image_id", pa.string()),  # ids are strings for both sources (GQA has non-numeric ids)
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("image_path", pa.string()),  # relative path under an image root, or a URL
        ("coco_id", pa.int64()),
        ("flickr_id", pa.int64()),
        ("location", pa.string()),  # GQA, optional
        ("weather", pa.string()),  # GQA, optional
        ("objects", pa.list_(OBJECT_TYPE)),
        ("relations", pa.list_(RELATION_TYPE)),
        ("regions", pa.list_(REGION_TYPE)),
    ],
    metadata={"sgverbalise.schema_version": SCHEMA_VERSION},
)


@cache
def load_json_schema(name: str) -> dict:
    """The JSON Schema named ``name`` ("sample", "manifest", "relations", "reject")."""
    text = resources.files(__package__).joinpath(f"{name}.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


@cache
def validator(name: str):
    """A jsonschema validator built from the schema file ``name``."""
    import jsonschema

    schema = load_json_schema(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


# Why a relation, an object, an image or a sample did not make it into the output; defined in reject.schema.json.
REJECT_REASONS: tuple[str, ...] = tuple(load_json_schema("reject")["properties"]["reason"]["enum"])
