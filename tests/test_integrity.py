"""Input integrity, sizes.json and progress on real Beam runs: a real VG or GQA file cut in the middle fails
``sgv build-shards`` and ``sgv ingest`` with one line naming the file and where it broke off, and publishes
nothing; ``--allow-partial-inputs`` accepts the cut and the manifest records it. Each split's sizes.json agrees with
the manifest (``sgv validate`` checks it). A run logs its progress as it goes (images read, VG file entries,
samples, shards written)."""

from __future__ import annotations

import gzip
import json
import logging
import re
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from helpers import check_output

from sgverbalise.cli.main import main
from sgverbalise.errors import InputFileError
from sgverbalise.pipelines import progress as progress_module
from sgverbalise.pipelines.options import BuildConfig
from sgverbalise.pipelines.transforms import RecordsCounter
from sgverbalise.pipelines.units import job_inputs, unit_records
from sgverbalise.readers import iter_gqa, iter_list
from sgverbalise.readers.units import plan, scan_file
from sgverbalise.schemas import validator
from sgverbalise.schemas.layout import resolve
from sgverbalise.tools.validate import validate_set
from sgverbalise.vocab import RelationVocab

CUT_AT = 27  # complete GQA entries before the cut


def cut_gqa(gqa_sample: Path, folder: Path) -> tuple[Path, int]:
    """The real GQA excerpt cut in the middle of its entry ``CUT_AT`` (0-based); returns the file and its size."""
    data = (gqa_sample / "train_sceneGraphs.json").read_bytes()
    keys = list(json.loads(data))
    start = data.index(json.dumps(keys[CUT_AT]).encode() + b":")
    end = data.index(json.dumps(keys[CUT_AT + 1]).encode() + b":")
    cut = data[:(start + end) // 2]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train_sceneGraphs.json"
    path.write_bytes(cut)
    return path, len(cut)


def published(out: Path) -> list[str]:
    """Every file under ``out``."""
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) if out.exists() else []


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    return err


def test_reader_error_says_which_file_after_how_many_entries_and_at_which_byte(tmp_path, gqa_sample):
    path, size = cut_gqa(gqa_sample, tmp_path)
    seen = []
    with pytest.raises(InputFileError) as err:
        for record, _ in iter_gqa(str(path)):
            seen.append(record["image_id"])
    assert len(seen) == CUT_AT and (err.value.elements, err.value.offset) == (CUT_AT, size)
    assert str(path) in str(err.value) and f"after {CUT_AT} complete entries" in str(err.value)
    assert err.value.cut("gqa") == {"source": "gqa", "file": str(path), "elements_read": CUT_AT,
                                    "byte_offset": size, "error": err.value.detail}
    # a compressed file: the offset counts the decompressed bytes the parser had when the stream broke off
    packed = gzip.compress(b"[" + b",".join(b'{"image_id": %d}' % i for i in range(20000)) + b"]")
    (tmp_path / "objects.json.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(InputFileError, match=r"objects\.json\.gz: unreadable stream") as err:
        list(iter_list(str(tmp_path / "objects.json.gz")))
    assert 0 < err.value.elements < 20000 and err.value.offset > 0


def test_cut_gqa_file_fails_the_run_with_one_line_and_publishes_nothing(tmp_path, gqa_sample, capsys):
    path, size = cut_gqa(gqa_sample, tmp_path / "gqa")
    out = tmp_path / "out"
    assert main(["build-shards", "--gqa", str(path), "--out", str(out), "--samples-per-shard", "10"]) == 2
    line = error_line(capsys)
    assert line.startswith(f"sgv build-shards: error: {path}: invalid JSON") and \
        f"after {CUT_AT} complete entries (parser at byte {size})" in line and "published nothing" in line
    assert published(out) == []


BROKEN_AT = 63  # the GQA entry made not JSON, in the middle of the file


def broken_gqa(gqa_sample: Path, folder: Path) -> tuple[Path, int]:
    """The real GQA excerpt with entry ``BROKEN_AT`` (0-based) made not JSON in its middle, its brackets, quotes
    and commas untouched (the scan finds every entry; only parsing that one fails); returns the file and the byte
    offset where that entry starts (after the comma before it)."""
    data = (gqa_sample / "train_sceneGraphs.json").read_bytes()
    keys = list(json.loads(data))
    at = data.index(json.dumps(keys[BROKEN_AT]).encode() + b":")
    colon = data.index(b'"width": ', at) + len(b'"width"')
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train_sceneGraphs.json"
    path.write_bytes(data[:colon] + b" =" + data[colon + 1:])  # "width" = 375
    return path, data.rindex(b",", 0, at) + 1


@pytest.mark.slow
def test_entry_not_json_mid_file_fails_the_run_publishing_nothing_or_is_recorded_when_allowed(tmp_path, gqa_sample,
                                                                                              capsys):
    path, offset = broken_gqa(gqa_sample, tmp_path / "gqa")
    vocab = tmp_path / "relations.json"
    vocab.write_bytes(RelationVocab.from_counts(Counter({"on": 2, "near": 1})).dumps())
    out = tmp_path / "out"
    argv = ["build-shards", "--gqa", str(path), "--out", str(out), "--samples-per-shard", "4",
            "--images-per-unit", "10"]
    # found by the vocabulary's pre-pass, or, with a given vocabulary, by the unit that reads the entry while the
    # other units write their shards: either way one line, exit 2, nothing under any name
    for extra in ([], ["--relations", str(vocab)]):
        assert main([*argv, *extra]) == 2, extra
        line = error_line(capsys)
        assert line.startswith(f"sgv build-shards: error: {path}: invalid JSON") and \
            f"after {BROKEN_AT} complete entries (parser at byte {offset})" in line and "published nothing" in line
        assert published(out) == [], extra

    assert main([*argv, "--relations", str(vocab), "--allow-partial-inputs"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [{k: v for k, v in cut.items() if k != "error"} for cut in manifest["cuts"]] == [
        {"source": "gqa", "file": str(path), "elements_read": BROKEN_AT, "byte_offset": offset}]
    assert manifest["cuts"][0]["error"].startswith("invalid JSON")
    assert manifest["totals"]["images_read"] == len(json.loads((gqa_sample / "train_sceneGraphs.json").read_text()))
    check_output(out, manifest)  # the entries after the broken one are read too
    rejected = (out / "rejects" / "image-malformed_record.jsonl").read_text().splitlines()
    assert [json.loads(line)["detail"].startswith("entry unreadable") for line in rejected] == [True]


@pytest.mark.slow
def test_entry_not_json_mid_file_fails_ingest_publishing_nothing_or_is_recorded_when_allowed(tmp_path, gqa_sample,
                                                                                              capsys):
    path, offset = broken_gqa(gqa_sample, tmp_path / "gqa")
    out = tmp_path / "records"
    argv = ["ingest", "--gqa", str(path), "--out", str(out), "--records-per-file", "10"]
    assert main(argv) == 2  # the units before and after the broken entry write records files: none may remain
    line = error_line(capsys)
    assert line.startswith(f"sgv ingest: error: {path}: invalid JSON") and \
        f"after {BROKEN_AT} complete entries (parser at byte {offset})" in line
    assert published(out) == []

    assert main([*argv, "--allow-partial-inputs"]) == 0
    manifest = json.loads((out / "ingest.json").read_text())
    assert [{k: v for k, v in cut.items() if k != "error"} for cut in manifest["cuts"]] == [
        {"source": "gqa", "file": str(path), "elements_read": BROKEN_AT, "byte_offset": offset}]
    files = list(out.rglob("*.parquet"))
    assert len(files) > 2  # several units: some of them finished before the broken entry's unit failed
    records = sum(pq.read_metadata(f).num_rows for f in files)
    assert records == len(json.loads((gqa_sample / "train_sceneGraphs.json").read_text())) - 1


@pytest.mark.slow
def test_cut_vg_file_fails_ingest_and_is_recorded_when_allowed(tmp_path, vg_sample, capsys):
    vg = tmp_path / "vg"
    vg.mkdir()
    for name in ("objects.json", "relationships.json", "image_data.json"):
        (vg / name).write_bytes((vg_sample / name).read_bytes())
    data = (vg_sample / "relationships.json").read_bytes()
    (vg / "relationships.json").write_bytes(data[: len(data) // 2])
    entries = sum(1 for _ in _complete_entries(data[: len(data) // 2]))
    out = tmp_path / "records"
    assert main(["ingest", "--vg", str(vg), "--out", str(out)]) == 2
    line = error_line(capsys)
    assert "relationships.json: invalid JSON" in line and f"after {entries} complete entries" in line
    assert published(out) == []

    assert main(["ingest", "--vg", str(vg), "--out", str(out), "--allow-partial-inputs"]) == 0
    manifest = json.loads((out / "ingest.json").read_text())
    assert manifest["cuts"] == [{"source": "vg", "file": f"file://{vg}/relationships.json", "elements_read": entries,
                                 "byte_offset": len(data) // 2, "error": "invalid JSON: parse error: premature EOF"}]


def _complete_entries(cut: bytes):
    """The entries of a JSON list cut short that the standard library decodes whole."""
    decoder, text, pos = json.JSONDecoder(), cut.decode(), 1
    while True:
        while text[pos:pos + 1] in (",", " ", "\n"):
            pos += 1
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return
        yield value


@pytest.mark.slow
def test_allowed_cut_is_in_the_manifest_sizes_json_agrees_and_progress_is_logged(tmp_path, gqa_sample, capfd,
                                                                                 monkeypatch):
    monkeypatch.setenv("SGV_PROGRESS_SECONDS", "0.001")  # the worker processes inherit it
    path, size = cut_gqa(gqa_sample, tmp_path / "gqa")
    out = tmp_path / "out"
    argv = ["build-shards", "--gqa", str(path), "--out", str(out), "--samples-per-shard", "10",
            "--val-fraction", "0.3", "--allow-partial-inputs"]
    assert main(argv) == 0
    logged = capfd.readouterr().err
    # a worker's line starts with whatever it counted first (files scanned, images read, ...)
    assert re.search(r"progress: .*\bimages read \d", logged) and "shards written" in logged
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["schema_version"] == "1.2"
    assert manifest["cuts"] == [{"source": "gqa", "file": str(path), "elements_read": CUT_AT, "byte_offset": size,
                                 "error": "invalid JSON: parse error: premature EOF"}]
    assert manifest["totals"]["images_read"] == CUT_AT + 1  # the entries before the cut, and the cut's reject
    check_output(out, manifest)  # sizes.json of each split = its shards' samples
    sizes = json.loads((out / "train" / "sizes.json").read_text())
    assert sum(sizes.values()) == manifest["splits"]["train"]["samples"] and len(sizes) > 1
    assert validate_set(resolve(str(out))).ok
    # validate notices a sizes.json that does not say what the manifest says
    first = sorted(sizes)[0]
    (out / "train" / "sizes.json").write_text(json.dumps(dict(sizes, **{first: sizes[first] + 1})))
    problems = validate_set(resolve(str(out))).problems
    assert [(p.where, first in p.message) for p in problems] == [("train/sizes.json", True)]
    # a 1.0 manifest (no cuts) is still a valid manifest
    old = {k: v for k, v in manifest.items() if k != "cuts"} | {"schema_version": "1.0"}
    assert list(validator("manifest").iter_errors(old)) == []


def test_progress_lines_name_their_counts_in_order_vg_entries_included(tmp_path, vg_sample, monkeypatch, caplog):
    # the units' reading of the real VG excerpt, in this process: each line says every count so far, VG's file
    # entries included (counted when a unit has read its images), in a fixed order
    monkeypatch.setattr(progress_module, "_PROCESS", progress_module.Progress(seconds=1e-9))
    caplog.set_level(logging.INFO, logger=progress_module.log.name)
    inputs = job_inputs(BuildConfig(out=str(tmp_path), vg=str(vg_sample)))
    scans = {(inp.source, url): scan_file(inp, role, url) for inp in inputs for role, url in inp.files}
    fn = RecordsCounter()
    fn.start_bundle()
    for unit in plan(inputs, scans, 40, None, False).units:
        assert list(unit_records(fn, unit, False))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress: ")]
    entries, images = fn._counts["vg_entries_read"], fn._counts["images_read"]
    assert entries > images == 100
    assert lines[-1].startswith(f"progress: VG file entries read {entries}, images read {images} (worker ")
    assert any(line.startswith("progress: images read 1 (worker ") for line in lines)
    # a line every few seconds at most, none when off
    for seconds in (3600, 0):
        caplog.clear()
        monkeypatch.setattr(progress_module, "_PROCESS", progress_module.Progress(seconds=seconds))
        for _ in range(1000):
            progress_module.progress().add("images_read")
        assert not caplog.records


@pytest.mark.slow
def test_a_run_logs_its_progress_on_stderr(tmp_path, vg_sample, capfd, monkeypatch):
    monkeypatch.setenv("SGV_PROGRESS_SECONDS", "0.001")  # the worker processes inherit it
    out = tmp_path / "out"
    assert main(["build-shards", "--vg", str(vg_sample), "--out", str(out), "--samples-per-shard", "10",
                 "--images-per-unit", "30"]) == 0
    lines = [line for line in capfd.readouterr().err.splitlines() if "progress: " in line]
    for label in ("input files scanned", "images read for the vocabulary", "VG file entries read", "images read",
                  "samples", "shards written", "reject lines merged", "files published"):
        assert any(f" {label} " in line for line in lines), label
