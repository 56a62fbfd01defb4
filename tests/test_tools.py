"""Shard tools (inspect, validate, show, render, stats) on hand-made shards of ours, on an img2dataset-style
folder, on hostile tars, and (slow) on a shard set written by the Beam job."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import pickle
import shutil
import statistics
import sys
import tarfile
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from helpers import job_args, read_tar
from PIL import Image

from sgverbalise.cli.main import main
from sgverbalise.shards import read_shard, write_shard
from sgverbalise.tools import ToolError
from sgverbalise.tools.paths import resolve
from sgverbalise.tools.render import PALETTE, line_width, render_members, render_sample
from sgverbalise.tools.scan import progress_bar
from sgverbalise.tools.show import iter_from
from sgverbalise.tools.stats import compute_stats, write_outputs
from sgverbalise.tools.validate import validate_set

PREDICATES = ["left of", "above", "next to"]


def jpeg(width: int, height: int, colour: tuple[int, int, int] = (128, 128, 128)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def box_norm(box: list[float], w: int, h: int) -> list[float]:
    return [round(box[0] / w, 6), round(box[1] / h, 6), round(box[2] / w, 6), round(box[3] / h, 6)]


def our_sample(i: int, w: int = 120, h: int = 90) -> tuple[str, dict]:
    """A valid sample of ours: two entities and one triplet (predicate by i)."""
    key = f"vg-{i:03d}"
    a, b = [8.0, 10.0, 30.0, 25.0], [70.0, 40.0, 40.0, 35.0]
    predicate = PREDICATES[i % len(PREDICATES)]
    triplet = {
        "subject": "box",
        "subject_id": "1",
        "subject_box": a,
        "subject_box_norm": box_norm(a, w, h),
        "predicate": predicate,
        "predicate_raw": predicate,
        "relation_id": PREDICATES.index(predicate),
        "object": "ball",
        "object_id": "2",
        "object_box": b,
        "object_box_norm": box_norm(b, w, h),
    }
    sample = {
        "schema_version": "1.0",
        "key": key,
        "source": "vg",
        "image_id": str(i),
        "coco_id": None,
        "flickr_id": None,
        "width": w,
        "height": h,
        "vsg": [f"red box {predicate} ball"],
        "num_relations": 2,
        "num_triplets": 1,
        "triplets": [triplet],
        "entities": [
            {"object_id": "1", "name": "box", "attributes": ["red"], "box": a, "box_norm": box_norm(a, w, h)},
            {"object_id": "2", "name": "ball", "attributes": [], "box": b, "box_norm": box_norm(b, w, h)},
        ],
        "regions": [],
    }
    return key, sample


def members_of(sample: dict, image: bytes | None = None) -> dict[str, bytes]:
    out = {"json": json.dumps(sample).encode(), "txt": sample["vsg"][0].encode()}
    out["jpg"] = image if image is not None else jpeg(sample["width"], sample["height"])
    return out


def write_our_set(root: Path, per_shard: int = 4, shards: int = 2) -> dict:
    """A shard set of ours by hand: train shards, relations.json, an empty rejects folder, the manifest."""
    infos, n = [], 0
    for s in range(shards):
        samples = []
        for _ in range(per_shard):
            key, sample = our_sample(n)
            samples.append((key, members_of(sample)))
            n += 1
        infos.append(write_shard(str(root / "train" / f"shard-{s:06d}.tar"), samples, relative_to=str(root)))
    vocab = {
        "schema_version": "1.0",
        "mode": {"name": "all"},
        "relations": [{"id": i, "predicate": p, "count": 1} for i, p in enumerate(PREDICATES)],
    }
    (root / "relations.json").write_text(json.dumps(vocab))
    (root / "rejects").mkdir()
    (root / "rejects" / "relation-self_relation.jsonl").write_text(
        json.dumps(
            {
                "source": "vg",
                "image_id": "0",
                "kind": "relation",
                "reason": "self_relation",
                "detail": "1 on 1",
            }
        )
        + "\n"
    )
    manifest = {
        "schema_version": "1.0",
        "generator": "hand",
        "config": {},
        "inputs": [],
        "splits": {"train": {"samples": n, "bytes": sum(i["bytes"] for i in infos), "shards": infos}},
        "totals": {"images_read": n, "samples": n, "relations_read": 2 * n, "triplets": n, "vsg_captions": n},
        "rejects": {"relation/self_relation": 1},
        "relations": {"file": "relations.json", "size": len(PREDICATES), "mode": {"name": "all"}},
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rewrite_shard(path: Path, change) -> None:
    """Rewrite a shard through ``change(list of (key, members)) -> list``, with tarfile (which, unlike our
    writer, lets duplicate keys through)."""
    samples = change(list(read_shard(str(path))))
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for key, members in samples:
            for ext in sorted(members):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(members[ext])
                tar.addfile(info, io.BytesIO(members[ext]))


def sgv(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def ours(tmp_path) -> Path:
    root = tmp_path / "set"
    write_our_set(root)
    return root


# -- img2dataset-style shards --------------------------------------------------------------------------------


def write_img2dataset(root: Path, shards: int = 2, per_shard: int = 5) -> list[str]:
    """img2dataset's webdataset output: {shard}.tar (jpg, txt, json), {shard}.parquet, {shard}_stats.json; one
    URL per shard failed to download (in the parquet and the stats, not in the tar)."""
    root.mkdir(parents=True, exist_ok=True)
    keys = []
    for s in range(shards):
        rows = []
        with wds.TarWriter(str(root / f"{s:05d}.tar")) as sink:
            for i in range(per_shard + 1):
                key = f"{s:05d}{i:04d}"
                url = f"https://img{i % 2}.example.com/{key}.jpg"
                status = "failed_to_download" if i == per_shard else "success"
                meta = {
                    "url": url,
                    "caption": f"a photo number {i}",
                    "key": key,
                    "status": status,
                    "error_message": None if status == "success" else "404",
                    "width": 64,
                    "height": 48,
                }
                rows.append(meta)
                if status == "success":
                    sink.write(
                        {
                            "__key__": key,
                            "jpg": jpeg(64, 48, (20 * i, 90, 160)),
                            "txt": meta["caption"],
                            "json": json.dumps(meta, indent=4).encode(),
                        }
                    )
                    keys.append(key)
        pq.write_table(pa.Table.from_pylist(rows), root / f"{s:05d}.parquet")
        (root / f"{s:05d}_stats.json").write_text(
            json.dumps(
                {
                    "count": per_shard + 1,
                    "successes": per_shard,
                    "failed_to_download": 1,
                    "failed_to_resize": 0,
                    "status_dict": {"success": per_shard, "404": 1},
                },
                indent=4,
            )
        )
    return keys


@pytest.fixture
def i2d(tmp_path) -> Path:
    root = tmp_path / "cc3m"
    write_img2dataset(root)
    return root


def test_resolve_folders_prefixes_globs_braces_and_manifests(ours):
    names = ["train/shard-000000.tar", "train/shard-000001.tar"]
    for spec in [
        ours,
        ours / "manifest.json",
        f"{ours}/train/shard-{{000000..000001}}.tar",
        f"{ours}/train/shard-",
        f"{ours}/*/*.tar",
    ]:
        shardset = resolve(str(spec))
        assert [s.name for s in shardset.shards] == names, spec
        assert shardset.manifest is not None and all(s.entry for s in shardset.shards), spec
    assert resolve(str(ours)).whole and not resolve(f"{ours}/train/shard-").whole
    with pytest.raises(ToolError, match="no such"):
        resolve(str(ours / "nothing-here-"))


def test_inspect_our_set(ours, capsys):
    code, out, _ = sgv(capsys, "inspect", str(ours), "--json")
    report = json.loads(out)
    assert code == 0 and report["format"] == "sgverbalise"
    assert (report["shards"], report["samples"]) == (2, 8)
    assert report["bytes"] == sum(p.stat().st_size for p in (ours / "train").glob("*.tar"))
    assert report["extensions"]["jpg"]["samples"] == report["extensions"]["txt"]["samples"] == 8
    assert report["key_range"] == ["vg-000", "vg-007"] and report["sources"] == {"vg": 8}
    assert report["manifest"]["totals"]["triplets"] == 8 and report["relations"]["size"] == 3
    code, text, _ = sgv(capsys, "inspect", str(ours))
    assert "samples 8" in text and "relation vocabulary 3" in text and "VSG captions 8" in text


def test_validate_clean_set_exit_0(ours, capsys):
    code, out, err = sgv(capsys, "validate", str(ours))
    assert (code, out) == (0, "") and "OK: 8 samples in 2 shards" in err


def test_validate_finds_truncated_tar(ours, capsys):
    shard = ours / "train" / "shard-000001.tar"
    shard.write_bytes(shard.read_bytes()[:3000])
    code, out, _ = sgv(capsys, "validate", str(ours))
    assert code == 1
    assert any(line.startswith("train/shard-000001.tar: truncated") for line in out.splitlines()), out
    assert "train/shard-000001.tar: sha256" in out and "train/shard-000000.tar" not in out


def test_validate_finds_corrupt_tar_header(ours, capsys):
    shard = ours / "train" / "shard-000000.tar"
    data = bytearray(shard.read_bytes())
    data[100:108] = b"garbage!"  # the mode field of the first header: its checksum no longer holds
    shard.write_bytes(bytes(data))
    code, out, _ = sgv(capsys, "validate", str(ours))
    assert code == 1 and "train/shard-000000.tar: truncated or corrupt tar" in out


def test_validate_finds_bad_sample(ours, capsys):
    def spoil(samples):
        key, members = samples[2]
        sample = json.loads(members["json"])
        sample["triplets"][0]["subject_box_norm"][0] = 1.7
        del sample["width"]
        return [*samples[:2], (key, {**members, "json": json.dumps(sample).encode()}), *samples[3:]]

    rewrite_shard(ours / "train" / "shard-000000.tar", spoil)
    code, out, _ = sgv(capsys, "validate", str(ours))
    lines = out.splitlines()
    assert code == 1
    assert (
        "train/shard-000000.tar: sample vg-002: $.triplets[0].subject_box_norm[0]: 1.7 is greater than the "
        "maximum of 1" in lines
    )
    assert "train/shard-000000.tar: sample vg-002: $: 'width' is a required property" in lines
    assert not [line for line in lines if "vg-001" in line or "vg-003" in line]


def test_validate_finds_manifest_sha256_mismatch(ours, capsys):
    manifest = json.loads((ours / "manifest.json").read_text())
    entry = manifest["splits"]["train"]["shards"][1]
    entry["sha256"] = hashlib.sha256(b"another shard").hexdigest()
    (ours / "manifest.json").write_text(json.dumps(manifest))
    code, out, _ = sgv(capsys, "validate", str(ours))
    assert code == 1 and out.splitlines() == [
        f"train/shard-000001.tar: sha256 {sha256_of(ours / 'train/shard-000001.tar')}"
        f" differs from the manifest's {entry['sha256']}"
    ]


def test_validate_finds_duplicate_keys(ours, capsys):
    first = list(read_shard(str(ours / "train" / "shard-000000.tar")))
    rewrite_shard(ours / "train" / "shard-000001.tar", lambda samples: [first[1], *samples])
    code, out, _ = sgv(capsys, "validate", str(ours))
    assert code == 1
    assert (
        "train/shard-000001.tar: sample vg-001: duplicate key (first seen in train/shard-000000.tar)" in out
    )
    # the manifest no longer matches either: counts and key range of the rewritten shard
    assert "train/shard-000001.tar: holds 5 samples, the manifest says 4" in out


def test_validate_finds_duplicate_key_within_a_shard(tmp_path, capsys):
    url = tmp_path / "dup.tar"
    with tarfile.open(url, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in ["a.txt", "a.json", "a.txt", "b.txt"]:
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"{}"))
    code, out, _ = sgv(capsys, "validate", str(url))
    assert code == 1 and out.splitlines() == ["dup.tar: sample a: duplicate key (first seen in dup.tar)"]


def test_validate_manifest_totals_unlisted_shards_rejects_and_vocabulary(ours, capsys):
    manifest = json.loads((ours / "manifest.json").read_text())
    manifest["totals"]["triplets"] = 99
    manifest["splits"]["train"]["samples"] = 7
    (ours / "manifest.json").write_text(json.dumps(manifest))
    shutil.copy(ours / "train" / "shard-000000.tar", ours / "train" / "shard-000999.tar")
    (ours / "rejects" / "relation-self_relation.jsonl").write_text("")
    vocab = json.loads((ours / "relations.json").read_text())
    vocab["relations"][0]["predicate"] = "right of"
    (ours / "relations.json").write_text(json.dumps(vocab))
    code, out, _ = sgv(capsys, "validate", str(ours))
    lines = out.splitlines()
    assert code == 1
    assert "manifest.json: splits.train.samples is 7, its shards add up to 8" in lines
    assert "manifest.json: totals.samples is 8, the splits add up to 7" in lines
    assert "train/shard-000999.tar: shard is not listed in the manifest" in lines
    assert "manifest.json: totals.triplets is 99, the samples hold 8" in lines
    assert "rejects/: relation/self_relation: 0 rejects on file, the manifest says 1" in lines
    assert (
        "train/shard-000000.tar: sample vg-000: triplets[0]: relation_id 0 is 'right of' in relations.json, "
        "not 'left of'" in lines
    )


def test_validate_finds_missing_shard(ours, capsys):
    (ours / "train" / "shard-000001.tar").unlink()
    code, out, _ = sgv(capsys, "validate", str(ours))
    assert code == 1 and out.startswith("train/shard-000001.tar: cannot open (FileNotFoundError")
    assert "manifest.json: totals.triplets" not in out  # totals are checked only when every shard was read


def test_validate_json_output_and_single_shard_against_its_manifest_entry(ours, capsys):
    shard = ours / "train" / "shard-000000.tar"
    data = bytearray(shard.read_bytes())
    data[-1] = 1  # same size, different bytes (in the end-of-archive padding: the tar still reads)
    shard.write_bytes(bytes(data))
    code, out, _ = sgv(capsys, "validate", str(shard), "--json")
    report = json.loads(out)
    assert code == 1 and not report["ok"] and report["samples"] == 4
    assert [p["where"] for p in report["problems"]] == ["train/shard-000000.tar"]
    assert "sha256" in report["problems"][0]["message"]


def test_show_our_sample(ours, capsys):
    code, out, _ = sgv(capsys, "show", str(ours), "vg-005")
    assert code == 0
    assert "vg-005  (in train/shard-000001.tar)" in out
    assert "1. red box next to ball" in out
    assert "box [8, 10, 30, 25] --next to (id 2)--> ball [70, 40, 40, 35]" in out
    assert "1: box [8, 10, 30, 25]  (red)" in out and ".jpg" in out and "JPEG 120x90 RGB" in out
    code, out, _ = sgv(capsys, "show", str(ours), "vg-005", "--json")
    desc = json.loads(out)
    assert desc["sample"]["key"] == "vg-005" and desc["members"]["jpg"]["width"] == 120
    code, _, err = sgv(capsys, "show", str(ours), "vg-999")
    assert code == 2 and "no sample with key 'vg-999'" in err


# -- render -------------------------------------------------------------------------------------------------


def edge_hits(image: Image.Image, box: list[float], scale: float, colour: tuple[int, int, int]) -> float:
    """Fraction of the pixels of a box's left and bottom edge lines (one pixel in) that have ``colour``."""
    x0, y0 = round(box[0] * scale), round(box[1] * scale)
    x1, y1 = round((box[0] + box[2]) * scale) - 1, round((box[1] + box[3]) * scale) - 1
    points = [(x0 + 1, y) for y in range(y0 + 2, y1 - 1)] + [(x, y1 - 1) for x in range(x0 + 2, x1 - 1)]
    return sum(image.getpixel(p) == colour for p in points) / len(points)


def test_render_draws_boxes_where_the_boxes_are(tmp_path):
    _, sample = our_sample(0, w=200, h=100)
    image = render_sample(sample, jpeg(200, 100), size=400)
    scale = 2.0
    assert image.width == 400 and image.height > 200  # the caption band under the picture
    for n, entity in enumerate(sample["entities"]):
        assert edge_hits(image, entity["box"], scale, PALETTE[n]) > 0.9
        # and nowhere near the other box
        other = sample["entities"][1 - n]["box"]
        assert edge_hits(image, other, scale, PALETTE[n]) < 0.1
    # inside the boxes (away from the arrow, which runs between their facing borders) the image shows
    x, y, w, h = sample["entities"][1]["box"]
    assert image.getpixel((round((x + w - 4) * scale), round((y + h - 4) * scale))) not in PALETTE
    # the arrow runs on the line between the box centres from the subject's border, in the subject's colour
    a, b = sample["entities"][0]["box"], sample["entities"][1]["box"]
    start = ((a[0] + a[2] / 2) * scale, (a[1] + a[3] / 2) * scale)
    end = ((b[0] + b[2] / 2) * scale, (b[1] + b[3] / 2) * scale)
    near_start = [
        (round(start[0] + (end[0] - start[0]) * f), round(start[1] + (end[1] - start[1]) * f))
        for f in (0.25, 0.27, 0.29)
    ]  # the subject box's border is at 0.224 of the way
    assert all(
        sum(
            image.getpixel((px + dx, py + dy)) == PALETTE[0]
            for dx in (-2, -1, 0, 1, 2)
            for dy in (-2, -1, 0, 1, 2)
        )
        > 0
        for px, py in near_start
    )
    # the band shows text: dark pixels below the picture
    band = image.crop((0, 200, image.width, image.height)).convert("L")
    assert band.getextrema()[0] < 80


def test_render_without_image_or_boxes(tmp_path):
    _, sample = our_sample(1)
    blank = render_sample(sample, None, size=240)
    assert blank.getpixel((239, 5)) == (128, 128, 128)
    photo = render_sample(None, jpeg(64, 32, (10, 200, 10)), "a caption", size=128)
    assert photo.width == 128 and photo.height > 64 and photo.getpixel((64, 16))[1] > 150
    with pytest.raises(ValueError):
        render_sample(None, None)
    assert line_width(512) >= 2


_OPENS: list[list[str]] = []  # lists collecting the files Python opens while a test watches


def _record_open(event: str, args: tuple) -> None:
    if event == "open" and _OPENS and isinstance(args[0], str):
        _OPENS[-1].append(args[0])


@contextlib.contextmanager
def watching_opens() -> Iterator[list[str]]:
    """The paths of the files opened inside the block (from Python's audit events; the hook stays, idle)."""
    if not getattr(watching_opens, "hooked", False):
        sys.addaudithook(_record_open)
        watching_opens.hooked = True
    opened: list[str] = []
    _OPENS.append(opened)
    try:
        yield opened
    finally:
        _OPENS.remove(opened)


def test_render_grid_from_a_key_reads_the_start_shard_once(ours, tmp_path, capsys):
    first, second = (ours / "train" / f"shard-{n:06d}.tar" for n in (0, 1))

    def reads(opened: list[str], shard: Path) -> int:
        return sum(Path(p).resolve() == shard.resolve() for p in opened)

    with watching_opens() as opened:
        code, text, _ = sgv(
            capsys, "render", str(ours), "vg-002", "--grid", "4", "--out", str(tmp_path / "g.png"), "--json"
        )
    assert code == 0 and json.loads(text)["keys"] == ["vg-002", "vg-003", "vg-004", "vg-005"]
    assert reads(opened, first) == 1 and reads(opened, second) == 1
    shardset = resolve(str(ours))
    with watching_opens() as opened:
        keys = [s.key for s in iter_from(shardset, "vg-005")]
    assert keys == ["vg-005", "vg-006", "vg-007"]
    assert reads(opened, first) == 0 and reads(opened, second) == 1  # the manifest's key ranges point there
    assert [s.key for s in iter_from(shardset)] == [f"vg-{i:03d}" for i in range(8)]
    with pytest.raises(ToolError, match="no sample with key 'vg-999'"):
        next(iter_from(shardset, "vg-999"))


def test_render_command_single_and_grid(ours, i2d, tmp_path, capsys):
    out = tmp_path / "one.png"
    code, text, _ = sgv(capsys, "render", str(ours), "vg-003", "--out", str(out), "--size", "240")
    assert code == 0 and Image.open(out).width == 240
    grid = tmp_path / "grid.png"
    code, text, _ = sgv(
        capsys, "render", str(ours), "vg-002", "--grid", "4", "--columns", "2", "--out", str(grid), "--json"
    )
    info = json.loads(text)
    assert code == 0 and info["keys"] == ["vg-002", "vg-003", "vg-004", "vg-005"]  # across the shard boundary
    assert Image.open(grid).size == (info["width"], info["height"])
    code, text, _ = sgv(capsys, "render", str(i2d), "--grid", "3", "--out", str(tmp_path / "cc.png"))
    assert code == 0
    code, _, err = sgv(capsys, "render", str(ours), "--out", str(tmp_path / "x.png"))
    assert code == 2 and "KEY" in err


# -- stats --------------------------------------------------------------------------------------------------


def test_stats_counts_and_files(ours, tmp_path, capsys):
    code, out, _ = sgv(capsys, "stats", str(ours), "--out", str(tmp_path / "stats"), "--json")
    stats = json.loads(out)
    assert code == 0
    assert (stats["samples"], stats["triplets"], stats["vsg_captions"]) == (8, 8, 8)
    assert stats["relations"] == {"left of": 3, "above": 3, "next to": 2}
    assert stats["objects"] == {"ball": 8, "box": 8} and stats["attributes"] == {"red": 8}
    assert stats["triplets_per_image"]["histogram"] == {"1": 8}
    assert stats["caption_tokens"]["vsg"]["histogram"] == {"4": 3, "5": 5}  # "red box above ball" has 4
    assert all(v["match"] for k, v in stats["manifest_totals"].items() if k != "complete")
    assert json.loads((tmp_path / "stats" / "stats.json").read_text()) == stats
    for name in ("relations", "objects", "attributes", "triplets_per_image", "caption_tokens_vsg"):
        assert Image.open(tmp_path / "stats" / f"{name}.png").format == "PNG"
    code, out, _ = sgv(capsys, "stats", str(ours))
    assert "left of" in out and "manifest totals match: samples 8, triplets 8, vsg_captions 8" in out


def test_stats_pixel_mean_and_std_of_the_first_images(i2d, capsys):
    """Solid-colour images (20 i, 90, 160), i = 0, 1, 2: the moments over all their pixels."""
    code, out, _ = sgv(capsys, "stats", str(i2d), "--images", "3", "--json")
    pixels = json.loads(out)["pixels"]
    assert code == 0 and pixels["images"] == 3
    reds = [0, 20, 40]
    assert pixels["mean"] == pytest.approx([sum(reds) / 3 / 255, 90 / 255, 160 / 255], abs=0.01)
    assert pixels["std"] == pytest.approx([statistics.pstdev(reds) / 255, 0, 0], abs=0.01)
    code, out, _ = sgv(capsys, "stats", str(i2d), "--json")
    assert "pixels" not in json.loads(out)
    code, out, _ = sgv(capsys, "stats", str(i2d), "--images", "100")
    assert "pixels of 10 images" in out  # all there are


# -- img2dataset --------------------------------------------------------------------------------------------


def test_img2dataset_inspect_validate_show(i2d, capsys):
    code, out, _ = sgv(capsys, "inspect", str(i2d), "--json")
    report = json.loads(out)
    assert code == 0 and report["format"] == "webdataset"
    assert (report["shards"], report["samples"]) == (2, 10)
    assert sorted(report["extensions"]) == ["jpg", "json", "txt"]
    assert report["key_range"] == ["000000000", "000010004"]
    assert report["img2dataset"] == {
        "stats_files": 2,
        "count": 12,
        "successes": 10,
        "failed_to_download": 2,
        "failed_to_resize": 0,
        "parquet_files": 2,
        "parquet_rows": 12,
    }
    assert report["domains"] == {"img0.example.com": 6, "img1.example.com": 4}
    code, out, err = sgv(capsys, "validate", f"{i2d}/{{00000..00001}}.tar")
    assert (code, out) == (0, "") and "(webdataset)" in err
    code, out, _ = sgv(capsys, "show", str(i2d), "000010003")
    assert (
        code == 0 and "(in 00001.tar)" in out and "'a photo number 3'" in out and '"status": "success"' in out
    )


def test_img2dataset_validate_finds_problems(i2d, capsys):
    rewrite_shard(
        i2d / "00001.tar", lambda s: [s[0], (s[0][0], s[1][1]), *s[2:]]
    )  # 000010001 -> dup 000010000
    stats = json.loads((i2d / "00000_stats.json").read_text())
    (i2d / "00000_stats.json").write_text(json.dumps({**stats, "successes": 4}))
    code, out, _ = sgv(capsys, "validate", str(i2d))
    lines = out.splitlines()
    assert code == 1
    assert "00000.tar: holds 5 samples, its _stats.json says 4 successes" in lines
    assert "00001.tar: sample 000010000: duplicate key (first seen in 00001.tar)" in lines
    assert "00001.tar: sample 000010000: .json says key '000010001', the tar says '000010000'" in lines
    assert (
        "00001.tar: keys differ from its .parquet's successes: 1 missing ['000010001'], 0 not in the "
        "parquet []" in lines
    )


def test_fsspec_url(i2d):
    root = f"memory://sgv-tools-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    try:
        for path in sorted(i2d.iterdir()):
            fs.pipe(f"{root}/{path.name}".removeprefix("memory://"), path.read_bytes())
        shardset = resolve(f"{root}/")
        assert [s.name for s in shardset.shards] == ["00000.tar", "00001.tar"]
        assert all(s.url.startswith("memory://") and s.size for s in shardset.shards)
        report = validate_set(shardset)
        assert report.ok and report.samples == 10
    finally:
        fs.rm(root.removeprefix("memory://"), recursive=True)


# -- safety -------------------------------------------------------------------------------------------------


class _Payload:
    """Unpickling this creates a file: proof that a tool unpickled a member."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_hostile_names_and_pickles_are_reported_never_followed(tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    marker = tmp_path / "UNPICKLED"
    hostile = work / "hostile.tar"
    members = [
        ("../escaped.txt", b"x"),
        ("/abs/evil.txt", b"y"),
        ("dir/k.txt", b"z"),
        ("ok.txt", b"fine"),
        ("ok.pyd", pickle.dumps(_Payload(str(marker)))),
        ("ok.pth", b"PK\x03\x04 torch zip"),
    ]
    with tarfile.open(hostile, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code, out, _ = sgv(capsys, "validate", str(hostile))
    lines = out.splitlines()
    assert code == 1
    for name in ("../escaped.txt", "/abs/evil.txt", "dir/k.txt"):
        assert (
            f"hostile.tar: member name {name!r} is a path ('/' or '..'): names are data, this member is not "
            "read" in lines
        )
    assert (
        "warning: hostile.tar: sample ok: member .pyd holds pickled data: it is never unpickled, so it is "
        "not checked" in lines
    )
    code, out, _ = sgv(capsys, "show", str(hostile), "ok")
    assert code == 0 and ".pyd" in out and "REFUSED: pickled data: never unpickled" in out
    assert ".pth" in out and out.count("REFUSED") == 2
    for argv in (["inspect", str(hostile)], ["stats", str(hostile)], ["show", str(hostile), "ok", "--json"]):
        assert sgv(capsys, *argv)[0] == 0
    assert not marker.exists()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_progress_bar_off_when_not_a_terminal(capsys):
    assert progress_bar(10, "x").disable
    assert not progress_bar(10, "x", enabled=True).disable


def test_every_command_has_json_output(ours, tmp_path, capsys):
    for argv, field, value in (
        (["inspect", str(ours)], "format", "sgverbalise"),
        (["validate", str(ours)], "ok", True),
        (["show", str(ours), "vg-000"], "key", "vg-000"),
        (["render", str(ours), "vg-000", "--out", str(tmp_path / "r.png")], "keys", ["vg-000"]),
        (["stats", str(ours)], "format", "sgverbalise"),
    ):
        code, out, _ = sgv(capsys, *argv, "--json")
        assert code == 0 and json.loads(out)[field] == value, argv


# -- on a shard set written by the Beam job ---------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    from sgverbalise.pipelines.build_shards import run
    from sgverbalise.synth import synthesize

    root = tmp_path_factory.mktemp("built")
    synthesize(str(root / "corpus"), 40, seed=5, with_images=True, image_size=128)
    run(job_args(root / "corpus", root / "shards", samples_per_shard=16, val_fraction=0.25))
    return root / "shards"


@pytest.fixture
def built_copy(built, tmp_path) -> Path:
    out = tmp_path / "shards"
    shutil.copytree(built, out)
    return out



@pytest.mark.slow
def test_pipeline_set_validates_and_stats_match_the_manifest(built, tmp_path, capsys):
    manifest = json.loads((built / "manifest.json").read_text())
    code, out, _ = sgv(capsys, "validate", str(built))
    assert (code, out) == (0, "")
    stats = compute_stats(resolve(str(built)))
    totals = manifest["totals"]
    assert (stats["samples"], stats["triplets"], stats["vsg_captions"]) == (
        totals["samples"],
        totals["triplets"],
        totals["vsg_captions"],
    )
    samples = {k: json.loads(m["json"]) for p in sorted(built.rglob("*.tar")) for k, m in read_tar(p).items()}
    assert stats["relations"] == dict(
        sorted(
            Counter(t["predicate"] for s in samples.values() for t in s["triplets"]).items(),
            key=lambda kv: (-kv[1], kv[0]),
        )
    )
    assert stats["objects"] == dict(
        sorted(
            Counter(e["name"] for s in samples.values() for e in s["entities"]).items(),
            key=lambda kv: (-kv[1], kv[0]),
        )
    )
    assert sum(int(k) * v for k, v in stats["triplets_per_image"]["histogram"].items()) == totals["triplets"]
    assert [p.name for p in write_outputs(stats, tmp_path / "plots")][:2] == ["stats.json", "relations.png"]
    code, out, _ = sgv(capsys, "inspect", str(built), "--json")
    report = json.loads(out)
    assert report["samples"] == totals["samples"] and set(report["sources"]) == {"vg", "gqa"}
    assert {k: v["samples"] for k, v in report["splits"].items()} == {
        k: v["samples"] for k, v in manifest["splits"].items()
    }


@pytest.mark.slow
def test_pipeline_set_validate_finds_each_problem(built_copy, capsys):
    manifest = json.loads((built_copy / "manifest.json").read_text())
    train = [s["name"] for s in manifest["splits"]["train"]["shards"]]
    val = manifest["splits"]["val"]["shards"][0]["name"]
    # a truncated tar
    (built_copy / train[0]).write_bytes((built_copy / train[0]).read_bytes()[:5000])
    # a bad sample and a duplicate key (the first val key again) in the second train shard
    dup_key, dup_members = next(iter(read_tar(built_copy / val).items()))

    def spoil(samples):
        key, members = samples[0]
        sample = json.loads(members["json"])
        sample["source"] = "flickr"
        return [(key, {**members, "json": json.dumps(sample).encode()}), *samples[1:], (dup_key, dup_members)]

    rewrite_shard(built_copy / train[1], spoil)
    bad_key = next(iter(read_tar(built_copy / train[1])))
    # a sha256 mismatch in the manifest for the val shard
    entry = manifest["splits"]["val"]["shards"][0]
    entry["sha256"] = "0" * 64
    (built_copy / "manifest.json").write_text(json.dumps(manifest))
    code, out, _ = sgv(capsys, "validate", str(built_copy))
    lines = out.splitlines()
    assert code == 1
    assert any(line.startswith(f"{train[0]}: truncated") for line in lines), lines
    assert f"{train[1]}: sample {bad_key}: $.source: 'flickr' is not one of ['vg', 'gqa']" in lines
    assert f"{train[1]}: sample {bad_key}: $.key: '{bad_key}' does not match '^(vg|gqa)-[^./]+$'" not in lines
    assert f"{val}: sample {dup_key}: duplicate key (first seen in {train[1]})" in lines
    assert any(
        line.startswith(f"{val}: sha256 ") and line.endswith(f"the manifest's {'0' * 64}") for line in lines
    )


@pytest.mark.slow
def test_pipeline_sample_renders_boxes_in_place(built, tmp_path, capsys):
    manifest = json.loads((built / "manifest.json").read_text())
    shard = built / manifest["splits"]["train"]["shards"][0]["name"]
    key, members = next(
        (k, m) for k, m in read_tar(shard).items() if len(json.loads(m["json"])["entities"]) >= 2
    )
    sample = json.loads(members["json"])
    out = tmp_path / "r.png"
    code, _, _ = sgv(capsys, "render", str(built), key, "--out", str(out), "--size", "512")
    assert code == 0
    image = Image.open(out).convert("RGB")
    assert image == render_members(key, members, size=512)
    scale = 512 / max(sample["width"], sample["height"])
    hits = [
        edge_hits(image, e["box"], scale, PALETTE[n % len(PALETTE)]) for n, e in enumerate(sample["entities"])
    ]
    assert sum(h > 0.5 for h in hits) >= len(hits) - 1 and sum(hits) / len(hits) > 0.6, hits
