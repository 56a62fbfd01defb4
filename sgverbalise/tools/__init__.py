"""Tools for users of WebDataset shards (ours and others', e.g. img2dataset's): inspect, validate, show,
render, stats. Everything streams the tars; member names are data, never paths; pickled members are never
loaded."""

from __future__ import annotations

from sgverbalise.errors import InputError


class ToolError(InputError):
    """A user-facing error of a shard tool (bad PATH, no shards found, key not found)."""
