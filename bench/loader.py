"""The trainer's streaming loader against a tight decode-and-resize loop; the data wait of a training step.

``python -m bench.loader [--images 4000] [--jpeg-size 256] [--image-size 224] [--workers 2] [--steps 300]``

1. Generates (or reuses, cached by its arguments under ``--out``) img2dataset-style web shards of synthetic
   scenes (``sgverbalise.synth.web``) and a tokenizer trained on their captions.
2. ``loader``: one pass over the shards with ``build_loader`` (caption batches, ``--workers`` DataLoader
   workers, training transform: random resized crop to ``--image-size``, uint8 pixels, tokenised captions,
   collation), samples per second from the first request to the last batch.
3. ``tight loop``: the same shards split over the same number of processes (``multiprocessing``), each
   reading its tars and only decoding every JPEG (Pillow, with the loader's rule for decoding at a reduced
   scale: ``transforms.draft_scale`` of the whole image) and resizing it to ``--image-size`` (bicubic) into
   the same uint8 [3, H, W] pixels the loader makes (``transforms.to_pixels``), samples per second likewise.
   The goal: the loader reaches at least 0.9 of it. A second loop also stacks the pixels ``--batch`` at a
   time, as the loader's collation does. The three passes run one after the other ``--repeat`` times; each row
   reports its median pass (by samples/s), so a burst of another job on the shared machine skews one pass, not
   the comparison (every pass is in ``loader.json``).
4. ``data wait``: a tiny REALBEF (``configs/tiny-realbef.yaml``) trains ``--steps`` steps on scene-graph
   shards of the same kind of scenes plus the web shards, with ``--workers`` workers; the share of the step
   time spent waiting for the next batch (the first 20 steps, which include the workers' start, are left
   out; the total with them is reported too). The goal: under 5%.

Prints a Markdown table and writes ``OUT/loader.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import platform
import resource
import time
from pathlib import Path

WARM_STEPS = 20


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its children that have ended."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _rates(count: int, seconds: float, cpu: float) -> dict:
    return {
        "samples": count,
        "seconds": round(seconds, 3),
        "samples_per_s": round(count / seconds, 1),
        "cpu_ms_per_sample": round(1000 * cpu / count, 3),
    }


def web_corpus(out: Path, images: int, jpeg_size: int, seed: int) -> Path:
    """Cached web shards (img2dataset layout) and a tokenizer in ``tok/``."""
    from sgverbalise.synth.web import write_web_shards
    from sgverbalise.training.data.tokenizer import shard_texts, train_tokenizer

    root = out / f"loader-web{images}-px{jpeg_size}-seed{seed}"
    if not (root / "tok" / "tokenizer.json").is_file():
        write_web_shards(str(root / "web"), images, seed=seed, samples_per_shard=500, image_size=jpeg_size)
        train_tokenizer(shard_texts([str(root / "web")]), root / "tok", vocab_size=1000, min_frequency=1)
    return root


def scene_graph_corpus(out: Path, images: int, seed: int) -> Path:
    """Cached scene-graph shards (``build-shards`` on a synthetic corpus with images)."""
    from sgverbalise.pipelines.build_shards import run
    from sgverbalise.synth import synthesize

    root = out / f"loader-sg{images}-seed{seed}"
    if not (root / "sg" / "manifest.json").is_file():
        corpus = root / "corpus"
        synthesize(str(corpus), images, seed=seed, with_images=True, image_size=128)
        run([
            "--vg", str(corpus / "vg"), "--vg-images", str(corpus / "vg"),
            "--gqa", str(corpus / "gqa" / "train_sceneGraphs.json"),
            "--gqa-images", str(corpus / "gqa" / "images"),
            "--out", str(root / "sg"), "--samples-per-shard", "200", "--val-fraction", "0.1",
            "--vsg-attributes", "1", "--vocab-sources", "all",
        ])  # fmt: skip
    return root / "sg"


def _decode_resize(args: tuple[list[str], int, int]) -> int:
    """Worker of the tight loop: read the tars, decode and resize every JPEG into uint8 pixels (and, with
    ``batch`` > 0, stack them ``batch`` at a time, as the loader's collation does); returns the count."""
    import torch
    from PIL import Image

    from sgverbalise.shards import read_shard
    from sgverbalise.training.data.transforms import Crop, draft_scale, to_pixels

    urls, size, batch = args
    torch.set_num_threads(1)
    count, pending = 0, []
    for url in urls:
        for _, members in read_shard(url):
            with Image.open(io.BytesIO(members["jpg"])) as image:
                width, height = image.size
                scale = draft_scale(image, Crop(0, 0, width, height), size)
                box = (0, 0, width * scale, height * scale)
                pixels = to_pixels(image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC, box=box))
            if batch:
                pending.append(pixels)
                if len(pending) == batch:
                    torch.stack(pending)
                    pending = []
            count += 1
    return count


def tight_loop(urls: list[str], size: int, processes: int, batch: int = 0) -> dict:
    """Samples/s of decode + resize to pixels (+ stacking with ``batch``) over ``urls`` split across
    ``processes``."""
    parts = [(urls[w::processes], size, batch) for w in range(processes)]
    start, cpu = time.perf_counter(), cpu_seconds()
    with mp.get_context("fork").Pool(processes) as pool:
        count = sum(pool.map(_decode_resize, parts))
        seconds = time.perf_counter() - start
    return _rates(count, seconds, cpu_seconds() - cpu)  # the workers have ended: their CPU time is counted


def loader_pass(web: Path, tok: Path, size: int, batch: int, workers: int) -> dict:
    """Samples/s of one pass of ``build_loader`` over the web shards."""
    from sgverbalise.training.data import DataConfig, build_loader

    cfg = DataConfig(
        sources={"caption": [str(web)]},
        ratios={"caption": 1.0},
        batch_sizes={"caption": batch},
        image_size=size,
        resampled=False,
        num_workers=workers,
        tokenizer=str(tok),
    )
    loader = build_loader(cfg)
    start, cpu, count, first, seconds = time.perf_counter(), cpu_seconds(), 0, None, 0.0
    for b in loader:
        count += int(b["image"].shape[0])
        first = first if first is not None else time.perf_counter() - start
        seconds = time.perf_counter() - start  # the last batch (the workers are shut down after it)
    return {
        **_rates(count, seconds, cpu_seconds() - cpu),  # the loop has joined its workers
        "first_batch_s": round(first or 0.0, 3),
        "counters": loader.counters(),
    }


def median_pass(passes: list[dict]) -> dict:
    """The pass with the median samples/s (the lower middle one of an even count)."""
    return sorted(passes, key=lambda p: p["samples_per_s"])[(len(passes) - 1) // 2]


def data_wait(web: Path, sg: Path, tok: Path, out: Path, steps: int, workers: int) -> dict:
    """Data-wait share of tiny-REALBEF training steps with ``workers`` workers."""
    from sgverbalise.training.config import load_config
    from sgverbalise.training.loop import train

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(root / "configs" / "tiny-realbef.yaml", [
        f"data.sources.caption=[{web}]", f"data.sources.vsg=[{sg}]", f"data.sources.mrc=[{sg}]",
        f"data.tokenizer={tok}", f"train.out={out}", f"train.steps={steps}", f"train.ckpt_every={steps}",
        f"data.num_workers={workers}", f"data.epoch_batches={steps}", "train.progress=false",
        "train.tensorboard=false", "train.log_every=100000",
    ])  # fmt: skip
    train(cfg)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]

    def share(selected: list[dict]) -> float:
        total = sum(r["step_s"] for r in selected)
        return sum(r["step_s"] * r["data_wait"] for r in selected) / total

    steady = rows[WARM_STEPS:]
    return {
        "steps": len(rows),
        "data_wait_share": round(share(steady), 4),
        "data_wait_share_with_start": round(share(rows), 4),
        "step_ms": round(1000 * sum(r["step_s"] for r in steady) / len(steady), 2),
        "samples_per_s": round(sum(r["samples_per_s"] * r["step_s"] for r in steady)
                               / sum(r["step_s"] for r in steady), 1),
        "batch_sizes": cfg.data.batch_sizes,
        "image_size": cfg.data.image_size,
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the three measurements, print the table, write loader.json."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=4000, help="web samples to stream")
    parser.add_argument("--jpeg-size", type=int, default=256, help="side of the stored JPEGs")
    parser.add_argument("--image-size", type=int, default=224, help="side the loader and the loop resize to")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="loader workers = tight-loop processes")
    parser.add_argument("--steps", type=int, default=300, help="tiny-model training steps for the data wait")
    parser.add_argument("--sg-images", type=int, default=1000, help="scene-graph images for the training run")
    parser.add_argument("--repeat", type=int, default=3, help="passes of each of loop, loop + batches, loader")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench/out")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    root = web_corpus(out, args.images, args.jpeg_size, args.seed)
    from sgverbalise.training.data.sources import expand_urls

    urls = expand_urls(str(root / "web"))
    tight_loop(urls[:1], args.image_size, 1)  # warm the page cache
    passes: dict[str, list[dict]] = {"tight_loop": [], "tight_loop_with_batches": [], "loader": []}
    for _ in range(max(1, args.repeat)):  # interleaved, so the machine's load falls on all three alike
        passes["tight_loop"].append(tight_loop(urls, args.image_size, args.workers))
        passes["tight_loop_with_batches"].append(tight_loop(urls, args.image_size, args.workers, args.batch))
        passes["loader"].append(loader_pass(root / "web", root / "tok", args.image_size, args.batch, args.workers))
    loop, loop_batches, stream = (median_pass(passes[k]) for k in passes)
    sg = scene_graph_corpus(out, args.sg_images, args.seed)
    wait = data_wait(root / "web", sg, root / "tok", out / "loader-train", args.steps, args.workers)
    ratio = stream["samples_per_s"] / loop["samples_per_s"]
    result = {
        "args": vars(args),
        "tight_loop": loop,
        "tight_loop_with_batches": loop_batches,
        "loader": stream,
        "loader_vs_loop": round(ratio, 3),
        "passes": {k: [{"samples_per_s": p["samples_per_s"], "cpu_ms_per_sample": p["cpu_ms_per_sample"]}
                       for p in v] for k, v in passes.items()},
        "load_average": os.getloadavg(),
        "data_wait": wait,
        "machine": {
            "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()
        },
    }
    (out / "loader.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"| measurement ({args.workers} processes, {args.jpeg_size} px JPEGs -> {args.image_size} px; "
          f"median of {len(passes['loader'])} passes) | samples/s | CPU ms/sample | note |")
    print("|---|---:|---:|---|")
    print(f"| tight loop: read tar, decode, resize to uint8 pixels | {loop['samples_per_s']:,.0f} | "
          f"{loop['cpu_ms_per_sample']:.3f} | {loop['samples']} samples |")
    print(f"| tight loop + pixels stacked in batches | {loop_batches['samples_per_s']:,.0f} | "
          f"{loop_batches['cpu_ms_per_sample']:.3f} | "
          f"{loop_batches['samples_per_s'] / loop['samples_per_s']:.2f} of the loop |")
    print(f"| loader: + crop, tokenise, collate, to the main process | {stream['samples_per_s']:,.0f} | "
          f"{stream['cpu_ms_per_sample']:.3f} | {ratio:.2f} of the loop (goal >= 0.9); CPU time "
          f"{loop['cpu_ms_per_sample'] / stream['cpu_ms_per_sample']:.2f} of the loop's |")
    print(f"| tiny REALBEF training, {wait['steps']} steps | {wait['samples_per_s']:,.0f} | | data wait "
          f"{100 * wait['data_wait_share']:.1f}% of step time (goal < 5%; "
          f"{100 * wait['data_wait_share_with_start']:.1f}% with the first {WARM_STEPS} steps) |")
    return result


if __name__ == "__main__":
    main()
