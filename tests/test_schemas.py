"""The typed views of the record contracts agree with the JSON Schemas they stand for."""

from __future__ import annotations

import pytest

from sgverbalise.schemas import load_json_schema
from sgverbalise.schemas.sample import Entity, Region, SampleJSON, Triplet


@pytest.mark.parametrize(
    "typed, where", [(SampleJSON, None), (Triplet, "triplet"), (Entity, "entity"), (Region, "region")]
)
def test_sample_typeddicts_name_the_schema_fields(typed, where):
    schema = load_json_schema("sample")
    part = schema if where is None else schema["$defs"][where]
    assert set(typed.__annotations__) == set(part["properties"])
    assert typed.__required_keys__ == set(part.get("required", []))
