"""The trainer's data streams on real tar shards: contract, mixing, boxes, errors, splitting, seeds, URLs."""

from __future__ import annotations

import gc
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import tarfile
from collections import Counter
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import fsspec
import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest
import torch
from helpers import job_args
from PIL import Image

from sgverbalise.cli.main import main as sgv_main
from sgverbalise.schemas import validator
from sgverbalise.shards import read_shard, write_shard
from sgverbalise.synth import COLOURS, make_scene, render_scene
from sgverbalise.synth.web import write_web_shards
from sgverbalise.training.batches import check_batch
from sgverbalise.training.data import (
    DataConfig,
    ImageTransform,
    SourceConfig,
    build_loader,
    expand_urls,
    swap_left_right,
)
from sgverbalise.training.data.pixelring import DEFAULT_SLOTS, PixelRing, RingPixels
from sgverbalise.training.data.sources import load_relations
from sgverbalise.training.data.streams import as_tensors, draw, inline_small, plan_streams, stream_seed
from sgverbalise.training.data.tokenizer import TextEncoder, encode_texts, load_tokenizer, shard_texts, train_tokenizer
from sgverbalise.training.data.transforms import Crop, crop_box, draft_scale, to_image, to_pixels

SIZE = 96  # side of the synthetic scenes
RES = 64  # side of the transformed images
PREDICATES = [
    "left of",
    "right of",
    "above",
    "below",
    "next to",
    "on",
    "under",
    "bigger than",
    "smaller than",
]


# ----------------------------------------------------------------------------------------------- fixtures


def _box(o) -> list[int]:
    return [o.x, o.y, o.w, o.h]


def _norm(o) -> list[float]:
    return [round(o.x / SIZE, 6), round(o.y / SIZE, 6), round(o.w / SIZE, 6), round(o.h / SIZE, 6)]


def _jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=95, subsampling=0)
    return buf.getvalue()


def scene_sample(index: int, rng: random.Random) -> tuple[str, dict[str, bytes]]:
    """A schema-valid scene-graph sample of a shape scene whose boxes do not overlap (no ``inside``)."""
    scene = make_scene(rng, SIZE)
    while any(p == "inside" for _, p, _ in scene.relations):
        scene = make_scene(rng, SIZE)
    objs = scene.objects
    triplets = [
        {
            "subject": objs[s].label,
            "subject_id": str(s),
            "subject_box": _box(objs[s]),
            "subject_box_norm": _norm(objs[s]),
            "predicate": p,
            "predicate_raw": p,
            "relation_id": PREDICATES.index(p),
            "object": objs[o].label,
            "object_id": str(o),
            "object_box": _box(objs[o]),
            "object_box_norm": _norm(objs[o]),
        }
        for s, p, o in scene.relations
    ]
    ordered = sorted(
        triplets,
        key=lambda t: (
            t["subject_box"][1] + t["subject_box"][3] / 2,
            t["subject_box"][0] + t["subject_box"][2] / 2,
        ),
    )[:8]
    vsg = (
        [" [SEP] ".join(f"{t['subject']} {t['predicate']} {t['object']}" for t in ordered)]
        if triplets
        else []
    )
    key = f"vg-{index}"
    meta = {
        "schema_version": "1.0",
        "key": key,
        "source": "vg",
        "image_id": str(index),
        "coco_id": None,
        "flickr_id": None,
        "width": SIZE,
        "height": SIZE,
        "vsg": vsg,
        "num_relations": len(triplets),
        "num_triplets": len(triplets),
        "triplets": triplets,
        "entities": [
            {"object_id": str(i), "name": o.label, "attributes": [], "box": _box(o), "box_norm": _norm(o)}
            for i, o in enumerate(objs)
        ],
    }
    assert list(validator("sample").iter_errors(meta)) == []
    members = {"jpg": _jpeg(render_scene(scene, noise_seed=index)), "json": orjson.dumps(meta)}
    if vsg:
        members["txt"] = vsg[0].encode()
    return key, members


def write_scene_graph_set(root: Path, shards: int = 3, per_shard: int = 6, seed: int = 0) -> Path:
    """A scene-graph shard set as the main job lays it out: train/ shards, manifest.json, relations.json."""
    rng = random.Random(seed)
    infos = []
    for s in range(shards):
        samples = [scene_sample(s * per_shard + i + 1, rng) for i in range(per_shard)]
        infos.append(write_shard(str(root / "train" / f"shard-{s:06d}.tar"), samples, relative_to=str(root)))
    total = sum(i["samples"] for i in infos)
    manifest = {
        "schema_version": "1.0",
        "generator": "test",
        "config": {},
        "inputs": [],
        "splits": {"train": {"samples": total, "bytes": sum(i["bytes"] for i in infos), "shards": infos}},
        "totals": {"images_read": total, "samples": total, "relations_read": 0, "triplets": 0},
        "rejects": {},
    }
    assert list(validator("manifest").iter_errors(manifest)) == []
    (root / "manifest.json").write_text(json.dumps(manifest))
    relations = {
        "schema_version": "1.0",
        "mode": {"name": "all"},
        "relations": [{"id": i, "predicate": p, "count": 1} for i, p in enumerate(PREDICATES)],
    }
    (root / "relations.json").write_text(json.dumps(relations))
    return root


@pytest.fixture(scope="module")
def sg(tmp_path_factory) -> Path:
    return write_scene_graph_set(tmp_path_factory.mktemp("sg"))


@pytest.fixture(scope="module")
def web(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("web")
    write_web_shards(str(root), 32, seed=5, samples_per_shard=8, image_size=SIZE, relation_rate=0.2)
    return root


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory, sg, web):
    out = tmp_path_factory.mktemp("tok")
    train_tokenizer(shard_texts([str(sg), str(web)]), out, vocab_size=400, min_frequency=1)
    return load_tokenizer(out)


def config(sg: Path, web: Path, **overrides) -> DataConfig:
    values = {
        "sources": {"caption": [str(web)], "vsg": [str(sg)], "mrc": [str(sg)], "entity": [str(sg)]},
        "batch_sizes": {"caption": 4, "vsg": 3, "mrc": 3, "entity": 2},
        "ratios": {"caption": 2, "entity": 1.5, "mrc": 1, "vsg": 1},
        "image_size": RES,
        "num_workers": 0,
        "shuffle_buffer": 8,
        "shuffle_initial": 4,
        "epoch_batches": 8,
        "seed": 1,
    }
    values.update(overrides)
    return DataConfig(**values)


def web_keys(root: Path) -> set[str]:
    return {key for url in expand_urls(str(root)) for key, _ in read_shard(url)}


# ------------------------------------------------------------------------------------------------ sources


def test_source_specs_expand_to_shard_urls(sg, web):
    train = [str(sg / "train" / f"shard-{i:06d}.tar") for i in range(3)]
    assert expand_urls(str(sg)) == train  # folder with a manifest
    assert expand_urls(str(sg / "manifest.json")) == train
    assert expand_urls(str(sg / "train" / "shard-{000000..000002}.tar")) == train
    assert expand_urls(str(sg / "train" / "*.tar")) == train
    assert expand_urls(str(sg / "train" / "shard-00000")) == train  # a prefix
    web_tars = [str(web / f"{i:05d}.tar") for i in range(4)]
    assert expand_urls(str(web)) == web_tars  # img2dataset folder: *.tar, not the parquet files
    assert expand_urls(f"{web}::{sg}") == web_tars + train
    assert expand_urls([str(web / "00001.tar"), str(sg)]) == [web_tars[1], *train]
    with pytest.raises(ValueError, match="no split"):
        expand_urls(str(sg), split="val")
    with pytest.raises(ValueError, match="no shards"):
        expand_urls(str(web / "nothing-*.tar"))
    assert load_relations(str(sg)) == PREDICATES
    assert SourceConfig(str(web / "{00000..00003}.tar")).label == web.name


def test_config_checks_and_presets(sg, web):
    with pytest.raises(ValueError, match="no sources"):
        DataConfig(sources={"caption": [str(web)]}, epoch_batches=1)  # realbef: mrc and vsg need sources
    with pytest.raises(ValueError, match="flip for mrc"):
        config(sg, web, flip={"mrc": True})
    partial = config(sg, web, flip={"vsg": True}, max_text_len={"vsg": 64})
    assert (
        partial.flip["caption"]
        and partial.flip["vsg"]
        and partial.max_text_len == {"caption": 40, "vsg": 64, "entity": 16, "mrc": 16}
    )
    with pytest.raises(ValueError, match="epoch_batches"):
        config(sg, web, epoch_batches=None)
    cfg = DataConfig.from_dict(
        {
            "preset": "rexvlm",
            "epoch_batches": 5,
            "sources": {
                "caption": [{"urls": str(web), "weight": 2.0, "name": "cc"}],
                "entity": str(sg),
                "mrc": str(sg),
                "vsg": str(sg),
            },
        }
    )
    assert cfg.batch_sizes == {"caption": 1024, "entity": 1024, "mrc": 256, "vsg": 128}
    assert cfg.ratios == {"caption": 2.0, "entity": 1.5, "mrc": 1.0, "vsg": 1.0}
    assert cfg.sources["caption"][0].weight == 2.0 and cfg.max_text_len["vsg"] == 112
    assert DataConfig.preset("realbef", sources=cfg.sources, epoch_batches=1).active_types() == [
        "caption",
        "mrc",
        "vsg",
    ]


# ---------------------------------------------------------------------------------------------- contract


def _colour_of(pixel) -> str:
    named = {**COLOURS, "background": (236, 236, 236)}
    return min(named, key=lambda c: sum((a - b) ** 2 for a, b in zip(named[c], pixel, strict=True)))


def _dominant_colour(image: Image.Image, box: list[float]) -> str:
    """The most frequent shape colour inside a normalised box of the image."""
    x, y, w, h = (v * RES for v in box)
    region = image.crop((round(x), round(y), round(x + w), round(y + h)))
    counts = Counter(_colour_of(p) for p in np.asarray(region).reshape(-1, 3).tolist())
    counts.pop("background", None)
    return counts.most_common(1)[0][0]


@pytest.mark.parametrize("kind", ["caption", "vsg", "mrc", "entity"])
def test_each_batch_type_meets_the_contract(sg, web, tokenizer, kind):
    cfg = config(sg, web, ratios={kind: 1.0}, keep_keys=True, epoch_batches=4)
    n = cfg.batch_sizes[kind]
    batches = list(build_loader(cfg, tokenizer))
    assert len(batches) == 4
    for batch in batches:
        check_batch(batch)
        assert batch["type"] == kind
        image = batch["image"]
        assert image.dtype == torch.uint8 and image.shape == (n, 3, RES, RES) and image.is_contiguous()
        if kind in ("caption", "vsg"):
            ids, mask, words = batch["input_ids"], batch["attention_mask"], batch["word_ids"]
            assert ids.dtype == mask.dtype == words.dtype == batch["image_ids"].dtype == torch.long
            assert (
                ids.shape == mask.shape == words.shape
                and ids.shape[0] == n
                and batch["image_ids"].shape == (n,)
            )
            assert ids.shape[1] <= cfg.max_text_len[kind]
            assert (ids[:, 0] == tokenizer.cls_token_id).all()
            special = torch.isin(
                ids, torch.tensor(list(set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}))
            )
            assert ((words == -1) == special).all()  # pads, [CLS], [SEP] (also VSG's inner ones) have no word
            assert ((mask == 0) == (ids == tokenizer.pad_token_id)).all()
            same_key = [a == b for a in batch["keys"] for b in batch["keys"]]
            same_id = [a == b for a in batch["image_ids"].tolist() for b in batch["image_ids"].tolist()]
            assert same_key == same_id
            if kind == "vsg":
                assert (ids == tokenizer.sep_token_id).sum() > n  # triplet separators inside the texts
        else:
            index = batch["image_index"]
            assert index.dtype == torch.long and index.min() >= 0 and index.max() < n
            assert set(index.tolist()) == set(range(n))  # every image has at least one item
            boxes = [batch["box"]] if kind == "entity" else [batch["subj_box"], batch["obj_box"]]
            for box in boxes:
                assert box.dtype == torch.float32 and box.shape == (len(index), 4)
                assert (box >= 0).all() and (box <= 1).all() and (box[:, 2:] > 0).all()
                assert (box[:, 0] + box[:, 2] <= 1 + 1e-6).all() and (box[:, 1] + box[:, 3] <= 1 + 1e-6).all()
            per_image = Counter(index.tolist())
            if kind == "entity":
                assert max(per_image.values()) <= 4
                assert batch["input_ids"].shape[0] == len(index) == batch["attention_mask"].shape[0]
                texts = tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True)
                pictures = [to_image(im) for im in image]
                for i, text, box in zip(index.tolist(), texts, batch["box"].tolist(), strict=True):
                    assert (
                        _dominant_colour(pictures[i], box) == text.split()[0]
                    )  # "red circle": red in its box
            else:
                assert max(per_image.values()) <= 2
                for key in ("subj_ids", "subj_mask", "obj_ids", "obj_mask", "relation"):
                    assert batch[key].dtype == torch.long and batch[key].shape[0] == len(index)
                assert batch["relation"].min() >= 0 and batch["relation"].max() < len(PREDICATES)
                pictures = [to_image(im) for im in image]
                for ids_key, box_key in (("subj_ids", "subj_box"), ("obj_ids", "obj_box")):
                    texts = tokenizer.batch_decode(batch[ids_key], skip_special_tokens=True)
                    for i, text, box in zip(index.tolist(), texts, batch[box_key].tolist(), strict=True):
                        assert _dominant_colour(pictures[i], box) == text.split()[0]


# ---------------------------------------------------------------------------------------------- mixing


def test_batch_types_follow_the_ratio(sg, web):
    cfg = DataConfig.preset(
        "rexvlm",
        epoch_batches=1,
        sources={
            "caption": [
                SourceConfig(str(web), weight=3.0, name="a"),
                SourceConfig(str(web), weight=1.0, name="b"),
            ],
            "entity": [str(sg)],
            "mrc": [str(sg)],
            "vsg": [str(sg)],
        },
    )
    plans = plan_streams(cfg)
    rng = random.Random(0)
    draws = 40_000
    counts = Counter(draw(rng, plans, list(range(len(plans)))) for _ in range(draws))
    by_type = Counter()
    for i, c in counts.items():
        by_type[plans[i].kind] += c
    expected = {"caption": 2 / 5.5, "entity": 1.5 / 5.5, "mrc": 1 / 5.5, "vsg": 1 / 5.5}
    for kind, p in expected.items():
        assert abs(by_type[kind] / draws - p) < 0.01, kind
    a, b = (counts[i] for i, p in enumerate(plans) if p.kind == "caption")
    assert abs(a / (a + b) - 0.75) < 0.015  # sources within a type by weight


def test_loader_yields_the_drawn_schedule_on_every_rank(sg, web, tokenizer):
    cfg = config(sg, web, epoch_batches=30, batch_sizes={"caption": 1, "vsg": 1, "mrc": 1, "entity": 1})
    plans = plan_streams(cfg)
    rng = random.Random(stream_seed(cfg.seed, 0, "schedule"))
    expected = [plans[draw(rng, plans, list(range(len(plans))))].kind for _ in range(30)]
    for rank in (0, 1):  # the same type at the same step everywhere (DDP runs the same losses)
        types = [b["type"] for b in build_loader(cfg, tokenizer, rank=rank, world_size=2)]
        assert types == expected
    assert set(expected) == {"caption", "vsg", "mrc", "entity"}


# ------------------------------------------------------------------------------------------- transforms


def test_boxes_follow_crop_and_flip():
    image = Image.new("RGB", (200, 120), (128, 128, 128))
    image.paste((230, 20, 20), (120, 30, 170, 90))  # red box: x 120-170, y 30-90
    box = [120 / 200, 30 / 120, 50 / 200, 60 / 120]
    transform = ImageTransform(size=RES, flip=True, scale=(0.2, 1.0))
    flips, dropped = Counter(), 0
    for seed in range(60):
        tensor, (out,), flipped = transform(image, [box], rng=random.Random(seed))
        again, (out2,), flipped2 = transform(image, [box], rng=random.Random(seed))
        assert torch.equal(tensor, again) and out == out2 and flipped == flipped2  # deterministic per seed
        flips[flipped] += 1
        picture = to_image(tensor)
        if out is None:
            dropped += 1
            continue
        x, y, w, h = (v * RES for v in out)
        centre = picture.getpixel((int(x + w / 2), int(y + h / 2)))
        assert centre[0] > 180 and centre[1] < 80, (seed, out, centre)  # red inside the moved box
        inside = picture.crop((round(x) + 1, round(y) + 1, round(x + w) - 1, round(y + h) - 1))
        assert (np.asarray(inside)[..., 0] > 150).all()
        if x > 2:  # grey just left of the box (no red leaks outside it)
            assert picture.getpixel((int(x) - 2, int(y + h / 2)))[0] < 160
    assert flips[True] > 10 and flips[False] > 10 and 0 < dropped < 60


def test_crop_box_drops_boxes_less_than_half_visible():
    crop = Crop(left=0, top=0, width=50, height=100)
    assert crop_box([0.2, 0.0, 0.4, 0.5], crop, 100, 100) == pytest.approx(
        (0.4, 0.0, 0.6, 0.5)
    )  # 3/4 visible
    assert crop_box([0.35, 0.0, 0.4, 0.5], crop, 100, 100) is None  # 15 of 40 columns visible
    assert crop_box([0.25, 0.0, 0.5, 0.5], crop, 100, 100) == pytest.approx(
        (0.5, 0.0, 0.5, 0.5)
    )  # exactly half
    mirrored = Crop(left=0, top=0, width=50, height=100, flip=True)
    assert crop_box([0.0, 0.0, 0.1, 0.1], mirrored, 100, 100) == pytest.approx((0.8, 0.0, 0.2, 0.1))
    assert ImageTransform(size=8, train=False).sample(30, 20) == Crop(0, 0, 30, 20)


def _big_scene(width: int = 640, height: int = 480) -> tuple[bytes, list[float]]:
    """A JPEG much larger than the output, grey with a red box; and the box, normalised."""
    image = Image.new("RGB", (width, height), (128, 128, 128))
    image.paste((230, 20, 20), (384, 120, 544, 360))  # x 384-544, y 120-360
    return _jpeg(image), [384 / width, 120 / height, 160 / width, 240 / height]


def test_jpeg_draft_decodes_small_and_keeps_boxes_and_pixels_in_place():
    data, box = _big_scene()
    image = Image.open(io.BytesIO(data))
    assert draft_scale(image, Crop(0, 0, 640, 480), 32) == 0.125 and image.size == (80, 60)  # 60 px >= 32
    image = Image.open(io.BytesIO(data))
    assert draft_scale(image, Crop(0, 0, 640, 480), 64) == 0.25 and image.size == (160, 120)  # 1/8: 60 < 64
    image = Image.open(io.BytesIO(data))
    assert draft_scale(image, Crop(100, 40, 300, 300), 64) == 0.25  # the crop: 75 px at 1/4, 37.5 at 1/8
    image = Image.open(io.BytesIO(data))
    assert draft_scale(image, Crop(0, 0, 100, 100), 64) == 1.0 and image.size == (640, 480)  # < 2x: no draft
    png = io.BytesIO()
    Image.open(io.BytesIO(data)).save(png, format="PNG")
    assert draft_scale(Image.open(png), Crop(0, 0, 640, 480), 64) == 1.0  # only JPEGs are drafted
    drafted, full = (ImageTransform(size=RES, flip=True, scale=(0.2, 1.0), draft=d) for d in (True, False))
    dropped = 0
    for seed in range(40):
        a, (box_a,), flip_a = drafted(Image.open(io.BytesIO(data)), [box], random.Random(seed))
        b, (box_b,), flip_b = full(Image.open(io.BytesIO(data)), [box], random.Random(seed))
        assert a.dtype == torch.uint8 and a.shape == (3, RES, RES)
        assert box_a == box_b and flip_a == flip_b  # the same crop: boxes do not depend on the decode scale
        # the same picture (the red edge may move by a fraction of a pixel): a few grey levels on average
        assert (a.float() - b.float()).abs().mean() < 4, seed
        if box_a is None:
            dropped += 1
            continue
        picture = to_image(a)
        x, y, w, h = (v * RES for v in box_a)
        inside = np.asarray(picture.crop((round(x) + 1, round(y) + 1, round(x + w) - 1, round(y + h) - 1)))
        assert (inside[..., 0] > 150).all() and (inside[..., 1] < 100).all(), (seed, box_a)  # red in the box
        if x > 2:
            assert picture.getpixel((int(x) - 2, int(y + h / 2)))[0] < 160  # grey just left of it
    assert dropped < 40
    pixels = to_pixels(Image.new("RGB", (5, 3), (1, 2, 3)))
    assert pixels.shape == (3, 3, 5) and pixels[:, 0, 0].tolist() == [1, 2, 3]
    assert to_image(pixels).getpixel((4, 2)) == (1, 2, 3)


def test_drafted_loader_batches_keep_colours_in_their_boxes(tmp_path, tokenizer):
    """Scenes stored as 4x larger JPEGs, so the loader decodes them drafted: every box still shows its colour."""
    rng = random.Random(7)
    samples = []
    for i in range(12):
        key, members = scene_sample(i + 1, rng)
        big = Image.open(io.BytesIO(members["jpg"])).resize((4 * SIZE, 4 * SIZE), Image.Resampling.NEAREST)
        samples.append((key, {**members, "jpg": _jpeg(big)}))
    write_shard(str(tmp_path / "sg" / "train" / "shard-000000.tar"), samples, relative_to=str(tmp_path / "sg"))
    shards = str(tmp_path / "sg" / "train" / "shard-000000.tar")
    for kind in ("entity", "mrc"):
        batches = {}
        for draft in (True, False):
            cfg = DataConfig(
                sources={kind: [shards]}, ratios={kind: 1}, batch_sizes={kind: 4}, image_size=RES,
                num_workers=0, shuffle_buffer=0, resampled=False, jpeg_draft=draft,
            )  # fmt: skip
            batches[draft] = list(build_loader(cfg, tokenizer))
        for drafted, full in zip(batches[True], batches[False], strict=True):
            assert drafted.keys() == full.keys()
            for key in sorted(set(drafted) - {"image", "type"}):  # the same crops, so the same boxes and texts
                assert torch.equal(drafted[key], full[key]), key
            assert (drafted["image"].float() - full["image"].float()).abs().mean() < 6
            pictures = [to_image(im) for im in drafted["image"]]
            pairs = (
                [("input_ids", "box")] if kind == "entity" else [("subj_ids", "subj_box"), ("obj_ids", "obj_box")]
            )
            for ids_key, box_key in pairs:
                texts = tokenizer.batch_decode(drafted[ids_key], skip_special_tokens=True)
                rows = zip(drafted["image_index"].tolist(), texts, drafted[box_key].tolist(), strict=True)
                for i, text, box in rows:
                    assert _dominant_colour(pictures[i], box) == text.split()[0]


def test_check_batch_wants_uint8_images(sg, web, tokenizer):
    batch = next(iter(build_loader(config(sg, web, ratios={"caption": 1}), tokenizer)))
    check_batch(batch)
    with pytest.raises(ValueError, match="uint8"):
        check_batch({**batch, "image": batch["image"].float()})
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        check_batch({**batch, "image": batch["image"][:, :1]})


def test_flip_swaps_left_and_right_words():
    assert (
        swap_left_right("A dog left of a man, Right-hand side; LEFT")
        == "A dog right of a man, Left-hand side; RIGHT"
    )
    assert swap_left_right("the leftmost cup, rightly so, lefty") == "the rightmost cup, rightly so, lefty"


def test_caption_flip_swaps_words_and_spatial_types_do_not_flip(tmp_path, tokenizer):
    image = Image.new("RGB", (64, 64), (200, 200, 200))
    image.paste((20, 20, 230), (0, 0, 20, 64))  # blue strip on the left
    samples = [(f"{i:06d}", {"jpg": _jpeg(image), "txt": b"blue strip on the left"}) for i in range(24)]
    write_shard(str(tmp_path / "web" / "00000.tar"), samples)
    cfg = DataConfig(
        sources={"caption": [str(tmp_path / "web")]},
        ratios={"caption": 1},
        batch_sizes={"caption": 24},
        image_size=32,
        crop_scale=(0.9, 1.0),
        num_workers=0,
        shuffle_buffer=0,
        resampled=False,
    )
    (batch,) = list(build_loader(cfg, tokenizer))
    texts = tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True)
    left_blue = [to_image(im).getpixel((1, 16))[0] < 100 for im in batch["image"]]
    assert 0 < sum(left_blue) < 24
    for blue, text in zip(left_blue, texts, strict=True):
        assert text == ("blue strip on the left" if blue else "blue strip on the right")
    assert not DataConfig(sources={"vsg": ["x"]}, ratios={"vsg": 1}, epoch_batches=1).flip["vsg"]


# ------------------------------------------------------------------------------------------ bad inputs


def _truncate(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "mid-member":
        path.write_bytes(data[: len(data) // 2 + 100])
    else:  # on a block boundary, after the first complete sample: tarfile alone sees a clean end there
        with tarfile.open(path) as tar:
            members = tar.getmembers()
            end = members[3].offset  # header of the second sample's first member
        path.write_bytes(data[:end])


@pytest.mark.parametrize("how", ["mid-member", "block-boundary"])
def test_corrupt_jpeg_and_truncated_shard_are_skipped_and_counted(tmp_path, web, tokenizer, how, caplog):
    root = tmp_path / "web"
    for i, src in enumerate(expand_urls(str(web))[:3]):
        samples = list(read_shard(src))
        if i == 0:
            samples[2][1]["jpg"] = b"\xff\xd8 definitely not a jpeg"
        write_shard(str(root / f"{i:05d}.tar"), samples)
    _truncate(root / "00001.tar", how)
    cfg = DataConfig(
        sources={"caption": [str(root)]},
        ratios={"caption": 1},
        batch_sizes={"caption": 3},
        image_size=32,
        num_workers=0,
        shuffle_buffer=0,
        resampled=False,
        keep_keys=True,
    )
    loader = build_loader(cfg, tokenizer)
    keys = [k for batch in loader for k in batch["keys"]]
    good = [k for k, _ in read_shard(str(root / "00000.tar"))] + [
        k for k, _ in read_shard(str(root / "00002.tar"))
    ]
    assert set(good) - set(keys) == {good[2]}  # everything but the corrupt sample of the good shards
    assert len(keys) == len(set(keys))
    counters = loader.counters()
    assert counters["samples_skipped"] == 1 and counters["shards_skipped"] == 1
    assert counters["caption/web/shard_errors"] == 1
    assert "00001.tar" in caplog.text and good[2] in caplog.text


def test_a_source_of_only_broken_shards_raises_instead_of_spinning(tmp_path, tokenizer):
    (tmp_path / "00000.tar").write_bytes(b"not a tar at all" * 100)
    cfg = DataConfig(
        sources={"caption": [str(tmp_path)]},
        ratios={"caption": 1},
        batch_sizes={"caption": 2},
        num_workers=0,
        epoch_batches=2,
        max_consecutive_errors=20,
    )
    with pytest.raises(RuntimeError, match="in a row"):
        list(build_loader(cfg, tokenizer))


# --------------------------------------------------------------------------------- splitting and seeds


def _one_pass(web: Path, **overrides) -> DataConfig:
    values = {
        "sources": {"caption": [str(web)]},
        "ratios": {"caption": 1},
        "batch_sizes": {"caption": 3},
        "image_size": 16,
        "num_workers": 0,
        "shuffle_buffer": 4,
        "resampled": False,
        "keep_keys": True,
    }
    return DataConfig(**{**values, **overrides})


def test_two_workers_read_disjoint_samples(web, tokenizer):
    loader = build_loader(_one_pass(web, num_workers=2), tokenizer)
    batches = list(loader)
    for batch in batches:  # small tensors cross from the workers pickled inline, and come back as tensors
        check_batch(batch)
        assert all(isinstance(batch[k], torch.Tensor) for k in ("image", "input_ids", "word_ids", "image_ids"))
    keys = [k for batch in batches for k in batch["keys"]]
    assert len(keys) == len(set(keys)) and set(keys) == web_keys(web)
    counters = loader.counters()  # both workers' counters reach the main process
    assert counters["samples"] == len(keys) == 32 and counters["batches"] == 12


def test_small_tensors_go_inline_and_come_back_whole():
    batch = {
        "type": "caption",
        "image": torch.arange(4 * 3 * 224 * 224, dtype=torch.int32).to(torch.uint8).reshape(4, 3, 224, 224),
        "input_ids": torch.arange(12).reshape(3, 4),
        "box": torch.rand(5, 4),
        "keys": ["a", "b"],
    }
    small = inline_small(batch)
    assert isinstance(small["image"], torch.Tensor)  # 602 KB: through shared memory
    assert isinstance(small["input_ids"], np.ndarray) and isinstance(small["box"], np.ndarray)
    back = as_tensors(small)
    assert back.keys() == batch.keys() and back["keys"] == batch["keys"] and back["type"] == "caption"
    for key in ("image", "input_ids", "box"):
        assert back[key].dtype == batch[key].dtype and torch.equal(back[key], batch[key])


def _received(pixels: RingPixels | torch.Tensor) -> torch.Tensor:
    """What the main process gets for a worker's pixels (the DataLoader's pickler, fds for shared memory)."""
    return ForkingPickler.loads(ForkingPickler.dumps(pixels))


def test_pixel_ring_reuses_a_segment_only_once_the_receiver_lets_go():
    ring = PixelRing(limit=2, inline_bytes=100)
    images = [torch.full((3, 4, 5), i, dtype=torch.uint8) for i in range(3)]  # 180 bytes
    first = _received(ring.stack(images))
    assert first[:, 0, 0, 0].tolist() == [0, 1, 2] and len(ring.segments) == 1
    view = first[2, 1]  # a view keeps the segment as the batch did
    del first
    gc.collect()
    second = _received(ring.stack(images[::-1]))  # segment 0 is still held: a second one
    assert len(ring.segments) == 2 and second[:, 0, 0, 0].tolist() == [2, 1, 0]
    third = _received(ring.stack(images))  # both held, the ring is full: a fresh shared tensor
    assert ring.fresh == 1 and isinstance(third, torch.Tensor) and third.is_shared()
    assert view.unique().tolist() == [2]  # untouched
    del view, second
    gc.collect()
    again = _received(ring.stack(images[1:]))  # both segments free again: reused, none added
    assert len(ring.segments) == 2 and ring.fresh == 1 and again[:, 0, 0, 0].tolist() == [1, 2]
    pinned_like = again.clone()  # a copy does not hold the segment
    del again
    gc.collect()
    assert all(flag[0] == 0 for flag in ring.flags) and pinned_like[:, 0, 0, 0].tolist() == [1, 2]
    small = ring.stack(images[:1])  # 60 bytes: ordinary memory, pickled inline by the stream
    assert isinstance(small, torch.Tensor) and not small.is_shared()


def test_worker_batches_through_the_ring_equal_kept_ones(web, tokenizer):
    """Batches consumed and dropped one by one (the workers refill their segments) equal batches all kept (the
    segments stay busy, the rest go to fresh shared memory): no segment is overwritten while still held."""
    cfg = _one_pass(web, num_workers=2, image_size=256, batch_sizes={"caption": 2})  # 384 KB per batch
    dropped = [{k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in b.items()}
               for b in build_loader(cfg, tokenizer)]  # fmt: skip
    kept = list(build_loader(cfg, tokenizer))
    assert len(kept) == 16 > 2 * DEFAULT_SLOTS  # more batches per worker than segments
    assert _same(dropped, kept)
    assert all(b["image"].shape == (2, 3, 256, 256) and b["image"].dtype == torch.uint8 for b in kept)


def test_split_by_node_from_args_and_env(web, tokenizer, monkeypatch):
    by_args = [
        {k for b in build_loader(_one_pass(web), tokenizer, rank=r, world_size=2) for k in b["keys"]}
        for r in (0, 1)
    ]
    by_env = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        by_env.append({k for b in build_loader(_one_pass(web), tokenizer) for k in b["keys"]})
    assert by_args == by_env
    assert not by_args[0] & by_args[1] and by_args[0] | by_args[1] == web_keys(web)
    assert by_args[0] and by_args[1]


def _tensors(batches: list[dict]) -> list[list]:
    return [[b["type"], *(v for k, v in sorted(b.items()) if isinstance(v, torch.Tensor))] for b in batches]


def _same(a: list[dict], b: list[dict]) -> bool:
    ta, tb = _tensors(a), _tensors(b)
    return len(ta) == len(tb) and all(
        x[0] == y[0]
        and len(x) == len(y)
        and all(u.shape == v.shape and torch.equal(u, v) for u, v in zip(x[1:], y[1:], strict=True))
        for x, y in zip(ta, tb, strict=True)
    )


def test_same_seed_same_batches(sg, web, tokenizer):
    first = list(build_loader(config(sg, web), tokenizer))
    second_loader = build_loader(config(sg, web), tokenizer)
    second = list(second_loader)
    assert _same(first, second)
    assert not _same(first, list(build_loader(config(sg, web, seed=2), tokenizer)))
    assert not _same(first, list(second_loader))  # the next epoch draws other shards, samples and crops
    second_loader.set_epoch(0)
    assert _same(first, list(second_loader))


def test_memory_urls(web, tokenizer):
    fs = fsspec.filesystem("memory")
    try:
        write_web_shards("memory://webshards", 12, seed=5, samples_per_shard=8, image_size=SIZE)
        urls = expand_urls("memory://webshards")
        assert [u.split("/")[-1] for u in urls] == ["00000.tar", "00001.tar"]
        assert all(u.startswith("memory://") for u in urls)
        assert fs.exists("/webshards/00000.parquet") and fs.exists("/webshards/00001_stats.json")
        # the same bytes as on disk (same seed, same generator)
        assert fs.cat("/webshards/00000.tar") == (web / "00000.tar").read_bytes()
        cfg = _one_pass(Path("x"), sources={"caption": ["memory://webshards/{00000..00001}.tar"]})
        keys = [k for b in build_loader(cfg, tokenizer) for k in b["keys"]]
        assert sorted(keys) == sorted(k for u in urls for k, _ in read_shard(u))
    finally:
        if fs.exists("/webshards"):
            fs.rm("/webshards", recursive=True)


# ------------------------------------------------------------------------------------ tokenizer and CLI


def test_text_encoder_matches_the_tokenizer_call(tokenizer):
    """The stream's encoder (backend configured once, one batch call) gives what the transformers call gives."""
    rng = random.Random(3)
    words = "red circle left of blue square [SEP] [MASK] Ünïcode, on-top it's ##x [UNK] zzqx".split()
    for _ in range(40):
        texts = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 30))) for _ in range(rng.randint(1, 5))]
        for max_length, pad_to_max in ((6, False), (16, True), (40, False)):
            enc = tokenizer(texts, padding="max_length" if pad_to_max else True, truncation=True,
                            max_length=max_length, return_tensors="pt")  # fmt: skip
            got = TextEncoder(tokenizer, max_length, pad_to_max)(texts)
            assert torch.equal(got["input_ids"], enc["input_ids"].long())
            assert torch.equal(got["attention_mask"], enc["attention_mask"].long())
            words_of = torch.tensor([[-1 if w is None else w for w in enc.word_ids(i)] for i in range(len(texts))])
            special = torch.isin(enc["input_ids"], torch.tensor([0, 2, 3, 4]))  # [PAD] [CLS] [SEP] [MASK], not [UNK]
            assert torch.equal(got["word_ids"], words_of.masked_fill(special, -1))
    assert TextEncoder(tokenizer, 8)([])["input_ids"].shape == (0, 0)


def test_to_pixels_is_the_image_channels_first():
    image = Image.effect_noise((37, 23), 60).convert("RGB")
    image.putpixel((0, 0), (1, 2, 3))
    pixels = to_pixels(image)
    assert pixels.dtype == torch.uint8 and pixels.is_contiguous() and pixels.shape == (3, 23, 37)
    assert np.array_equal(pixels.numpy(), np.asarray(image).transpose(2, 0, 1))
    assert pixels[:, 0, 0].tolist() == [1, 2, 3]
    grey = Image.effect_noise((8, 6), 60)  # mode L: converted
    assert np.array_equal(to_pixels(grey).numpy(), np.asarray(grey.convert("RGB")).transpose(2, 0, 1))


def test_trained_tokenizer_round_trips_and_word_ids_mark_whole_words(sg, web, tokenizer, tmp_path):
    texts = list(dict.fromkeys(shard_texts([str(sg), str(web)])))[:50]
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids, skip_special_tokens=True) == text.lower()
    vsg = "red circle left of blue square [SEP] blue square above green triangle"
    small = train_tokenizer(
        shard_texts([str(sg), str(web)]), tmp_path / "small", vocab_size=60, min_frequency=1
    )  # words in many pieces
    for tok in (tokenizer, small):
        enc = encode_texts(tok, [vsg, "circle, square"], max_length=60)
        for row, text in enumerate((vsg, "circle , square")):
            words: dict[int, str] = {}
            tokens = tok.convert_ids_to_tokens(enc["input_ids"][row])
            for token, word in zip(tokens, enc["word_ids"][row].tolist(), strict=True):
                if word >= 0:
                    words[word] = words.get(word, "") + token.removeprefix("##")
            assert list(words.values()) == [w for w in text.split() if w != "[SEP]"]
    assert len(small("triangle")["input_ids"]) > 3
    assert enc["input_ids"].shape == (2, int(enc["attention_mask"].sum(1).max()))
    fixed = encode_texts(tokenizer, ["red circle"], max_length=12, pad_to_max=True)
    assert fixed["input_ids"].shape == (1, 12) and (fixed["word_ids"][0, 3:] == -1).all()
    with pytest.raises(FileNotFoundError):
        load_tokenizer(tmp_path / "absent")


_TRAIN = (
    "import sys\n"
    "from sgverbalise.training.data.tokenizer import shard_texts, train_tokenizer\n"
    "train_tokenizer(shard_texts(sys.argv[2:]), sys.argv[1], vocab_size=120, min_frequency=1)\n"
)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_tokenizer_training_is_deterministic_across_processes(sg, web, tmp_path):
    """The trainer of ``tokenizers`` numbers pieces in hash-map order (the same texts gave another vocabulary
    in every process); ours gives the same files everywhere. 120 tokens: the vocabulary fills up, so ties in
    the merges decide both the ids and which tokens make the cut."""
    root = Path(__file__).resolve().parents[1]
    runs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "TOKENIZERS_PARALLELISM": "true"}
        command = [sys.executable, "-c", _TRAIN, str(tmp_path / f"seed{seed}"), str(sg), str(web)]
        runs.append(subprocess.Popen(command, env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True))  # fmt: skip
    for process in runs:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
    in_process = train_tokenizer(shard_texts([str(sg), str(web)]), tmp_path / "here", vocab_size=120,
                                 min_frequency=1)  # fmt: skip
    first, second, here = (_files(tmp_path / name) for name in ("seed1", "seed2", "here"))
    assert "tokenizer.json" in first and first == second == here  # byte for byte
    tokens = in_process.convert_ids_to_tokens(list(range(len(in_process))))
    assert len(tokens) == 120 and tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    singles = [t for t in tokens[5:] if len(t) == 1]
    continuations = [t for t in tokens[5:] if len(t) == 3 and t.startswith("##")]
    assert tokens[5 : 5 + len(singles) + len(continuations)] == sorted(singles) + sorted(continuations)
    words = {w for text in shard_texts([str(sg), str(web)]) for w in text.lower().split()}
    assert {t.removeprefix("##") for t in continuations} <= {c for w in words for c in w[1:]}
    texts = list(dict.fromkeys(shard_texts([str(sg), str(web)])))[:30]
    for text in texts:  # a working tokenizer: every word in known pieces, decoded back
        ids = in_process(text)["input_ids"]
        assert in_process.unk_token_id not in ids
        assert in_process.decode(ids, skip_special_tokens=True) == text.lower()


def test_cli_train_tokenizer(sg, web, tmp_path, capsys):
    out = tmp_path / "tok"
    assert (
        sgv_main(
            [
                "train-tokenizer",
                "--shards",
                str(sg),
                "--shards",
                str(web),
                "--out",
                str(out),
                "--vocab-size",
                "300",
                "--min-frequency",
                "1",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["out"] == str(out)
    tok = load_tokenizer(out)
    assert tok.convert_ids_to_tokens([0, 1, 2, 3, 4]) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert tok.decode(tok("red circle left of blue square")["input_ids"], skip_special_tokens=True) == (
        "red circle left of blue square"
    )


# ------------------------------------------------------------------------------------------ web shards


def test_web_shards_in_img2dataset_format(web, tmp_path):
    names = sorted(p.name for p in web.iterdir())
    assert names == [f"0000{i}{suffix}" for i in range(4) for suffix in (".parquet", ".tar", "_stats.json")]
    rows = pq.read_table(web / "00001.parquet").to_pylist()
    samples = list(read_shard(str(web / "00001.tar")))
    assert [r["key"] for r in rows] == [k for k, _ in samples] == [f"00001{i}" for i in range(8)]
    for row, (_, members) in zip(rows, samples, strict=True):
        meta = json.loads(members["json"])
        assert meta == row and meta["status"] == "success" and meta["caption"] == members["txt"].decode()
        assert meta["sha256"] == hashlib.sha256(members["jpg"]).hexdigest()
        assert Image.open(io.BytesIO(members["jpg"])).size == (meta["width"], meta["height"]) == (SIZE, SIZE)
    stats = json.loads((web / "00001_stats.json").read_text())
    assert stats["count"] == stats["successes"] == 8 and stats["status_dict"] == {"success": 8}
    captions = [m["txt"].decode() for u in expand_urls(str(web)) for _, m in read_shard(u)]
    assert all(any(c in text for c in COLOURS) for text in captions)  # they name objects
    predicates = ("left of", "right of", "above", "below", "next to", "under", "inside", "bigger", "smaller")
    relational = [
        t for t in captions if any(p in t for p in predicates) or " on " in t.replace(" on a grey", "")
    ]
    assert 0 < len(relational) < len(captions) / 2  # but rarely their relations
    again = tmp_path / "again"
    write_web_shards(str(again), 32, seed=5, samples_per_shard=8, image_size=SIZE, relation_rate=0.2)
    assert all((again / n).read_bytes() == (web / n).read_bytes() for n in names)


# ----------------------------------------------------------------------------- the main job's real output


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    from sgverbalise.pipelines.build_shards import run
    from sgverbalise.synth import synthesize

    root = tmp_path_factory.mktemp("built")
    synthesize(str(root / "corpus"), 24, seed=2, with_images=True, image_size=128)
    run(job_args(root / "corpus", root / "out", samples_per_shard=6, val_fraction=0.2))
    return root / "out"


@pytest.mark.slow
def test_pipeline_output_feeds_every_batch_type(built, web, tmp_path):
    tok_dir = tmp_path / "tok"
    assert (
        sgv_main(
            [
                "train-tokenizer",
                "--shards",
                str(built),
                "--shards",
                str(web),
                "--out",
                str(tok_dir),
                "--vocab-size",
                "400",
                "--min-frequency",
                "1",
            ]
        )
        == 0
    )
    cfg = DataConfig.preset(
        "rexvlm",
        sources={
            "caption": [str(web)],
            "entity": [str(built)],
            "mrc": [str(built)],
            "vsg": [str(built / "manifest.json")],
        },
        batch_sizes={"caption": 4, "entity": 3, "mrc": 3, "vsg": 3},
        image_size=RES,
        epoch_batches=24,
        num_workers=2,
        shuffle_buffer=16,
        tokenizer=str(tok_dir),
    )
    loader = build_loader(cfg)
    batches = list(loader)
    plans = plan_streams(cfg)
    rng = random.Random(stream_seed(cfg.seed, 0, "schedule"))
    schedule = [plans[draw(rng, plans, list(range(len(plans))))].kind for _ in range(24)]
    assert [b["type"] for b in batches] == schedule  # two workers, batches still in schedule order
    assert {b["type"] for b in batches} == {"caption", "entity", "mrc", "vsg"}
    for batch in batches:
        check_batch(batch)
    vocab = load_relations(str(built))
    assert max(int(b["relation"].max()) for b in batches if b["type"] == "mrc") < len(vocab)
    val = DataConfig(
        sources={"vsg": [SourceConfig(str(built), split="val")]},
        ratios={"vsg": 1},
        batch_sizes={"vsg": 2},
        image_size=RES,
        train=False,
        resampled=False,
        num_workers=0,
        tokenizer=str(tok_dir),
        keep_keys=True,
    )
    keys = [k for b in build_loader(val) for k in b["keys"]]
    manifest = json.loads((built / "manifest.json").read_text())
    assert len(keys) == len(set(keys)) <= manifest["splits"]["val"]["samples"]
    assert loader.counters()["samples_skipped"] == 0


# ----------------------------------------------------------------------------------------------- foils


def _strip_samples(root: Path, foil_of: dict[int, bytes | None]) -> None:
    """Web samples of a blue strip on the left, captioned so; ``foil_of[i]``: sample i's .json (None: none)."""
    image = Image.new("RGB", (64, 64), (200, 200, 200))
    image.paste((20, 20, 230), (0, 0, 20, 64))
    samples = []
    for i in range(24):
        members = {"jpg": _jpeg(image), "txt": b"blue strip on the left"}
        if foil_of.get(i) is not None:
            members["json"] = foil_of[i]
        samples.append((f"{i:06d}", members))
    write_shard(str(root / "00000.tar"), samples)


def _strip_config(root: Path, **overrides) -> DataConfig:
    values = {"sources": {"caption": [str(root)]}, "ratios": {"caption": 1}, "batch_sizes": {"caption": 24},
              "image_size": 32, "crop_scale": (0.9, 1.0), "num_workers": 0, "shuffle_buffer": 0,
              "resampled": False, "keep_keys": True}
    return DataConfig(**(values | overrides))


def test_web_foils_come_from_the_json_and_are_mirrored_with_the_image(tmp_path, tokenizer):
    foil = orjson.dumps({"caption": "blue strip on the left", "foil": "blue strip on the right"})
    foil_of = {i: foil for i in range(20)} | {20: b'{"caption": "x"}', 21: b'{"foil": 3}', 22: b'{"foil": " "}'}
    _strip_samples(tmp_path / "web", foil_of)
    (batch,) = list(build_loader(_strip_config(tmp_path / "web", foils=True), tokenizer))
    check_batch(batch)
    assert batch["has_foil"].dtype == torch.bool and batch["has_foil"].tolist() == [i < 20 for i in range(24)]
    assert batch["foil_ids"].shape == batch["foil_mask"].shape and batch["foil_ids"].shape[0] == 24
    texts = tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True)
    foils = tokenizer.batch_decode(batch["foil_ids"], skip_special_tokens=True)
    left_blue = [to_image(im).getpixel((1, 16))[0] < 100 for im in batch["image"]]
    assert 0 < sum(left_blue[:20]) < 20  # both mirrored and plain images among the rows with a foil
    for i, (blue, text, foil_text) in enumerate(zip(left_blue, texts, foils, strict=True)):
        true, false = ("blue strip on the left", "blue strip on the right")[:: 1 if blue else -1]
        assert text == true
        assert foil_text == (false if i < 20 else "")  # the foil stays false in the (mirrored) picture
    assert (batch["foil_mask"][20:].sum(dim=1) == 2).all()  # rows without a foil: [CLS] [SEP]

    (plain,) = list(build_loader(_strip_config(tmp_path / "web"), tokenizer))
    assert not set(plain) & {"foil_ids", "foil_mask", "has_foil"}
    for key in plain:  # the flag adds keys and changes nothing else (same crops, flips, texts)
        same = torch.equal(plain[key], batch[key]) if torch.is_tensor(plain[key]) else plain[key] == batch[key]
        assert same, key


def test_vsg_foils_change_one_triplet_of_the_drawn_caption(sg, web, tokenizer):
    from sgverbalise.training.data.examples import BUILDERS, collate_text
    from sgverbalise.training.data.streams import make_context

    cfg = config(sg, web, ratios={"vsg": 1.0}, foils=True)
    ctx = make_context(cfg, "vsg", cfg.sources["vsg"][0], tokenizer)
    plain_ctx = make_context(config(sg, web, ratios={"vsg": 1.0}), "vsg", cfg.sources["vsg"][0], tokenizer)
    examples = []
    for url in expand_urls(str(sg)):
        for key, members in read_shard(url):
            sample = {"__key__": key, "__url__": url, **members}
            example = BUILDERS["vsg"](sample, ctx, random.Random(key))
            plain = BUILDERS["vsg"](sample, plain_ctx, random.Random(key))
            assert "foil" not in plain and example["text"] == plain["text"]
            assert torch.equal(example["image"], plain["image"])  # the foil is drawn after the crop
            old, new = example["text"].split(" [SEP] "), example["foil"].split(" [SEP] ")
            assert len(old) == len(new) and sum(a != b for a, b in zip(old, new, strict=True)) == 1
            assert example["foil"] == BUILDERS["vsg"](sample, ctx, random.Random(key))["foil"]
            examples.append(example)
    assert len(examples) == 18
    batch = collate_text(examples[:5], ctx)
    check_batch(batch)
    assert batch["has_foil"].all()
    foils = tokenizer.batch_decode(batch["foil_ids"], skip_special_tokens=True)
    assert foils == [e["foil"].replace(" [SEP]", "") for e in examples[:5]]


def test_check_batch_wants_all_foil_keys_and_only_on_text_batches(sg, web, tokenizer):
    cfg = config(sg, web, ratios={"vsg": 1.0}, foils=True, epoch_batches=1)
    (batch,) = list(build_loader(cfg, tokenizer))
    check_batch(batch)
    for key in ("foil_ids", "foil_mask", "has_foil"):
        with pytest.raises(ValueError, match="not all of"):
            check_batch({k: v for k, v in batch.items() if k != key})
    with pytest.raises(ValueError, match="has_foil must be bool"):
        check_batch(batch | {"has_foil": batch["has_foil"].long()})
    with pytest.raises(ValueError, match="foil_ids/foil_mask"):
        check_batch(batch | {"foil_ids": batch["foil_ids"][1:]})
    (mrc,) = list(build_loader(config(sg, web, ratios={"mrc": 1.0}, epoch_batches=1), tokenizer))
    with pytest.raises(ValueError, match="carry no foils"):
        check_batch(mrc | {k: batch[k] for k in ("foil_ids", "foil_mask", "has_foil")})
    (mrc_foils,) = list(build_loader(config(sg, web, ratios={"mrc": 1.0}, epoch_batches=1, foils=True), tokenizer))
    assert "has_foil" not in mrc_foils
