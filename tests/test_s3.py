"""The main job, the shard tools and the trainer's loader against a real S3-compatible store (moto's server):
inputs and outputs on s3://, the same bytes as on local disk, atomic publication after a kill."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import check_output, files_sha, job_args, run_killed
from s3 import s3_server  # noqa: F401  (the fixture)

from sgverbalise.cli.main import main as sgv_main
from sgverbalise.pipelines.build_shards import run
from sgverbalise.shards import read_shard
from sgverbalise.storage import (
    AtomicFile,
    atomic_open,
    atomic_write,
    incomplete_uploads,
    list_leftovers,
    remove_leftovers,
)
from sgverbalise.synth import synthesize


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    synthesize(str(root), 40, seed=11, with_images=True, image_size=96)
    gqa_images = sorted((root / "gqa" / "images").glob("*.jpg"))
    gqa_images[0].unlink()  # a missing image and a corrupt one: rejects on s3 as on disk
    gqa_images[1].write_bytes(b"\xff\xd8 not a jpeg")
    return root


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, corpus) -> Path:
    out = tmp_path_factory.mktemp("local") / "out"
    check_output(out, run(job_args(corpus, out, samples_per_shard=8)))
    return out


@pytest.fixture(scope="module")
def s3_inputs(s3_server, corpus) -> str:  # noqa: F811
    return s3_server.upload(corpus, s3_server.prefix("in"))


@pytest.fixture(scope="module")
def s3_run(s3_server, s3_inputs, tmp_path_factory) -> tuple[str, dict, Path]:  # noqa: F811
    """The job with inputs and outputs on s3://: (output URL, manifest, a local copy of the output)."""
    out = s3_server.prefix("out")
    manifest = run(job_args(s3_inputs, out, samples_per_shard=8))
    return out, manifest, s3_server.download(out, tmp_path_factory.mktemp("s3copy"))


@pytest.mark.slow
def test_job_on_s3_writes_what_it_writes_on_disk(s3_run, local_run, corpus, s3_inputs):
    out, manifest, copy = s3_run
    check_output(copy, manifest)
    assert list_leftovers(out) == []
    assert manifest["rejects"]["image/image_missing"] == 1 and manifest["rejects"]["image/image_unreadable"] == 1
    # shards and relations.json: the same bytes; rejects name the image URLs; the manifest differs only in
    # its inputs and paths
    on_s3, on_disk = files_sha(copy), files_sha(local_run)
    assert on_s3.keys() == on_disk.keys()
    for name in on_s3:
        if name.startswith("rejects/"):
            assert (copy / name).read_text() == (local_run / name).read_text().replace(str(corpus), s3_inputs)
        elif name != "manifest.json":
            assert on_s3[name] == on_disk[name], name
    local_manifest = json.loads((local_run / "manifest.json").read_text())
    assert {k: v for k, v in manifest.items() if k not in ("config", "inputs")} == \
        {k: v for k, v in local_manifest.items() if k not in ("config", "inputs")}
    assert manifest["inputs"] and all(i["url"].startswith("s3://") and i["fingerprint"].startswith("etag:")
                                      for i in manifest["inputs"])


@pytest.mark.slow
def test_shard_tools_validate_the_s3_output(s3_run, capsys):
    out, manifest, _ = s3_run
    assert sgv_main(["validate", out]) == 0
    report = capsys.readouterr()
    assert f"{manifest['totals']['samples']} samples" in report.err
    assert [key for key, _ in read_shard(f"{out}/{manifest['splits']['val']['shards'][0]['name']}")]


@pytest.mark.slow
def test_trainer_loader_streams_one_epoch_from_s3(s3_run, tmp_path):
    pytest.importorskip("torch")
    from sgverbalise.training.data import DataConfig, build_loader, load_tokenizer, train_tokenizer
    from sgverbalise.training.data.tokenizer import shard_texts

    out, manifest, copy = s3_run
    train_tokenizer(shard_texts([str(copy)]), tmp_path / "tok", vocab_size=200, min_frequency=1)
    cfg = DataConfig(sources={"vsg": [out]}, ratios={"vsg": 1}, batch_sizes={"vsg": 3}, image_size=32,
                     num_workers=0, shuffle_buffer=4, resampled=False, keep_keys=True)
    loader = build_loader(cfg, load_tokenizer(tmp_path / "tok"))
    keys = [k for batch in loader for k in batch["keys"]]
    train_keys = {k for shard in manifest["splits"]["train"]["shards"] for k, _ in read_shard(f"{out}/{shard['name']}")}
    assert len(keys) == len(set(keys)) and set(keys) == train_keys
    assert loader.counters()["samples_skipped"] == 0


@pytest.mark.slow
def test_kill_while_writing_to_s3_then_rerun(s3_server, s3_inputs, s3_run, tmp_path):  # noqa: F811
    reference = files_sha(s3_run[2])
    out = s3_server.prefix("killed")
    bucket_path = out.removeprefix("s3://")
    # what an earlier killed run may leave on S3: a temp key (copied, not yet deleted) and a stale shard
    leftover = f"{bucket_path}/train/.shard-000000.tar.tmp-" + "0123456789abcdef" * 2
    s3_server.fs.pipe_file(leftover, b"half a shard")
    s3_server.fs.pipe_file(f"{bucket_path}/train/shard-000999.tar", b"stale")
    killed = job_args(s3_inputs, out, "--direct_num_workers=1", samples_per_shard=8)
    assert run_killed(killed, "shard:2", tmp_path) == "shard"
    s3_server.fs.invalidate_cache()
    assert not s3_server.fs.exists(f"{bucket_path}/manifest.json")
    published = [p for p in s3_server.fs.find(bucket_path) if p.endswith(".tar") and ".tmp-" not in p
                 and not p.endswith("shard-000999.tar")]
    assert published  # the first shard was published before the kill: whole, as every final key
    for path in published:
        assert list(read_shard(f"s3://{path}"))
    manifest = run(job_args(s3_inputs, out, samples_per_shard=8))
    copy = s3_server.download(out, tmp_path / "copy")
    check_output(copy, manifest)
    assert list_leftovers(out) == []
    assert files_sha(copy) == reference


def test_atomic_publication_on_s3(s3_server, monkeypatch):  # noqa: F811
    def no_copy(*args, **kwargs):
        raise AssertionError("publishing on S3 copied an object")

    # the final key is written as a multipart upload that commit completes: no temp key, no server-side copy
    monkeypatch.setattr(type(s3_server.fs), "mv", no_copy)
    monkeypatch.setattr(type(s3_server.fs), "_copy", no_copy)
    prefix = s3_server.prefix("atomic")
    url = f"{prefix}/train/shard-000000.tar"
    path = url.removeprefix("s3://")
    atomic_write(url, b"first version")
    with pytest.raises(RuntimeError), atomic_open(url) as f:
        f.write(b"half of the second version")
        raise RuntimeError("the writer dies")
    handle = AtomicFile(f"{prefix}/val/shard-000000.tar")
    handle.write(b"complete")
    handle.file.flush()
    s3_server.fs.invalidate_cache()
    assert s3_server.fs.cat_file(path) == b"first version"  # the failed write left the old object whole
    assert not s3_server.fs.exists(f"{prefix.removeprefix('s3://')}/val/shard-000000.tar")  # not yet committed
    handle.commit()
    assert s3_server.fs.cat_file(f"{prefix.removeprefix('s3://')}/val/shard-000000.tar") == b"complete"
    assert list_leftovers(prefix) == [] and incomplete_uploads(prefix) == []


def test_writer_killed_before_commit_on_s3_leaves_an_upload_that_leftovers_abort(s3_server):  # noqa: F811
    prefix = s3_server.prefix("killed-writer")
    other = s3_server.prefix("other-job")
    for root in (prefix, other):
        handle = AtomicFile(f"{root}/train/shard-000001.tar")
        handle.write(b"x" * 1000)
        handle.file.close()  # every part uploaded, then the process dies before commit
    s3_server.fs.invalidate_cache()
    key = f"{prefix}/train/shard-000001.tar"
    assert not s3_server.fs.exists(key.removeprefix("s3://"))  # readers see nothing
    assert [url for url, _ in incomplete_uploads(prefix)] == [key]
    assert remove_leftovers(prefix) == [f"{key} (incomplete upload)"]
    assert incomplete_uploads(prefix) == []
    assert len(incomplete_uploads(other)) == 1  # another prefix's upload is not touched
