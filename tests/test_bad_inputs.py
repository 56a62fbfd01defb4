"""A generated corpus of broken inputs (tests/badinputs.py): the job finishes, every bad element is a reject
with its reason, every good element is a sample, and the counts add up. (The readers' property tests on
arbitrary JSON shapes are in tests/test_readers.py.)"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from badinputs import bomb_jpeg, write_bad_corpus
from helpers import check_output, files_sha

from sgverbalise.images import ImageConfig, ImageError, prepare_image
from sgverbalise.pipelines.build_shards import run

SEED = 4


def test_bad_corpus_is_deterministic(tmp_path):
    first, second, other = (write_bad_corpus(str(tmp_path / name), seed) for name, seed in
                            (("a", SEED), ("b", SEED), ("c", SEED + 1)))
    assert files_sha(tmp_path / "a") == files_sha(tmp_path / "b") != files_sha(tmp_path / "c")
    assert first.rejects == second.rejects == other.rejects and first.samples == other.samples
    # the truncated file really is cut, and the bomb's header claims far more pixels than the guard allows
    with pytest.raises(json.JSONDecodeError):
        json.loads((tmp_path / "a" / "gqa" / "val_sceneGraphs.json").read_text())
    with pytest.raises(ImageError) as bomb:
        prepare_image(bomb_jpeg(), "bomb.jpg", ImageConfig())
    assert bomb.value.reason == "image_too_large"


@pytest.mark.slow
def test_job_rejects_every_bad_element_and_keeps_every_good_one(tmp_path):
    corpus = write_bad_corpus(str(tmp_path / "corpus"), SEED)
    out = tmp_path / "out"
    manifest = run(corpus.args(str(out)) + ["--samples-per-shard", "4"])
    samples = check_output(out, manifest)  # also: relations and images add up, rejects on disk match the counts
    assert {key: len(s["triplets"]) for key, s in samples.items()} == corpus.samples
    found = Counter()
    for path in (out / "rejects").glob("*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            found[(r["source"], r["image_id"], r["kind"], r["reason"])] += 1
            assert len(r["detail"]) < 400  # huge strings are not copied into rejects
    expected = Counter((r["source"], r["image_id"], r["kind"], r["reason"]) for r in corpus.rejects)
    assert found == expected
    totals = manifest["totals"]
    assert totals["images_rejected"] == sum(n for k, n in manifest["rejects"].items() if k.startswith("image/"))
    assert totals["relations_in_rejected_images"] == 9  # the three good graphs whose images are unusable
    for path in out.rglob("*"):  # lone surrogates never reach the output: everything is valid UTF-8
        if path.is_file() and path.suffix in (".json", ".jsonl"):
            path.read_bytes().decode("utf-8")
