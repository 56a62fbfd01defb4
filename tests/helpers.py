"""Helpers shared by the end-to-end tests: output checks, file digests, and running the job in a subprocess that a
test-only fault hook kills (SIGKILL of the whole process group) at a chosen point."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import webdataset as wds

from sgverbalise.schemas import validator

REPO = Path(__file__).resolve().parents[1]
JOB = "import sys; from sgverbalise.pipelines.build_shards import run; run(sys.argv[1:])"


def job_args(corpus: str | Path, out: str | Path, *extra: str, samples_per_shard: int = 16,
             val_fraction: float = 0.25) -> list[str]:
    """build-shards arguments for a corpus written by ``sgverbalise.synth.synthesize`` (a folder or URL prefix)."""
    return ["--vg", f"{corpus}/vg", "--vg-images", f"{corpus}/vg", "--gqa", f"{corpus}/gqa/train_sceneGraphs.json",
            "--gqa-images", f"{corpus}/gqa/images", "--out", str(out), "--samples-per-shard", str(samples_per_shard),
            "--val-fraction", str(val_fraction), *extra]


def files_sha(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def read_tar(path: Path) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            key, ext = member.name.split(".", 1)
            samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
    return samples


def check_output(out: Path, manifest: dict) -> dict[str, dict]:
    """Everything a consumer relies on; returns the samples' JSON by key."""
    assert list(validator("manifest").iter_errors(manifest)) == []
    assert json.loads((out / "manifest.json").read_text()) == manifest
    t = manifest["totals"]
    assert t["relations_read"] == t["triplets"] + t["relation_rejects"] + t["relations_in_rejected_images"]
    assert t["images_read"] == t["samples"] + t["images_rejected"]
    samples: dict[str, dict] = {}
    for split, info in manifest["splits"].items():
        for shard in info["shards"]:
            assert shard["name"].startswith(f"{split}/shard-")
            path = out / shard["name"]
            data = path.read_bytes()
            assert (len(data), hashlib.sha256(data).hexdigest()) == (shard["bytes"], shard["sha256"])
            members = read_tar(path)
            assert len(members) == shard["samples"]
            for key, m in members.items():
                sample = json.loads(m["json"])
                assert list(validator("sample").iter_errors(sample)) == [], key
                assert sample["key"] == key and key not in samples
                if sample["vsg"]:
                    assert m["txt"].decode() == sample["vsg"][0]
                samples[key] = sample
            # webdataset reads the same samples
            keys = [s["__key__"] for s in wds.WebDataset(str(path), shardshuffle=False)]
            assert sorted(keys) == sorted(members)
    assert len(samples) == t["samples"] == sum(s["samples"] for s in manifest["splits"].values())
    # each split's sizes.json (open_clip's get_dataset_size) says what its shards hold
    for split, info in manifest["splits"].items():
        sizes = out / split / "sizes.json"
        if info["shards"]:
            assert json.loads(sizes.read_text()) == {Path(s["name"]).name: len(read_tar(out / s["name"]))
                                                     for s in info["shards"]}
        else:
            assert not sizes.exists()
    assert sum(len(s["triplets"]) for s in samples.values()) == t["triplets"]
    # every reject is on disk, counted by kind/reason
    on_disk = Counter()
    for path in (out / "rejects").glob("*.jsonl"):
        for line in path.read_text().splitlines():
            r = json.loads(line)
            assert list(validator("reject").iter_errors(r)) == []
            on_disk[f"{r['kind']}/{r['reason']}"] += 1
    assert dict(on_disk) == manifest["rejects"]
    vocab = json.loads((out / "relations.json").read_text())
    ids = {r["predicate"]: r["id"] for r in vocab["relations"]}
    assert all(ids[t_["predicate"]] == t_["relation_id"] for s in samples.values() for t_ in s["triplets"])
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    return samples


# The fault hook: a sitecustomize module on PYTHONPATH, so that the job's driver and each of its Beam worker
# processes load it at start. Driven by SGV_TEST_KILL_AT="<point>:<n>"; when the point is reached it writes the
# point's name to SGV_TEST_KILL_MARK and SIGKILLs its own process group (the driver and all workers at once, as a
# preempted machine). Points:
#   ingest         after the readers of units have yielded n images (nothing of this run written yet)
#   shard-bytes    once more than n bytes have gone into shard temps (a shard half written)
#   shard          at the n-th shard publication of a process, before the rename (temp complete, not published)
#   relations.json at the publication of relations.json (rejects written; relations.json and manifest not)
#   manifest.json  at the publication of the manifest (relations.json published, manifest.json not)
#   cleanup        when the finaliser starts removing leftovers (manifest published, stale files still there)
FAULT_HOOK = '''
import os
import signal

_AT = os.environ.get("SGV_TEST_KILL_AT")
if _AT:
    _POINT, _, _N = _AT.partition(":")
    _N = int(_N or 1)
    _SEEN = [0]

    def _kill(where):
        with open(os.environ["SGV_TEST_KILL_MARK"], "w") as f:
            f.write(where)
        os.killpg(os.getpgrp(), signal.SIGKILL)

    from sgverbalise import shards, storage
    from sgverbalise.readers import units

    if _POINT == "ingest":
        _read_unit = units.read_unit

        def _reading(unit, *args, **kwargs):
            for item in _read_unit(unit, *args, **kwargs):
                _SEEN[0] += 1
                if _SEEN[0] > _N:
                    _kill("ingest")
                yield item

        units.read_unit = _reading
    elif _POINT == "shard-bytes":
        _write = shards._HashingWriter.write

        def _writing(self, data):
            _SEEN[0] += len(data)
            if _SEEN[0] > _N:
                _kill("shard-bytes")
            return _write(self, data)

        shards._HashingWriter.write = _writing
    elif _POINT in ("shard", "relations.json", "manifest.json"):
        _commit = storage.AtomicFile.commit

        def _committing(self):
            name = os.path.basename(self.path)
            if name == _POINT or (_POINT == "shard" and name.startswith("shard-")):
                _SEEN[0] += 1
                if _SEEN[0] >= _N:
                    _kill(_POINT)
            return _commit(self)

        storage.AtomicFile.commit = _committing
    elif _POINT == "cleanup":
        def _listing(prefix, **kwargs):
            _kill("cleanup")

        storage.list_leftovers = _listing
'''


def run_killed(argv: list[str], point: str, tmp: Path, timeout: float = 300) -> str:
    """Run the job on ``argv`` in a subprocess that dies by SIGKILL at ``point`` ("name:n"); returns the name of
    the point where it died (the test asserts it). Output of the job goes to ``tmp/job.log``."""
    hook = tmp / "fault-hook"
    hook.mkdir(parents=True, exist_ok=True)
    (hook / "sitecustomize.py").write_text(FAULT_HOOK)
    mark = tmp / "fault-mark"
    mark.unlink(missing_ok=True)
    env = dict(os.environ, SGV_TEST_KILL_AT=point, SGV_TEST_KILL_MARK=str(mark),
               PYTHONPATH=os.pathsep.join([str(hook), str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    with open(tmp / "job.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", JOB, *argv], cwd=REPO, env=env, stdout=log, stderr=log,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert code == -signal.SIGKILL, f"the job was not killed (exit {code}); see {tmp / 'job.log'}"
    return mark.read_text() if mark.exists() else ""
