"""Kill -9 at several points of the main job (a preempted machine): each rerun ends complete, valid and
byte-identical to an uninterrupted run, and a killed run never leaves a partial file under a final name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import check_output, files_sha, job_args, run_killed

from sgverbalise.pipelines.build_shards import run
from sgverbalise.shards import read_shard
from sgverbalise.storage import list_leftovers
from sgverbalise.synth import synthesize

pytestmark = pytest.mark.slow

STALE = "train/shard-000999.tar"
LEFTOVER = "val/.shard-000000.tar.tmp-" + "0123456789abcdef" * 2


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    synthesize(str(root), 48, seed=5, with_images=True, image_size=96)
    return root


@pytest.fixture(scope="module")
def reference(tmp_path_factory, corpus) -> dict[str, str]:
    """The digests of every file of an uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "out"
    check_output(out, run(job_args(corpus, out, samples_per_shard=6)))
    return files_sha(out)


@pytest.fixture(scope="module")
def earlier(tmp_path_factory, corpus) -> Path:
    """The complete output of an earlier run with other options, plus a stale shard and a temp leftover."""
    out = tmp_path_factory.mktemp("earlier") / "out"
    run(job_args(corpus, out, "--seed", "7", "--max-image-side", "48", samples_per_shard=4))
    (out / STALE).write_bytes(b"stale")
    (out / LEFTOVER).write_bytes(b"half a shard")
    return out


def published_files_are_whole(out: Path) -> None:
    """Every file under its final name is complete: shards read to their end-of-archive, JSON parses."""
    for path in out.rglob("*"):
        if not path.is_file() or ".tmp-" in path.name or path.name == Path(STALE).name:
            continue
        if path.suffix == ".tar":
            assert list(read_shard(str(path))), path
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".jsonl":
            assert all(json.loads(line) for line in path.read_text().splitlines())


POINTS = {
    # point: what must hold right after the kill
    "ingest:10": "no manifest",
    "shard-bytes:40000": "no manifest, a temp leftover",
    "shard:2": "no manifest, a temp leftover",
    "relations.json:1": "no manifest, a temp leftover",
    "manifest.json:1": "no manifest, a temp leftover",
    "cleanup:1": "a complete manifest, stale files still there",
}


@pytest.mark.parametrize("point", list(POINTS))
def test_rerun_after_kill_is_identical_to_an_uninterrupted_run(tmp_path, corpus, reference, earlier, point):
    out = tmp_path / "out"
    shutil.copytree(earlier, out)
    where = run_killed(job_args(corpus, out, "--direct_num_workers=1", samples_per_shard=6), point, tmp_path)
    assert where == point.split(":")[0]
    published_files_are_whole(out)
    leftovers = list_leftovers(str(out))
    if point.startswith("cleanup"):
        manifest = json.loads((out / "manifest.json").read_text())
        assert files_sha(out)["manifest.json"] == reference["manifest.json"]
        for shard in (s for split in manifest["splits"].values() for s in split["shards"]):
            assert files_sha(out)[shard["name"]] == shard["sha256"] == reference[shard["name"]]
        assert (out / STALE).exists() and str(out / LEFTOVER) in leftovers
    else:
        assert not (out / "manifest.json").exists()  # removed at the start: the output is not complete
        assert [u for u in leftovers if u != str(out / LEFTOVER)] or point.startswith("ingest")
    # the rerun, with the default two workers
    manifest = run(job_args(corpus, out, samples_per_shard=6))
    check_output(out, manifest)
    assert files_sha(out) == reference
