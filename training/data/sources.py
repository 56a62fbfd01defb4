"""Where samples come from: shard URL lists and the stage that turns shard URLs into raw samples.

A source spec (``expand_urls``) is anything the layout contract's resolver takes (``sgverbalise.schemas.layout``,
whose docstring has the rules): ``::``-joined or listed specs, brace patterns, globs, a ``manifest.json`` or a
shard-set folder (the source's ``split``), img2dataset folders, prefixes, one ``.tar``, ``pipe:`` commands;
local or any fsspec URL (``memory://``, ``s3://``, ``gs://``...).

Shards are read by ``tar_samples``: fsspec URLs through ``sgverbalise.shards.read_shard`` (which also notices
a shard truncated on a block boundary, which tarfile alone reads as a clean end), ``pipe:`` URLs through
webdataset's own tar iterators. A shard that fails is handed to the error handler and the stream goes on with
the next one; samples read before the damage are kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import webdataset as wds

from sgverbalise.schemas.layout import PATTERN_CHARS, PIPE, SPEC_SEPARATOR, is_shard_name, relations_of_set, resolve
from sgverbalise.shards import read_shard
from sgverbalise.storage import read_bytes, redact

log = logging.getLogger(__name__)



@dataclass
class SourceConfig:
    """One shard set of a batch type: where it is, its sampling weight within the type, its name in logs."""

    urls: str | list[str]
    weight: float = 1.0
    name: str | None = None
    split: str = "train"
    storage_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.weight > 0:
            raise ValueError(f"source {self.label}: weight must be positive, got {self.weight}")

    @property
    def label(self) -> str:
        """The source's name, or the folder name of its first URL (``/data/cc3m/{0..9}.tar`` -> ``cc3m``)."""
        if self.name:
            return self.name
        first = self.urls if isinstance(self.urls, str) else (self.urls[0] if self.urls else "empty")
        parts = [p for p in redact(first.split(SPEC_SEPARATOR)[0]).split("?")[0].split("/") if p]
        while len(parts) > 1 and (
            any(c in parts[-1] for c in PATTERN_CHARS) or is_shard_name(parts[-1]) or parts[-1].endswith(".json")
        ):
            parts.pop()
        return parts[-1] if parts else "source"

    @classmethod
    def from_value(cls, value: str | list | dict | SourceConfig) -> SourceConfig:
        """A SourceConfig from a spec string/list or a dict of its fields (as read from YAML)."""
        if isinstance(value, SourceConfig):
            return value
        if isinstance(value, dict):
            return cls(**value)
        return cls(urls=value)


def expand_urls(spec: str | Iterable[str], split: str = "train", **storage_options: Any) -> list[str]:
    """The shard URLs of a source spec, by the layout contract's resolver (``sgverbalise.schemas.layout``) for
    ``split``; raises ShardSpecError (a ValueError) when a part names none."""
    return resolve(spec, split, **storage_options).urls


def load_relations(url: str, **storage_options: Any) -> list[str]:
    """Predicates of a ``relations.json`` (or of the one in a shard-set folder), indexed by relation id."""
    if not url.endswith(".json"):
        url = relations_of_set(url)
    vocab = orjson.loads(read_bytes(url, **storage_options))
    out = [""] * len(vocab["relations"])
    for r in vocab["relations"]:
        out[r["id"]] = r["predicate"]
    return out


def tar_samples(
    src: Iterable[dict],
    handler: Callable[[BaseException], bool] = wds.reraise_exception,
    **storage_options: Any,
) -> Iterator[dict]:
    """Stage: ``{"url"}`` items to raw samples ``{"__key__", "__url__", ext: bytes}``; shard errors go to
    ``handler`` (True: go on with the next shard; False: stop)."""
    for item in src:
        url = item["url"]
        try:
            if url.startswith(PIPE):
                yield from wds.tariterators.tarfile_samples([{"url": url}])
            else:
                for key, members in read_shard(url, **storage_options):
                    yield {"__key__": key, "__url__": url, **members}
        except Exception as exn:
            if not any(redact(url) in str(a) for a in exn.args):
                exn.args = (*exn.args, redact(url))
            if not handler(exn):
                return
