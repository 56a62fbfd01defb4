"""The main job on a VG-sized corpus (graphs only): ``build-shards`` on 2 cores against a plain Python loop.

``python -m bench.build_shards [--images 108000] [--out bench/out] [--seed 0] [--modes beam,loop,ingest,records,plain]``
reuses
(or generates) the corpus of ``bench.read_json`` (synthetic VG, split layout, no images), then runs, each in a
fresh subprocess:

- ``beam``: ``pipelines.build_shards.run`` with its defaults (DirectRunner, multi_processing, 2 workers);
- ``ingest`` then ``records``: ``sgv ingest`` (the corpus read once into Parquet records), then ``build-shards
  --records`` on them: what a rerun of the job costs once the JSON has been parsed;
- ``loop``: one process doing the same work with the same domain functions and no Beam: read (the streaming
  readers), normalise, count predicates, ``RelationVocab.from_counts``, extract, verbalise, ``build_sample``,
  then each unit's samples (``--images-per-unit`` consecutive images of an input) through a ``ShardWriter``
  per split, relations.json and the rejects files;
- ``plain``: the loop a user would write by hand, the baseline of what the work costs without our checks:
  ``orjson.loads`` of each whole input file (VG's relationships.json and image_data.json, or a GQA file), per
  image the first K=8 triplets by subject box centre (top to bottom, then left to right) as one caption, and
  ``tarfile`` shards of ``--samples-per-shard`` samples, in one process. Its samples are not ours (no
  normalisation, vocabulary, rejects or val split), so its output is not compared with the others'.

Peak memory is that of the whole process tree: the parent samples ``/proc`` every 0.2 s, sums the resident set
of the subprocess and all its descendants (the Beam workers), and keeps the largest sum. Pages shared between
processes count once per process, so the sum is an upper bound. ``ru_maxrss`` of the subprocess itself (the
runner) and of its largest waited-for descendant are reported too.

All shard outputs must be byte-identical: every file but the manifest (shards, relations.json, rejects/*.jsonl)
is hashed and compared. Prints a Markdown table and writes ``OUT/build_shards.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

from bench.read_json import corpus_for

MODES = {
    "beam": "build-shards (Beam DirectRunner, 2 workers)",
    "loop": "plain Python loop (1 process)",
    "ingest": "sgv ingest: the JSON to Parquet records (Beam DirectRunner, 2 workers)",
    "records": "build-shards --records: from those Parquet records (Beam DirectRunner, 2 workers)",
    "plain": "hand-written loop: orjson whole files, K=8 by subject centre, tarfile (1 process)",
}
NOT_COMPARED = {"ingest", "plain"}  # their outputs are not shards of ours
JOB_OPTIONS = ["--val-fraction", "0.05", "--samples-per-shard", "1000"]
SAMPLE_EVERY_S = 0.2
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def job_argv(corpus: Path, out: Path, mode: str = "beam", records: Path | None = None,
             gqa: Path | None = None) -> list[str]:
    """The arguments ``mode`` runs with (the same job options for every mode that writes shards)."""
    inputs = ["--vg", str(corpus / "vg")] + (["--gqa", str(gqa)] if gqa else [])
    if mode == "ingest":
        return [*inputs, "--out", str(out)]
    if mode == "records":
        return ["--records", str(records), "--out", str(out), *JOB_OPTIONS]
    return [*inputs, "--out", str(out), *JOB_OPTIONS]


def gqa_corpus_for(out: Path, images: int, seed: int) -> Path:
    """A GQA scene-graph file of ``images`` images (``sgv synth --gqa-fraction 1``), cached by its arguments."""
    from sgverbalise.synth import synthesize

    corpus = out / f"corpus-gqa{images}-seed{seed}"
    path = corpus / "gqa" / "train_sceneGraphs.json"
    if not (corpus / "synth_summary.json").exists():
        print(f"generating a {images}-image GQA file in {corpus} ...", file=sys.stderr, flush=True)
        synthesize(str(corpus), images, seed=seed, gqa_fraction=1.0, layout="split")
    return path


# -- the baseline loop ----------


def _id_list(url: str | None) -> frozenset[str]:
    """Ids of an exclusion file, as the job reads them (``#`` comments and blank lines ignored)."""
    if not url:
        return frozenset()
    import fsspec

    with fsspec.open(url, "rt", encoding="utf-8") as f:
        return frozenset(line.split("#", 1)[0].strip() for line in f if line.split("#", 1)[0].strip())


def run_loop(argv: list[str]) -> dict:
    """The job's work for ``argv`` in one process without Beam; returns counts and the shard infos."""
    from sgverbalise import layout
    from sgverbalise.images import ImageError, candidate_urls, prepare_image, read_first
    from sgverbalise.normalise import NormaliseConfig, Normaliser
    from sgverbalise.pipelines.options import add_arguments, config_from_args
    from sgverbalise.pipelines.publish import dumps
    from sgverbalise.readers import READERS
    from sgverbalise.rejects import group as reject_group
    from sgverbalise.rejects import reject, sorted_lines
    from sgverbalise.sample import build_sample, sample_json, sample_key
    from sgverbalise.schemas.layout import RELATIONS, rejects_name, sizes_name, unit_shard_pattern
    from sgverbalise.shards import ShardWriter
    from sgverbalise.storage import atomic_write, join
    from sgverbalise.triplets import extract
    from sgverbalise.verbalise import verbalise
    from sgverbalise.vocab import RelationVocab, vocabulary_sources

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = config_from_args(parser.parse_args(argv))
    if cfg.vocab.relations:
        raise SystemExit("the loop builds its vocabulary from counts: leave --relations out")
    exclude_coco, exclude_ids = _id_list(cfg.exclude_coco_ids), _id_list(cfg.exclude_image_ids)
    normaliser = Normaliser(NormaliseConfig(lemmatize=cfg.lemmatize, relation_aliases=cfg.relation_aliases,
                                            object_aliases=cfg.object_aliases))
    stats: Counter[str] = Counter()
    rejects: list[dict] = []
    counts: Counter[tuple[str, str]] = Counter()
    records: list[tuple[int, dict] | None] = []
    inputs = ([("vg", cfg.vg)] if cfg.vg else []) + [("gqa", url) for url in cfg.gqa]
    first_unit = 0  # units: images_per_unit consecutive images of each input, numbered over the inputs
    for source, url in inputs:
        read = 0
        for record, rej in READERS[source](url, limit=cfg.limit):
            unit = first_unit + read // cfg.images_per_unit
            read += 1
            stats["images_read"] += 1
            stats["relations_read"] += sum(r["kind"] == "relation" for r in rej)
            rejects += rej
            if record is None:
                continue
            stats["relations_read"] += len(record["relations"])
            record = normaliser.record(record)
            for rel in record["relations"]:
                if rel["predicate"]:
                    counts[(record["source"], rel["predicate"])] += 1
            records.append((unit, record))
        first_unit += -(-read // cfg.images_per_unit)

    given = (["vg"] if cfg.vg else []) + (["gqa"] if cfg.gqa else [])
    sources = vocabulary_sources(cfg.vocab.sources, cfg.vocab.mode, given)
    chosen, others = Counter(), Counter()
    for (source, predicate), n in counts.items():
        (chosen if source in sources else others)[predicate] += n
    vocab = RelationVocab.from_counts(chosen, mode=cfg.vocab.mode, top_k=cfg.vocab.top_k,
                                      min_count=cfg.vocab.min_count, sources=sources,
                                      excluded={p: n for p, n in others.items() if p not in chosen})

    def image_reject(record: dict, reason: str, detail: str) -> None:
        stats["images_rejected"] += 1
        stats["relations_in_rejected_images"] += len(record["relations"])
        rejects.append(dict(reject(record["source"], record["image_id"], reason, detail),
                            relations=len(record["relations"])))

    shards: list[dict] = []
    writers: tuple[int, dict[str, ShardWriter]] | None = None
    for i, item in enumerate(records):
        records[i] = None  # let each record go once its sample is made
        unit, record = item
        source, image_id = record["source"], record["image_id"]
        key = sample_key(source, image_id)
        coco = record.get("coco_id")
        if (coco is not None and str(coco) in exclude_coco) or image_id in exclude_ids or key in exclude_ids:
            image_reject(record, "excluded_eval", f"coco_id={coco}")
            continue
        members: dict[str, bytes] = {}
        width, height, scale = record.get("width"), record.get("height"), 1.0
        roots = cfg.vg_images if source == "vg" else ((cfg.gqa_images,) if cfg.gqa_images else ())
        if roots:
            try:
                url, data = read_first(candidate_urls(roots, record.get("image_path") or f"{image_id}.jpg"))
                image = prepare_image(data, url, cfg.image)
            except ImageError as exc:
                image_reject(record, exc.reason, str(exc))
                continue
            scale = image.width / width if width else image.scale
            width, height = image.width, image.height
            members["jpg"] = image.data
        elif not (width and height):
            image_reject(record, "malformed_record", "image size unknown: give image_data.json or the images")
            continue
        extraction = extract(record, vocab)
        rejects += extraction.rejects
        if not extraction.has_graph:
            stats["images_rejected"] += 1
            continue
        vsg = verbalise(extraction.triplets, cfg.vsg, source, image_id)
        sample = build_sample(record, extraction, vsg, width=width, height=height, scale=scale)
        members["json"] = sample_json(sample)
        if vsg:
            members["txt"] = vsg[0].encode()
        stats["samples"] += 1
        stats["triplets"] += len(sample["triplets"])
        stats["vsg_captions"] += len(vsg)
        if writers is None or writers[0] != unit:  # each unit's samples in its own shards, in input order
            if writers is not None:
                shards += [info for split in layout.SPLITS for info in writers[1][split].close()]
            writers = (unit, {split: ShardWriter(join(cfg.out, unit_shard_pattern(split, unit)), cfg.samples_per_shard,
                                                 cfg.max_shard_bytes or 1 << 62, relative_to=cfg.out)
                              for split in layout.SPLITS})
        writers[1][layout.split_of(key, cfg.val_fraction)].write(key, members)
    del records
    if writers is not None:
        shards += [info for split in layout.SPLITS for info in writers[1][split].close()]
    for split in sorted({s["name"].split("/")[0] for s in shards}):  # sizes.json beside each split's shards
        counts = {s["name"].rsplit("/", 1)[-1]: s["samples"] for s in shards if s["name"].startswith(f"{split}/")}
        atomic_write(join(cfg.out, sizes_name(split)), dumps(counts))
    atomic_write(join(cfg.out, RELATIONS), vocab.dumps())
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rejects:
        groups[reject_group(r)].append(r)
    for group, items in groups.items():
        atomic_write(join(cfg.out, rejects_name(group)), b"".join(line + b"\n" for line in sorted_lines(items)))
    stats["relation_rejects"] = sum(r["kind"] == "relation" for r in rejects)
    return {"totals": dict(sorted(stats.items())), "shards": len(shards)}


# -- the hand-written baseline ----------

PLAIN_K = 8


def _plain_triplets(source: str, entry: dict) -> list[tuple[str, str, str, dict]]:
    """(subject, predicate, object, subject box) of one image entry, as a user reads them off the JSON."""
    def name(obj: dict) -> str:
        return obj.get("name") or (obj.get("names") or [""])[0]

    def box(obj: dict) -> dict:
        return {k: obj[k] for k in ("x", "y", "w", "h")}

    if source == "vg":
        return [(name(r["subject"]), r["predicate"].lower().strip(), name(r["object"]), box(r["subject"]))
                for r in entry.get("relationships", [])]
    objects = entry.get("objects", {})
    return [(name(obj), rel["name"], name(objects[rel["object"]]), box(obj))
            for obj in objects.values() for rel in obj.get("relations", []) if rel["object"] in objects]


def _plain_shard(path: Path, samples: list[tuple[str, dict, str]]) -> None:
    import io
    import tarfile

    with tarfile.open(path, "w") as tar:
        for key, sample, caption in samples:
            for ext, data in (("json", json.dumps(sample).encode()), ("txt", caption.encode())):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mtime = len(data), 0
                tar.addfile(info, io.BytesIO(data))


def run_plain(argv: list[str]) -> dict:
    """The hand-written loop for ``argv`` (``--vg``, ``--gqa``, ``--out``, ``--samples-per-shard``)."""
    import orjson

    parser = argparse.ArgumentParser()
    parser.add_argument("--vg")
    parser.add_argument("--gqa", action="append", default=[])
    parser.add_argument("--out", required=True)
    parser.add_argument("--samples-per-shard", type=int, default=1000)
    args, _ = parser.parse_known_args(argv)
    out = Path(args.out) / "train"
    out.mkdir(parents=True, exist_ok=True)
    inputs: list[tuple[str, str, list | dict, dict]] = []
    if args.vg:
        sizes = {e["image_id"]: e for e in orjson.loads(Path(args.vg, "image_data.json").read_bytes())}
        inputs.append(("vg", "relationships.json", orjson.loads(Path(args.vg, "relationships.json").read_bytes()),
                       sizes))
    for url in args.gqa:
        inputs.append(("gqa", url, orjson.loads(Path(url).read_bytes()), {}))
    totals: Counter[str] = Counter()
    batch: list[tuple[str, dict, str]] = []
    shards = 0
    for source, _, data, sizes in inputs:
        entries = data.items() if isinstance(data, dict) else ((e["image_id"], e) for e in data)
        for image_id, entry in entries:
            totals["images_read"] += 1
            triplets = _plain_triplets(source, entry)
            totals["relations_read"] += len(triplets)
            if not triplets:
                totals["images_rejected"] += 1
                continue
            # top to bottom, then left to right, by the subject box's centre
            triplets.sort(key=lambda t: (t[3]["y"] + t[3]["h"] / 2, t[3]["x"] + t[3]["w"] / 2))
            chosen = triplets[:PLAIN_K]
            caption = ". ".join(f"{s} {p} {o}" for s, p, o, _ in chosen) + "."
            meta = sizes.get(image_id) or entry
            sample = {"image_id": str(image_id), "width": meta.get("width"), "height": meta.get("height"),
                      "triplets": [{"subject": s, "predicate": p, "object": o, "subject_box": b}
                                   for s, p, o, b in triplets]}
            batch.append((f"{source}-{image_id}", sample, caption))
            totals["samples"] += 1
            totals["triplets"] += len(triplets)
            if len(batch) == args.samples_per_shard:
                _plain_shard(out / f"shard-{shards:06d}.tar", batch)
                shards, batch = shards + 1, []
        del data
    if batch:
        _plain_shard(out / f"shard-{shards:06d}.tar", batch)
        shards += 1
    totals["relation_rejects"] = totals["relations_in_rejected_images"] = 0  # every relation is in its sample
    return {"totals": dict(sorted(totals.items())), "shards": shards}


# -- measuring ----------


def _child(mode: str, argv: list[str]) -> dict:
    """Run ``mode`` (in the measured subprocess) and return its figures."""
    start = time.perf_counter()
    if mode in ("beam", "records"):
        from sgverbalise.pipelines.build_shards import run

        manifest = run(argv)
        result = {"totals": manifest["totals"],
                  "shards": sum(len(s["shards"]) for s in manifest["splits"].values())}
    elif mode == "ingest":
        from sgverbalise.pipelines.ingest import run as ingest

        manifest = ingest(argv)
        result = {"totals": {"images_read": manifest["stats"]["images_read"],
                             "samples": sum(f["rows"] for f in manifest["files"])},
                  "shards": len(manifest["files"])}
    elif mode == "plain":
        result = run_plain(argv)
    else:
        result = run_loop(argv)
    wall = time.perf_counter() - start
    return dict(result, mode=mode, run_s=wall,
                self_peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                children_peak_rss_mb=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


def _processes() -> dict[int, tuple[int, int]]:
    """Every live process: pid -> (parent pid, CPU time in clock ticks), from /proc/*/stat."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # fields from the state on: ppid 1, utime 11, stime 12
        found[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    return found


def _tree(root: int) -> dict[int, int]:
    """``root`` and every live process below it: pid -> CPU ticks used so far."""
    processes = _processes()
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _) in processes.items():
        children[ppid].append(pid)
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in processes:
            found[pid] = processes[pid][1]
        todo += children.get(pid, [])
    return found


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * _PAGE_KB
    except (OSError, ValueError, IndexError):
        return 0


def _what(pid: int) -> str:
    """A short name for a process of the tree: its command line's last words."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            words = f.read().decode(errors="replace").split("\0")
    except OSError:
        return "gone"
    return " ".join(w.rsplit("/", 1)[-1] for w in words if w)[-60:]


class TreeSampler(threading.Thread):
    """Samples a process tree until stopped: peak of the summed RSS, a timeline of RSS and CPU per process.

    Each timeline entry is ``[seconds, tree RSS MiB, cores used by the root, [cores used by each other
    process, largest first]]`` over the interval since the previous entry (one a second).
    """

    def __init__(self, pid: int, every: float = SAMPLE_EVERY_S, entry_every: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.pid, self.every, self.entry_every = pid, every, entry_every
        self.peak_kb = self.max_processes = 0
        self.peak_parts: list[list] = []  # at the peak: [RSS MiB, what the process is], largest first
        self.timeline: list[list] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        start = last_t = time.perf_counter()
        last_cpu: dict[int, int] = {}
        while not self.stopped.is_set():
            cpu = _tree(self.pid)
            rss = {pid: _rss_kb(pid) for pid in cpu}
            total = sum(rss.values())
            if total > self.peak_kb:
                self.peak_kb = total
                self.peak_parts = sorted(([round(kb / 1024), "root" if pid == self.pid else _what(pid)]
                                          for pid, kb in rss.items()), reverse=True)
            self.max_processes = max(self.max_processes, len(cpu))
            now = time.perf_counter()
            if now - last_t >= self.entry_every or not self.timeline:
                dt = (now - last_t) * tick or 1.0
                used = {pid: (ticks - last_cpu.get(pid, ticks)) / dt for pid, ticks in cpu.items()}
                others = sorted((round(u, 2) for pid, u in used.items() if pid != self.pid), reverse=True)
                root = round(used.get(self.pid, 0.0), 2)
                self.timeline.append([round(now - start, 1), round(total / 1024), root, others])
                last_t, last_cpu = now, cpu
            self.stopped.wait(self.every)

    def stop(self) -> None:
        self.stopped.set()
        self.join()


def busy_seconds(timeline: list[list], threshold: float = 0.5) -> dict[str, float]:
    """Seconds of the run with 0, 1, or 2+ processes of the tree each using over ``threshold`` of a core."""
    out = {"0": 0.0, "1": 0.0, "2+": 0.0}
    for prev, entry in zip(timeline, timeline[1:], strict=False):
        busy = (entry[2] > threshold) + sum(c > threshold for c in entry[3])
        out["2+" if busy >= 2 else str(busy)] += entry[0] - prev[0]
    return {k: round(v, 1) for k, v in out.items()}


def _measure(mode: str, argv: list[str], log: Path) -> dict:
    """Run ``mode`` in a fresh interpreter; its figures, wall time and the peak RSS of its process tree."""
    cmd = [sys.executable, "-m", "bench.build_shards", "--child", mode, "--", *argv]
    start = time.perf_counter()
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err,
                                cwd=Path(__file__).resolve().parents[1])
        sampler = TreeSampler(proc.pid)
        sampler.start()
        out = proc.stdout.read() if proc.stdout else b""
        proc.wait()
        sampler.stop()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {proc.returncode}; see {log}")
    figures = json.loads(out.decode().strip().splitlines()[-1])
    graphs = figures["totals"].get("images_read", 0)
    return dict(figures, wall_s=wall, graphs_per_s=graphs / wall if wall else None,
                tree_peak_rss_mb=sampler.peak_kb / 1024, tree_peak_parts=sampler.peak_parts,
                max_processes=sampler.max_processes,
                busy_s=busy_seconds(sampler.timeline), timeline=sampler.timeline)


def output_hashes(out: Path) -> dict[str, str]:
    """sha256 of every file under ``out`` but the manifest, by relative path."""
    hashes = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file() and p.name != "manifest.json"):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        hashes[str(path.relative_to(out))] = h.hexdigest()
    return hashes


def compare(hashes: dict[str, dict[str, str]]) -> dict:
    """Whether every mode wrote the same files with the same bytes."""
    modes = list(hashes)
    if len(modes) < 2:
        return {"compared": False}
    first, rest = hashes[modes[0]], modes[1:]
    differing = sorted({name for m in rest for name in set(first) | set(hashes[m])
                        if first.get(name) != hashes[m].get(name)})
    return {"compared": True, "identical": not differing, "files": len(first),
            "shards": sum(name.endswith(".tar") for name in first), "differing": differing[:20]}


def unaccounted(totals: dict) -> int:
    """Relations read that are neither a triplet nor a reject (0 when every relation is accounted for)."""
    t = {k: totals.get(k, 0) for k in ("relations_read", "triplets", "relation_rejects",
                                       "relations_in_rejected_images")}
    return t["relations_read"] - t["triplets"] - t["relation_rejects"] - t["relations_in_rejected_images"]


def _table(results: list[dict], summary: dict) -> str:
    lines = [
        "| run | graphs | samples | shards | wall (s) | graphs/s | peak RSS, process tree (MiB) | "
        "processes | s with 1 / 2+ busy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        t, busy = r["totals"], r["busy_s"]
        lines.append(
            f"| {MODES[r['mode']]} | {t.get('images_read', 0):,} | {t.get('samples', 0):,} | {r['shards']} | "
            f"{r['wall_s']:.1f} | {r['graphs_per_s']:,.0f} | {r['tree_peak_rss_mb']:,.0f} | "
            f"{r['max_processes']} | {busy['1']:.0f} / {busy['2+']:.0f} |"
        )
    for r in results:
        t, lost = r["totals"], unaccounted(r["totals"])
        if lost:
            lines.append(f"\n{r['mode']}: {lost:,} relations read are neither a triplet nor a reject "
                         f"({t.get('samples', 0):,} samples and {t.get('images_rejected', 0):,} rejected of "
                         f"{t.get('images_read', 0):,} images read): records were LOST")
    by_mode = {r["mode"]: r for r in results}
    if "beam" in by_mode and "loop" in by_mode:
        ratio = by_mode["beam"]["wall_s"] / by_mode["loop"]["wall_s"]
        verdict = "met" if ratio <= 1.5 else "missed"
        lines.append(f"\nPipeline / loop wall time: {ratio:.2f}x (goal: at most 1.5x: {verdict}).")
    if "beam" in by_mode and "plain" in by_mode:
        ratio = by_mode["beam"]["wall_s"] / by_mode["plain"]["wall_s"]
        verdict = "met" if ratio <= 1.0 else "missed"
        lines.append(f"Pipeline / hand-written loop wall time: {ratio:.2f}x (goal: at most 1.0x: {verdict}); peak RSS "
                     f"of the pipeline's tree {by_mode['beam']['tree_peak_rss_mb']:,.0f} MiB (goal: at most 2 GB).")
    if "beam" in by_mode and "records" in by_mode:
        lines.append(f"build-shards from the Parquet records / from the JSON: "
                     f"{by_mode['records']['wall_s'] / by_mode['beam']['wall_s']:.2f}x wall time.")
    if summary.get("compared"):
        if summary["identical"]:
            lines.append(f"Outputs byte-identical: {summary['files']} files ({summary['shards']} shards), "
                         "same sha256 each.")
        else:
            lines.append(f"Outputs DIFFER: {summary['differing']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Reuse or generate the corpus, run each mode in its own subprocess, compare the outputs, report."""
    parser = argparse.ArgumentParser(prog="python -m bench.build_shards",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=108_000, help="VG images in the corpus (VG: 108,077)")
    parser.add_argument("--out", default="bench/out", help="cache of corpora, the job outputs and results")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gqa-images", type=int, default=0,
                        help="add a synthetic GQA file of this many images to every mode's inputs (0: VG only)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--keep", action="store_true", help="keep the shards written (default: removed)")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, [a for a in rest if a != "--"])))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    corpus, corpus_summary, generation_s = corpus_for(out, args.images, args.seed)
    if generation_s is not None:
        print(f"corpus generated in {generation_s:.1f} s", file=sys.stderr)
    gqa = gqa_corpus_for(out, args.gqa_images, args.seed) if args.gqa_images else None
    work = out / (f"build_shards-vg{args.images}" + (f"-gqa{args.gqa_images}" if gqa else ""))
    work.mkdir(parents=True, exist_ok=True)
    results, hashes = [], {}
    modes = args.modes.split(",")
    if "records" in modes and "ingest" not in modes[:modes.index("records")]:
        parser.error("the records mode reads what the ingest mode writes: give ingest before it")
    for mode in modes:
        target = work / mode
        shutil.rmtree(target, ignore_errors=True)
        print(f"running {mode} ...", file=sys.stderr, flush=True)
        results.append(_measure(mode, job_argv(corpus, target, mode, work / "ingest", gqa), work / f"{mode}.log"))
        if mode not in NOT_COMPARED:
            hashes[mode] = output_hashes(target)
        if mode != "ingest" and not args.keep:  # records reads what ingest wrote
            shutil.rmtree(target, ignore_errors=True)
    if not args.keep:
        shutil.rmtree(work / "ingest", ignore_errors=True)
    summary = compare(hashes)
    report = {
        "benchmark": "build_shards",
        "images": args.images,
        "gqa_images": args.gqa_images,
        "seed": args.seed,
        "job_options": JOB_OPTIONS,
        "corpus": {"dir": str(corpus), "summary": corpus_summary, "generation_s": generation_s},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "results": results,
        "outputs": summary,
    }
    (out / "build_shards.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(_table(results, summary))
    return 0 if summary.get("identical", True) else 1


if __name__ == "__main__":
    sys.exit(main())
