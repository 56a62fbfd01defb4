"""Streaming over a shard set: samples grouped from tar members tolerantly (problems are recorded, reading
goes on), with each shard's byte count and sha256 taken on the same pass; member decoding helpers."""

from __future__ import annotations

import hashlib
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from tqdm import tqdm

from sgverbalise.schemas.layout import RELATIONS, Shard, ShardSet
from sgverbalise.shards import ShardError, read_members, split_member_name
from sgverbalise.storage import join, url_fs

# Extensions webdataset decodes by unpickling (or torch.load): never loaded here.
PICKLED_EXTS = frozenset({"pyd", "pickle", "pkl", "pth"})
IMAGE_EXTS = frozenset(
    {"jpg", "jpeg", "png", "webp", "ppm", "pgm", "pbm", "pnm", "bmp", "tif", "tiff", "gif"}
)
TEXT_EXTS = frozenset({"txt", "text", "caption", "cls", "cls2", "index", "inx", "id"})
_READ_CHUNK = 1 << 20


@dataclass
class Problem:
    """One problem, located: the shard (or manifest file) and the sample key when it concerns one sample."""

    where: str
    message: str
    key: str | None = None

    def line(self) -> str:
        """``where: sample KEY: message``."""
        return (
            f"{self.where}: sample {self.key}: {self.message}"
            if self.key is not None
            else f"{self.where}: {self.message}"
        )

    def to_json(self) -> dict:
        """The problem as a JSON object (with its one-line form)."""
        return {"where": self.where, "key": self.key, "message": self.message, "line": self.line()}


@dataclass
class Sample:
    """A sample as stored: its key and members ``{ext: bytes}``, in the shard it came from."""

    key: str
    members: dict[str, bytes]
    shard: Shard


def ext_kind(ext: str) -> str:
    """What a member holds, from the last part of its extension: image, json, text, pickled or binary."""
    last = ext.rsplit(".", 1)[-1]
    if last in PICKLED_EXTS:
        return "pickled"
    if last in IMAGE_EXTS:
        return "image"
    if last == "json":
        return "json"
    if last in TEXT_EXTS:
        return "text"
    return "binary"


def unsafe_name(name: str) -> bool:
    """Whether a member name would act as a path if extracted (has '/', '\\' or starts with '..')."""
    return "/" in name or "\\" in name or name.startswith("..") or "\x00" in name


def parse_json(data: bytes) -> tuple[Any, str | None]:
    """The decoded JSON member, or None and the reason it does not decode."""
    try:
        return json.loads(data.decode("utf-8")), None
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 ({exc.reason} at byte {exc.start})"
    except json.JSONDecodeError as exc:
        return None, f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"


def image_info(data: bytes, decode: bool = False) -> tuple[dict | None, str | None]:
    """``{format, width, height, mode}`` of an image member from its header (all pixels when ``decode``), or
    None and the reason it cannot be read."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            info = {"format": image.format, "width": image.width, "height": image.height, "mode": image.mode}
            if decode:
                image.load()
        return info, None
    except Exception as exc:  # Pillow raises many types for bad bytes
        return None, f"{type(exc).__name__}: {exc}"


def is_sgv_sample(obj: Any) -> bool:
    """Whether a decoded .json member looks like one of ours (schemas/sample.schema.json)."""
    return isinstance(obj, dict) and "schema_version" in obj and "triplets" in obj and "vsg" in obj


class _Hashing(io.RawIOBase):
    """A read-only stream over a file that hashes and counts the bytes read, and moves a progress bar."""

    def __init__(self, raw: IO[bytes], bar: tqdm | None) -> None:
        super().__init__()
        self.raw, self.bar = raw, bar
        self.sha256 = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha256.update(data)
        self.size += len(data)
        if self.bar is not None and data:
            self.bar.update(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Read to the end (the hash then covers the whole file)."""
        while self.read(_READ_CHUNK):
            pass


@dataclass
class ShardStream:
    """One shard read once: iterate for its samples; afterwards ``size``, ``sha256``, ``problems``, ``error``.

    Members are grouped into samples the webdataset way (consecutive members with one key); a member
    extension seen twice in a row starts a new sample with the same key (the duplicate is then visible to the
    caller). Member names with a path in them and names that are not ``key.ext`` are reported and skipped.
    The last, incomplete sample of a truncated tar is not yielded."""

    shard: Shard
    bar: tqdm | None = None
    storage_options: dict = field(default_factory=dict)
    size: int = 0
    sha256: str | None = None
    error: str | None = None
    opened: bool = False
    complete: bool = False
    samples: int = 0
    problems: list[Problem] = field(default_factory=list)

    def _problem(self, message: str, key: str | None = None) -> None:
        self.problems.append(Problem(self.shard.name, message, key))

    def __iter__(self) -> Iterator[Sample]:
        fs, path = url_fs(self.shard.url, **self.storage_options)
        try:
            f = fs.open(path, "rb")
        except (OSError, ValueError) as exc:
            self.error = f"cannot open ({type(exc).__name__}: {exc})"
            self._problem(self.error)
            return
        self.opened = True
        with f:
            reader = _Hashing(f, self.bar)
            key: str | None = None
            members: dict[str, bytes] = {}
            try:
                for name, data in read_members(reader, self.shard.name):
                    if unsafe_name(name):
                        self._problem(
                            f"member name {name!r} is a path ('/' or '..'): names are data, "
                            "this member is not read"
                        )
                        continue
                    try:
                        member_key, ext = split_member_name(name)
                    except ValueError as exc:
                        self._problem(f"{exc}: not read")
                        continue
                    if member_key != key or ext in members:
                        if key is not None:
                            self.samples += 1
                            yield Sample(key, members, self.shard)
                        key, members = member_key, {}
                    members[ext] = data
                if key is not None:
                    self.samples += 1
                    yield Sample(key, members, self.shard)
                self.complete = True
            except ShardError as exc:
                self.error = str(exc).removeprefix(f"{self.shard.name}: ")
                self._problem(self.error)
            reader.drain()
            self.size, self.sha256 = reader.size, reader.sha256.hexdigest()


def progress_bar(total: int | None, desc: str, enabled: bool | None = None) -> tqdm:
    """A byte progress bar on stderr; off unless stderr is a terminal (or ``enabled`` says otherwise)."""
    disable = not sys.stderr.isatty() if enabled is None else not enabled
    return tqdm(
        total=total,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        disable=disable,
        leave=False,
    )


def first_shards(shardset: ShardSet, max_shards: int | None = None) -> list[Shard]:
    """The shards of the set to read: all, or the first ``max_shards``."""
    return shardset.shards if max_shards is None else shardset.shards[:max_shards]


def streams(
    shardset: ShardSet, bar: tqdm | None = None, max_shards: int | None = None, **storage_options: Any
) -> Iterator[ShardStream]:
    """A ShardStream per shard of the set (the first ``max_shards`` only, when given)."""
    for shard in first_shards(shardset, max_shards):
        yield ShardStream(shard, bar, storage_options)


MISSING = "missing"


def read_relations(shardset: ShardSet, **storage_options: Any) -> tuple[str, Any, str | None] | None:
    """The relations.json the set's manifest names: its name, its decoded JSON (None when it cannot be read)
    and why not (``MISSING`` or the decoding error); None for a set without a manifest."""
    if shardset.manifest is None or shardset.root is None:
        return None
    name = (shardset.manifest.get("relations") or {}).get("file") or RELATIONS
    fs, path = url_fs(join(shardset.root, name), **storage_options)
    try:
        with fs.open(path, "rb") as f:
            data = f.read()
    except OSError:
        return name, None, MISSING
    return (name, *parse_json(data))


SGV = "sgverbalise"
GENERIC = "webdataset"


def detect_format(shardset: ShardSet, peek: int = 10, **storage_options: Any) -> str:
    """``sgverbalise`` when the set has a manifest or its first decodable .json member is one of our samples,
    else ``webdataset`` (any other WebDataset shards, e.g. img2dataset's)."""
    if shardset.manifest is not None:
        return SGV
    seen = 0
    for shard in shardset.shards[:3]:
        for sample in ShardStream(shard, None, storage_options):
            seen += 1
            if "json" in sample.members:
                obj, _ = parse_json(sample.members["json"])
                if obj is not None:
                    return SGV if is_sgv_sample(obj) else GENERIC
            if seen >= peek:
                return GENERIC
    return GENERIC
