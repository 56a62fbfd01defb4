"""The main job end to end on real Beam runs: accounting, formats, determinism, runners, crash and rerun."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from badinputs import write_bad_corpus
from helpers import check_output, files_sha, job_args, read_tar
from PIL import Image

from sgverbalise.pipelines.build_shards import run
from sgverbalise.rejects import line_order
from sgverbalise.synth import synthesize

pytestmark = pytest.mark.slow


def test_real_excerpts_every_relation_accounted_for(tmp_path, vg_sample, gqa_sample):
    out = tmp_path / "out"
    manifest = run(["--vg", str(vg_sample), "--gqa", str(gqa_sample / "train_sceneGraphs.json"),
                    "--out", str(out), "--val-fraction", "0.2", "--samples-per-shard", "40"])
    samples = check_output(out, manifest)
    vg = json.loads((vg_sample / "relationships.json").read_text())
    gqa = json.loads((gqa_sample / "train_sceneGraphs.json").read_text())
    read = sum(len(e["relationships"]) for e in vg) + sum(
        len(o.get("relations", [])) for g in gqa.values() for o in g["objects"].values())
    assert manifest["totals"]["relations_read"] == read
    assert manifest["totals"]["images_read"] == len(vg) + len(gqa)
    assert {s["source"] for s in samples.values()} == {"vg", "gqa"}
    assert manifest["splits"]["val"]["samples"] > 0 and len(manifest["splits"]["train"]["shards"]) > 1
    # the default vocabulary is GQA's distinct relation strings (as the paper)
    gqa_predicates = {r["name"].strip().lower() for g in gqa.values() for o in g["objects"].values()
                      for r in o.get("relations", [])}
    assert manifest["relations"]["size"] == len(gqa_predicates)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    synthesize(str(root), 60, seed=3, with_images=True, image_size=128)
    # one missing and one corrupt image: rejects, not crashes
    gqa_images = sorted((root / "gqa" / "images").glob("*.jpg"))
    gqa_images[0].unlink()
    gqa_images[1].write_bytes(b"\xff\xd8 definitely not a jpeg")
    return root


def test_generated_corpus_with_images(tmp_path, corpus, monkeypatch):
    from apache_beam.runners.portability import prism_runner

    prism_tries = []  # DirectRunner would try Prism first (a download where GitHub is reachable)
    monkeypatch.setattr(prism_runner.PrismRunner, "run_pipeline", lambda *a: prism_tries.append(a) or 1 / 0)
    out = tmp_path / "out"
    manifest = run(job_args(corpus, out, "--max-image-side", "64"))
    assert prism_tries == []  # the default runs on DirectRunner's Python engine, whatever the network
    samples = check_output(out, manifest)
    assert manifest["rejects"]["image/image_missing"] == 1 and manifest["rejects"]["image/image_unreadable"] == 1
    assert manifest["totals"]["relations_in_rejected_images"] > 0
    shard = out / manifest["splits"]["train"]["shards"][0]["name"]
    key, members = next(iter(read_tar(shard).items()))
    image = Image.open(io.BytesIO(members["jpg"]))
    sample = samples[key]
    assert image.size == (sample["width"], sample["height"]) and max(image.size) == 64
    for t in sample["triplets"]:  # boxes were rescaled with the image: they lie inside it
        x, y, w, h = t["subject_box"]
        assert 0 <= x and x + w <= 64.01 and 0 <= y and y + h <= 64.01


def test_image_batches_do_not_change_the_samples(corpus, monkeypatch):
    # MakeSamples prepares images a batch at a time and flushes the last, partial batch at the bundle's end
    from apache_beam.pvalue import TaggedOutput

    from sgverbalise.normalise import NormaliseConfig, Normaliser
    from sgverbalise.pipelines import options, transforms
    from sgverbalise.pipelines.build_shards import build_parser
    from sgverbalise.readers import READERS
    from sgverbalise.sample import sample_key

    args = build_parser().parse_known_args(job_args(corpus, "unused", "--max-image-side", "64"))[0]
    cfg = options.config_from_args(args)
    normaliser = Normaliser(NormaliseConfig())
    records = [normaliser.record(r) for r, _ in READERS["gqa"](cfg.gqa[0]) if r is not None]
    vocab = transforms.vocabulary_from_counts(transforms.sum_counters(map(transforms.predicate_counts, records)), cfg)

    def outputs(batch: int) -> list[str]:
        monkeypatch.setattr(transforms, "IMAGE_BATCH", batch)
        make = transforms.MakeSampleFn(cfg, frozenset(), frozenset({sample_key("gqa", records[3]["image_id"])}))
        make.start_bundle()
        found = [out for record in records for out in make.process(record, vocab)] + list(make.finish_bundle())
        tagged = [(o.tag, o.value) if isinstance(o, TaggedOutput) else ("samples", o) for o in found]
        return sorted(repr((tag, getattr(value, "value", value))) for tag, value in tagged)

    one = outputs(1)
    assert sum(o.startswith("('samples'") for o in one) > 10
    assert any("excluded_eval" in o for o in one) and any("image_unreadable" in o for o in one)
    assert outputs(7) == one and outputs(len(records) + 1) == one


def test_pass_through_writes_each_source_file_unchanged(tmp_path, corpus):
    # pass-through images travel between the steps by reference and are read again where the shard is written
    out = tmp_path / "out"
    manifest = run(job_args(corpus, out))
    check_output(out, manifest)
    sources = {f"{p.parent.parent.name}-{p.stem}": p for p in corpus.rglob("*.jpg")}
    written = {key: members["jpg"] for shard in sorted(out.rglob("*.tar")) for key, members in read_tar(shard).items()}
    assert len(written) == manifest["totals"]["samples"] > 0
    for key, data in written.items():
        assert data == sources[key].read_bytes(), key


def test_deterministic_across_worker_counts_and_portable_runner(tmp_path, corpus):
    outs = {}
    for name, beam_args in {
        "one": ["--direct_num_workers=1"],
        "two": ["--direct_num_workers=2"],
        "portable": ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"],
    }.items():
        outs[name] = tmp_path / name
        run(job_args(corpus, outs[name], *beam_args))
    digests = {name: files_sha(path) for name, path in outs.items()}
    assert digests["one"] == digests["two"] == digests["portable"]
    assert any(name.endswith(".tar") for name in digests["one"])


def test_rejects_are_every_reject_in_one_order_whatever_the_workers_and_units(tmp_path, corpus):
    # each unit writes its rejects to its own file, merged at the end: with one worker and units of 4 images (many
    # files to merge) as with two workers and one unit per input, the reject files are byte for byte those the
    # domain functions give without Beam (bench's loop), each sorted by what it holds
    from bench.build_shards import run_loop

    run_loop(job_args(corpus, tmp_path / "loop"))
    runs = {"many units": ("--direct_num_workers=1", "--images-per-unit", "4"), "two workers": ()}
    outs = {name: tmp_path / name.replace(" ", "-") for name in runs}
    manifests = {name: run(job_args(corpus, outs[name], *beam_args)) for name, beam_args in runs.items()}

    def rejects(out: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted((out / "rejects").glob("*.jsonl"))}

    reference = rejects(tmp_path / "loop")
    assert len(reference) >= 3 and sum(data.count(b"\n") for data in reference.values()) > 100
    for name, out in outs.items():
        assert rejects(out) == reference, name
        assert manifests[name]["rejects"] == {f"{k}/{r}": data.count(b"\n") for k_r, data in reference.items()
                                              for k, r in [k_r.removesuffix(".jsonl").split("-", 1)]}
        assert not (out / ".staging").exists()
    for data in reference.values():
        lines = data.splitlines()
        assert lines == sorted(lines, key=line_order)


def test_exclusion_lists_keep_evaluation_images_out(tmp_path, vg_sample):
    coco = [e["coco_id"] for e in json.loads((vg_sample / "image_data.json").read_text()) if e["coco_id"]][:3]
    (tmp_path / "coco.txt").write_text("# Karpathy test\n" + "\n".join(map(str, coco)) + "\n")
    (tmp_path / "ids.txt").write_text("vg-1\n2\n")
    out = tmp_path / "out"
    manifest = run(["--vg", str(vg_sample), "--out", str(out), "--exclude-coco-ids", str(tmp_path / "coco.txt"),
                    "--exclude-image-ids", str(tmp_path / "ids.txt")])
    samples = check_output(out, manifest)
    assert manifest["rejects"]["image/excluded_eval"] == len(coco) + 2
    assert not {"vg-1", "vg-2"} & set(samples) and not {s["coco_id"] for s in samples.values()} & set(coco)


def test_rerun_after_kill_completes_and_cleans_up(tmp_path, corpus):
    reference = tmp_path / "reference"
    run(job_args(corpus, reference))
    out = tmp_path / "out"
    # a stale shard and a temp file from an earlier, different run
    (out / "train").mkdir(parents=True)
    (out / "train" / "shard-000999.tar").write_bytes(b"old")
    (out / "train" / (".shard-000000.tar.tmp-" + "0123456789abcdef" * 2)).write_bytes(b"half")
    code = ("import sys; from sgverbalise.pipelines.build_shards import run; run(sys.argv[1:])")
    proc = subprocess.Popen([sys.executable, "-c", code, *job_args(corpus, out, "--direct_num_workers=1")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    seeded = set(out.rglob("*"))

    def writing() -> bool:  # a shard or a shard's temp of this run exists
        return any(p not in seeded and ".tar" in p.name for p in out.rglob("*"))

    deadline = time.time() + 120
    while time.time() < deadline and not writing() and proc.poll() is None:
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGKILL)  # the job and its Beam workers, mid-way through writing
    proc.wait()
    assert not (out / "manifest.json").exists()
    manifest = run(job_args(corpus, out))
    check_output(out, manifest)
    assert files_sha(out) == files_sha(reference)


def _vg_job(vg: Path, out: Path, *extra: str) -> dict:
    return run(["--vg", str(vg), "--out", str(out), "--samples-per-shard", "8", "--val-fraction", "0.2", *extra])


def test_vg_split_files_are_joined_by_image_id_in_any_order(tmp_path):
    # VG's files are planned from their image ids: aligned files are joined element by element; files whose ids
    # do not line up fall back to a join by image id (a log line and the manifest's joins say so). With the first
    # file (objects.json) in the aligned order, the output is byte for byte the aligned one; with it reordered,
    # the same samples, relations.json, rejects and totals (the train shards follow objects.json's order)
    synthesize(str(tmp_path / "c"), 40, seed=5, gqa_fraction=0.0, layout="split")
    vg = tmp_path / "c" / "vg"
    aligned = _vg_job(vg, tmp_path / "aligned")
    assert aligned["joins"] == [{"source": "vg", "join": "aligned", "images": 40}]
    limited = _vg_job(vg, tmp_path / "limited", "--limit", "6")  # the first 6 images of each (aligned) file
    assert limited["totals"]["images_read"] == 6 and limited["totals"]["samples"] == 6

    def reorder(name, order):
        entries = json.loads((vg / name).read_text())
        (vg / name).write_text(json.dumps(list(order(entries))))

    reorder("relationships.json", reversed)
    reorder("attributes.json", lambda e: e[1::2] + e[::2])
    shuffled = _vg_job(vg, tmp_path / "shuffled")
    assert [(j["source"], j["join"]) for j in shuffled["joins"]] == [("vg", "by_id")]
    sha = {name: files_sha(tmp_path / name) for name in ("aligned", "shuffled")}
    for digests in sha.values():
        digests.pop("manifest.json")
    assert sha["aligned"] == sha["shuffled"]
    assert aligned["totals"] == shuffled["totals"] and aligned["totals"]["images_read"] == 40

    reorder("objects.json", lambda e: e[1::2] + e[::2])
    first_reordered = _vg_job(vg, tmp_path / "first")
    assert first_reordered["totals"] == aligned["totals"]
    assert samples_by_key(tmp_path / "first") == samples_by_key(tmp_path / "aligned")
    for name in ("relations.json", *sorted(p.name for p in (tmp_path / "aligned" / "rejects").iterdir())):
        folder = "" if name == "relations.json" else "rejects"
        assert (tmp_path / "first" / folder / name).read_bytes() == (tmp_path / "aligned" / folder / name).read_bytes()


def samples_by_key(root: Path) -> dict[str, tuple[str, dict[str, bytes]]]:
    """Every sample of a shard set: its split and members, by key."""
    from sgverbalise.shards import read_shard

    return {key: (path.parent.name, members) for path in sorted(root.rglob("*.tar"))
            for key, members in read_shard(str(path))}


def test_vg_files_are_read_largest_first(tmp_path):
    from sgverbalise.pipelines.transforms import largest_first

    sizes = {"image_data": 10, "objects": 300, "relationships": 500, "regions": 40, "attributes": 300}
    files = {}
    for role, size in sizes.items():
        (tmp_path / f"{role}.json").write_bytes(b" " * size)
        files[role] = str(tmp_path / f"{role}.json")
    order = [role for role, _ in largest_first(files.items())]
    assert order == ["relationships", "attributes", "objects", "regions", "image_data"]  # ties by URL


def old_layout_copy(src: Path, dst: Path) -> None:
    """The shard set at ``src`` (manifest 1.2, train shards per unit) rewritten as a 1.1 set: train shards planned
    over the sorted keys (``train/shard-NNNNNN.tar``), no joins."""
    import shutil

    from sgverbalise import layout
    from sgverbalise.schemas.layout import shard_name
    from sgverbalise.shards import read_shard, sample_bytes, write_shard

    shutil.copytree(src, dst)
    manifest = json.loads((src / "manifest.json").read_text())
    samples = {}
    for path in sorted((dst / "train").glob("*.tar")):
        samples.update(read_shard(str(path)))
        path.unlink()
    plan = layout.plan_shards(((k, sample_bytes(k, m)) for k, m in samples.items()), 7, None)
    shards = []
    for index in sorted(set(plan.values())):
        keys = sorted(k for k, i in plan.items() if i == index)
        name = shard_name("train", index)
        shards.append(dict(write_shard(str(dst / name), ((k, samples[k]) for k in keys)), name=name))
    manifest["splits"]["train"]["shards"] = shards
    manifest["splits"]["train"]["bytes"] = sum(s["bytes"] for s in shards)
    manifest["schema_version"] = "1.1"
    del manifest["joins"]
    (dst / "train" / "sizes.json").write_text(json.dumps({s["name"].split("/")[1]: s["samples"] for s in shards}))
    (dst / "manifest.json").write_text(json.dumps(manifest))


def test_tools_and_trainer_read_both_layouts(tmp_path):
    # manifest 1.2 (train shards per unit: train/shard-UNIT-PART.tar) and 1.1 (train shards over sorted keys):
    # sgv validate accepts both, the shard tools count the same samples, the trainer streams the same train keys
    from sgverbalise.schemas.layout import resolve
    from sgverbalise.tools.inspect import inspect_set
    from sgverbalise.tools.validate import validate_set

    synthesize(str(tmp_path / "c"), 30, seed=3, gqa_fraction=0.5, layout="split", with_images=True, image_size=48)
    new = tmp_path / "new"
    manifest = run(job_args(tmp_path / "c", new, "--images-per-unit", "6", samples_per_shard=4, val_fraction=0.2))
    names = [s["name"] for s in manifest["splits"]["train"]["shards"]]
    assert manifest["schema_version"] == "1.2" and names[0] == "train/shard-000000-000.tar" and len(names) > 4
    assert {n.split("-")[1] for n in names} == {f"{u:06d}" for u in range(6)}  # 15 VG, 15 GQA: 3 + 3 units
    old = tmp_path / "old"
    old_layout_copy(new, old)
    for root in (new, old):
        assert validate_set(resolve(str(root))).ok, root
        report = inspect_set(resolve(str(root)))
        assert report["samples"] == manifest["totals"]["samples"], report
    torch = pytest.importorskip("torch")
    del torch
    from sgverbalise.training.data import DataConfig, build_loader, load_tokenizer, train_tokenizer
    from sgverbalise.training.data.tokenizer import shard_texts

    train_tokenizer(shard_texts([str(new)]), tmp_path / "tok", vocab_size=200, min_frequency=1)
    seen = []
    for root in (new, old):
        cfg = DataConfig(sources={"vsg": [str(root)]}, ratios={"vsg": 1}, batch_sizes={"vsg": 3}, image_size=32,
                         num_workers=0, shuffle_buffer=4, resampled=False, keep_keys=True)
        seen.append(sorted(k for batch in build_loader(cfg, load_tokenizer(tmp_path / "tok")) for k in batch["keys"]))
    assert seen[0] == seen[1] and len(seen[0]) == manifest["splits"]["train"]["samples"]


def assembled_vocabulary(argv: list[str]) -> bytes:
    """relations.json as the pre-pass made it before it only counted predicates: every unit's records read and
    assembled in full, normalised, and their predicates counted (an element that is not JSON: no record)."""
    from sgverbalise.normalise import NormaliseConfig, Normaliser
    from sgverbalise.pipelines import options, transforms, units
    from sgverbalise.pipelines.build_shards import build_parser
    from sgverbalise.readers.units import plan, read_unit, scan_file

    cfg = options.config_from_args(build_parser().parse_known_args(argv)[0])
    inputs = units.job_inputs(cfg)
    scans = {(inp.source, url): scan_file(inp, role, url) for inp in inputs for role, url in inp.files}
    normaliser = Normaliser(NormaliseConfig(lemmatize=cfg.lemmatize, relation_aliases=cfg.relation_aliases))
    records = [normaliser.record(record)
               for unit in plan(inputs, scans, cfg.images_per_unit, cfg.limit, cfg.allow_partial_inputs).units
               for record, _ in read_unit(unit, on_error=lambda _: (None, [])) if record is not None]
    return transforms.vocabulary_from_counts(transforms.sum_counters(map(transforms.predicate_counts, records)),
                                             cfg).dumps()


@pytest.fixture(scope="module")
def graphs(tmp_path_factory) -> Path:
    """A generated corpus without images (both VG layouts: the split files are read), and id lists."""
    root = tmp_path_factory.mktemp("graphs")
    synthesize(str(root), 90, seed=11)
    (root / "ids.txt").write_text("# evaluation images\n1\n2\ngqa-2500003\n")
    (root / "coco.txt").write_text("1\n2\n3\n")
    return root


VOCAB_CASES = {
    "vg": ["--vg", "{c}/vg"],
    "gqa-aliases": ["--gqa", "{c}/gqa/train_sceneGraphs.json", "--relation-aliases", "{c}/vg/relationship_alias.txt"],
    "both-auto": ["--vg", "{c}/vg", "--gqa", "{c}/gqa/train_sceneGraphs.json"],
    "both-all-aliases-top-k": ["--vg", "{c}/vg", "--gqa", "{c}/gqa/train_sceneGraphs.json", "--vocab-sources", "all",
                               "--relation-aliases", "{c}/vg/relationship_alias.txt", "--vocab-mode", "top_k",
                               "--vocab-top-k", "6"],
    "both-vg-limit-ids-min-count": ["--vg", "{c}/vg", "--gqa", "{c}/gqa/train_sceneGraphs.json", "--vocab-sources",
                                    "vg", "--limit", "40", "--images-per-unit", "7", "--exclude-image-ids",
                                    "{c}/ids.txt", "--exclude-coco-ids", "{c}/coco.txt", "--vocab-mode", "min_count",
                                    "--vocab-min-count", "3"],
}


@pytest.mark.parametrize("case", list(VOCAB_CASES))
def test_vocabulary_is_that_of_the_assembled_records(tmp_path, graphs, case):
    # the pre-pass reads only the predicates: relations.json is byte for byte what counting the records gave
    argv = [a.format(c=graphs) for a in VOCAB_CASES[case]] + ["--out", str(tmp_path / "out")]
    run(argv)
    found = (tmp_path / "out" / "relations.json").read_bytes()
    assert found == assembled_vocabulary(argv) and len(json.loads(found)["relations"]) > 2
    if case == "both-auto":  # VG is left out of the vocabulary: its units counted what it has that GQA lacks
        assert json.loads(found)["excluded"]


@pytest.mark.parametrize("sources", ["all", "auto"])  # auto: VG left out, its predicates counted by its units
def test_vocabulary_of_broken_inputs_is_that_of_the_assembled_records(tmp_path, sources):
    # bad elements and relations of every kind, a cut file, an element that is not JSON (partial inputs allowed)
    corpus = write_bad_corpus(str(tmp_path / "bad"), 6)
    path = Path(corpus.vg) / "scene_graphs.json"
    path.write_bytes(path.read_bytes().replace(b'"relationships"', b'"relationships" :: ', 1))
    argv = [*corpus.args(str(tmp_path / "out")), "--vocab-sources", sources, "--images-per-unit", "5"]
    run(argv)
    found = (tmp_path / "out" / "relations.json").read_bytes()
    assert found == assembled_vocabulary(argv) and len(json.loads(found)["relations"]) >= 3


def test_fewer_collections_gives_the_thresholds_back_after_the_last_open_context():
    """Units of two threads of one worker may overlap: the collector's young threshold is raised while any unit
    works, and the thresholds are the ones before once the last unit has ended."""
    import gc

    from sgverbalise.pipelines.units import YOUNG_COLLECTION_EVERY, fewer_collections

    context = type(fewer_collections)()  # a context of its own (the module's may be open in another test)
    before = gc.get_threshold()
    context.__enter__()  # a unit starts
    assert gc.get_threshold() == (YOUNG_COLLECTION_EVERY, *before[1:])
    context.__enter__()  # a second unit starts, then the first ends
    context.__exit__(None, None, None)
    assert gc.get_threshold()[0] == YOUNG_COLLECTION_EVERY
    context.__exit__(None, None, None)
    assert gc.get_threshold() == before
