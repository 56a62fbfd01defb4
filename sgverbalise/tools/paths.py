"""Resolve a tool's PATH argument to the shards it names, by the layout contract's one resolver
(``sgverbalise.schemas.layout.resolve``: one tar, a folder, a prefix, a glob, a brace pattern, a manifest;
local or any fsspec URL). The tools take every split; a spec that names nothing is a ToolError."""

from __future__ import annotations

from typing import Any

from sgverbalise.schemas import layout
from sgverbalise.tools import ToolError


def resolve(spec: str, **storage_options: Any) -> layout.ShardSet:
    """The shards ``spec`` names, every split; raises ToolError when it names none."""
    try:
        return layout.resolve(str(spec), None, **storage_options)
    except layout.ShardSpecError as exc:
        raise ToolError(str(exc)) from exc
