"""Where samples come from: shard URL lists and the stage that turns shard URLs into raw samples.

A source spec (``expand_urls``) is any of, local or any fsspec URL (``memory://``, ``s3://``, ``gs://``...):

* a list of specs, or one string of specs joined by ``::`` (as open_clip's ``--train-data``);
* a brace pattern, ``data/shard-{000000..000009}.tar``;
* a glob, ``s3://bucket/cc3m/*.tar``;
* a ``manifest.json`` of a scene-graph shard set (its ``split``'s shards, relative to the manifest);
* a folder: its ``manifest.json`` if it has one, else ``{folder}/{split}/*.tar`` if that exists, else
  ``{folder}/*.tar`` (img2dataset's layout);
* one ``.tar`` URL; ``pipe:`` commands are passed through for webdataset's ``gopen``.

Shards are read by ``tar_samples``: fsspec URLs through ``sgverbalise.shards.read_shard`` (which also notices
a shard truncated on a block boundary, which tarfile alone reads as a clean end), ``pipe:`` URLs through
webdataset's own tar iterators. A shard that fails is handed to the error handler and the stream goes on with
the next one; samples read before the damage are kept.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import braceexpand
import orjson
import webdataset as wds

from sgverbalise.shards import read_shard
from sgverbalise.storage import join, read_bytes, redact, url_fs

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
RELATIONS = "relations.json"
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
_GLOB_CHARS = ("*", "?", "[")


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
        parts = [p for p in redact(first.split("::")[0]).split("?")[0].split("/") if p]
        while len(parts) > 1 and (
            any(c in parts[-1] for c in "{*?[") or parts[-1].endswith((*TAR_SUFFIXES, ".json"))
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


def _is_local_fs(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def _url(fs: Any, path: str) -> str:
    """A URL for ``path`` of ``fs`` that fsspec opens again (local paths stay plain paths)."""
    return path if _is_local_fs(fs) else fs.unstrip_protocol(path)


def manifest_urls(url: str, split: str = "train", **storage_options: Any) -> list[str]:
    """Shard URLs of one split of a scene-graph ``manifest.json``, in manifest order."""
    manifest = orjson.loads(read_bytes(url, **storage_options))
    splits = manifest.get("splits", {})
    if split not in splits:
        raise ValueError(f"{redact(url)} has no split {split!r} (has {sorted(splits)})")
    base = url[: -len(MANIFEST)].rstrip("/") if url.endswith(MANIFEST) else posixpath.dirname(url)
    return [join(base, shard["name"]) for shard in splits[split]["shards"]]


def _glob(pattern: str, **storage_options: Any) -> list[str]:
    fs, path = url_fs(pattern, **storage_options)
    return sorted(_url(fs, p) for p in fs.glob(path) if p.endswith(TAR_SUFFIXES))


def _expand_one(spec: str, split: str, **storage_options: Any) -> list[str]:
    if spec.startswith("pipe:"):
        return list(braceexpand.braceexpand(spec))
    if "{" in spec and "}" in spec:
        return [
            u for part in braceexpand.braceexpand(spec) for u in _expand_one(part, split, **storage_options)
        ]
    if spec.endswith(MANIFEST):
        return manifest_urls(spec, split, **storage_options)
    if any(c in spec for c in _GLOB_CHARS):
        return _glob(spec, **storage_options)
    if spec.endswith(TAR_SUFFIXES):
        return [spec]
    fs, path = url_fs(spec, **storage_options)
    if fs.isdir(path):
        if fs.exists(posixpath.join(path, MANIFEST)):
            return manifest_urls(join(spec, MANIFEST), split, **storage_options)
        if fs.isdir(posixpath.join(path, split)):
            return _glob(join(spec, split, "*.tar"), **storage_options)
        return _glob(join(spec, "*.tar"), **storage_options)
    return _glob(spec + "*.tar", **storage_options)  # a prefix


def expand_urls(spec: str | Iterable[str], split: str = "train", **storage_options: Any) -> list[str]:
    """The shard URLs of a source spec (see the module docstring); raises ValueError when there are none."""
    specs = spec.split("::") if isinstance(spec, str) else [s for item in spec for s in item.split("::")]
    urls = [u for s in specs if s for u in _expand_one(s, split, **storage_options)]
    if not urls:
        raise ValueError(f"no shards found for {redact(str(spec))}")
    return urls


def load_relations(url: str, **storage_options: Any) -> list[str]:
    """Predicates of a ``relations.json`` (or of the one in a shard-set folder), indexed by relation id."""
    if not url.endswith(".json"):
        url = join(url, RELATIONS)
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
            if url.startswith("pipe:"):
                yield from wds.tariterators.tarfile_samples([{"url": url}])
            else:
                for key, members in read_shard(url, **storage_options):
                    yield {"__key__": key, "__url__": url, **members}
        except Exception as exn:
            if not any(redact(url) in str(a) for a in exn.args):
                exn.args = (*exn.args, redact(url))
            if not handler(exn):
                return
