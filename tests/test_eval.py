"""Zero-shot evaluation: metrics on hand-computed cases, readers on files in each published format, the
runner with a colour scorer whose outcomes are known, HF and our scorers on tiny random models, the CLIs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sgverbalise.cli.main import main as sgv
from sgverbalise.training.eval.benchmarks import (
    RetrievalSet,
    read_karpathy,
    read_suite,
    read_valse,
    read_vsr,
)
from sgverbalise.training.eval.reports import headline, write_results
from sgverbalise.training.eval.runner import EvalConfig, check_suites, evaluate
from sgverbalise.training.eval.scorers import itc_similarity, load_scorer
from sgverbalise.training.eval.sweep import best_per_skill, find_checkpoints, reported_values, select_checkpoint

# ---- fixture data in the published formats -----------------------------------------------------------------

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}


def _img(path: Path, colour: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 20), COLOURS[colour]).save(path)


def _jsonl(path: Path, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def _karpathy(path: Path, images: list[tuple[str | None, str, str, list[str]]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (filepath, filename, split, sents) in enumerate(images):
        row = {
            "filename": filename,
            "imgid": i,
            "split": split,
            "sentences": [
                {"raw": s, "tokens": s.split(), "imgid": i, "sentid": 10 * i + j} for j, s in enumerate(sents)
            ],
        }
        if filepath:
            row["filepath"] = filepath
        rows.append(row)
    path.write_text(json.dumps({"images": rows, "dataset": "coco"}))


def make_benchmarks(root: Path) -> Path:
    """Every suite's files (a few rows each, some malformed, some with missing images) and PNG/JPEG images."""
    img = root / "images"
    # VSR: COCO 2017 names; one image under train2017/, one missing.
    _img(img / "vsr" / "000000000001.jpg", "red")
    _img(img / "vsr" / "train2017" / "000000000002.jpg", "green")
    vsr = {"image_link": "http://x", "annotator_id": 1, "vote_true_validator_id": "[]"}
    _jsonl(
        root / "vsr" / "random" / "dev.jsonl",
        [
            vsr
            | {
                "image": "000000000001.jpg",
                "caption": "The red cup is on the table.",
                "label": 1,
                "relation": "on",
            },
            vsr
            | {
                "image": "000000000001.jpg",
                "caption": "The green cup is on the table.",
                "label": 0,
                "relation": "on",
            },
            vsr
            | {
                "image": "000000000002.jpg",
                "caption": "The red ball is under the chair.",
                "label": 1,
                "relation": "under",
                "subj": "ball",
                "obj": "chair",
            },
            vsr
            | {
                "image": "000000000003.jpg",
                "caption": "The red dog is near the cat.",
                "label": 1,
                "relation": "near",
            },
            "{not json",
            vsr | {"image": "000000000001.jpg", "label": 1, "relation": "on"},
        ],
    )
    _jsonl(
        root / "vsr" / "random" / "test.jsonl",
        [
            vsr
            | {
                "image": "000000000002.jpg",
                "caption": "The green car is next to the bus.",
                "label": 1,
                "relation": "next to",
            },
        ],
    )
    # VALSE: one JSON per instrument; images found by instrument, dataset or bare name.
    _img(img / "valse" / "red.jpg", "red")
    _img(img / "valse" / "existence" / "blue.jpg", "blue")
    _img(img / "valse" / "visual7w" / "green.jpg", "green")
    valse = root / "valse"
    valse.mkdir(parents=True)

    def ex(image, caption, foil, votes, dataset="coco"):
        return {
            "dataset": dataset,
            "image_file": image,
            "caption": caption,
            "foil": foil,
            "mturk": {"caption": votes, "foil": 0, "other": 0},
            "linguistic_phenomena": "x",
        }

    (valse / "existence.json").write_text(
        json.dumps(
            {
                "e0": ex("red.jpg", "a red thing", "a green thing", 3),
                "e1": ex("blue.jpg", "a green thing", "a blue thing", 2),
                "e2": ex("red.jpg", "a red thing", "a blue thing", 1),
            }
        )
    )
    (valse / "relations.json").write_text(
        json.dumps(
            {
                "r0": ex("green.jpg", "green on top", "red on top", 3, dataset="visual7w"),
                "r1": ex("nothere.jpg", "red", "green", 3),
                "r2": "not an example",
            }
        )
    )
    # SVO-Probes: images by id (p1.jpg, n1.jpg, ...), one found only through its URL's file name.
    _img(img / "svo" / "p1.jpg", "red")
    _img(img / "svo" / "n1.jpg", "green")
    _img(img / "svo" / "p2.png", "green")
    _img(img / "svo" / "blue_9.jpg", "blue")
    fields = [
        "sentence",
        "pos_triplet",
        "neg_triplet",
        "subj_neg",
        "verb_neg",
        "obj_neg",
        "pos_url",
        "neg_url",
        "pos_image_id",
        "neg_image_id",
    ]
    rows = [
        [
            "a red dog runs",
            "dog,run,park",
            "cat,run,park",
            "True",
            "False",
            "False",
            "u/p1.jpg",
            "u/n1.jpg",
            "p1",
            "n1",
        ],
        [
            "a green cat sits",
            "cat,sit,mat",
            "cat,lie,mat",
            "False",
            "True",
            "False",
            "u/p2.png",
            "http://h/blue_9.jpg?x=1",
            "p2",
            "",
        ],
        [
            "a blue bird sings",
            "bird,sing,tree",
            "bird,sing,roof",
            "False",
            "False",
            "True",
            "u/p1.jpg",
            "u/blue_9.jpg",
            "p1",
            "blue_9",
        ],
        [
            "a red car drives",
            "car,drive,road",
            "car,park,road",
            "False",
            "True",
            "False",
            "u/p1.jpg",
            "u/gone.jpg",
            "p1",
            "gone",
        ],
        ["", "a,b,c", "a,b,d", "True", "False", "False", "u/p1.jpg", "u/n1.jpg", "p1", "n1"],
    ]
    (root / "svo").mkdir()
    with open(root / "svo" / "svo_probes.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(fields)
        writer.writerows(rows)
    # Winoground: image names without extension, PNG files.
    for name, colour in [
        ("ex_0_img_0", "red"),
        ("ex_0_img_1", "green"),
        ("ex_1_img_0", "green"),
        ("ex_1_img_1", "red"),
        ("ex_2_img_0", "red"),
        ("ex_2_img_1", "yellow"),
        ("ex_3_img_1", "red"),
    ]:
        _img(img / "winoground" / f"{name}.png", colour)
    wino = [
        {
            "id": 0,
            "caption_0": "a red one",
            "caption_1": "a green one",
            "image_0": "ex_0_img_0",
            "image_1": "ex_0_img_1",
            "tag": "Object",
            "secondary_tag": "",
            "num_main_preds": 1,
        },
        {
            "id": 1,
            "caption_0": "a red one",
            "caption_1": "a green one",
            "image_0": "ex_1_img_0",
            "image_1": "ex_1_img_1",
            "tag": "Relation",
        },
        {
            "id": 2,
            "caption_0": "red",
            "caption_1": "green",
            "image_0": "ex_2_img_0",
            "image_1": "ex_2_img_1",
            "tag": "Object",
        },
        {
            "id": 3,
            "caption_0": "red",
            "caption_1": "green",
            "image_0": "ex_3_img_0",
            "image_1": "ex_3_img_1",
            "tag": "Object",
        },
    ]
    _jsonl(root / "winoground" / "examples.jsonl", wino)
    # Retrieval: Karpathy files; COCO images under val2014/, Flickr without filepath.
    for name, colour in [
        ("COCO_red.jpg", "red"),
        ("COCO_green.jpg", "green"),
        ("COCO_blue.jpg", "blue"),
        ("COCO_dev_red.jpg", "red"),
        ("COCO_dev_blue.jpg", "blue"),
    ]:
        _img(img / "coco" / "val2014" / name, colour)
    _karpathy(
        root / "coco" / "karpathy_test.json",
        [
            ("val2014", "COCO_red.jpg", "test", ["a red thing", "red red"]),
            ("val2014", "COCO_green.jpg", "test", ["green stuff"]),
            ("val2014", "COCO_blue.jpg", "test", ["blue sky", "blue red"]),
            ("val2014", "COCO_gone.jpg", "test", ["a red car"]),
            ("val2014", "COCO_dev_red.jpg", "val", ["red"]),
            ("train2014", "COCO_train.jpg", "restval", ["x"]),
        ],
    )
    _karpathy(
        root / "coco" / "karpathy_dev.json",
        [
            ("val2014", "COCO_dev_red.jpg", "val", ["red"]),
            ("val2014", "COCO_dev_blue.jpg", "val", ["blue", "blue green"]),
        ],
    )
    for name, colour in [("1.jpg", "red"), ("2.jpg", "green")]:
        _img(img / "flickr" / name, colour)
    _karpathy(
        root / "flickr" / "karpathy_test.json",
        [
            (None, "1.jpg", "test", ["red"]),
            (None, "2.jpg", "test", ["green"]),
            (None, "3.jpg", "train", ["x"]),
        ],
    )
    return root


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_benchmarks(tmp_path / "bench")


class ColourScorer:
    """A scorer whose outcomes are known: embeddings are colours (images: mean RGB; texts: colour words)."""

    has_itm = True

    def itc_image(self, images):
        return torch.nn.functional.normalize(
            torch.from_numpy(np.stack([np.asarray(im, dtype=np.float32).mean(axis=(0, 1)) for im in images])),
            dim=-1,
        )

    def itc_text(self, texts):
        vecs = [
            sum(
                (
                    torch.tensor(COLOURS[w], dtype=torch.float32)
                    for w in t.lower().replace(".", "").split()
                    if w in COLOURS
                ),
                torch.zeros(3),
            )
            + 1e-6
            for t in texts
        ]
        return torch.nn.functional.normalize(torch.stack(vecs), dim=-1)

    def itm(self, images, texts):
        cos = (self.itc_image(images) * self.itc_text(texts)).sum(-1)
        return cos.clamp(0, 1).tolist()


# ---- readers -----------------------------------------------------------------------------------------------


def test_readers_count_found_kept_dropped(data: Path):
    vsr = read_vsr(str(data))
    assert (vsr.found, vsr.kept, dict(vsr.dropped)) == (7, 5, {"malformed": 2})
    assert {e.split for e in vsr.examples} == {"dev", "test"}
    assert vsr.examples[2].subj == "ball" and vsr.examples[0].subj is None
    valse = read_valse(str(data))
    assert (valse.found, valse.kept) == (6, 4)
    assert dict(valse.dropped) == {"malformed": 1, "not valid (mturk.caption < 2)": 1}
    assert read_valse(str(data), min_votes=3).kept == 3
    svo = read_suite("svo", str(data))
    assert (svo.found, svo.kept, [e.negated for e in svo.examples]) == (5, 4, ["subj", "verb", "obj", "verb"])
    assert "blue_9.jpg" in svo.examples[1].neg_image  # from the URL when the id is empty
    wino = read_suite("winoground", str(data))
    assert wino.examples[0].image_0[0] == "ex_0_img_0.png"


def test_karpathy_split_and_paths(data: Path):
    loaded = read_karpathy(str(data / "coco" / "karpathy_test.json"), "test", "coco")
    (gallery,) = loaded.examples
    assert isinstance(gallery, RetrievalSet)
    assert gallery.images[0] == ("val2014/COCO_red.jpg", "COCO_red.jpg")
    assert gallery.text_image == [0, 0, 1, 2, 2, 3]
    assert loaded.dropped == {"split is not test": 2}
    dev = read_suite("coco_dev", str(data))
    assert (dev.found, dev.kept, len(dev.examples[0].texts)) == (2, 2, 3)


# ---- check (no model) --------------------------------------------------------------------------------------


def test_check_reports_found_kept_missing(data: Path, tmp_path: Path):
    reports = check_suites(
        EvalConfig(data=str(data), suites=("vsr", "valse", "svo", "winoground", "coco", "flickr"))
    )
    assert reports["vsr"]["missing_images"] == 1 and reports["vsr"]["examples_with_missing_image"] == 1
    assert reports["valse"]["kept"] == 4 and reports["valse"]["missing_sample"] == ["relations/nothere.jpg"]
    assert reports["svo"]["missing_images"] == 1
    assert reports["winoground"]["examples_with_missing_image"] == 1
    assert reports["coco"]["missing_images"] == 1 and reports["coco"]["texts_with_missing_image"] == 1
    assert (reports["coco"]["found"], reports["coco"]["kept"], reports["coco"]["texts"]) == (6, 4, 6)
    empty = check_suites(EvalConfig(data=str(tmp_path / "nothing"), suites=("valse", "svo")))
    assert {r["status"] for r in empty.values()} == {"missing"}


def test_check_cli_json(data: Path, capsys):
    assert sgv(["eval", "--check", "--suite", "vsr,svo", "--data", str(data), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["svo"]["found"] == 5 and out["svo"]["kept"] == 4
    images = data / "images"
    assert (
        sgv(["eval", "--check", "--suite", "svo", "--data", str(data), "--images", str(data / "none")]) == 0
    )
    assert "missing 5" in capsys.readouterr().out
    assert sgv(["eval", "--check", "--suite", "svo", "--data", str(data), "--images", str(images)]) == 0
    assert sgv(["eval", "--check", "--suite", "nope", "--data", str(data)]) == 2


# ---- runner with a scorer of known outcomes ----------------------------------------------------------------


def test_runner_metrics_with_colour_scorer(data: Path, tmp_path: Path):
    cfg = EvalConfig(data=str(data), k_test=2, batch_size=3, progress=False, bootstrap=50)
    results = evaluate(ColourScorer(), cfg)
    vsr = results["vsr"]
    assert vsr["counts"]["evaluated"] == 4 and vsr["counts"]["skipped_missing_image"] == 1
    dev = vsr["tables"]["vsr_dev"]
    assert dev["figures"]["overall"] == pytest.approx(200 / 3) and dev["figures"]["projective"] == 0.0
    assert dev["details"]["baseline"] == {"majority_class": 1, "accuracy": pytest.approx(200 / 3)}
    assert vsr["tables"]["vsr_test"]["figures"]["overall"] == 100.0
    assert vsr["protocol"]["rows"] == {"dev": 6, "test": 1} and vsr["protocol"]["release"] == "unknown"
    valse = results["valse"]["tables"]["valse"]["figures"]
    assert (valse["existence"], valse["relations"]) == (50.0, 100.0)
    assert valse["overall"] == pytest.approx(200 / 3) and valse["instrument_mean"] == 75.0
    # ids number the rows of all instrument files in name order, invalid ones included (the companion's ids)
    assert [r["id"] for r in results["valse"]["records"]] == ["existence/0", "existence/1", "relations/3"]
    svo = results["svo"]["tables"]["svo"]["figures"]
    # official: positives (red dog|p1) (green cat|p2) right, (blue bird|p1) wrong; negatives n1, blue_9 (green
    # cat) right, blue_9 (blue bird) matched, wrong; pairwise: 2 of 3 rows
    assert (svo["pos"], svo["neg"], svo["obj"]) == (pytest.approx(200 / 3), pytest.approx(200 / 3), 0.0)
    assert svo["pairwise"] == pytest.approx(200 / 3)
    wino = results["winoground"]["tables"]
    for name in ("winoground", "winoground_itc"):
        f = wino[name]["figures"]
        assert (f["text"], f["image"], f["group"]) == (
            pytest.approx(100 / 3),
            pytest.approx(200 / 3),
            pytest.approx(100 / 3),
        )
    coco = results["coco"]
    assert coco["counts"]["images"] == 3 and coco["counts"]["skipped_missing_image"] == 1
    assert coco["counts"]["texts_skipped"] == 1
    assert coco["protocol"]["k_test"] == 2 and coco["protocol"]["rerank_rule"] == "replace"
    r = coco["tables"]["coco"]["figures"]
    for prefix in ("", "itc_"):  # "blue red" ties red and blue
        assert (r[f"{prefix}tr_r1"], r[f"{prefix}ir_r1"], r[f"{prefix}ir_r5"]) == (100.0, 80.0, 100.0)
    assert results["flickr"]["tables"]["flickr"]["figures"]["tr_r1"] == 100.0
    skills = headline(results)
    assert skills["coco_dev_tr1"] == 100.0 and skills["vsr_test"] == 100.0
    assert "valse_instrument_mean" in skills and "svo_pairwise" in skills and "winoground_itc_text" not in skills
    lo, hi = results["valse"]["tables"]["valse"]["ci95"]["overall"]
    assert lo <= valse["overall"] <= hi
    out = tmp_path / "out"
    written = write_results(results, str(out), {"checkpoint": "colour"})
    names = sorted(str(Path(w).relative_to(out)) for w in written)
    assert {"results.json", "vsr.md", "summary.md", "scores/valse.jsonl", "scores/coco.jsonl"} <= set(names)
    md = (out / "valse.md").read_text()
    assert "| existence | 50.0 |" in md and "example-weighted" in md and "VALSE paper" in md
    first = (out / "results.json").read_bytes()
    write_results(evaluate(ColourScorer(), cfg), str(out), {"checkpoint": "colour"})
    assert (out / "results.json").read_bytes() == first
    # the score files alone give back every figure
    from sgverbalise.training.eval.rescore import tables_from_scores

    again, files = tables_from_scores(str(out), bootstrap=0)
    saved = json.loads(first)["suites"]
    expected = {n: t["figures"] for res in saved.values() if res["status"] == "ok" for n, t in res["tables"].items()}
    assert {n: t["figures"] for n, t in again.items()} == expected
    assert len(files) == 7


def test_limit_samples_per_stratum_and_is_recorded(data: Path, tmp_path: Path):
    from sgverbalise.training.eval.provenance import eval_meta

    cfg = EvalConfig(data=str(data), suites=("valse", "coco"), limit=1, progress=False, bootstrap=0)
    results = evaluate(ColourScorer(), cfg)
    valse = results["valse"]
    # one example per instrument (existence and relations), not the first example of the first file twice
    assert valse["counts"]["evaluated"] + valse["counts"]["skipped_missing_image"] == 2
    assert {r["instrument"] for r in valse["records"]} <= {"existence", "relations"}
    assert results["coco"]["counts"]["images"] + results["coco"]["counts"]["skipped_missing_image"] == 1
    meta = eval_meta(cfg, results, "colour", "ours")
    assert meta["examples"]["limit"] == 1 and "stratified" in meta["examples"]["sample"]
    names = sorted(Path(f).name for f in meta["data_files"])
    assert names == ["existence.json", "karpathy_test.json", "relations.json"]
    write_results(results, str(tmp_path / "out"), meta)
    assert "seeded stratified sample" in (tmp_path / "out" / "summary.md").read_text()


def test_missing_suite_and_image_root_override(data: Path, tmp_path: Path):
    (data / "images" / "svo").rename(tmp_path / "svo_images")
    cfg = EvalConfig(
        data=str(data),
        suites=("svo", "winoground"),
        image_roots={"svo": str(tmp_path / "svo_images")},
        progress=False,
    )
    results = evaluate(ColourScorer(), cfg)
    assert results["svo"]["counts"]["evaluated"] == 3
    (data / "winoground" / "examples.jsonl").unlink()
    assert evaluate(ColourScorer(), cfg)["winoground"]["status"] == "missing"


# ---- Hugging Face and our scorers on tiny random models ----------------------------------------------------

WORDS = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "[ENC]",
    "a",
    "the",
    "red",
    "green",
    "blue",
    "thing",
    "one",
    "on",
    "is",
    "cup",
    "dog",
    "cat",
    "table",
    "sky",
    "stuff",
    ".",
    "of",
    "top",
    "car",
]


def _bert_tokenizer(folder: Path):
    from transformers import BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})  # as BLIP's init_tokenizer does
    return tok


def _layers(**extra) -> dict:
    return dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, **extra)


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny random CLIP, BLIP and BLIP-2 retrieval models with processors, saved with save_pretrained."""
    from transformers import (
        Blip2Config,
        Blip2ForImageTextRetrieval,
        Blip2Processor,
        BlipConfig,
        BlipForImageTextRetrieval,
        BlipImageProcessor,
        BlipProcessor,
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
    )

    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    vision = _layers(image_size=32, patch_size=16)
    out = {}
    tok = _bert_tokenizer(root / "vocab")
    blip = BlipForImageTextRetrieval(
        BlipConfig(
            text_config=_layers(vocab_size=len(WORDS), encoder_hidden_size=32, max_position_embeddings=64),
            vision_config=vision,
            image_text_hidden_size=16,
            projection_dim=16,
        )
    ).eval()
    out["blip"] = root / "blip"
    blip.save_pretrained(out["blip"])
    BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok
    ).save_pretrained(out["blip"])
    blip2 = Blip2ForImageTextRetrieval(
        Blip2Config(
            vision_config=vision,
            text_config=None,
            num_query_tokens=4,
            image_text_hidden_size=16,
            qformer_config=_layers(
                vocab_size=len(WORDS),
                encoder_hidden_size=32,
                max_position_embeddings=64,
                use_qformer_text_input=True,
            ),
        )
    ).eval()
    out["blip2"] = root / "blip2"
    blip2.save_pretrained(out["blip2"])
    Blip2Processor(
        image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
        tokenizer=tok,
        num_query_tokens=None,
    ).save_pretrained(out["blip2"])
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz.":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    clip = CLIPModel(
        CLIPConfig(
            text_config=_layers(
                vocab_size=len(vocab),
                max_position_embeddings=64,
                bos_token_id=0,
                eos_token_id=1,
                pad_token_id=1,
            ),
            vision_config=vision,
            projection_dim=16,
        )
    ).eval()
    out["clip"] = root / "clip"
    clip.save_pretrained(out["clip"])
    CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=CLIPTokenizer(vocab=vocab, merges=[]),
    ).save_pretrained(out["clip"])
    return out


IMAGES = [Image.new("RGB", (40, 30), c) for c in [(250, 10, 10), (10, 240, 10), (20, 20, 230)]]
TEXTS = ["a red thing", "the green cup is on the table", "blue sky"]


def test_blip_scorer_matches_the_model(hf_models):
    from transformers import AutoProcessor, BlipForImageTextRetrieval

    scorer = load_scorer(str(hf_models["blip"]), device="cpu")
    assert type(scorer).__name__ == "HFBlipScorer" and scorer.has_itm
    model = BlipForImageTextRetrieval.from_pretrained(hf_models["blip"]).eval()
    proc = AutoProcessor.from_pretrained(hf_models["blip"])
    enc = proc(images=IMAGES, text=TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = model(**enc, use_itm_head=True).itm_score.softmax(-1)[:, 1]
        itc = model(**enc, use_itm_head=False).itm_score
    got = scorer.itm(IMAGES, TEXTS)
    assert got == pytest.approx(expected.tolist(), abs=1e-5)
    # the same image object repeated is encoded once and scores the same
    assert scorer.itm([IMAGES[0]] * 3, TEXTS) == pytest.approx(
        [scorer.itm([IMAGES[0]], [t])[0] for t in TEXTS], abs=1e-5
    )
    sim = itc_similarity(scorer.itc_image(IMAGES), scorer.itc_text(TEXTS))
    assert torch.allclose(sim, itc, atol=1e-5)
    # retrieval re-ranking: the raw match logit with [ENC] first (BLIP's retrieval evaluation), logit + ITC
    assert scorer.rerank_rule == "add"
    enc_id = scorer.tokenizer.convert_tokens_to_ids("[ENC]")
    assert enc_id not in (None, scorer.tokenizer.unk_token_id)
    enc = proc(images=IMAGES, text=TEXTS, return_tensors="pt", padding=True)
    enc["input_ids"][:, 0] = enc_id
    with torch.no_grad():
        logits = model(**enc, use_itm_head=True).itm_score[:, 1]
    assert scorer.itm_logit(IMAGES, TEXTS) == pytest.approx(logits.tolist(), abs=1e-5)


def test_blip2_scorer_matches_the_model(hf_models):
    from transformers import AutoProcessor, Blip2ForImageTextRetrieval

    scorer = load_scorer(str(hf_models["blip2"]), device="cpu")
    assert type(scorer).__name__ == "HFBlip2Scorer"
    model = Blip2ForImageTextRetrieval.from_pretrained(hf_models["blip2"]).eval()
    proc = AutoProcessor.from_pretrained(hf_models["blip2"])
    enc = proc(images=IMAGES, text=TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        itm = model(**enc, use_image_text_matching_head=True).logits_per_image.softmax(-1)[:, 1]
        itc = model(**enc, use_image_text_matching_head=False).logits_per_image
    assert scorer.itm(IMAGES, TEXTS) == pytest.approx(itm.tolist(), abs=1e-5)
    image_emb = scorer.itc_image(IMAGES)
    assert image_emb.shape == (3, 4, 16)
    assert torch.allclose(itc_similarity(image_emb, scorer.itc_text(TEXTS)), itc, atol=1e-5)


def test_clip_scorer_is_itc_only(hf_models, data: Path):
    from transformers import AutoProcessor, CLIPModel

    scorer = load_scorer(str(hf_models["clip"]), device="cpu")
    assert not scorer.has_itm
    with pytest.raises(NotImplementedError):
        scorer.itm(IMAGES, TEXTS)
    model = CLIPModel.from_pretrained(hf_models["clip"]).eval()
    enc = AutoProcessor.from_pretrained(hf_models["clip"])(
        images=IMAGES, text=TEXTS, return_tensors="pt", padding=True
    )
    with torch.no_grad():
        logits = model(**enc).logits_per_image / model.logit_scale.exp()
    assert torch.allclose(itc_similarity(scorer.itc_image(IMAGES), scorer.itc_text(TEXTS)), logits, atol=1e-5)
    results = evaluate(
        scorer, EvalConfig(data=str(data), suites=("vsr", "valse", "winoground", "coco"), progress=False)
    )
    assert results["vsr"]["status"] == "skipped"
    assert results["valse"]["score"] == "itc" and results["valse"]["counts"]["evaluated"] == 3
    assert set(results["winoground"]["tables"]) == {"winoground"}
    assert results["winoground"]["tables"]["winoground"]["details"]["mode"] == "itc"
    assert results["coco"]["score"] == "itc" and "itc_tr_r1" not in results["coco"]["tables"]["coco"]["figures"]


def _ours_checkpoint(folder: Path, seed: int) -> Path:
    from sgverbalise.training.data.tokenizer import train_tokenizer
    from sgverbalise.training.models import PRESETS, build_model

    torch.manual_seed(seed)
    model = build_model(PRESETS["albef"]().tiny())
    model.save_pretrained(folder)
    train_tokenizer([" ".join(WORDS[6:])] * 3, out=folder / "tokenizer", vocab_size=100, min_frequency=1)
    return folder


def test_ours_scorer_matches_the_model(tmp_path: Path):
    from sgverbalise.training.data.transforms import ImageTransform
    from sgverbalise.training.models.vlm import RelationVLM

    ckpt = _ours_checkpoint(tmp_path / "step-10", seed=1)
    scorer = load_scorer(str(ckpt), device="cpu")
    assert type(scorer).__name__ == "OursScorer"
    model = RelationVLM.from_pretrained(ckpt).eval()
    pixels = torch.stack([ImageTransform(size=32, train=False)(im)[0] for im in IMAGES])
    enc = scorer.tokenizer(TEXTS, padding="longest", truncation=True, max_length=40, return_tensors="pt")
    expected = model.itm_score(pixels, enc["input_ids"], enc["attention_mask"])
    assert scorer.itm(IMAGES, TEXTS) == pytest.approx(expected.tolist(), abs=1e-5)
    # ALBEF's re-ranking score: the raw match logit, whose sigmoid against the other logit is p(match)
    assert scorer.rerank_rule == "replace"
    with torch.no_grad():
        ids, mask = enc["input_ids"], enc["attention_mask"]
        fused = model.fuse(model.encode_text(ids, mask), mask, model.encode_image(pixels))
        logits = model.itm_head(fused[:, 0])
    assert scorer.itm_logit(IMAGES, TEXTS) == pytest.approx(logits[:, 1].tolist(), abs=1e-5)
    assert logits.softmax(-1)[:, 1].tolist() == pytest.approx(expected.tolist(), abs=1e-5)
    img, txt = model.itc_embeddings(pixels, enc["input_ids"], enc["attention_mask"])
    assert torch.allclose(scorer.itc_image(IMAGES), img, atol=1e-5)
    assert torch.allclose(scorer.itc_text(TEXTS), txt, atol=1e-5)


def test_eval_cli_with_blip(hf_models, data: Path, tmp_path: Path, capsys):
    out = tmp_path / "eval"
    code = sgv(
        [
            "eval",
            "--checkpoint",
            str(hf_models["blip"]),
            "--suite",
            "valse,svo,coco",
            "--data",
            str(data),
            "--out",
            str(out),
            "--no-progress",
            "--json",
            "--k-test",
            "2",
        ]
    )
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["suites"]["valse"]["counts"]["evaluated"] == 3
    assert doc["suites"]["coco"]["score"] == "rerank"
    assert doc["suites"]["coco"]["protocol"]["rerank_rule"] == "add"
    assert (out / "results.json").exists() and (out / "svo.md").exists() and (out / "scores" / "svo.jsonl").exists()
    meta = json.loads((out / "results.json").read_text())["meta"]
    assert meta["valse_min_votes"] == 2 and meta["examples"] == {"sample": "all examples"}
    assert all(len(h) == 64 for h in meta["data_files"].values()) and len(meta["data_files"]) == 4
    assert meta["versions"]["torch"] != "absent"
    assert meta["retrieval"]["k_test"] == {"coco": 2, "coco_dev": 2, "flickr": 2}


# ---- sweep -------------------------------------------------------------------------------------------------


def test_selection_uses_dev_sets_only():
    rows = [
        {"step": 100, "a": 50.0, "coco_dev_tr1": 10.0, "vsr_dev": 70.0, "vsr_test": 40.0},
        {"step": 200, "a": 60.0, "coco_dev_tr1": 30.0, "vsr_dev": 50.0, "vsr_test": 80.0},
        {"step": 300, "a": 60.0, "coco_dev_tr1": 20.0, "vsr_dev": 60.0, "vsr_test": 90.0},
    ]
    assert best_per_skill(rows, ["a"]) == {"a": {"step": 200, "value": 60.0}}  # earliest on ties
    selected = select_checkpoint(rows)
    assert selected == {"by": "coco_dev_tr1", "step": 200, "value": 30.0}
    reported = reported_values(rows, ["a", "vsr_test"], selected)
    # VSR test at the best VSR dev step (100: 40.0), not at its own best (300: 90.0); others at the selection
    assert reported["vsr_test"] == {"step": 100, "value": 40.0, "by": "vsr_dev"}
    assert reported["a"] == {"step": 200, "value": 60.0, "by": "coco_dev_tr1"}
    assert select_checkpoint([{"step": 5}, {"step": 9}]) == {"by": "last", "step": 9, "value": None}


def test_sweep_over_checkpoints(tmp_path: Path, data: Path, capsys):
    run = tmp_path / "run"
    for step, seed in [(200, 2), (1000, 3), (50, 4)]:
        _ours_checkpoint(run / f"step-{step}", seed)
    (run / "step-x").mkdir()
    (run / "latest.txt").write_text("step-1000")
    assert [s for s, _ in find_checkpoints(str(run))] == [50, 200, 1000]
    args = [
        "sweep",
        "--checkpoints",
        str(run),
        "--suite",
        "vsr,winoground,coco_dev",
        "--data",
        str(data),
        "--no-progress",
        "--json",
        "--k-test",
        "2",
        "--bootstrap",
        "50",
    ]
    assert sgv([*args, "--select-by", "vsr_test"]) == 2
    assert "not a dev-set skill" in capsys.readouterr().err
    assert sgv(args) == 0
    doc = json.loads(capsys.readouterr().out)
    out = run / "sweep"
    assert [r["step"] for r in doc["rows"]] == [50, 200, 1000]
    assert set(doc["skills"]) == {
        "vsr_dev",
        "vsr_test",
        "winoground_text",
        "winoground_image",
        "winoground_group",
        "coco_dev_tr1",
        "coco_dev_ir1",
    }
    assert doc["selected"]["by"] == "coco_dev_tr1"
    assert doc["selected"]["value"] == max(r["coco_dev_tr1"] for r in doc["rows"])
    by_step = {r["step"]: r for r in doc["rows"]}
    vsr = doc["reported"]["vsr_test"]
    assert vsr["by"] == "vsr_dev" and by_step[vsr["step"]]["vsr_dev"] == max(r["vsr_dev"] for r in doc["rows"])
    assert doc["reported"]["winoground_group"]["step"] == doc["selected"]["step"]
    for step, spans in doc["intervals"].items():
        for skill, (lo, hi) in spans.items():
            assert lo <= by_step[int(step)][skill] <= hi
    for skill in doc["skills"]:
        assert (out / "plots" / f"{skill}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "sweep.md").read_text()
    assert "| 50 |" in table and "selected checkpoint" in table and "chosen by" in table
    assert (out / "step-200" / "results.json").exists()
    # a rerun reuses the per-step results
    before = (out / "step-200" / "results.json").read_bytes()
    assert sgv(args) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == doc["rows"]
    assert (out / "step-200" / "results.json").read_bytes() == before
