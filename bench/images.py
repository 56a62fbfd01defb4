"""The image stage alone: ``prepare_image`` in a Beam pipeline against a tight Pillow loop on the same files.

``python -m bench.images [--images 2000] [--image-size 512] [--max-side 128] [--workers 2] [--repeat 1]
[--out bench/out]`` generates (or reuses, cached by its arguments under ``--out``) a synthetic VG corpus with
JPEGs of ``image-size`` pixels, then runs, each in a fresh subprocess and for both image modes (downscale to
``--max-side``, and pass-through):

- ``beam``: the file list | Reshuffle | read + ``sgverbalise.images.prepare_image`` in a DoFn, on the job's
  runner (DirectRunner, multi_processing, ``--workers`` workers), each output image reduced to its sha256;
- ``pool``: a ``multiprocessing.Pool`` of ``--workers`` processes over the same files running the same
  Pillow calls inline (open, ``draft``, convert, bicubic resize, JPEG encode; pass-through: the 1/8-scale
  draft decode);
- ``loop``: that loop in one process (how far two processes get).

Times run from building the pipeline (creating the pool) to its end, so worker start-up counts; interpreter
start-up and imports do not. Each run is repeated on the first ``2 * workers`` files only: that time is the
fixed cost (start-up), and ``(N - 2 * workers) / (wall - fixed)`` the images/s after start-up. Every run
must produce the same images: the sha256s are compared. Prints a Markdown table and writes
``OUT/images.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from bench.read_json import corpus_for

RUNS = {
    "beam": "prepare_image in Beam (DirectRunner, {w} workers)",
    "pool": "Pillow loop, multiprocessing.Pool({w})",
    "loop": "Pillow loop, 1 process",
}
IMAGE_MODES = ("resize", "passthrough")


def image_corpus(out: Path, images: int, seed: int, size: int) -> tuple[Path, list[Path], float | None]:
    """The corpus with images cached for these arguments (generated when absent), its JPEGs, the
    generation time (None when reused)."""
    corpus, _, took = corpus_for(out, images, seed, with_images=True, image_size=size)
    return corpus, sorted((corpus / "vg").rglob("*.jpg")), took


def _target_size(width: int, height: int, max_side: int | None) -> tuple[int, int] | None:
    if not max_side or max(width, height) <= max_side:
        return None
    ratio = max_side / max(width, height)
    return max(1, round(width * ratio)), max(1, round(height * ratio))


def pillow_image(job: tuple[str, int | None, int]) -> tuple[str, str]:
    """The baseline for one file: Pillow's calls inline, no checks; returns (path, sha256 of the output)."""
    from PIL import Image

    path, max_side, quality = job
    with open(path, "rb") as f:
        data = f.read()
    im = Image.open(io.BytesIO(data))
    width, height = im.size
    target = _target_size(width, height, max_side)
    if target is None:
        im.draft("RGB", (max(1, width // 8), max(1, height // 8)))
        im.load()
        out = data
    else:
        im.draft("RGB", target)
        im = im.convert("RGB")
        if im.size != target:
            im = im.resize(target, Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality)
        out = buf.getvalue()
    return path, hashlib.sha256(out).hexdigest()


def _run_beam(paths: list[str], max_side: int | None, workers: int, result: Path) -> None:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.options import beam_args
    from sgverbalise.images import ImageConfig, prepare_image, read_first

    cfg = ImageConfig(max_side=max_side)

    def prepare(path: str) -> tuple[str, str]:
        url, data = read_first([path])
        return path, hashlib.sha256(prepare_image(data, url, cfg).data).hexdigest()

    def write(pairs: list[tuple[str, str]]) -> None:
        result.write_text(json.dumps(sorted(pairs)))

    options = PipelineOptions(beam_args([f"--direct_num_workers={workers}"]))
    with beam.Pipeline(options=options) as p:
        _ = (p | beam.Create(paths) | beam.Reshuffle() | "Prepare" >> beam.Map(prepare)
             | beam.combiners.ToList() | beam.Map(write))


def _child(run: str, image_mode: str, files: Path, max_side: int, workers: int, limit: int | None) -> dict:
    """One run (in the measured subprocess): its time and a digest of all its output images."""
    paths = json.loads(files.read_text())[:limit]
    side = max_side if image_mode == "resize" else None
    start = time.perf_counter()
    if run == "beam":
        result = files.with_suffix(f".{image_mode}.beam.json")
        _run_beam(paths, side, workers, result)
        pairs = json.loads(result.read_text())
        result.unlink()
    elif run == "pool":
        import multiprocessing

        with multiprocessing.Pool(workers) as pool:
            pairs = pool.map(pillow_image, [(p, side, 90) for p in paths], chunksize=16)
    else:
        pairs = [pillow_image((p, side, 90)) for p in paths]
    wall = time.perf_counter() - start
    digest = hashlib.sha256(json.dumps(sorted(map(list, pairs))).encode()).hexdigest()
    return {"run": run, "image_mode": image_mode, "images": len(pairs), "wall_s": wall,
            "images_per_s": len(pairs) / wall, "digest": digest}


def _measure(run: str, image_mode: str, files: Path, max_side: int, workers: int, log: Path,
             limit: int | None = None) -> dict:
    """One run in a fresh interpreter (over the first ``limit`` files when given)."""
    cmd = [sys.executable, "-m", "bench.images", "--child", run, "--image-mode", image_mode,
           "--files", str(files), "--max-side", str(max_side), "--workers", str(workers)]
    if limit is not None:
        cmd += ["--limit", str(limit)]
    with open(log, "ab") as err:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err,
                              cwd=Path(__file__).resolve().parents[1])
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {proc.returncode}; see {log}")
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def _table(results: list[dict], workers: int, max_side: int, size: int) -> str:
    lines = ["| image mode | run | images | wall (s) | images/s | vs Pool | start-up (s) | "
             "images/s after start-up | vs Pool |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    pool = {r["image_mode"]: r for r in results if r["run"] == "pool"}
    for r in results:
        base = pool.get(r["image_mode"])
        ratio = f"{r['images_per_s'] / base['images_per_s']:.2f}" if base else ""
        steady = f"{r['steady_images_per_s'] / base['steady_images_per_s']:.2f}" if base else ""
        mode = f"resize {size} px to {max_side}" if r["image_mode"] == "resize" else "pass-through"
        lines.append(f"| {mode} | {RUNS[r['run']].format(w=workers)} | {r['images']:,} | {r['wall_s']:.2f} | "
                     f"{r['images_per_s']:,.0f} | {ratio} | {r['fixed_s']:.2f} | "
                     f"{r['steady_images_per_s']:,.0f} | {steady} |")
    notes = []
    for image_mode in IMAGE_MODES:
        runs = {r["run"]: r for r in results if r["image_mode"] == image_mode}
        if "beam" in runs and "pool" in runs:
            beam, pool_run = runs["beam"], runs["pool"]
            for label, key in (("end to end", "images_per_s"), ("after start-up", "steady_images_per_s")):
                ratio = beam[key] / pool_run[key]
                notes.append(f"{image_mode}: Beam / Pool images/s {label} {ratio:.2f} (goal: at least 0.8: "
                             f"{'met' if ratio >= 0.8 else 'missed'})")
        digests = {r["digest"] for r in runs.values()}
        if len(runs) > 1:
            same = "identical (same sha256 per image)" if len(digests) == 1 else "DIFFER"
            notes.append(f"{image_mode}: outputs {same}")
    return "\n".join(lines) + "\n\n" + "\n".join(notes)


def main(argv: list[str] | None = None) -> int:
    """Generate or reuse the image corpus, run each (run, image mode) in its own subprocess, report."""
    parser = argparse.ArgumentParser(prog="python -m bench.images", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=512, help="longer side of the generated JPEGs")
    parser.add_argument("--max-side", type=int, default=128, help="downscale target of the resize mode")
    parser.add_argument("--workers", type=int, default=2, help="Beam workers and Pool processes")
    parser.add_argument("--repeat", type=int, default=1,
                        help="process the file list this many times (a longer run without a larger corpus)")
    parser.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated, of {', '.join(RUNS)}")
    parser.add_argument("--image-modes", default=",".join(IMAGE_MODES),
                        help="comma-separated: resize,passthrough")
    parser.add_argument("--out", default="bench/out", help="cache of corpora and the results file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=RUNS, help=argparse.SUPPRESS)
    parser.add_argument("--image-mode", choices=IMAGE_MODES, help=argparse.SUPPRESS)
    parser.add_argument("--files", help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.image_mode, Path(args.files), args.max_side, args.workers,
                                 args.limit)))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    corpus, jpegs, generation_s = image_corpus(out, args.images, args.seed, args.image_size)
    if generation_s is not None:
        print(f"corpus generated in {generation_s:.1f} s", file=sys.stderr)
    files = out / f"images-{corpus.name}.files.json"
    files.write_text(json.dumps([str(p.resolve()) for p in jpegs] * args.repeat))
    log = out / "images.log"
    log.unlink(missing_ok=True)
    results = []
    for image_mode in args.image_modes.split(","):
        for run in args.runs.split(","):
            print(f"running {run}, {image_mode} ...", file=sys.stderr, flush=True)
            few = 2 * args.workers
            fixed = _measure(run, image_mode, files, args.max_side, args.workers, log, limit=few)
            r = _measure(run, image_mode, files, args.max_side, args.workers, log)
            spent = r["wall_s"] - fixed["wall_s"]
            steady = (r["images"] - few) / spent if spent > 0 else float("nan")
            results.append(dict(r, fixed_s=fixed["wall_s"], steady_images_per_s=steady))
    report = {
        "benchmark": "images",
        "args": {k: v for k, v in vars(args).items() if k not in ("child", "image_mode", "files")},
        "corpus": {"dir": str(corpus), "jpegs": len(jpegs),
                   "jpeg_bytes": sum(p.stat().st_size for p in jpegs), "generation_s": generation_s},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "results": results,
    }
    (out / "images.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(_table(results, args.workers, args.max_side, args.image_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
