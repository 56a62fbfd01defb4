"""The shard-set layout: the one contract between the job that writes shard sets, the tools that read them and
the trainer. Stdlib, fsspec and braceexpand only: every other module imports these names instead of spelling them.

A shard set (``sgv build-shards --out SET``), local or any fsspec URL::

    SET/manifest.json                  written last: it marks a complete run (manifest.schema.json)
    SET/relations.json                 the relation vocabulary (relations.schema.json)
    SET/{split}/shard-000000.tar       split in SPLITS; a shard's set is two levels above it
    SET/{split}/sizes.json             {shard file name: samples} of the split (open_clip's get_dataset_size)
    SET/rejects/{kind}-{reason}.jsonl  what did not make it (reject.schema.json)
    SET/.staging/                      a run's files before their publication (gone when the run ends)

An ingest run (``sgv ingest --out RECORDS``): ``RECORDS/ingest.json`` (written last), ``RECORDS/records-00000.parquet``
and ``RECORDS/rejects/*.jsonl``. img2dataset's sets: ``{stem}.tar`` with ``{stem}_stats.json`` and
``{stem}.parquet`` beside it.

A shard spec (``resolve``) is a list of specs, or one string of specs joined by ``::`` (as open_clip's
``--train-data``); each names shards, local or any fsspec URL, by the first of these rules that applies:

1. ``pipe:...``: a command for webdataset's ``gopen``, passed through (brace-expanded);
2. a brace pattern (``shard-{000000..000009}.tar``): each expansion by these rules, except that one naming a
   shard file (a SHARD_SUFFIXES name without glob characters) is taken as it is, unchecked;
3. a glob (one of GLOB_CHARS): the shard files that match;
4. a file: a ``.json`` is a manifest (its shards, relative to its folder); anything else one shard;
5. a folder: with a manifest, as 4; without, the shards under ``{folder}/{split}`` when that folder exists,
   else every shard under the folder (img2dataset's flat layout included);
6. otherwise a prefix: every shard whose path starts with it (the folders it matches included).

Shard files are names ending in SHARD_SUFFIXES (any case); dot files (temps of a writer) are skipped; listings
are sorted. ``split`` picks one split of a manifest (a missing one is an error); ``None`` (the tools) takes
every split, and a folder's manifest then also reports the tars beside it that it does not list (``unlisted``).
For 2, 3, 4 (one tar) and 6 the manifest of the shards' folder or its parent is attached when it lists them
all (names, sizes, entries). A spec part that names no shard raises ShardSpecError.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import fsspec
from braceexpand import braceexpand
from fsspec.implementations.local import LocalFileSystem

from sgverbalise.schemas.urls import join, redact

MANIFEST = "manifest.json"
RELATIONS = "relations.json"
INGEST_MANIFEST = "ingest.json"
SIZES = "sizes.json"  # beside each split's shards: {"shard-000000.tar": samples, ...}, as open_clip reads it
REJECTS_DIR = "rejects"
STATS_SIDECAR = "_stats.json"  # img2dataset: {stem}_stats.json beside {stem}.tar
PARQUET_SIDECAR = ".parquet"  # img2dataset: {stem}.parquet beside {stem}.tar
RECORDS_FILE = "records-{index:05d}.parquet"  # of an ingest run
# A run's staging area: what its units write (shards, records files, their rejects) waits in STAGING_DIR/{name}
# until the run's last step has checked the counts and moves each file to its final name {name}; never read by
# the tools (a run that fails removes it, the next run removes what a killed one left).
STAGING_DIR = ".staging"
UNIT_REJECTS = "parts/rejects-{unit:06d}.jsonl"  # in the staging area: one unit's rejects, sorted
MERGED_REJECTS = "parts/rejects-merged-{round}-{index:06d}.jsonl"  # in the staging area: a merge's round
INPUT_SCAN = "plan/scan-{index:03d}.npz"  # in the staging area: where the elements of input file N are
UNIT_PLAN = "plan/unit-{unit:06d}.npz"  # in the staging area: what unit N reads (its groups' byte ranges, ids)

SPLITS = ("train", "val")
SHARD_PATTERN = "{split}/shard-{index:06d}.tar"
# manifest 1.2: the train shards written by unit N of the job are shard-N-000.tar, shard-N-001.tar, ...
UNIT_SHARD_PATTERN = "{split}/shard-{unit:06d}-{part:03d}.tar"
SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
GLOB_CHARS = "*?["  # a path with one of these is a glob
PATTERN_CHARS = "{" + GLOB_CHARS  # a shard spec with one of these names shards by a pattern (brace or glob)
SPEC_SEPARATOR = "::"
PIPE = "pipe:"

# What a run writes under its output, as relative globs: anything else matching them is stale.
SHARD_SET_OUTPUTS = (*(f"{split}/*.tar" for split in SPLITS), *(f"{split}/{SIZES}" for split in SPLITS),
                     f"{REJECTS_DIR}/*.jsonl")
INGEST_OUTPUTS = ("records-*.parquet", f"{REJECTS_DIR}/*.jsonl")


def shard_name(split: str, index: int) -> str:
    """``train/shard-000003.tar``: a shard's name within its set."""
    return SHARD_PATTERN.format(split=split, index=index)


def unit_shard_name(split: str, unit: int, part: int) -> str:
    """``train/shard-000003-000.tar``: the first shard of unit 3 (manifest 1.2)."""
    return UNIT_SHARD_PATTERN.format(split=split, unit=unit, part=part)


def unit_shard_pattern(split: str, unit: int) -> str:
    """``train/shard-000003-%03d.tar``: the names of unit 3's shards as a %-pattern of the part."""
    return UNIT_SHARD_PATTERN.replace("{part:03d}", "%03d").format(split=split, unit=unit)


def sizes_name(split: str) -> str:
    """``train/sizes.json``: the sample counts of a split's shards, by shard file name."""
    return f"{split}/{SIZES}"


def split_sizes(manifest: dict, split: str) -> dict[str, int]:
    """What ``sizes_name(split)`` holds for ``manifest``: each shard's file name (without its folder) and samples."""
    shards = ((manifest.get("splits") or {}).get(split) or {}).get("shards") or []
    return {posixpath.basename(s["name"]): s["samples"] for s in shards}


def rejects_name(group: str) -> str:
    """``rejects/relation-unknown_object.jsonl`` for the group ``relation/unknown_object``."""
    return f"{REJECTS_DIR}/{group.replace('/', '-')}.jsonl"


def is_shard_name(path: str) -> bool:
    """Whether a file name looks like a tar shard."""
    return path.lower().endswith(SHARD_SUFFIXES)


def shard_stem(url: str) -> str:
    """The shard's URL without its suffix (where img2dataset's sidecars start)."""
    for suffix in SHARD_SUFFIXES:
        if url.lower().endswith(suffix):
            return url[: -len(suffix)]
    return url


def set_of_shard(shard_url: str) -> str:
    """The set a shard of ours belongs to: shards are ``{set}/{split}/shard-N.tar``, two levels below it."""
    return shard_url.rsplit("/", 2)[0]


def relations_of_set(root: str) -> str:
    """The relations.json of the shard set at ``root``."""
    return join(root, RELATIONS)


def relations_for(spec: str, split: str = "train", **storage_options: Any) -> str:
    """The relations.json of the shard set a spec names (its first part): beside a manifest, a ``.json`` as it is,
    in a folder, else in the set of its first shard."""
    spec = spec.split(SPEC_SEPARATOR)[0]
    if spec.endswith(MANIFEST):
        return spec[: -len(MANIFEST)] + RELATIONS
    if spec.endswith(".json"):
        return spec
    if not any(c in spec for c in PATTERN_CHARS) and not is_shard_name(spec):
        return relations_of_set(spec.rstrip("/"))
    return relations_of_set(set_of_shard(resolve(spec, split, **storage_options).shards[0].url))


class ShardSpecError(ValueError):
    """A shard spec names no shards, or a manifest it names cannot be read or lacks the split asked for."""


@dataclass
class Shard:
    """One shard: its URL, the name shown to users, its size when known and its manifest entry, if any."""

    url: str
    name: str
    size: int | None = None
    entry: dict | None = None


@dataclass
class ShardSet:
    """The shards a spec names, in order, with the manifest that describes them (when one was found)."""

    spec: str
    shards: list[Shard]
    manifest: dict | None = None
    manifest_url: str | None = None
    root: str | None = None  # the manifest's folder
    whole: bool = False  # True when the spec named a whole manifest (its every shard is expected)
    unlisted: list[str] = field(default_factory=list)  # tars beside a manifest that it does not list

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.shards]

    @property
    def known_bytes(self) -> int | None:
        """Total size of the shards when every size is known."""
        sizes = [s.size for s in self.shards]
        return None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[arg-type]


def manifest_entries(manifest: dict, split: str | None = None) -> dict[str, dict]:
    """The manifest's shard entries by name (``train/shard-000000.tar``), each with its split added; only
    ``split``'s when given."""
    out: dict[str, dict] = {}
    splits = manifest.get("splits")
    if not isinstance(splits, dict):
        return out
    for name, info in splits.items():
        shards = info.get("shards") if isinstance(info, dict) and split in (None, name) else None
        for entry in shards if isinstance(shards, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                out[entry["name"]] = {**entry, "split": name}
    return out


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


def _url_fs(url: str, **storage_options: Any) -> tuple[Any, str]:
    return fsspec.core.url_to_fs(url, **storage_options)


def _url(fs: Any, path: str) -> str:
    """A URL for ``path`` of ``fs`` that fsspec opens again (local paths stay plain paths)."""
    return path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)


def _has_braces(spec: str) -> bool:
    expanded = list(braceexpand(spec))
    return len(expanded) != 1 or expanded[0] != spec


def _load_manifest(url: str, **storage_options: Any) -> dict:
    fs, path = _url_fs(url, **storage_options)
    try:
        data = json.loads(fs.cat_file(path))
    except (OSError, ValueError) as exc:
        raise ShardSpecError(f"{redact(url)}: cannot read the manifest ({exc})") from exc
    if not isinstance(data, dict):
        raise ShardSpecError(f"{redact(url)}: not a manifest (a JSON object expected)")
    return data


def _from_manifest(spec: str, manifest_url: str, split: str | None, folder_listing: bool,
                   **storage_options: Any) -> ShardSet:
    root = posixpath.dirname(manifest_url.rstrip("/")) if "/" in manifest_url else "."
    manifest = _load_manifest(manifest_url, **storage_options)
    splits = manifest.get("splits")
    if split is not None and (not isinstance(splits, dict) or split not in splits):
        raise ShardSpecError(f"{redact(manifest_url)} has no split {split!r} (has {sorted(splits or {})})")
    entries = manifest_entries(manifest, split)
    shards = [
        Shard(join(root, name), name, e.get("bytes") if isinstance(e.get("bytes"), int) else None, e)
        for name, e in entries.items()
    ]
    unlisted: list[str] = []
    if folder_listing:
        fs, root_path = _url_fs(root, **storage_options)
        base = root_path.rstrip("/") + "/"
        for path in sorted(fs.find(root_path)):
            name = path[len(base) :] if path.startswith(base) else posixpath.basename(path)
            if is_shard_name(path) and name not in entries and not posixpath.basename(path).startswith("."):
                unlisted.append(name)
    return ShardSet(spec, shards, manifest, manifest_url, root, whole=split is None, unlisted=unlisted)


def _attach_manifest(shardset: ShardSet, **storage_options: Any) -> ShardSet:
    """Find a manifest.json in the shards' folder or its parent that lists them; attach its entries."""
    folder = common_folder(shardset.urls)
    for root in (folder, posixpath.dirname(folder)):
        if not root or root.endswith(":") or root.endswith("://"):
            continue
        candidate = join(root, MANIFEST)
        fs, path = _url_fs(candidate, **storage_options)
        try:
            if not fs.isfile(path):
                continue
            manifest = _load_manifest(candidate, **storage_options)
        except (OSError, ShardSpecError):
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


def _listing(fs: Any, found: dict[str, dict], base: str | None = None) -> list[Shard]:
    """Shards among ``found`` (path: info), sorted, named relative to ``base`` (else by base name)."""
    shards = []
    prefix = base.rstrip("/") + "/" if base else None
    for path in sorted(found):
        if is_shard_name(path) and not posixpath.basename(path).startswith("."):
            name = path[len(prefix) :] if prefix and path.startswith(prefix) else posixpath.basename(path)
            shards.append(Shard(_url(fs, path), name, found[path].get("size")))
    return shards


def _none_found(spec: str, what: str) -> ShardSpecError:
    return ShardSpecError(f"{redact(spec)}: {what}")


def _resolve_one(spec: str, split: str | None, **storage_options: Any) -> ShardSet:
    if spec.startswith(PIPE):
        return ShardSet(spec, [Shard(u, u) for u in braceexpand(spec)])
    if _has_braces(spec):
        shards = [
            shard
            for part in braceexpand(spec)
            for shard in (
                [Shard(part, posixpath.basename(part))]
                if is_shard_name(part) and not any(c in part for c in GLOB_CHARS)
                else _resolve_one(part, split, **storage_options).shards
            )
        ]
        return _attach_manifest(ShardSet(spec, shards), **storage_options)
    fs, path = _url_fs(spec, **storage_options)
    if any(c in path for c in GLOB_CHARS):
        found = fs.glob(path, detail=True)
        shards = _listing(fs, found, base=common_folder(list(found)))
        if not shards:
            raise _none_found(spec, "no shards match")
        return _attach_manifest(ShardSet(spec, shards), **storage_options)
    if fs.isfile(path):
        if path.endswith(".json"):
            return _from_manifest(spec, spec, split, folder_listing=False, **storage_options)
        shard = Shard(spec, posixpath.basename(path), fs.size(path))
        return _attach_manifest(ShardSet(spec, [shard]), **storage_options)
    if fs.isdir(path):
        if fs.isfile(path.rstrip("/") + "/" + MANIFEST):
            return _from_manifest(spec, join(spec, MANIFEST), split, split is None, **storage_options)
        if split is not None and fs.isdir(path.rstrip("/") + "/" + split):
            path = path.rstrip("/") + "/" + split
        shards = _listing(fs, fs.find(path, detail=True), base=path)
        if not shards:
            raise _none_found(spec, "no shards (*.tar) in this folder")
        return ShardSet(spec, shards)
    # a prefix: every shard whose path starts with it (folders it matches included)
    found = {}
    for p, info in fs.glob(path + "*", detail=True).items():
        found |= fs.find(p, detail=True) if info.get("type") == "directory" else {p: info}
    shards = _listing(fs, found, base=common_folder(list(found)))
    if not shards:
        raise _none_found(spec, "no such file, folder or prefix of shards")
    return _attach_manifest(ShardSet(spec, shards), **storage_options)


def resolve(spec: str | Iterable[str], split: str | None = None, **storage_options: Any) -> ShardSet:
    """The shards ``spec`` names (see the module docstring); raises ShardSpecError when a part names none."""
    parts = [spec] if isinstance(spec, str) else list(spec)
    specs = [s for item in parts for s in str(item).split(SPEC_SEPARATOR) if s]
    if not specs:
        raise ShardSpecError(f"no shards found for {redact(str(spec))}")
    sets = [_resolve_one(s, split, **storage_options) for s in specs]
    if len(sets) == 1:
        return sets[0]
    shown = spec if isinstance(spec, str) else SPEC_SEPARATOR.join(specs)
    return ShardSet(shown, [shard for s in sets for shard in s.shards])
