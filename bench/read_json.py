"""Reading a VG-sized corpus: the streaming reader against ``json.load`` of the whole file.

``python -m bench.read_json [--images 108000] [--out bench/out] [--seed 0] [--modes ...]`` generates (or
reuses, cached by its arguments under ``--out``) a synthetic VG corpus in the split layout without images,
then times each reader in a fresh subprocess, so each peak RSS (``ru_maxrss`` of that process) is its own:

- ``iter_vg``: the streaming reader over the whole split layout (objects, relationships, attributes, regions,
  image data joined per image), building every canonical record;
- ``iter_vg, relationships.json only``: the same reader over a folder holding only relationships.json;
- ``json.load``: the baseline, ``json.load`` of relationships.json, then a loop over its entries;
- ``orjson.loads``: the same baseline with orjson;
- ``orjson.loads, gc disabled``: the best case of loading the whole file (CPython's cyclic garbage collector
  otherwise runs over and over while millions of containers are allocated, which dominates the load time).

Prints a Markdown table and writes ``OUT/read_json.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from sgverbalise.synth import synthesize

MODES = {
    "stream": "iter_vg (split layout, all files)",
    "stream_rel": "iter_vg, relationships.json only",
    "json": "json.load + loop",
    "orjson": "orjson.loads + loop",
    "orjson_nogc": "orjson.loads + loop, gc disabled",
}


def _rss_mb() -> float:
    """The current resident set size of this process, in MiB (Linux /proc)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _child(mode: str, corpus: Path) -> dict:
    """Run one reader over ``corpus`` and return its figures (called in the measured subprocess)."""
    vg = corpus / "vg"
    rss_start = _rss_mb()
    start = time.perf_counter()
    graphs = relations = rejects = 0
    if mode in ("stream", "stream_rel"):
        from sgverbalise.readers import iter_vg

        root = vg
        if mode == "stream_rel":
            root = corpus / "rel_only"
            root.mkdir(exist_ok=True)
            link = root / "relationships.json"
            if not link.exists():
                link.symlink_to((vg / "relationships.json").resolve())
        rss_start = _rss_mb()
        start = time.perf_counter()
        for record, rej in iter_vg(str(root), layout="split"):
            rejects += len(rej)
            if record is not None:
                graphs += 1
                relations += len(record["relations"])
    else:
        import gc

        import orjson

        if mode == "orjson_nogc":
            gc.disable()
        path = vg / "relationships.json"
        use_orjson = mode.startswith("orjson")
        data = path.read_bytes() if use_orjson else None
        entries = orjson.loads(data) if use_orjson else json.load(open(path, "rb"))
        del data
        for entry in entries:
            graphs += 1
            relations += len(entry["relationships"])
    wall = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"mode": mode, "graphs": graphs, "relations": relations, "rejects": rejects, "wall_s": wall,
            "graphs_per_s": graphs / wall if wall else None, "rss_start_mb": rss_start,
            "peak_rss_mb": peak_kb / 1024}


def _measure(mode: str, corpus: Path) -> dict:
    """Run ``mode`` in a fresh interpreter and return its figures (peak RSS of that process alone)."""
    cmd = [sys.executable, "-m", "bench.read_json", "--child", mode, "--corpus", str(corpus.resolve())]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[1])
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
    figures = json.loads(out.decode().strip().splitlines()[-1])
    figures["peak_rss_mb_wait4"] = usage.ru_maxrss / 1024
    return figures


def corpus_for(
    out: Path, images: int, seed: int, *, with_images: bool = False, image_size: int = 256
) -> tuple[Path, dict, float | None]:
    """The split-layout VG corpus cached for these arguments (generated when absent), its summary, and the
    generation time (None when reused)."""
    corpus = out / (f"corpus-vg{images}-seed{seed}" + (f"-img{image_size}" if with_images else ""))
    params = {"n_images": images, "seed": seed, "with_images": with_images, "gqa_fraction": 0.0,
              "layout": "split", "image_size": image_size}
    summary_path = corpus / "synth_summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        if summary.get("params") == params:
            return corpus, summary, None
    what = f"{images}-image VG corpus" + (f" with {image_size} px images" if with_images else "")
    print(f"generating a {what} in {corpus} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    synthesize(str(corpus), images, seed=seed, with_images=with_images, gqa_fraction=0.0, layout="split",
               image_size=image_size)
    took = time.perf_counter() - start
    return corpus, json.loads(summary_path.read_text()), took


def _table(results: list[dict], sizes: dict[str, int]) -> str:
    lines = [
        "| reader | graphs | relations | wall (s) | graphs/s | peak RSS (MiB) | RSS before reading (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {MODES[r['mode']]} | {r['graphs']:,} | {r['relations']:,} | {r['wall_s']:.1f} | "
            f"{r['graphs_per_s']:,.0f} | {r['peak_rss_mb']:,.0f} | {r['rss_start_mb']:,.0f} |"
        )
    files = ", ".join(f"{name} {size / 2**20:,.1f} MiB" for name, size in sizes.items())
    return "\n".join(lines) + f"\n\nInput: {files}."


def main(argv: list[str] | None = None) -> int:
    """Generate or reuse the corpus, run every reader in its own subprocess, report."""
    parser = argparse.ArgumentParser(prog="python -m bench.read_json", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=108_000, help="VG images in the corpus (VG: 108,077)")
    parser.add_argument("--out", default="bench/out", help="cache of corpora and the results file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, Path(args.corpus))))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    corpus, summary, generation_s = corpus_for(out, args.images, args.seed)
    sizes = {p.name: p.stat().st_size for p in sorted((corpus / "vg").glob("*.json"))}
    results = []
    for mode in args.modes.split(","):
        print(f"running {mode} ...", file=sys.stderr, flush=True)
        results.append(_measure(mode, corpus))
    report = {
        "benchmark": "read_json",
        "images": args.images,
        "seed": args.seed,
        "corpus": {"dir": str(corpus), "summary": summary, "file_bytes": sizes, "generation_s": generation_s},
        "machine": {
            "python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()
        },
        "results": results,
    }
    (out / "read_json.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if generation_s is not None:
        print(f"corpus generated in {generation_s:.1f} s")
    print(_table(results, sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
