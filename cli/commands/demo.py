"""``sgv demo``: the main job on its embedded default: a small synthetic VG + GQA corpus with images, through
``build-shards``, then the manifest summary and a few samples' VSG captions and triplets; it ends with a short
run of a tiny REALBEF (``configs/tiny-realbef.yaml``) on those shards mixed with a generated web shard."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from sgverbalise.verbalise import VSGConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="out/demo", help="folder for the corpus (corpus/) and shards (shards/)")
    parser.add_argument("--images", type=int, default=200, help="images in the generated corpus")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show", type=int, default=3, help="samples to print")
    parser.add_argument("--train-steps", type=int, default=40, help="steps of the tiny training (0: skip)")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from sgverbalise.pipelines.build_shards import run_config
    from sgverbalise.pipelines.options import BuildConfig
    from sgverbalise.shards import read_shard
    from sgverbalise.storage import absolute
    from sgverbalise.synth import synthesize

    out = Path(args.out)
    corpus, shards = out / "corpus", out / "shards"
    print(f"1. generating {args.images} images of synthetic scenes with their graphs in {corpus}")
    synthesize(str(corpus), args.images, seed=args.seed, with_images=True)
    print(f"2. build-shards -> {shards}")
    build = BuildConfig(
        out=str(shards), vg=str(corpus / "vg"), vg_images=(absolute(str(corpus / "vg")),),
        gqa=(str(corpus / "gqa" / "train_sceneGraphs.json"),), gqa_images=absolute(str(corpus / "gqa" / "images")),
        val_fraction=0.1, samples_per_shard=64, vsg=VSGConfig(seed=args.seed),
    )
    manifest = run_config(build, list(extra))
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
    if args.train_steps > 0:
        train_tiny(out, shards, args.train_steps, args.seed)
    return 0


TINY_CONFIG = "tiny-realbef.yaml"


def train_tiny(out: Path, shards: Path, steps: int, seed: int) -> None:
    """A tiny REALBEF trained for ``steps`` steps on the shards and a generated web shard; prints losses."""
    from sgverbalise.configs import config_path
    from sgverbalise.synth.web import write_web_shards
    from sgverbalise.training.config import load_config
    from sgverbalise.training.data.tokenizer import shard_texts, train_tokenizer
    from sgverbalise.training.loop import train

    web, tokenizer, run_dir = out / "web", out / "tokenizer", out / "train"
    print(f"\n4. a web shard in img2dataset's format -> {web}; a WordPiece tokenizer -> {tokenizer}")
    write_web_shards(str(web), 128, seed=seed, samples_per_shard=128, image_size=128)
    train_tokenizer(shard_texts([str(shards), str(web)]), tokenizer, vocab_size=1000, min_frequency=1)
    print(f"5. training a tiny REALBEF for {steps} steps on captions : MRC : VSG = 2 : 1 : 1 -> {run_dir}")
    cfg = load_config(config_path(TINY_CONFIG))
    cfg = replace(
        cfg,
        train=replace(cfg.train, out=str(run_dir), steps=steps, seed=seed, progress=False),
        data=replace(cfg.data, sources={"caption": [str(web)], "vsg": [str(shards)], "mrc": [str(shards)]},
                     tokenizer=str(tokenizer), seed=seed),
    )
    summary = train(cfg)
    for row in summary["history"]:
        if row["step"] % 5 == 0 or row["step"] == 1:
            parts = " ".join(f"{k} {v:.3f}" for k, v in row.items() if k not in ("step", "type", "loss"))
            print(f"  step {row['step']:3d} {row['type']:<7} loss {row['loss']:.3f}  ({parts})")
    print(f"Run folder: {run_dir} (config.yaml, metrics.jsonl, checkpoints {', '.join(_steps(run_dir))})")


def _steps(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.glob("step-*"))
