"""The image stage of the shard job against a tight Pillow loop on the same files and cores.

``python -m bench.images [--images 20000] [--image-size 512] [--max-side 128] [--workers 2] [--trials 5]
[--image-modes resize,passthrough] [--out bench/out]`` generates (or reuses, cached by its arguments under
``--out``) a synthetic VG corpus with JPEGs of ``image-size`` pixels, then runs, each in a fresh subprocess:

- ``graphs``: ``build-shards`` on the corpus without images (the sizes come from image_data.json);
- ``job``: the same with ``--vg-images`` for each image mode (pass-through, or ``--max-image-side``): the
  image stage is the time and CPU this run takes over ``graphs``: finding, reading and checking every image
  (the 1/8-scale draft decode), resizing and re-encoding it, carrying it to its shard and writing it;
- ``pool``: a ``multiprocessing.Pool`` of ``--workers`` processes running the same Pillow calls inline on the
  same files (open, ``draft``, convert, bicubic resize, JPEG encode; pass-through: the draft decode) and
  writing nothing;
- ``loop``: that loop in one process.

Each job runs on the job's default runner (DirectRunner, multi_processing, ``--workers`` workers); wall time
is from the start of the job to its end (runner start-up included), CPU time is that of the process and all
its children (the SDK workers), peak memory that of the process tree. Each run is repeated ``--trials`` times,
in rounds of every run once, one round after the other. The image stage's rate is given two ways: from the wall
time it adds (which credits images processed while a core would otherwise idle) and from the CPU time it adds
per image against the Pool's CPU time per image (what the rates come to when the cores are saturated). Both are
taken within each round (job with images minus graphs only, against that round's Pool), so that a change in
the machine's speed between rounds weighs on both sides of a comparison alike; the figure is the median over
rounds (the rounds' range is shown too), and the goal (at least 0.8 of the Pool) is judged on the medians of
both. The other rows give each run's median. A one-process timing of each image step on the first 2,000 files
says where the difference goes. The images the job wrote (read back from its shards)
must be those the Pool made: the sha256s are compared. Prints a Markdown table and writes
``OUT/images.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from bench.build_shards import TreeSampler
from bench.loader import cpu_seconds
from bench.read_json import corpus_for

IMAGE_MODES = ("resize", "passthrough")
RUNS = ("job", "pool", "loop")


def image_corpus(out: Path, images: int, seed: int, size: int) -> tuple[Path, list[Path], float | None]:
    """The corpus with images cached for these arguments (generated when absent), its JPEGs, the
    generation time (None when reused)."""
    corpus, _, took = corpus_for(out, images, seed, with_images=True, image_size=size)
    return corpus, sorted((corpus / "vg").rglob("*.jpg")), took


def pillow_image(job: tuple[str, int | None, int]) -> str:
    """The baseline for one file: Pillow's calls inline, no checks; returns the sha256 of the output."""
    from PIL import Image

    from sgverbalise.images import target_size

    path, max_side, quality = job
    with open(path, "rb") as f:
        data = f.read()
    im = Image.open(io.BytesIO(data))
    width, height = im.size
    target = target_size(width, height, max_side)
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
    return hashlib.sha256(out).hexdigest()


def _digest(shas: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(shas)).encode()).hexdigest()


def shard_image_digest(out: Path) -> tuple[int, str]:
    """The number of .jpg members in the shards under ``out`` and a digest of their sha256s."""
    shas = []
    for shard in sorted(out.rglob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                if member.name.endswith(".jpg"):
                    shas.append(hashlib.sha256(tar.extractfile(member).read()).hexdigest())
    return len(shas), _digest(shas)


def job_argv(corpus: Path, out: Path, image_mode: str | None, max_side: int, workers: int) -> list[str]:
    argv = ["--vg", str(corpus / "vg"), "--out", str(out), "--val-fraction", "0.05",
            "--samples-per-shard", "1000", f"--direct_num_workers={workers}"]
    if image_mode is not None:
        argv += ["--vg-images", str(corpus / "vg")]
    if image_mode == "resize":
        argv += ["--max-image-side", str(max_side)]
    return argv


def _child(run: str, image_mode: str | None, files: Path, argv: list[str], max_side: int, workers: int) -> dict:
    """One run (in the measured subprocess): wall and CPU time, and a digest of its output images."""
    start, cpu = time.perf_counter(), cpu_seconds()
    if run == "job":
        from sgverbalise.pipelines.build_shards import run as build_shards

        build_shards(argv)
        wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
        images, digest = shard_image_digest(Path(argv[argv.index("--out") + 1]))
        return {"wall_s": wall, "cpu_s": cpu, "images": images, "digest": digest}
    paths = json.loads(files.read_text())
    side = max_side if image_mode == "resize" else None
    if run == "pool":
        import multiprocessing

        with multiprocessing.Pool(workers) as pool:
            shas = pool.map(pillow_image, [(p, side, 90) for p in paths], chunksize=16)
    else:
        shas = [pillow_image((p, side, 90)) for p in paths]
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    return {"wall_s": wall, "cpu_s": cpu, "images": len(shas), "digest": _digest(shas)}


def _measure(run: str, image_mode: str | None, files: Path, argv: list[str], max_side: int, workers: int,
             log: Path) -> dict:
    """One run in a fresh interpreter, with the peak memory of its process tree."""
    cmd = [sys.executable, "-m", "bench.images", "--child", run, "--files", str(files), "--max-side",
           str(max_side), "--workers", str(workers)]
    if image_mode is not None:
        cmd += ["--image-mode", image_mode]
    cmd += ["--", *argv]
    with open(log, "ab") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, cwd=Path(__file__).resolve().parents[1])
        sampler = TreeSampler(proc.pid)
        sampler.start()
        out = proc.stdout.read() if proc.stdout else b""
        proc.wait()
        sampler.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {proc.returncode}; see {log}")
    return dict(json.loads(out.decode().strip().splitlines()[-1]), tree_peak_rss_mb=round(sampler.peak_kb / 1024))


def _median(trials: list[dict]) -> dict:
    """A run's trials summed up: median wall and CPU time, every trial's, the highest peak memory; the trials
    must agree on their output."""
    digests = {r["digest"] for r in trials}
    if len(digests) != 1:
        raise RuntimeError(f"the trials of one run wrote different images: {sorted(digests)}")
    return dict(trials[0], wall_s=statistics.median(r["wall_s"] for r in trials),
                cpu_s=statistics.median(r["cpu_s"] for r in trials),
                tree_peak_rss_mb=max(r["tree_peak_rss_mb"] for r in trials),
                trials_wall_s=[round(r["wall_s"], 2) for r in trials],
                trials_cpu_s=[round(r["cpu_s"], 2) for r in trials])


def image_stage(jobs: list[dict], graphs: list[dict], pools: list[dict], images: int, workers: int) -> dict:
    """What the images add to the job, round by round (the i-th trial of each run is round i): seconds and CPU
    seconds, and their ratio to the same round's Pool, as images/s (from the wall time added; from the CPU time
    added per image against the Pool's). Medians over the rounds, and each round's ratios."""
    walls = [j["wall_s"] - g["wall_s"] for j, g in zip(jobs, graphs, strict=True)]
    cpus = [j["cpu_s"] - g["cpu_s"] for j, g in zip(jobs, graphs, strict=True)]
    by_wall = [p["wall_s"] / w if w > 0 else float("nan") for p, w in zip(pools, walls, strict=True)]
    by_cpu = [p["cpu_s"] / c if c > 0 else float("nan") for p, c in zip(pools, cpus, strict=True)]
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    return {"wall_s": wall, "cpu_s": cpu, "images_per_s": images / wall if wall > 0 else float("nan"),
            "cpu_ms_per_image": 1000 * cpu / images, "images_per_s_at_full_cores": workers * images / cpu,
            "vs_pool_wall": statistics.median(by_wall), "vs_pool_cpu": statistics.median(by_cpu),
            "rounds_vs_pool_wall": [round(r, 3) for r in by_wall],
            "rounds_vs_pool_cpu": [round(r, 3) for r in by_cpu]}


def breakdown(paths: list[str], root: str, max_side: int | None) -> dict[str, float]:
    """Microseconds per image of each image step of the job, timed in this process over ``paths`` (under
    ``root``), next to the Pool's inline Pillow calls on the same files."""
    import tempfile

    from sgverbalise.images import ImageConfig, ImageRef, candidate_urls, prepare_image, read_first
    from sgverbalise.shards import write_shard

    cfg = ImageConfig(max_side=max_side)
    rel = [os.path.relpath(p, root) for p in paths]
    out: dict[str, float] = {}

    def timed(name: str, fn):
        start = time.perf_counter()
        values = [fn(i) for i in range(len(paths))]
        out[name] = 1e6 * (time.perf_counter() - start) / len(paths)
        return values

    timed("pillow_loop", lambda i: pillow_image((paths[i], max_side, 90)))
    found = timed("find_and_read", lambda i: read_first(candidate_urls([root], rel[i])))
    images = timed("check_and_prepare", lambda i: prepare_image(found[i][1], found[i][0], cfg))
    if max_side is None:
        refs = timed("reference", lambda i: ImageRef.of(found[i][0], found[i][1]))
        timed("read_again_and_verify", lambda i: refs[i].load())
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_shard(f"{tmp}/a.tar", ((f"k{i}", {"jpg": im.data, "json": b"{}"}) for i, im in enumerate(images)))
        with_images = time.perf_counter() - start
        start = time.perf_counter()
        write_shard(f"{tmp}/b.tar", ((f"k{i}", {"json": b"{}"}) for i in range(len(images))))
        out["write_into_shard"] = 1e6 * (with_images - (time.perf_counter() - start)) / len(paths)
    return {k: round(v) for k, v in out.items()}


def _table(results: dict, args: argparse.Namespace) -> str:
    graphs = results["graphs"]
    lines = [
        "| image mode | run | images | wall (s) | CPU (s) | CPU ms/image | images/s | vs Pool | peak RSS (MiB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| none | build-shards, graphs only | 0 | {graphs['wall_s']:.1f} | {graphs['cpu_s']:.1f} | | | | "
        f"{graphs['tree_peak_rss_mb']:,} |",
    ]
    notes = []
    for mode in args.image_modes.split(","):
        r = results[mode]
        job, stage, pool, loop = r["job"], r["stage"], r["pool"], r["loop"]
        n = pool["images"]
        pool_rate = n / pool["wall_s"]
        label = f"resize {args.image_size} px to {args.max_side}" if mode == "resize" else "pass-through"
        # vs Pool: the stage's rows show the median of the rounds' ratios (rates from wall time against the Pool's
        # wall-time rate, from CPU time against its CPU time), the runs' rows the ratio of their median rates
        rows = [
            ("build-shards with images", job["wall_s"], job["cpu_s"], None, None, None, job["tree_peak_rss_mb"]),
            ("image stage of the job: wall added", stage["wall_s"], None, None, stage["images_per_s"],
             stage["vs_pool_wall"], None),
            (f"image stage of the job: CPU added, over {args.workers} cores", None, stage["cpu_s"],
             stage["cpu_ms_per_image"], stage["images_per_s_at_full_cores"], stage["vs_pool_cpu"], None),
            (f"Pillow loop, multiprocessing.Pool({args.workers})", pool["wall_s"], pool["cpu_s"],
             1000 * pool["cpu_s"] / n, pool_rate, 1.0, pool["tree_peak_rss_mb"]),
            ("Pillow loop, 1 process", loop["wall_s"], loop["cpu_s"], 1000 * loop["cpu_s"] / n, n / loop["wall_s"],
             n / loop["wall_s"] / pool_rate, loop["tree_peak_rss_mb"]),
        ]

        def cell(value, fmt: str) -> str:
            return "" if value is None else format(value, fmt)

        for name, wall, cpu, per_image, rate, vs, rss in rows:
            lines.append(f"| {label} | {name} | {n:,} | {cell(wall, '.1f')} | {cell(cpu, '.1f')} | "
                         f"{cell(per_image, '.2f')} | {cell(rate, ',.0f')} | {cell(vs, '.2f')} | {cell(rss, ',')} |")
        ratios = {"wall time added": (stage["vs_pool_wall"], stage["rounds_vs_pool_wall"]),
                  "CPU added": (stage["vs_pool_cpu"], stage["rounds_vs_pool_cpu"])}
        for how, (ratio, rounds) in ratios.items():
            notes.append(f"{mode}: image stage from the {how} / Pool, median of {len(rounds)} rounds: {ratio:.3f} "
                         f"(rounds: {', '.join(f'{r:.2f}' for r in rounds)}; goal: at least 0.8: "
                         f"{'met' if ratio >= 0.8 else 'missed'})")
        same = "identical to the Pool's" if job["digest"] == pool["digest"] else "DIFFERENT from the Pool's"
        notes.append(f"{mode}: the {job['images']:,} images the job wrote are {same}")
        notes.append(f"{mode}: us per image, one process: {json.dumps(r['breakdown'])}")
    return "\n".join(lines) + "\n\n" + "\n".join(notes)


def main(argv: list[str] | None = None) -> int:
    """Generate or reuse the image corpus, run each measurement in its own subprocess, report."""
    parser = argparse.ArgumentParser(prog="python -m bench.images", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--image-size", type=int, default=512, help="longer side of the generated JPEGs")
    parser.add_argument("--max-side", type=int, default=128, help="downscale target of the resize mode")
    parser.add_argument("--workers", type=int, default=2, help="Beam workers and Pool processes")
    parser.add_argument("--trials", type=int, default=5, help="rounds of every measurement; medians are reported")
    parser.add_argument("--image-modes", default=",".join(IMAGE_MODES), help="comma-separated: resize,passthrough")
    parser.add_argument("--out", default="bench/out", help="cache of corpora and the results file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=RUNS, help=argparse.SUPPRESS)
    parser.add_argument("--image-mode", choices=IMAGE_MODES, help=argparse.SUPPRESS)
    parser.add_argument("--files", help=argparse.SUPPRESS)
    parser.add_argument("job_args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.image_mode, Path(args.files), args.job_args, args.max_side,
                                args.workers)))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    corpus, jpegs, generation_s = image_corpus(out, args.images, args.seed, args.image_size)
    if generation_s is not None:
        print(f"corpus generated in {generation_s:.1f} s", file=sys.stderr)
    files = out / f"images-{corpus.name}.files.json"
    files.write_text(json.dumps([str(p.resolve()) for p in jpegs]))
    log = out / "images.log"
    log.unlink(missing_ok=True)
    shards = out / "images-job"

    # every run once per round, the rounds one after the other: each comparison is made under the same load
    modes = args.image_modes.split(",")
    plan = [("job", None)] + [(run, mode) for mode in modes for run in RUNS]
    trials: dict[tuple[str, str | None], list[dict]] = {key: [] for key in plan}
    for round_ in range(1, args.trials + 1):
        for run, mode in plan:
            shutil.rmtree(shards, ignore_errors=True)
            jargv = job_argv(corpus, shards, mode, args.max_side, args.workers) if run == "job" else []
            print(f"round {round_}: {run}, {mode or 'graphs only'} ...", file=sys.stderr, flush=True)
            trials[run, mode].append(_measure(run, mode, files, jargv, args.max_side, args.workers, log))
    shutil.rmtree(shards, ignore_errors=True)

    results: dict = {"graphs": _median(trials["job", None])}
    for mode in modes:
        r = {run: _median(trials[run, mode]) for run in RUNS}
        r["stage"] = image_stage(trials["job", mode], trials["job", None], trials["pool", mode], len(jpegs),
                                 args.workers)
        r["breakdown"] = breakdown([str(p.resolve()) for p in jpegs[:2000]], str((corpus / "vg").resolve()),
                                   args.max_side if mode == "resize" else None)
        results[mode] = r
    report = {
        "benchmark": "images",
        "args": {k: v for k, v in vars(args).items() if k not in ("child", "image_mode", "files", "job_args")},
        "corpus": {"dir": str(corpus), "jpegs": len(jpegs),
                   "jpeg_bytes": sum(p.stat().st_size for p in jpegs), "generation_s": generation_s},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average": os.getloadavg()},
        "results": results,
    }
    (out / "images.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(_table(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
