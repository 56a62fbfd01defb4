"""Storage helpers: atomic publication on local disk and memory://, fingerprints, redaction, leftovers."""

from __future__ import annotations

import os

import fsspec
import pytest
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from sgverbalise.storage import (
    AtomicFile,
    absolute,
    atomic_open,
    atomic_write,
    fingerprint,
    join,
    list_leftovers,
    read_bytes,
    redact,
    remove_leftovers,
    url_fs,
)


def _files(folder) -> list[str]:
    return sorted(os.listdir(folder))


def test_url_fs_local_and_memory(tmp_path):
    fs, path = url_fs(str(tmp_path / "a.txt"))
    assert isinstance(fs, LocalFileSystem) and path == str(tmp_path / "a.txt")
    fs, path = url_fs(f"file://{tmp_path}/a.txt")
    assert isinstance(fs, LocalFileSystem) and path == str(tmp_path / "a.txt")
    fs, path = url_fs("memory://bucket/x/y.tar")
    assert isinstance(fs, MemoryFileSystem) and path == "/bucket/x/y.tar"


@pytest.mark.parametrize(
    ("base", "parts", "expected"),
    [
        ("out", ("train", "shard-000000.tar"), "out/train/shard-000000.tar"),
        ("out/", ("/train/",), "out/train"),
        ("/abs/out", ("a", "", "b"), "/abs/out/a/b"),
        ("s3://bucket/prefix", ("train", "x.tar"), "s3://bucket/prefix/train/x.tar"),
        ("s3://bucket/", ("x.tar",), "s3://bucket/x.tar"),
        ("memory://", ("a", "b"), "memory://a/b"),
        ("", ("a", "b"), "a/b"),
    ],
)
def test_join(base, parts, expected):
    assert join(base, *parts) == expected


def test_atomic_write_local_creates_folders_and_leaves_no_temp(tmp_path):
    target = tmp_path / "deep" / "er" / "file.bin"
    atomic_write(str(target), b"hello")
    assert target.read_bytes() == b"hello"
    assert _files(target.parent) == ["file.bin"]
    atomic_write(str(target), b"replaced")
    assert target.read_bytes() == b"replaced"
    assert _files(target.parent) == ["file.bin"]


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="the OS has no posix_fadvise")
def test_local_temp_is_handed_to_writeback_every_8_mib_as_it_is_written(tmp_path, monkeypatch):
    advised = []
    real = os.posix_fadvise
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, start, n, advice: advised.append((start, n, advice))
                        or real(fd, start, n, advice))
    piece = bytes(range(256)) * 3000  # 768,000 bytes: writes straddle the 8 MiB marks
    handle = AtomicFile(str(tmp_path / "big.tar"))
    for _ in range(30):
        handle.write(piece)
        handle.file.write(piece)  # the shard writer writes to the file object itself
    assert (tmp_path / "big.tar").exists() is False
    handle.commit()
    assert (tmp_path / "big.tar").read_bytes() == piece * 60
    mark = 8 << 20
    assert [start for start, _, _ in advised] == [0] + [start + n for start, n, _ in advised[:-1]]  # contiguous
    assert all(n >= mark for _, n, _ in advised) and advised[-1][0] + advised[-1][1] > len(piece) * 60 - mark
    assert {advice for _, _, advice in advised} == {os.POSIX_FADV_DONTNEED}


def test_atomic_open_exception_publishes_nothing_local(tmp_path):
    target = tmp_path / "file.bin"
    with pytest.raises(RuntimeError, match="boom"), atomic_open(str(target)) as f:
        f.write(b"partial")
        assert [n for n in _files(tmp_path) if n.startswith(".file.bin.tmp-")], "writes go to a temp"
        raise RuntimeError("boom")
    assert _files(tmp_path) == []


def test_atomic_open_exception_keeps_previous_version(tmp_path):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")
    with pytest.raises(KeyError), atomic_open(str(target)) as f:
        f.write(b"new but incomplete")
        raise KeyError("x")
    assert target.read_bytes() == b"old"
    assert _files(tmp_path) == ["file.bin"]


def test_atomic_open_only_binary_write(tmp_path):
    with pytest.raises(ValueError, match="'wb'"), atomic_open(str(tmp_path / "x"), "w"):
        pass


def test_atomic_write_and_failure_on_memory(mem_root):
    fs = fsspec.filesystem("memory")
    url = join(mem_root, "sub", "data.json")
    atomic_write(url, b'{"a": 1}')
    with fsspec.open(url, "rb") as f:
        assert f.read() == b'{"a": 1}'
    failing = join(mem_root, "sub", "never.json")
    with pytest.raises(RuntimeError), atomic_open(failing) as f:
        f.write(b"partial")
        raise RuntimeError("boom")
    names = sorted(p.rsplit("/", 1)[1] for p in fs.find(mem_root[len("memory://"):]))
    assert names == ["data.json"]


def test_fingerprint_local_is_stable_and_tracks_changes(tmp_path):
    path = tmp_path / "scene_graphs.json"
    path.write_bytes(b"[1, 2, 3]")
    os.utime(path, (1_700_000_000, 1_700_000_000))
    first = fingerprint(str(path))
    assert first == fingerprint(str(path))
    assert first["url"] == str(path) and first["size"] == 9
    assert first["fingerprint"].startswith("mtime:")
    os.utime(path, (1_700_000_100, 1_700_000_100))
    assert fingerprint(str(path))["fingerprint"] != first["fingerprint"]


def test_fingerprint_memory(mem_root):
    url = join(mem_root, "x.bin")
    atomic_write(url, b"12345")
    fp = fingerprint(url)
    assert fp["size"] == 5 and fp["fingerprint"] and fp == fingerprint(url)


def test_fingerprint_directory_has_no_size(tmp_path):
    assert fingerprint(str(tmp_path))["size"] is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/data/vg/objects.json", "/data/vg/objects.json"),
        ("s3://bucket/key.tar", "s3://bucket/key.tar"),
        ("https://user:secret@host.example/p/a.json", "https://host.example/p/a.json"),
        ("https://TOKEN123@host.example:8443/p", "https://host.example:8443/p"),
        (
            "https://bucket.s3.amazonaws.com/k.tar?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F1"
            "&X-Amz-Signature=deadbeef",
            "https://bucket.s3.amazonaws.com/k.tar",
        ),
        (
            "https://acct.blob.core.windows.net/c/b.tar?sv=2022&sr=b&sig=abc%3D",
            "https://acct.blob.core.windows.net/c/b.tar",
        ),
        ("https://host/f.json?token=xyz", "https://host/f.json"),
        ("https://host/f.json?AWSAccessKeyId=A&Expires=1&Signature=s", "https://host/f.json"),
        ("https://storage.googleapis.com/b/o?X-Goog-Signature=ff", "https://storage.googleapis.com/b/o"),
        ("https://host/f.json?versionId=3", "https://host/f.json?versionId=3"),
        ("simplecache::s3://u:p@bucket/k?token=t", "simplecache::s3://bucket/k"),
    ],
)
def test_redact(url, expected):
    assert redact(url) == expected
    for secret in ("secret", "TOKEN123", "deadbeef", "abc%3D", "xyz", "u:p@"):
        assert secret not in redact(url)


def test_leftovers_listed_and_removed_local(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "shard-000000.tar").write_bytes(b"done")
    (tmp_path / ".hidden").write_bytes(b"not a temp")
    killed = AtomicFile(str(tmp_path / "train" / "shard-000001.tar"))  # a writer killed before commit
    killed.write(b"partial")
    killed.file.close()
    found = list_leftovers(str(tmp_path))
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path}/train/.shard-000001.tar.tmp-")
    assert remove_leftovers(str(tmp_path)) == found
    assert list_leftovers(str(tmp_path)) == []
    assert _files(tmp_path / "train") == ["shard-000000.tar"]
    assert (tmp_path / ".hidden").exists()


def test_leftovers_on_memory_and_missing_prefix(mem_root):
    atomic_write(join(mem_root, "done.bin"), b"x")
    killed = AtomicFile(join(mem_root, "a", "part.bin"))
    killed.write(b"partial")
    killed.file.close()
    found = list_leftovers(mem_root)
    assert len(found) == 1 and found[0].startswith(f"{mem_root}/a/.part.bin.tmp-")
    assert remove_leftovers(mem_root) == found
    assert list_leftovers(mem_root) == []
    assert list_leftovers(join(mem_root, "nothing-here")) == []


def test_absolute_makes_local_paths_absolute_and_leaves_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute("images/VG_100K") == str(tmp_path / "images" / "VG_100K")
    for url in ("s3://bucket/images", "memory://x/y", "simplecache::s3://bucket/images"):
        assert absolute(url) == url


def test_read_bytes_from_a_local_path_a_file_url_and_memory(tmp_path, mem_root, monkeypatch):
    (tmp_path / "a.bin").write_bytes(b"\xff\xd8local")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert read_bytes("~/a.bin") == b"\xff\xd8local"  # "~" as fsspec reads it
    atomic_write(f"{mem_root}/a.bin", b"\xff\xd8memory")
    assert read_bytes(str(tmp_path / "a.bin")) == b"\xff\xd8local"
    assert read_bytes(f"file://{tmp_path}/a.bin") == b"\xff\xd8local"
    assert read_bytes(f"{mem_root}/a.bin") == b"\xff\xd8memory"
    for missing in (str(tmp_path / "b.bin"), f"file://{tmp_path}/b.bin", f"{mem_root}/b.bin"):
        with pytest.raises(FileNotFoundError):
            read_bytes(missing)


def test_local_temp_without_posix_fadvise_is_a_plain_file(tmp_path, monkeypatch):
    monkeypatch.delattr(os, "posix_fadvise", raising=False)  # as on macOS and Windows
    piece = bytes(range(256)) * 40000  # 10 MB: past the first writeback mark
    handle = AtomicFile(str(tmp_path / "big.tar"))
    handle.write(piece)
    handle.write(piece)
    handle.commit()
    assert (tmp_path / "big.tar").read_bytes() == piece * 2
    assert _files(tmp_path) == ["big.tar"]
