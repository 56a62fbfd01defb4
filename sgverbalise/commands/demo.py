"""``sgv demo``: the main job on its embedded default: a small synthetic VG + GQA corpus with images, through
``build-shards``, then the manifest summary and a few samples' VSG captions and triplets."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="out/demo", help="folder for the corpus (corpus/) and shards (shards/)")
    parser.add_argument("--images", type=int, default=200, help="images in the generated corpus")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show", type=int, default=3, help="samples to print")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from pipelines.build_shards import run
    from pipelines.finalise import summarise
    from sgverbalise.shards import read_shard
    from sgverbalise.synth import synthesize

    out = Path(args.out)
    corpus, shards = out / "corpus", out / "shards"
    print(f"1. generating {args.images} images of synthetic scenes with their graphs in {corpus}")
    synthesize(str(corpus), args.images, seed=args.seed, with_images=True)
    print(f"2. build-shards -> {shards}")
    manifest = run([
        "--vg", str(corpus / "vg"), "--vg-images", str(corpus / "vg"),
        "--gqa", str(corpus / "gqa" / "train_sceneGraphs.json"), "--gqa-images", str(corpus / "gqa" / "images"),
        "--out", str(shards), "--val-fraction", "0.1", "--samples-per-shard", "64", "--seed", str(args.seed),
        *extra,
    ])
    print(summarise(manifest))
    first = manifest["splits"]["train"]["shards"][0]["name"]
    print(f"3. the first {args.show} samples of {first}:")
    for n, (key, members) in enumerate(read_shard(str(shards / first))):
        if n >= args.show:
            break
        sample = json.loads(members["json"])
        print(f"\n{key} ({sample['width']}x{sample['height']}, {len(members.get('jpg', b''))} bytes of JPEG)")
        for caption in sample["vsg"]:
            print(f"  VSG: {caption}")
        for t in sample["triplets"][:4]:
            print(f"  MRC: {t['subject']} --{t['predicate']} (id {t['relation_id']})--> {t['object']}  "
                  f"boxes {t['subject_box']} {t['object_box']}")
    print(f"\nOutput: {shards}/manifest.json, {shards}/train/, {shards}/val/, relations.json, rejects/")
    return 0
