"""The relations experiment: the held-out rule, training data without held-out pairs, probes in the published
formats, the configs (tiny ones equal where it matters, the GPU recipe's batches), and the whole pipeline."""

from __future__ import annotations

import json
import random
import statistics
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

pytest.importorskip("torch")

from sgverbalise.shards import read_shard  # noqa: E402
from sgverbalise.synth import COLOURS, PREDICATES, SHAPES, make_scene, relation_between  # noqa: E402
from sgverbalise.synth.web import write_web_shards  # noqa: E402
from sgverbalise.training.config import load_config  # noqa: E402
from sgverbalise.training.eval.benchmarks import read_suite  # noqa: E402
from sgverbalise.training.eval.runner import EvalConfig, check_suite  # noqa: E402
from sgverbalise.training.experiment.corpus import WEB_STYLE, heldout_image_keys, object_pairs  # noqa: E402
from sgverbalise.training.experiment.heldout import (  # noqa: E402
    HELDOUT_LABELS,
    HELDOUT_PAIRS,
    MUTUAL,
    OPPOSITE,
    false_variant,
    is_heldout,
    probe_relation,
    training_scene,
)
from sgverbalise.training.experiment.probes import ProbeSizes, write_probes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY_PROBES = ProbeSizes(vsr_dev=5, vsr_test=7, valse=6, retrieval_test=4, retrieval_dev=3)


def _labels(text: str) -> set[str]:
    words = text.replace(",", " ").split()
    return {f"{a} {b}" for a, b in zip(words, words[1:], strict=False) if a in COLOURS and b in SHAPES}


# ------------------------------------------------------------------------------------------------ the rule


def test_heldout_pairs_leave_every_colour_and_shape_in_training():
    assert len(HELDOUT_PAIRS) == 5
    assert sorted(s for _, s in HELDOUT_PAIRS) == sorted(SHAPES)  # one held-out colour per shape
    assert len({c for c, _ in HELDOUT_PAIRS}) == 5
    expected = {"black circle", "yellow square", "red triangle", "purple rectangle", "pink diamond"}
    assert HELDOUT_LABELS == expected
    assert is_heldout("red", "triangle") and not is_heldout("red", "circle")


def test_false_statements_are_false_in_the_picture():
    assert set(OPPOSITE) == set(PREDICATES)
    rng = random.Random(7)
    checked = 0
    for _ in range(300):
        scene = make_scene(rng, 128)
        for relation in scene.relations:
            s, predicate, o = false_variant(rng, relation)
            assert relation_between(scene.objects[s], scene.objects[o], 128) != predicate
            assert (s, predicate, o) != relation
            checked += 1
    assert checked > 1000


def test_training_scenes_and_probe_relations_are_disjoint_by_the_rule():
    rng = random.Random(3)
    for _ in range(100):
        assert not any(is_heldout(o.colour, o.shape) for o in training_scene(rng, 64).objects)
        scene, (s, _, o) = probe_relation(rng, 64)
        assert {scene.objects[s].label, scene.objects[o].label} & HELDOUT_LABELS


def test_object_pairs_read_both_ways_of_naming():
    assert object_pairs(["red circle"], []) == [("red", "circle")]
    assert object_pairs(["triangle"], ["red"]) == [("red", "triangle")]
    assert object_pairs(["man"], ["tall"]) == []


# ------------------------------------------------------------------------------------------------ data


def test_web_shards_have_no_heldout_pair_and_are_deterministic(tmp_path: Path):
    kw = {"seed": 1, "samples_per_shard": 16, "image_size": 64, "relation_rate": 0.3, "style": WEB_STYLE}
    a = write_web_shards(tmp_path / "a", 40, **kw)
    write_web_shards(tmp_path / "b", 40, **kw)
    assert a["samples"] == 40 and [s["samples"] for s in a["shards"]] == [16, 16, 8]
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["00000.parquet", "00000.tar", "00001.parquet", "00001.tar", "00002.parquet", "00002.tar"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    captions = []
    for tar in sorted((tmp_path / "a").glob("*.tar")):
        for _, members in read_shard(str(tar)):
            meta = json.loads(members["json"])
            captions.append(members["txt"].decode())
            assert meta["caption"] == captions[-1] and not set(meta["objects"]) & HELDOUT_LABELS
            assert _labels(captions[-1]) <= set(meta["objects"])
    assert any(any(p in c for p in PREDICATES) for c in captions)  # a few name a relation
    assert sum(any(f" {p} " in c for p in PREDICATES) for c in captions) < len(captions) / 2


def test_heldout_image_keys_of_a_synthetic_corpus(tmp_path: Path):
    from sgverbalise.synth import synthesize

    synthesize(str(tmp_path), 40, seed=2, with_images=True, image_size=64)
    keys = heldout_image_keys(str(tmp_path / "vg"), str(tmp_path / "gqa" / "train_sceneGraphs.json"))
    graphs = json.loads((tmp_path / "vg" / "scene_graphs.json").read_text())
    expected = [f"vg-{g['image_id']}" for g in graphs
                if any(_labels(" ".join(o.get("attributes", []) + o["names"])) & HELDOUT_LABELS
                       for o in g["objects"])]
    assert [k for k in keys if k.startswith("vg-")] == expected
    assert 0 < len(keys) < 40


def test_probes_are_read_by_the_harness_and_name_heldout_pairs(tmp_path: Path):
    summary = write_probes(tmp_path / "p", TINY_PROBES, seed=0, image_size=64)
    write_probes(tmp_path / "q", TINY_PROBES, seed=0, image_size=64)
    for rel in [*summary["files"], "probes.json"]:
        assert (tmp_path / "p" / rel).read_bytes() == (tmp_path / "q" / rel).read_bytes(), rel
    data = str(tmp_path / "p")
    vsr = read_suite("vsr", data)
    assert vsr.found == vsr.kept == 2 * (5 + 7) and not vsr.dropped
    by_image: dict[tuple, list] = {}
    for ex in vsr.examples:
        by_image.setdefault(ex.image, []).append(ex)
        assert _labels(ex.caption) & HELDOUT_LABELS
        assert ex.caption == f"{ex.subj} {ex.relation} {ex.obj}"
    assert all(sorted(e.label for e in pair) == [0, 1] for pair in by_image.values())
    valse = read_suite("valse", data)
    assert valse.kept == 6 and {e.instrument for e in valse.examples} == {"relations"}
    for ex in valse.examples:
        assert ex.caption != ex.foil and _labels(ex.caption) == _labels(ex.foil)
        assert _labels(ex.caption) & HELDOUT_LABELS
    for suite, images in (("coco", 4), ("coco_dev", 3)):
        gallery = read_suite(suite, data).examples[0]
        assert len(gallery.images) == images and len(gallery.texts) == 2 * images
        assert not any(f" {p} " in t for t in gallery.texts for p in PREDICATES)  # coarse: objects only
    cfg = EvalConfig(data=data, progress=False)
    for suite in ("vsr", "valse", "coco", "coco_dev"):
        report = check_suite(cfg, suite)
        assert report["status"] == "ok" and report["missing_images"] == 0, report


# ------------------------------------------------------------------------------------------------ configs


def test_experiment_configs_share_architecture_steps_and_images_per_step():
    cfgs = {m: load_config(ROOT / "configs" / "experiment" / f"{m}.yaml") for m in
            ("albef", "realbef", "xvlm", "rexvlm")}
    sizes = [(c.model.vision, c.model.text, c.model.fusion, c.model.embed_dim) for c in cfgs.values()]
    assert all(s == sizes[0] for s in sizes)
    assert len({(c.train.steps, c.train.lr, c.train.warmup, c.train.ckpt_every) for c in cfgs.values()}) == 1
    for name, cfg in cfgs.items():
        assert cfg.model.name == name
        assert {cfg.data.batch_sizes[k] for k in cfg.data.active_types()} == {32}
        assert cfg.train.milestone_every == cfg.train.ckpt_every  # every checkpoint kept for the sweep
    assert cfgs["albef"].data.active_types() == ["caption"]
    assert cfgs["realbef"].data.active_types() == ["caption", "mrc", "vsg"]
    assert cfgs["rexvlm"].data.ratios == {"caption": 2.0, "entity": 1.5, "mrc": 1.0, "vsg": 1.0}


def test_upper_bounds_are_their_baselines_trained_on_statements_with_foils():
    load = lambda m: load_config(ROOT / "configs" / "experiment" / f"{m}.yaml")  # noqa: E731
    for upper, base in (("upper", "albef"), ("upper-xvlm", "xvlm")):
        u, b = load(upper), load(base)
        assert u.model == b.model and replace(u.train, out="") == replace(b.train, out="")
        assert u.data.foils and [s.urls for s in u.data.sources["caption"]] == ["out/experiment/data/web-statements"]
        assert replace(u.data, sources=b.data.sources, foils=False) == b.data  # all else the baseline's


def test_foil_arms_are_their_models_with_foils():
    load = lambda m: load_config(ROOT / "configs" / "experiment" / f"{m}.yaml")  # noqa: E731
    for arm, base in (("realbef-foils", "realbef"), ("rexvlm-foils", "rexvlm")):
        a, b = load(arm), load(base)
        assert a.data.foils and not b.data.foils
        assert a.model == b.model and replace(a.train, out="") == replace(b.train, out="")
        assert replace(a.data, foils=False) == b.data


def test_each_run_reads_the_data_sets_its_config_names(tmp_path: Path):
    from sgverbalise.cli.experiment import DATA_FILE, ExperimentConfig, run_settings

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / DATA_FILE).write_text(json.dumps({"pixels": {"mean": [0.5] * 3, "std": [0.2] * 3}}))
    configs = tmp_path / "configs"
    configs.mkdir()
    xvlm = yaml.safe_load((ROOT / "configs" / "experiment" / "xvlm.yaml").read_text())
    xvlm["data"]["sources"]["caption"] = ["out/experiment/data/web", "out/experiment/data/web-statements"]
    (configs / "mixed.yaml").write_text(yaml.safe_dump(xvlm))
    xvlm["data"]["sources"]["caption"] = ["/somewhere/else/captions"]
    (configs / "elsewhere.yaml").write_text(yaml.safe_dump(xvlm))
    data = {name: str(tmp_path / "data" / name) for name in ("sg", "web", "web-statements", "tokenizer")}
    cfg = ExperimentConfig(out=str(tmp_path), configs=str(configs))
    run = run_settings(cfg, data, "mixed", 0, tmp_path / "runs" / "mixed-seed0")
    assert [s.urls for s in run.data.sources["caption"]] == [data["web"], data["web-statements"]]
    assert [s.urls for s in run.data.sources["entity"]] == [data["sg"]]
    with pytest.raises(ValueError, match="elsewhere.yaml: data source '/somewhere/else/captions'"):
        run_settings(cfg, data, "elsewhere", 0, tmp_path / "runs" / "elsewhere-seed0")


def test_replication_configs_have_the_paper_batches_on_eight_gpus():
    expected = {
        "albef": {"caption": 512, "entity": 0, "mrc": 0, "vsg": 0},
        "realbef": {"caption": 512, "entity": 0, "mrc": 128, "vsg": 128},
        "xvlm": {"caption": 1024, "entity": 1024, "mrc": 0, "vsg": 0},
        "rexvlm": {"caption": 1024, "entity": 1024, "mrc": 256, "vsg": 128},
    }
    for name, batches in expected.items():
        path = ROOT / "configs" / "replication" / f"{name}-cc3m.yaml"
        cfg = load_config(path)
        assert {k: 8 * v for k, v in cfg.data.batch_sizes.items()} == batches
        t = cfg.train
        assert (t.steps, t.lr, t.warmup, t.weight_decay) == (200_000, 1e-4, 5000, 0.02)
        assert cfg.model.vision.init_path and cfg.model.text.init_path and cfg.data.image_size == 224
        assert f"--config configs/replication/{name}-cc3m.yaml" in path.read_text()
    assert load_config(ROOT / "configs/replication/realbef-cc3m.yaml").data.ratios["mrc"] == 1.0
    rexvlm = yaml.safe_load((ROOT / "configs/replication/rexvlm-cc3m.yaml").read_text())
    assert rexvlm["data"]["preset"] == "rexvlm"


# ------------------------------------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_paired_differences_and_their_t_interval_by_hand():
    from sgverbalise.training.experiment.report import differences, t95

    def run(model, seed, vsr, auc):
        return {"model": model, "seed": seed, "rows": [{"step": 2, "vsr_test": 0.0}, {"step": 4, "vsr_test": vsr}],
                "itm_check": {"auc": auc}}

    docs = [run("albef", 0, 50.0, 60.0), run("albef", 1, 52.0, 70.0), run("albef", 2, 51.0, 50.0),
            run("realbef", 0, 55.0, 61.0), run("realbef", 1, 55.0, 70.0), run("realbef", 2, 60.0, 52.0),
            run("realbef", 3, 99.0, 99.0)]  # seed 3 has no baseline run: not paired, left out
    cell = differences(docs)["realbef:albef"]["vsr_test"]
    assert cell["values"] == [5.0, 3.0, 9.0] and cell["diff"] == pytest.approx(17 / 3)
    half = 4.303 * statistics.stdev([5.0, 3.0, 9.0]) / 3**0.5
    assert cell["ci95"] == pytest.approx([17 / 3 - half, 17 / 3 + half])
    assert differences(docs)["realbef:albef"]["itm_auc"]["values"] == [1.0, 0.0, 2.0]
    assert t95(1) == 12.706 and t95(100) == 1.96


def test_report_of_one_model_has_no_empty_difference_table_nor_mrc_line(tmp_path: Path):
    from sgverbalise.training.experiment.report import write_report

    docs = [{"model": "upper-xvlm", "seed": seed, "samples": 64, "train_seconds": 10.0, "eval_seconds": 1.0,
             "mrc_val": None, "selected": {"step": 2},
             "rows": [{"step": 2, "valse": 60.0 + seed, "vsr_test": 50.0, "vsr_test_auc": 55.0}]}
            for seed in (0, 1)]
    meta = {"command": "sgv experiment relations --models upper-xvlm", "cpus": 2,
            "config": {"models": ["upper-xvlm"], "seeds": [0, 1], "steps": 2},
            "timing": {"wall_seconds": 6.0, "data_seconds": 0.0, "runs_reused": 2}}
    results = write_report(docs, meta, tmp_path)
    text = (tmp_path / "results.md").read_text()
    assert results["differences"] == {} and "Each arm minus its baseline" not in text
    assert "majority-class rate" not in text and "| upper bound, X-VLM losses" in text
    assert "reusing 2 complete runs (their training 20 s and evaluation 2 s" in text


def test_auc_counts_ties_half():
    from sgverbalise.training.experiment.checks import auc

    assert auc([0.9, 0.8], [0.1, 0.2]) == 100.0
    assert auc([0.1], [0.9]) == 0.0
    assert auc([0.5, 0.5], [0.5]) == 50.0
    assert auc([0.9, 0.3], [0.5]) == 50.0


def test_vsr_auc_ranks_true_above_false_whatever_the_threshold(tmp_path: Path):
    from sgverbalise.training.experiment.checks import vsr_auc

    scores = tmp_path / "scores"
    scores.mkdir()
    rows = [{"suite": "vsr", "split": split, "label": label, "score": score} for split, label, score in
            [("test", 1, 0.30), ("test", 0, 0.20), ("test", 1, 0.25), ("test", 0, 0.28), ("dev", 1, 0.10),
             ("dev", 0, 0.40)]]
    (scores / "vsr.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    # every p(match) under 0.5: the published rule says "false" to all (accuracy 50); the ranking still shows
    assert vsr_auc(tmp_path) == {"vsr_dev_auc": 0.0, "vsr_test_auc": 75.0}


class _TextPrior:
    """An ITM that ignores the picture: p(match) 0.9 for the first word of each opposite pair, 0.1 otherwise."""

    def itm(self, images, texts):
        assert len(images) == len(texts)
        return [0.9 if any(f" {w} " in t for w in ("below", "left of", "bigger than", "on", "inside")) else 0.1
                for t in texts]


def test_relation_check_shows_a_text_prior_per_predicate():
    from sgverbalise.training.experiment.checks import relation_check

    found = relation_check(_TextPrior(), n=160)
    per = found["per_predicate"]
    assert set(per) == set(MUTUAL) and all(p["n"] == 20 for p in per.values())  # converse pairs, balanced
    assert per["below"]["accuracy"] == 100.0 and per["above"]["accuracy"] == 0.0  # true below, foil above
    assert per["left of"]["accuracy"] == 100.0 and per["right of"]["accuracy"] == 0.0
    assert found["accuracy"] == 50.0  # a text prior is at chance overall
    assert relation_check(_TextPrior(), n=160) == found  # the same scenes every time


class _Seeing:
    """Fused [CLS] stand-ins: the centroid of the pixels of the named object's colour (a model that knows where
    the object is), or, ``blind``, a code of the name alone."""

    def __init__(self, blind: bool = False):
        self.blind = blind

    def fused_cls(self, images, texts):
        import numpy as np
        import torch

        from sgverbalise.synth import COLOURS

        rows = []
        for image, text in zip(images, texts, strict=True):
            colour = text.split()[0]
            if self.blind:
                rows.append([float(sorted(COLOURS).index(colour)), float(len(text)), 1.0])
                continue
            pixels = np.asarray(image, dtype=np.int32)
            near = np.abs(pixels - np.array(COLOURS[colour])).sum(2) < 60
            ys, xs = np.nonzero(near)
            rows.append([xs.mean() / pixels.shape[1], ys.mean() / pixels.shape[0], 1.0])
        return torch.tensor(rows)


def test_position_check_tells_a_model_that_sees_where_from_one_that_does_not():
    from sgverbalise.training.experiment.checks import position_check

    seeing = position_check(_Seeing(), n=150, test=50)
    assert seeing["x_r2"] > 0.8 and seeing["y_r2"] > 0.8 and seeing["side_accuracy"] > 90
    blind = position_check(_Seeing(blind=True), n=150, test=50)
    assert blind["x_r2"] < 0.1 and blind["y_r2"] < 0.1 and blind["side_accuracy"] < 70
    assert abs(blind["side_accuracy"] - blind["majority"]) < 15
    assert position_check(_Seeing(), n=150, test=50) == seeing  # the same scenes every time
    with pytest.raises(ValueError, match="test"):
        position_check(_Seeing(), n=10, test=10)


def test_valse_items_are_balanced_so_a_text_prior_scores_half(tmp_path: Path):
    from sgverbalise.training.experiment.probes import valse_examples

    items = valse_examples(tmp_path, 32, seed=3, size=64)
    assert [e["classes"] for e in items.values()] == [MUTUAL[i % 8] for i in range(32)]
    assert all(e["classes_foil"] == OPPOSITE[e["classes"]] and OPPOSITE[e["classes_foil"]] == e["classes"]
               for e in items.values())
    prior = _TextPrior()
    wins = [c > f for c, f in zip(prior.itm([None] * 32, [e["caption"] for e in items.values()]),
                                  prior.itm([None] * 32, [e["foil"] for e in items.values()]), strict=True)]
    assert sum(wins) == 16
    assert MUTUAL == ("on", "under", "left of", "right of", "above", "below", "bigger than", "smaller than")


def test_smoke_experiment_end_to_end(tmp_path: Path, capsys):
    from sgverbalise.cli.main import main

    out = tmp_path / "exp"
    assert main(["experiment", "relations", "--out", str(out), "--smoke"]) == 0
    printed = capsys.readouterr().out
    assert "| REALBEF |" in printed and f"command: sgv experiment relations --out {out} --smoke" in printed
    results = json.loads((out / "results.json").read_text())
    models = ["albef", "realbef", "realbef-foils", "upper"]
    assert sorted(results["table"]) == sorted(models) and results["meta"]["config"]["models"] == models
    assert results["samples_per_run"] == 4 * 32  # the same images seen by every model: steps x batch size
    for model in models:
        cells = results["table"][model]
        assert {"vsr_dev", "vsr_test", "valse", "coco_tr1", "coco_ir1", "coco_itc_tr1", "itm_auc"} <= set(cells)
        assert all(c["n"] == 1 and 0.0 <= c["mean"] <= 100.0 for c in cells.values())
        assert ("mrc_val" in cells) == (model in ("realbef", "realbef-foils"))
        assert [p["step"] for p in results["curves"][model]["vsr_test"]] == [2, 4]
    types = {r["model"]: set(r["batch_types"]) for r in results["runs"]}
    assert types["albef"] == {"caption"} and types["realbef"] <= {"caption", "vsg", "mrc"}
    assert set(results["differences"]) == {"realbef:albef", "realbef-foils:albef", "realbef-foils:realbef",
                                           "upper:albef"}
    upper = load_config(out / "runs" / "upper-seed0" / "config.yaml")
    captions = [source.urls for source in upper.data.sources["caption"]]
    assert upper.data.foils and captions == [str(out / "data" / "web-statements")]
    one = results["differences"]["realbef:albef"]["vsr_test"]
    assert one["n"] == 1 and one["ci95"] is None  # one seed: no interval
    summary = json.loads((out / "summary.json").read_text())
    assert summary["table"] == results["table"] and "runs" not in summary
    check = results["runs"][0]["itm_check"]
    assert 0 <= check["auc"] <= 100 and check["pairs"] > 0
    relations = results["runs"][0]["relation_check"]
    assert relations["n"] == 20 == sum(p["n"] for p in relations["per_predicate"].values())
    assert "relation_pairs" in results["table"]["albef"] and "position_side" in results["table"]["albef"]
    positions = results["runs"][0]["position_check"]
    assert positions["n"] == 30 and positions["test"] == 10 and 0 <= positions["side_accuracy"] <= 100
    run_json = out / "runs" / "albef-seed0" / "run.json"  # a run made before the check gets it on a rerun
    older = {k: v for k, v in json.loads(run_json.read_text()).items()
             if k not in ("relation_check", "position_check")}
    aucs = [row.pop("vsr_test_auc") for row in older["rows"]]
    assert all(0 <= a <= 100 for a in aucs) and "vsr_test_auc" in results["table"]["albef"]
    run_json.write_text(json.dumps(older))
    assert main(["experiment", "relations", "--out", str(out), "--smoke"]) == 0
    backfilled = json.loads(run_json.read_text())
    assert backfilled["relation_check"] == relations and backfilled["position_check"] == positions
    assert [row["vsr_test_auc"] for row in backfilled["rows"]] == aucs
    timing = json.loads((out / "results.json").read_text())["meta"]["timing"]
    assert results["meta"]["timing"]["runs_reused"] == 0 and timing["runs_reused"] == len(models)
    assert json.loads((out / "data" / "data.json").read_text())["pixels"]["images"] == 16
    assert (out / "skills.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "results.md").read_text()
    assert "| model | VSR-style dev |" in table and "sgv experiment relations" in table
    assert f"reusing {len(models)} complete runs" in table  # the rerun's wall time is not the runs' time
    # held out: no training text or training image names a held-out pair; every probe caption does
    data = out / "data"
    excluded = (data / "exclude_image_ids.txt").read_text().split()
    manifest = json.loads((data / "sg" / "manifest.json").read_text())
    assert manifest["rejects"]["image/excluded_eval"] == len(excluded) > 0
    for tar in sorted((data / "sg").glob("*/shard-*.tar")):
        for key, members in read_shard(str(tar)):
            sample = json.loads(members["json"])
            assert key not in excluded
            for entity in sample["entities"]:
                assert not _labels(" ".join(entity["attributes"] + [entity["name"]])) & HELDOUT_LABELS
            assert not any(_labels(v) & HELDOUT_LABELS for v in sample["vsg"])
    for tar in sorted((data / "web").glob("*.tar")):
        for _, members in read_shard(str(tar)):
            assert not _labels(members["txt"].decode()) & HELDOUT_LABELS
    for line in (data / "probes" / "vsr" / "random" / "test.jsonl").read_text().splitlines():
        assert _labels(json.loads(line)["caption"]) & HELDOUT_LABELS
    # a rerun reuses the data and the complete runs
    before = (out / "runs" / "realbef-seed0" / "run.json").read_bytes()
    assert main(["experiment", "relations", "--out", str(out), "--smoke"]) == 0
    assert (out / "runs" / "realbef-seed0" / "run.json").read_bytes() == before
