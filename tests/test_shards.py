"""WebDataset shards: deterministic bytes, rollover, atomic publication, tarfile and webdataset reads."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import fsspec
import jsonschema
import pytest
import webdataset as wds

from sgverbalise.shards import (
    ShardError,
    ShardWriter,
    encode_sample,
    finished_size,
    read_shard,
    sample_bytes,
    sample_size,
    write_shard,
)
from sgverbalise.storage import list_leftovers

REPO = Path(__file__).resolve().parents[1]


def _samples(n: int, start: int = 0, text: int = 100) -> list[tuple[str, dict[str, bytes]]]:
    """Samples with three members whose bytes differ per key."""
    out = []
    for i in range(start, start + n):
        out.append((
            f"vg-{i:05d}",
            {
                "txt": f"man riding horse {i} [SEP] horse on grass".encode() * (1 + text // 40),
                "json": json.dumps({"image_id": str(i), "relations": [i, i + 1]}).encode(),
                "jpg": bytes([i % 256]) * (50 + i),
            },
        ))
    return out


def _shard_schema() -> dict:
    schema = json.loads((REPO / "schemas" / "manifest.schema.json").read_text())
    return {**schema["$defs"]["shard"], "$defs": schema["$defs"]}



# -- encode_sample ------------------------------------------------------------------------------------------


def test_encode_sample_fixed_member_order():
    members = {"txt": b"t", "jpg": b"j", "json": b"{}", "mrc.json": b"[]"}
    assert encode_sample("k1", members) == [("k1.jpg", b"j"), ("k1.json", b"{}"), ("k1.mrc.json", b"[]"),
                                            ("k1.txt", b"t")]
    assert encode_sample("k1", dict(reversed(list(members.items())))) == encode_sample("k1", members)


@pytest.mark.parametrize("key", ["a.b", "vg/1", "", "x\x00y"])
def test_encode_sample_rejects_bad_keys(key):
    with pytest.raises(ValueError):
        encode_sample(key, {"txt": b"x"})


@pytest.mark.parametrize("members", [{}, {"TXT": b"x"}, {"": b"x"}, {".txt": b"x"}, {"a/b": b"x"}])
def test_encode_sample_rejects_bad_members(members):
    with pytest.raises(ValueError):
        encode_sample("k", members)


def test_encode_sample_rejects_non_bytes():
    with pytest.raises(TypeError):
        encode_sample("k", {"txt": "a str"})


# -- write_shard: layout, readers, determinism -------------------------------------------------------------


def test_write_shard_read_back_with_tarfile(tmp_path):
    samples = _samples(5)
    url = str(tmp_path / "train" / "shard-000000.tar")
    info = write_shard(url, samples, relative_to=str(tmp_path))
    assert info["name"] == "train/shard-000000.tar"
    assert (info["samples"], info["first_key"], info["last_key"]) == (5, "vg-00000", "vg-00004")
    jsonschema.validate(info, _shard_schema())
    with tarfile.open(url) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        expected = [name for key, m in samples for name, _ in encode_sample(key, m)]
        assert names == expected
        for m in members:
            assert (m.type, m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) == (
                tarfile.REGTYPE, 0, 0, 0, "", "", 0o644)
        by_name = {n: d for key, m in samples for n, d in encode_sample(key, m)}
        assert all(tar.extractfile(m).read() == by_name[m.name] for m in members)


def test_write_shard_read_back_with_webdataset_and_read_shard(tmp_path):
    samples = _samples(7)
    url = str(tmp_path / "shard-000000.tar")
    write_shard(url, samples)
    got = [(s["__key__"], {k: v for k, v in s.items() if not k.startswith("__")})
           for s in wds.WebDataset(url, shardshuffle=False)]
    assert got == samples
    assert list(read_shard(url)) == samples


def test_unicode_and_long_keys_round_trip(tmp_path):
    samples = [("réseau-ünïcode", {"txt": b"a"}), ("k" * 180, {"json": b"{}", "txt": b"b"})]
    url = str(tmp_path / "s.tar")
    write_shard(url, samples)
    assert list(read_shard(url)) == samples
    got = [(s["__key__"], {k: v for k, v in s.items() if not k.startswith("__")})
           for s in wds.WebDataset(url, shardshuffle=False)]
    assert got == samples


def test_deterministic_bytes_and_hash_while_writing(tmp_path):
    samples = _samples(20)
    a = write_shard(str(tmp_path / "a" / "s.tar"), samples)
    b = write_shard(str(tmp_path / "b" / "s.tar"), iter(samples))
    assert a == b
    data = (tmp_path / "a" / "s.tar").read_bytes()
    assert data == (tmp_path / "b" / "s.tar").read_bytes()
    assert a["sha256"] == hashlib.sha256(data).hexdigest()
    assert a["bytes"] == len(data) == os.path.getsize(tmp_path / "a" / "s.tar")
    with ShardWriter(str(tmp_path / "c" / "s-%d.tar"), max_count=100) as writer:
        for key, members in samples:
            writer.write(key, dict(reversed(list(members.items()))))
    assert writer.shards[0]["sha256"] == a["sha256"]


def test_sample_bytes_predicts_the_file_size(tmp_path):
    # member names of 100 ASCII characters fit the ustar header, 101 need a PAX header, as do non-ASCII ones
    samples = _samples(9, text=300) + [("é" * 120, {"txt": b"long unicode key"}), ("k" * 96, {"txt": b"100"}),
                                       ("k" * 97, {"txt": b"101"}), ("é", {"txt": b"short unicode key"})]
    info = write_shard(str(tmp_path / "s.tar"), samples)
    assert info["bytes"] == finished_size(sum(sample_bytes(k, m) for k, m in samples))
    # the same from the members' sizes alone, as the job plans shards for images it has not in memory
    assert [sample_size(k, {ext: len(d) for ext, d in m.items()}) for k, m in samples] == \
        [sample_bytes(k, m) for k, m in samples]


@pytest.mark.parametrize("n", [0, 1, 7, 40])
def test_shards_are_the_archives_tarfile_itself_writes(tmp_path, n):
    """The writer lays members out itself (one write per sample); the bytes must be those of tarfile's own
    writer given the same members: PAX headers for long or non-ASCII names, block padding, end blocks, records."""
    samples = _samples(n) + [("é" * 120, {"txt": b"x" * 512}), ("k" * 97, {"json": b""})]
    write_shard(str(tmp_path / "ours.tar"), samples)
    from sgverbalise.shards import _tarinfo, encode_sample

    with tarfile.open(tmp_path / "tarfile.tar", "w|", format=tarfile.PAX_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tar:
        for key, members in samples:
            for name, data in encode_sample(key, members):
                tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))
    assert (tmp_path / "ours.tar").read_bytes() == (tmp_path / "tarfile.tar").read_bytes()


def test_member_headers_and_sizes_from_the_template_match_tarfile():
    from sgverbalise.shards import _entry_size, _header, _tarinfo

    for name in ("a.jpg", "vg-2417890.json", "k" * 96 + ".txt", "k" * 97 + ".txt", "é.json", "a\udcff.txt"):
        for size in (0, 1, 511, 512, 513, 61_234, 8 ** 11 - 1, 8 ** 11):
            header = _tarinfo(name, size).tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
            assert _header(name, size) == header, (name, size)
            assert _entry_size(name, size) == len(header) + -(-size // 512) * 512, (name, size)


def test_empty_shard_is_valid(tmp_path):
    info = write_shard(str(tmp_path / "empty.tar"), [])
    assert (info["samples"], "first_key" in info) == (0, False)
    jsonschema.validate(info, _shard_schema())
    assert list(read_shard(str(tmp_path / "empty.tar"))) == []


def test_duplicate_key_in_a_shard_rejected(tmp_path):
    with pytest.raises(ValueError, match="duplicate"):
        write_shard(str(tmp_path / "s.tar"), [("a", {"txt": b"1"}), ("a", {"json": b"2"})])
    assert os.listdir(tmp_path) == []


def test_write_shard_failure_leaves_nothing(tmp_path):
    def samples():
        yield from _samples(3)
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError, match="source failed"):
        write_shard(str(tmp_path / "s.tar"), samples())
    assert os.listdir(tmp_path) == []


def test_key_with_dot_rejected_by_writer_before_any_bytes(tmp_path):
    with pytest.raises(ValueError, match="first dot"), ShardWriter(str(tmp_path / "s-%06d.tar")) as writer:
        writer.write("img.1", {"txt": b"x"})
    assert os.listdir(tmp_path) == []


# -- ShardWriter: rollover ---------------------------------------------------------------------------------


def test_rollover_by_count_with_post_hook(tmp_path):
    samples = _samples(25)
    seen = []
    with ShardWriter(str(tmp_path / "train" / "shard-%06d.tar"), max_count=10, post=seen.append,
                     relative_to=str(tmp_path)) as writer:
        for key, members in samples:
            writer.write(key, members)
    assert seen == writer.shards
    assert [s["samples"] for s in seen] == [10, 10, 5]
    assert [s["name"] for s in seen] == [f"train/shard-{i:06d}.tar" for i in range(3)]
    assert [(s["first_key"], s["last_key"]) for s in seen] == [
        ("vg-00000", "vg-00009"), ("vg-00010", "vg-00019"), ("vg-00020", "vg-00024")]
    back = [x for i in range(3) for x in read_shard(str(tmp_path / "train" / f"shard-{i:06d}.tar"))]
    assert back == samples
    for s in seen:
        jsonschema.validate(s, _shard_schema())
        path = tmp_path / s["name"]
        assert s["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert s["bytes"] == path.stat().st_size


def test_count_bound_publishes_a_full_shard_at_once(tmp_path):
    writer = ShardWriter(str(tmp_path / "s-%d.tar"), max_count=2)
    for key, members in _samples(2):
        writer.write(key, members)
    assert sorted(os.listdir(tmp_path)) == ["s-0.tar"] and len(writer.shards) == 1
    assert writer.close() == writer.shards and sorted(os.listdir(tmp_path)) == ["s-0.tar"]


def test_rollover_by_bytes_is_tight(tmp_path):
    samples = _samples(40, text=600)
    max_bytes = 30_000
    with ShardWriter(str(tmp_path / "s-%04d.tar"), max_count=1000, max_bytes=max_bytes) as writer:
        for key, members in samples:
            writer.write(key, members)
    shards = writer.shards
    assert len(shards) > 2
    assert all(s["bytes"] <= max_bytes for s in shards)
    assert sum(s["samples"] for s in shards) == len(samples)
    done = 0
    for s in shards[:-1]:
        # the shard closed because the next sample would have pushed the finished file over the bound
        chunk = samples[done:done + s["samples"] + 1]
        assert write_shard(str(tmp_path / "probe" / "p.tar"), chunk)["bytes"] > max_bytes
        done += s["samples"]
    back = [x for s in shards for x in read_shard(str(tmp_path / s["name"]))]
    assert back == samples


def test_oversized_sample_gets_its_own_shard(tmp_path):
    small = _samples(2)
    big = ("big", {"jpg": b"\x01" * 50_000})
    with ShardWriter(str(tmp_path / "s-%d.tar"), max_bytes=20_480) as writer:
        for key, members in [small[0], big, small[1]]:
            writer.write(key, members)
    assert [(s["samples"], s["first_key"]) for s in writer.shards] == [(1, "vg-00000"), (1, "big"),
                                                                       (1, "vg-00001")]
    assert writer.shards[1]["bytes"] > 20_480
    assert list(read_shard(str(tmp_path / "s-1.tar"))) == [big]


def test_exception_mid_shard_leaves_no_file_and_no_temp(tmp_path):
    samples = _samples(15)
    with pytest.raises(RuntimeError, match="worker died"), \
            ShardWriter(str(tmp_path / "s-%d.tar"), max_count=10) as writer:
        for i, (key, members) in enumerate(samples):
            if i == 13:
                raise RuntimeError("worker died")
            writer.write(key, members)
    assert sorted(os.listdir(tmp_path)) == ["s-0.tar"]  # the full first shard; the second never appears
    assert list_leftovers(str(tmp_path)) == []
    assert [k for k, _ in read_shard(str(tmp_path / "s-0.tar"))] == [k for k, _ in samples[:10]]


def test_pattern_must_be_numbered(tmp_path):
    with pytest.raises(ValueError, match="%d"):
        ShardWriter(str(tmp_path / "shard.tar"))


def test_memory_urls(mem_root):
    samples = _samples(12)
    with ShardWriter(f"{mem_root}/train/shard-%06d.tar", max_count=5, relative_to=mem_root) as writer:
        for key, members in samples:
            writer.write(key, members)
    assert [s["name"] for s in writer.shards] == [f"train/shard-{i:06d}.tar" for i in range(3)]
    fs = fsspec.filesystem("memory")
    for s in writer.shards:
        data = fs.cat_file(f"{mem_root}/{s['name']}"[len("memory://"):])
        assert hashlib.sha256(data).hexdigest() == s["sha256"]
    back = [x for s in writer.shards for x in read_shard(f"{mem_root}/{s['name']}")]
    assert back == samples
    assert list_leftovers(mem_root) == []
    one = write_shard(f"{mem_root}/single.tar", samples[:3])
    assert one["sha256"] == write_shard(f"{mem_root}/again.tar", samples[:3])["sha256"]


# -- read_shard: truncation and hostile names --------------------------------------------------------------


@pytest.mark.parametrize("cut", ["mid_data", "member_boundary", "mid_header", "no_end_block", "empty"])
def test_truncated_tar_raises_clear_error(tmp_path, cut):
    url = str(tmp_path / "s.tar")
    info = write_shard(url, [("a", {"txt": b"x" * 1000}), ("b", {"txt": b"y" * 1000})])
    data = Path(url).read_bytes()
    content = 2 * (512 + 1024)  # two members: a header block and two data blocks each
    cuts = {"mid_data": 700, "member_boundary": 1536, "mid_header": 1536 + 100, "no_end_block": content,
            "empty": 0}
    assert info["bytes"] == len(data) and data[content:] == b"\0" * (len(data) - content)
    bad = tmp_path / "bad.tar"
    bad.write_bytes(data[:cuts[cut]])
    with pytest.raises(ShardError, match="truncated"):
        list(read_shard(str(bad)))


def test_not_a_tar_raises_shard_error(tmp_path):
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"this is not a tar archive at all" * 40)
    with pytest.raises(ShardError):
        list(read_shard(str(bad)))


def test_read_shard_never_uses_member_names_as_paths(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    url = str(work / "hostile.tar")
    with tarfile.open(url, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in [("../escaped.txt", b"1"), ("/abs/evil.txt", b"2")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, fileobj=io.BytesIO(data))
    cwd = os.getcwd()
    os.chdir(work)
    try:
        got = list(read_shard(url))
    finally:
        os.chdir(cwd)
    assert got == [("../escaped", {"txt": b"1"}), ("/abs/evil", {"txt": b"2"})]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["hostile.tar", "work"]
