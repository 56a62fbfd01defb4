"""Held-out probe sets of shape scenes, written in the published formats the evaluation harness reads.

Layout under ``root`` (docs/evaluation.md)::

    vsr/random/{dev,test}.jsonl     VSR rows: image, caption, label (1 true, 0 false), relation, subj, obj
    valse/relations.json            VALSE's relations instrument: image_file, caption, foil, mturk, ...
    coco/karpathy_test.json         Karpathy format: images of split "test" (retrieval) and "val" (dev)
    coco/karpathy_dev.json          the same file again (the sweep's COCO dev selection signal)
    images/vsr/*.jpg, images/valse/relations/*.jpg, images/coco/probes/*.jpg
    probes.json                     what was written: sizes, seed, the held-out pairs

Every probe text names a held-out colour/shape pair (``heldout``) about an image that shows it, so neither
the image nor the combination was ever trained on. Captions use the words of the training texts,
``subject predicate object`` ("red triangle left of blue square"):

* VSR-style: each image gets a true caption and a false one about the same two objects (the opposite
  predicate, or subject and object swapped): a model that only recognises objects scores 50%.
* VALSE-style foils: the caption's predicate replaced by its opposite (``heldout.OPPOSITE``). Items cycle
  through the predicates of ``heldout.MUTUAL`` (on/under, left of/right of, above/below, bigger/smaller than),
  so each converse pair has as many items one way as the other and a model that prefers one word of a pair
  whatever the picture scores 50%; every example is valid (``mturk.caption`` = 3).
* Retrieval: two coarse captions per image that name objects, never relations ("a red triangle, a blue
  square and a green circle"; "photo of a red triangle and a green circle").
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

from sgverbalise.synth import Scene, render_scene, save_jpeg
from sgverbalise.synth.web import name_list

from .heldout import HELDOUT_LABELS, MUTUAL, OPPOSITE, false_variant, heldout_objects, probe_relation

PROBE_FILES = ("vsr/random/dev.jsonl", "vsr/random/test.jsonl", "valse/relations.json",
               "coco/karpathy_test.json", "coco/karpathy_dev.json")


@dataclass(frozen=True)
class ProbeSizes:
    """Images per probe set (VSR has two captions per image; retrieval two sentences per image)."""

    vsr_dev: int = 150
    vsr_test: int = 250
    valse: int = 300
    retrieval_test: int = 100
    retrieval_dev: int = 100


def _rng(seed: int, suite: str, index: int) -> random.Random:
    return random.Random(f"sgv-experiment-probe:{seed}:{suite}:{index}")


def _save(scene: Scene, rng: random.Random, path: Path) -> None:
    save_jpeg(render_scene(scene, noise_seed=rng.getrandbits(32)), path)


def _dump_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))


def _dump_json(path: Path, doc: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")


def vsr_rows(root: Path, split: str, n: int, seed: int, size: int) -> list[dict]:
    """``n`` images, each with a true and a false caption; images saved under ``images/vsr/``."""
    rows = []
    for i in range(n):
        rng = _rng(seed, f"vsr-{split}", i)
        scene, relation = probe_relation(rng, size)
        name = f"{split}-{i:06d}.jpg"
        _save(scene, rng, root / "images" / "vsr" / name)
        false = false_variant(rng, relation)
        pair = [(relation, 1), (false, 0)]
        rng.shuffle(pair)
        for (s, predicate, o), label in pair:
            caption = scene.statement((s, predicate, o))
            rows.append({"image": name, "image_link": f"https://images.invalid/vsr/{name}",
                         "caption": caption, "label": label, "relation": predicate,
                         "subj": scene.objects[s].label, "obj": scene.objects[o].label})
    return rows


def valse_examples(root: Path, n: int, seed: int, size: int) -> dict[str, dict]:
    """VALSE's relations instrument: caption and a foil with the opposite predicate, keyed by index; item ``i``
    is about ``MUTUAL[i % 8]``."""
    out = {}
    for i in range(n):
        rng = _rng(seed, "valse", i)
        scene, relation = probe_relation(rng, size, MUTUAL[i % len(MUTUAL)])
        s, predicate, o = relation
        name = f"relations-{i:06d}.jpg"
        _save(scene, rng, root / "images" / "valse" / "relations" / name)
        out[str(i)] = {
            "dataset": "synthetic", "original_split": "test", "dataset_idx": str(i), "image_file": name,
            "caption": scene.statement(relation), "foil": scene.statement((s, OPPOSITE[predicate], o)),
            "classes": predicate, "classes_foil": OPPOSITE[predicate], "foiling_method": "opposite relation",
            "mturk": {"foil": 0, "caption": 3, "other": 0},
        }
    return out


def coarse_captions(scene: Scene, rng: random.Random) -> list[str]:
    """Two captions that name objects, never relations: all of them in reading order, then a held-out one
    with one other."""
    order = sorted(range(len(scene.objects)), key=lambda i: (scene.objects[i].y, scene.objects[i].x))
    held = heldout_objects(scene)[0]
    other = rng.choice([i for i in order if i != held]) if len(order) > 1 else held
    pair = sorted({held, other})
    return [name_list([scene.objects[i].label for i in order]),
            "photo of " + name_list([scene.objects[i].label for i in pair])]


def karpathy_images(root: Path, split: str, n: int, seed: int, size: int, start: int) -> list[dict]:
    """``n`` Karpathy-format image entries of ``split`` with two coarse sentences each."""
    images = []
    for i in range(n):
        rng = _rng(seed, f"retrieval-{split}", i)
        scene, _ = probe_relation(rng, size)
        name = f"{split}-{i:06d}.jpg"
        _save(scene, rng, root / "images" / "coco" / "probes" / name)
        sentences = [{"raw": text, "tokens": text.replace(",", "").split(), "imgid": start + i,
                      "sentid": 2 * (start + i) + k} for k, text in enumerate(coarse_captions(scene, rng))]
        images.append({"filepath": "probes", "filename": name, "imgid": start + i, "split": split,
                       "cocoid": start + i, "sentids": [s["sentid"] for s in sentences],
                       "sentences": sentences})
    return images


def write_probes(
    root: str | Path, sizes: ProbeSizes = ProbeSizes(), seed: int = 0, image_size: int = 128
) -> dict:
    """Write every probe set under ``root``; returns (and writes as ``probes.json``) a summary."""
    root = Path(root)
    counts = {}
    for split, n in (("dev", sizes.vsr_dev), ("test", sizes.vsr_test)):
        rows = vsr_rows(root, split, n, seed, image_size)
        _dump_jsonl(root / "vsr" / "random" / f"{split}.jsonl", rows)
        counts[f"vsr_{split}"] = len(rows)
    valse = valse_examples(root, sizes.valse, seed, image_size)
    _dump_json(root / "valse" / "relations.json", valse)
    counts["valse"] = len(valse)
    test = karpathy_images(root, "test", sizes.retrieval_test, seed, image_size, 0)
    dev = karpathy_images(root, "val", sizes.retrieval_dev, seed, image_size, sizes.retrieval_test)
    karpathy = {"dataset": "coco", "images": test + dev}
    _dump_json(root / "coco" / "karpathy_test.json", karpathy)
    _dump_json(root / "coco" / "karpathy_dev.json", karpathy)
    counts |= {"retrieval_test_images": len(test), "retrieval_dev_images": len(dev)}
    summary = {"seed": seed, "image_size": image_size, "sizes": asdict(sizes), "counts": counts,
               "heldout_pairs": sorted(HELDOUT_LABELS), "files": list(PROBE_FILES)}
    _dump_json(root / "probes.json", summary)
    return summary
