"""Deterministic WebDataset tar shards: sample encoding, a rolling shard writer, a one-shard writer, a reader.

Layout: each sample is a run of consecutive tar members ``{key}.{ext}``, in sorted extension order. The tar
bytes depend only on the samples: PAX format, UTF-8 names, every member a regular file with mtime=0,
uid=gid=0, uname=gname="", mode=0o644; so identical samples give an identical sha256.

Byte bound (``ShardWriter(max_bytes=...)``): ``max_bytes`` bounds the size of the finished tar file (headers,
data padded to 512-byte blocks, the end-of-archive blocks and the padding to a 10 KiB record). The writer
closes a shard before a sample that would push the finished file over ``max_bytes``; a sample that alone is
bigger than ``max_bytes`` still goes into a shard of its own (which is then over the bound). ``max_count``
closes a shard as soon as it holds that many samples.

Shards are published atomically (``storage.AtomicFile``): a final name exists only once its shard is complete.
"""

from __future__ import annotations

import hashlib
import posixpath
import tarfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import IO, Any

from sgverbalise.storage import AtomicFile, redact, url_fs

TAR_FORMAT = tarfile.PAX_FORMAT
TAR_ENCODING = "utf-8"
TAR_ERRORS = "surrogateescape"
BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
_END_BLOCKS = 2 * BLOCK
_USTAR_MAX_SIZE = 8 ** 11  # the ustar header's 12-byte octal size field


class ShardError(ValueError):
    """A shard that cannot be read: truncated, corrupt, or not laid out as samples of ``key.ext`` members."""


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError(f"sample key must be a non-empty string, got {key!r}")
    if "." in key or "/" in key or "\x00" in key:
        raise ValueError(f"sample key {key!r} must not contain '.', '/' or NUL "
                         "(webdataset takes everything after the first dot as the extension)")


def _check_ext(key: str, ext: str) -> None:
    if not isinstance(ext, str) or not ext or ext.startswith(".") or ext.endswith("."):
        raise ValueError(f"sample {key!r}: bad extension {ext!r}")
    if "/" in ext or "\x00" in ext or ext != ext.lower():
        raise ValueError(f"sample {key!r}: extension {ext!r} must be lower case without '/' or NUL "
                         "(webdataset lower-cases extensions)")


def encode_sample(key: str, members: Mapping[str, bytes]) -> list[tuple[str, bytes]]:
    """The tar members ``(key.ext, bytes)`` of one sample, sorted by extension."""
    _check_key(key)
    if not members:
        raise ValueError(f"sample {key!r} has no members")
    out = []
    for ext in sorted(members):
        _check_ext(key, ext)
        data = members[ext]
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"sample {key!r}: member {ext!r} must be bytes, got {type(data).__name__}")
        out.append((f"{key}.{ext}", bytes(data)))
    return out


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.type = tarfile.REGTYPE
    info.mode = 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def finished_size(content: int) -> int:
    """Size of a tar file whose members take ``content`` bytes (end blocks and record padding added)."""
    return -(-(content + _END_BLOCKS) // RECORD) * RECORD


class _HashingWriter:
    """A write-only file wrapper that counts bytes and computes their sha256 on the way through."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        self.raw.write(data)
        return len(data)


def shard_name(url: str, relative_to: str | None = None) -> str:
    """The shard's name for the manifest: its path relative to ``relative_to``, else its base name."""
    if relative_to is None:
        return posixpath.basename(url.rstrip("/"))
    base = relative_to.rstrip("/") + "/"
    if not url.startswith(base):
        raise ValueError(f"shard {redact(url)} is not under {redact(relative_to)}")
    return url[len(base):]


class _OpenShard:
    """One tar shard being written to a temp, published on ``finish()``."""

    def __init__(self, url: str, name: str, **storage_options: Any) -> None:
        self.url = url
        self.name = name
        self.atomic = AtomicFile(url, **storage_options)
        self.out = _HashingWriter(self.atomic.file)
        self.count = 0
        self.content = 0
        self.keys: set[str] = set()
        self.first_key: str | None = None
        self.last_key: str | None = None

    def projected_size(self, extra: int) -> int:
        """Finished file size if a sample of ``extra`` member bytes were added."""
        return finished_size(self.content + extra)

    def add(self, key: str, entries: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        if key in self.keys:
            raise ValueError(f"duplicate sample key {key!r} in shard {self.name}")
        # the layout tarfile writes (its header blocks, data padded with NUL to whole blocks),
        # in one write per sample: tarfile's addfile copies each member through a stream buffer
        parts = []
        for info, data in entries:
            parts += (_header(info.name, info.size), data, bytes(_padded(len(data)) - len(data)))
        self.out.write(b"".join(parts))
        self.keys.add(key)
        self.content = self.out.size
        self.count += 1
        if self.first_key is None:
            self.first_key = key
        self.last_key = key

    def finish(self) -> dict:
        try:
            self.out.write(bytes(finished_size(self.content) - self.content))  # end-of-archive blocks, record padding
            self.atomic.commit()
        except BaseException:
            self.abort()
            raise
        info = {"name": self.name, "samples": self.count, "bytes": self.out.size,
                "sha256": self.out.sha256.hexdigest()}
        if self.first_key is not None:
            info["first_key"] = self.first_key
            info["last_key"] = self.last_key
        return info

    def abort(self) -> None:
        self.atomic.abort()


def _prepare(key: str, members: Mapping[str, bytes]) -> tuple[list[tuple[tarfile.TarInfo, bytes]], int]:
    """Tar entries of a sample and the bytes they take in the archive."""
    entries = [(_tarinfo(name, len(data)), data) for name, data in encode_sample(key, members)]
    return entries, sum(_entry_size(info.name, info.size) for info, _ in entries)


def _plain(name: str, size: int) -> bool:
    """True when a member needs no PAX extended header: an ASCII name that fits the ustar field, a size that fits
    its 12-byte octal field. Such a member is one 512-byte header block."""
    return name.isascii() and len(name) <= tarfile.LENGTH_NAME and size < _USTAR_MAX_SIZE


def _entry_size(name: str, size: int) -> int:
    """Bytes a member takes: its header blocks and its data padded to whole blocks (see ``_plain``)."""
    if _plain(name, size):
        return BLOCK + _padded(size)
    return len(_tarinfo(name, size).tobuf(TAR_FORMAT, TAR_ENCODING, TAR_ERRORS)) + _padded(size)


# tarfile's own header block of a member named "" of size 0 (the fields every member shares: mode, owner, mtime,
# type, magic), with the checksum field as the spaces it is summed as; a plain member's header is this with its
# name and size put in and the checksum worked out, 1 us against 13 us for TarInfo.tobuf
_TEMPLATE = bytearray(_tarinfo("", 0).tobuf(TAR_FORMAT, TAR_ENCODING, TAR_ERRORS))
_SIZE, _CHKSUM = slice(124, 136), slice(148, 156)
_TEMPLATE[_CHKSUM] = b" " * 8
_TEMPLATE_SUM = sum(_TEMPLATE) - sum(_TEMPLATE[_SIZE])


def _header(name: str, size: int) -> bytes:
    """The header block(s) tarfile writes for a member of ours named ``name`` holding ``size`` bytes."""
    if not _plain(name, size):
        return _tarinfo(name, size).tobuf(TAR_FORMAT, TAR_ENCODING, TAR_ERRORS)
    raw, size_field = name.encode("ascii"), b"%011o\0" % size
    header = bytearray(_TEMPLATE)
    header[:len(raw)] = raw
    header[_SIZE] = size_field
    header[_CHKSUM] = b"%06o\0 " % (_TEMPLATE_SUM + sum(raw) + sum(size_field))
    return bytes(header)


def sample_bytes(key: str, members: Mapping[str, bytes]) -> int:
    """Exact bytes one sample takes inside a shard (member headers plus data padded to 512-byte blocks)."""
    return _prepare(key, members)[1]


def sample_size(key: str, sizes: Mapping[str, int]) -> int:
    """``sample_bytes`` from the members' sizes alone (extension -> bytes), for members not in memory."""
    _check_key(key)
    if not sizes:
        raise ValueError(f"sample {key!r} has no members")
    for ext in sizes:
        _check_ext(key, ext)
    return sum(_entry_size(f"{key}.{ext}", size) for ext, size in sizes.items())


class ShardWriter:
    """Writes samples to shards ``pattern % index``, rolling over at ``max_count`` samples / ``max_bytes``."""

    def __init__(
        self,
        pattern: str,
        max_count: int = 10_000,
        max_bytes: int = 1 << 30,
        post: Callable[[dict], Any] | None = None,
        start_shard: int = 0,
        relative_to: str | None = None,
        **storage_options: Any,
    ) -> None:
        if max_count < 1 or max_bytes < 1:
            raise ValueError("max_count and max_bytes must be positive")
        try:
            numbered = pattern % 0 != pattern % 1
        except (TypeError, ValueError):
            numbered = False
        if not numbered:
            raise ValueError(f"shard pattern {pattern!r} must hold one %d-style index, e.g. shard-%06d.tar")
        self.pattern = pattern
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.post = post
        self.index = start_shard
        self.relative_to = relative_to
        self.storage_options = storage_options
        self.shards: list[dict] = []
        self._open: _OpenShard | None = None

    def shard_url(self, index: int) -> str:
        """URL of shard number ``index``."""
        return self.pattern % index

    def write(self, key: str, members: Mapping[str, bytes]) -> None:
        """Add one sample; the open shard is closed first if the sample would push it over ``max_bytes``."""
        entries, size = _prepare(key, members)
        if self._open is not None and key in self._open.keys:
            raise ValueError(f"duplicate sample key {key!r} in shard {self._open.name}")
        if self._open is not None and self._open.count and self._open.projected_size(size) > self.max_bytes:
            self._finish()
        if self._open is None:
            url = self.shard_url(self.index)
            self._open = _OpenShard(url, shard_name(url, self.relative_to), **self.storage_options)
            self.index += 1
        try:
            self._open.add(key, entries)
        except BaseException:
            self.abort()
            raise
        if self._open.count >= self.max_count:
            self._finish()

    def _finish(self) -> None:
        shard, self._open = self._open, None
        if shard is None:
            return
        info = shard.finish()
        self.shards.append(info)
        if self.post is not None:
            self.post(info)

    def close(self) -> list[dict]:
        """Publish the open shard (if any) and return the infos of all shards written."""
        self._finish()
        return self.shards

    def abort(self) -> None:
        """Drop the open shard: its temp is removed and it never appears under its final name."""
        shard, self._open = self._open, None
        if shard is not None:
            shard.abort()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_shard(
    url: str,
    samples: Iterable[tuple[str, Mapping[str, bytes]]],
    relative_to: str | None = None,
    **storage_options: Any,
) -> dict:
    """Write all ``samples`` into exactly one shard at ``url``, atomically; returns its shard info."""
    shard = _OpenShard(url, shard_name(url, relative_to), **storage_options)
    try:
        for key, members in samples:
            entries, _ = _prepare(key, members)
            shard.add(key, entries)
    except BaseException:
        shard.abort()
        raise
    return shard.finish()


def split_member_name(name: str) -> tuple[str, str]:
    """``(key, ext)`` of a member name the webdataset way (ext: all after the base name's first dot, lower
    case); raises ValueError for a name that is not ``key.ext``."""
    folder, _, base = name.rpartition("/")
    dot = base.find(".")
    if dot <= 0 or dot == len(base) - 1:
        raise ValueError(f"member {name!r} is not named key.ext")
    key = f"{folder}/{base[:dot]}" if folder else base[:dot]
    return key, base[dot + 1:].lower()


def _split_member(shown: str, name: str) -> tuple[str, str]:
    try:
        return split_member_name(name)
    except ValueError as exc:
        raise ShardError(f"{shown}: {exc}") from None


def _members(f: IO[bytes], shown: str) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of the regular members of a tar stream; raises ShardError unless it ends properly."""
    end: dict[str, BaseException] = {}

    class _EndAwareInfo(tarfile.TarInfo):
        @classmethod
        def fromtarfile(cls, tar: tarfile.TarFile) -> tarfile.TarInfo:
            try:
                return super().fromtarfile(tar)
            except tarfile.HeaderError as exc:
                end["error"] = exc
                raise

    try:
        tar = tarfile.open(fileobj=f, mode="r|*", tarinfo=_EndAwareInfo)
        for member in tar:
            if member.isdir():
                continue
            if not member.isreg():
                raise ShardError(f"{shown}: member {member.name!r} is not a regular file")
            extracted = tar.extractfile(member)
            data = extracted.read() if extracted is not None else b""
            if len(data) != member.size:
                raise ShardError(f"{shown}: truncated tar: member {member.name!r} has {len(data)} of "
                                 f"{member.size} bytes")
            yield member.name, data
            tar.members = []
    except (tarfile.ReadError, tarfile.CompressionError, EOFError) as exc:
        raise ShardError(f"{shown}: truncated or corrupt tar ({exc})") from exc
    if not isinstance(end.get("error"), tarfile.EOFHeaderError):
        reason = end.get("error")
        raise ShardError(f"{shown}: truncated tar: no end-of-archive block at byte {tar.offset}"
                         + (f" ({reason})" if reason else ""))


def read_members(f: IO[bytes], shown: str = "<stream>") -> Iterator[tuple[str, bytes]]:
    """``(name, bytes)`` of the regular members of an open tar stream, in tar order; raises ShardError (naming
    ``shown``) when the tar is truncated or corrupt. Names are returned as data, never used as paths."""
    return _members(f, shown)


def read_shard(url: str, **storage_options: Any) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Samples ``(key, {ext: bytes})`` of a shard, streamed; member names are never used as paths."""
    shown = redact(url)
    fs, path = url_fs(url, **storage_options)
    with fs.open(path, "rb") as f:
        key: str | None = None
        sample: dict[str, bytes] = {}
        for name, data in _members(f, shown):
            member_key, ext = _split_member(shown, name)
            if member_key != key:
                if key is not None:
                    yield key, sample
                key, sample = member_key, {}
            if ext in sample:
                raise ShardError(f"{shown}: sample {key!r} has two {ext!r} members")
            sample[ext] = data
        if key is not None:
            yield key, sample
