"""Resolve a PATH argument to the shards it names: one tar, a folder, a prefix, a glob, a brace pattern
(``shard-{000000..000009}.tar``) or a ``manifest.json``; local or any fsspec URL."""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from typing import Any

from braceexpand import braceexpand
from fsspec.implementations.local import LocalFileSystem

from sgverbalise.storage import join, read_bytes, redact, url_fs
from sgverbalise.tools import ToolError

MANIFEST = "manifest.json"
SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
GLOB_CHARS = "*?["  # a path with one of these is a glob
PATTERN_CHARS = "{" + GLOB_CHARS  # a shard spec with one of these names shards by a pattern (brace or glob)


@dataclass
class Shard:
    """One shard: its URL, the name shown to users, its size when known and its manifest entry, if any."""

    url: str
    name: str
    size: int | None = None
    entry: dict | None = None


@dataclass
class ShardSet:
    """The shards a PATH names, in order, with the manifest that describes them (when one was found)."""

    spec: str
    shards: list[Shard]
    manifest: dict | None = None
    manifest_url: str | None = None
    root: str | None = None  # the manifest's folder
    whole: bool = False  # True when PATH named the whole manifest (its every shard is expected)
    unlisted: list[str] = field(default_factory=list)  # tars beside a manifest that it does not list
    manifest_error: str | None = None

    @property
    def known_bytes(self) -> int | None:
        """Total size of the shards when every size is known."""
        sizes = [s.size for s in self.shards]
        return None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[arg-type]


def is_shard_name(path: str) -> bool:
    """Whether a file name looks like a tar shard."""
    return path.lower().endswith(SHARD_SUFFIXES)


def _url(fs: Any, path: str) -> str:
    return path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)


def _has_braces(spec: str) -> bool:
    expanded = list(braceexpand(spec))
    return len(expanded) != 1 or expanded[0] != spec


def _load_manifest(url: str, **storage_options: Any) -> dict:
    data = json.loads(read_bytes(url, **storage_options))
    if not isinstance(data, dict):
        raise ToolError(f"{redact(url)}: not a manifest (a JSON object expected)")
    return data


def manifest_entries(manifest: dict) -> dict[str, dict]:
    """The manifest's shard entries by name (``train/shard-000000.tar``), each with its split added."""
    out: dict[str, dict] = {}
    splits = manifest.get("splits")
    if not isinstance(splits, dict):
        return out
    for split, info in splits.items():
        shards = info.get("shards") if isinstance(info, dict) else None
        for entry in shards if isinstance(shards, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                out[entry["name"]] = {**entry, "split": split}
    return out


def _from_manifest(spec: str, manifest_url: str, folder_listing: bool, **storage_options: Any) -> ShardSet:
    root = posixpath.dirname(manifest_url.rstrip("/")) if "/" in manifest_url else "."
    try:
        manifest = _load_manifest(manifest_url, **storage_options)
    except (OSError, ValueError) as exc:
        raise ToolError(f"{redact(manifest_url)}: cannot read the manifest ({exc})") from exc
    entries = manifest_entries(manifest)
    shards = [
        Shard(join(root, name), name, e.get("bytes") if isinstance(e.get("bytes"), int) else None, e)
        for name, e in entries.items()
    ]
    unlisted: list[str] = []
    if folder_listing:
        fs, root_path = url_fs(root, **storage_options)
        base = root_path.rstrip("/") + "/"
        for path in sorted(fs.find(root_path)):
            name = path[len(base) :] if path.startswith(base) else posixpath.basename(path)
            if is_shard_name(path) and name not in entries and not posixpath.basename(path).startswith("."):
                unlisted.append(name)
    return ShardSet(spec, shards, manifest, manifest_url, root, whole=True, unlisted=unlisted)


def common_folder(urls: list[str]) -> str:
    """The deepest folder (URL) that holds every one of ``urls``; '' when they share none."""
    parts = [u.split("/")[:-1] for u in urls]
    if not parts:
        return ""
    common = parts[0]
    for other in parts[1:]:
        n = 0
        while n < min(len(common), len(other)) and common[n] == other[n]:
            n += 1
        common = common[:n]
    return "/".join(common)


def _attach_manifest(shardset: ShardSet, **storage_options: Any) -> ShardSet:
    """Find a manifest.json in the shards' folder or its parent that lists them; attach its entries."""
    folder = common_folder([s.url for s in shardset.shards])
    for root in (folder, posixpath.dirname(folder)):
        if not root or root.endswith(":") or root.endswith("://"):
            continue
        candidate = join(root, MANIFEST)
        fs, path = url_fs(candidate, **storage_options)
        try:
            if not fs.isfile(path):
                continue
            manifest = _load_manifest(candidate, **storage_options)
        except (OSError, ValueError):
            continue
        entries = manifest_entries(manifest)
        base = root.rstrip("/") + "/"
        names = [s.url[len(base) :] if s.url.startswith(base) else None for s in shardset.shards]
        if names and all(n in entries for n in names):
            for shard, name in zip(shardset.shards, names, strict=True):
                shard.name, shard.entry = name, entries[name]
                if shard.size is None and isinstance(entries[name].get("bytes"), int):
                    shard.size = entries[name]["bytes"]
            shardset.manifest, shardset.manifest_url, shardset.root = manifest, candidate, root
            return shardset
    return shardset


def _listing(fs: Any, paths: list[str], sizes: dict[str, int | None], base: str | None = None) -> list[Shard]:
    """Shards among ``paths``, sorted, named relative to ``base`` (else by base name); temps are skipped."""
    shards = []
    prefix = base.rstrip("/") + "/" if base else None
    for path in sorted(set(paths)):
        if is_shard_name(path) and not posixpath.basename(path).startswith("."):
            name = path[len(prefix) :] if prefix and path.startswith(prefix) else posixpath.basename(path)
            shards.append(Shard(_url(fs, path), name, sizes.get(path)))
    return shards


def resolve(spec: str, **storage_options: Any) -> ShardSet:
    """The shards ``spec`` names; raises ToolError when it names none."""
    spec = str(spec)
    shown = redact(spec)
    if _has_braces(spec):
        urls = list(braceexpand(spec))
        shards = [Shard(u, posixpath.basename(u)) for u in urls]
        return _attach_manifest(ShardSet(spec, shards), **storage_options)
    fs, path = url_fs(spec, **storage_options)
    if any(c in path for c in GLOB_CHARS):
        found = fs.glob(path, detail=True)
        shards = _listing(
            fs, list(found), {p: i.get("size") for p, i in found.items()}, base=common_folder(list(found))
        )
        if not shards:
            raise ToolError(f"{shown}: no shards match")
        return _attach_manifest(ShardSet(spec, shards), **storage_options)
    if fs.isfile(path):
        if path.endswith(".json"):
            return _from_manifest(spec, spec, folder_listing=False, **storage_options)
        shard = Shard(spec, posixpath.basename(path), fs.size(path))
        return _attach_manifest(ShardSet(spec, [shard]), **storage_options)
    if fs.isdir(path):
        if fs.isfile(path.rstrip("/") + "/" + MANIFEST):
            return _from_manifest(spec, join(spec, MANIFEST), folder_listing=True, **storage_options)
        found = fs.find(path, detail=True)
        shards = _listing(fs, list(found), {p: i.get("size") for p, i in found.items()}, base=path)
        if not shards:
            raise ToolError(f"{shown}: no shards (*.tar) in this folder")
        return ShardSet(spec, shards)
    # a prefix: every shard whose path starts with it (folders it matches included)
    found = fs.glob(path + "*", detail=True)
    paths, sizes = [], {}
    for p, info in found.items():
        if info.get("type") == "directory":
            inner = fs.find(p, detail=True)
            paths += list(inner)
            sizes |= {q: i.get("size") for q, i in inner.items()}
        else:
            paths.append(p)
            sizes[p] = info.get("size")
    shards = _listing(fs, paths, sizes, base=common_folder(paths))
    if not shards:
        raise ToolError(f"{shown}: no such file, folder or prefix of shards")
    return _attach_manifest(ShardSet(spec, shards), **storage_options)
