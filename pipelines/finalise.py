"""The end of the shard job: the counts checked, the staged shards and rejects published, relations.json, each
split's sizes.json, the manifest (written last: it marks a complete run) and the removal of anything a killed or
earlier run left that this run did not write."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator

import apache_beam as beam

from sgverbalise import __version__
from sgverbalise.pipelines.options import BuildConfig
from sgverbalise.pipelines.publish import IncompleteRunError, Staging, dumps, remove_stale, sort_cuts
from sgverbalise.pipelines.transforms import UNITS_COUNTED
from sgverbalise.schemas import MANIFEST_SCHEMA_VERSION, validator
from sgverbalise.schemas.layout import (
    INGEST_MANIFEST,
    MANIFEST,
    RELATIONS,
    SHARD_SET_OUTPUTS,
    SPLITS,
    sizes_name,
    split_sizes,
)
from sgverbalise.storage import atomic_write, fingerprint, join, redact, url_fs
from sgverbalise.vocab import RelationVocab

log = logging.getLogger(__name__)


def build_manifest(config: dict, inputs: list[dict], shards: list[dict], stats: dict[str, int],
                   reject_counts: dict[str, int], vocab: RelationVocab, cuts: list[dict] = (),
                   joins: list[dict] = ()) -> dict:
    """The manifest dict (``schemas/manifest.schema.json``)."""
    splits = {}
    for split in SPLITS:
        items = sorted((s for s in shards if s["name"].startswith(f"{split}/")), key=lambda s: s["name"])
        splits[split] = {"samples": sum(s["samples"] for s in items), "bytes": sum(s["bytes"] for s in items),
                         "shards": items}
    totals = {name: int(stats.get(name, 0)) for name in (
        "images_read", "samples", "images_rejected", "relations_read", "triplets", "relations_in_rejected_images",
        "vsg_captions")}
    relation_rejects = sum(n for k, n in reject_counts.items() if k.startswith("relation/"))
    totals["relation_rejects"] = relation_rejects
    check_accounting(totals, stats, written=sum(info["samples"] for info in splits.values()))
    manifest = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "generator": f"sgverbalise {__version__}",
        "config": config,
        "inputs": inputs,
        "cuts": sort_cuts(cuts),
        "joins": sorted(joins, key=lambda j: j["source"]),
        "splits": splits,
        "totals": totals,
        "rejects": dict(sorted(reject_counts.items())),
        "relations": {"file": RELATIONS, "size": len(vocab), "mode": vocab.to_json()["mode"]},
    }
    errors = [e.message for e in validator("manifest").iter_errors(manifest)]
    if errors:
        raise ValueError(f"manifest does not match its schema: {errors[:3]}")
    return manifest


def check_accounting(totals: dict[str, int], stats: dict[str, int] | None = None, written: int | None = None) -> None:
    """Every image read is a sample or a rejected image; every relation read is an MRC triplet, a relation reject
    or in a rejected image; every entry read from VG's split files reached the join; the shards hold every sample
    made (``written``); every unit planned was written and (unless the vocabulary was given) counted for the
    vocabulary (its sources by the pre-pass, those it leaves out by the units). Anything else means elements were
    lost on the way: fail instead of publishing."""
    stats = stats or {}
    if written is not None and written != totals["samples"]:
        raise IncompleteRunError(f"the shards hold {written} samples, {totals['samples']} were made: elements were "
                                 "lost before the shards were written; no manifest was written: run the job again")
    planned, done = stats.get("units_planned", 0), stats.get("units_done", 0)
    counted = stats.get("units_counted", planned)  # none with a given vocabulary
    left_out = stats.get("units_left_out_counted", planned)  # none unless the vocabulary leaves sources out
    if done != planned or counted != planned or left_out != planned:
        raise IncompleteRunError(f"units planned {planned}, written {done}, counted for the vocabulary {counted}, "
                                 f"for its left-out sources {left_out}: elements were lost between stages; no "
                                 "manifest was written: run the job again")
    images = totals["samples"] + totals["images_rejected"]
    relations = totals["triplets"] + totals["relation_rejects"] + totals["relations_in_rejected_images"]
    entries, joined = stats.get("vg_entries_read", 0), stats.get("vg_entries_joined", 0)
    if images != totals["images_read"] or relations != totals["relations_read"] or entries != joined:
        raise IncompleteRunError(
            f"counts do not add up: images read {totals['images_read']} != samples + rejected images {images}, "
            f"or relations read {totals['relations_read']} != triplets + rejects + in rejected images {relations}, "
            f"or VG file entries read {entries} != joined {joined}. "
            "Elements were lost between stages; no manifest was written: run the job again."
        )


class FinaliseFn(beam.DoFn):
    """Checks the counts (``build_manifest``), moves the staged shards and reject files to their final names,
    writes relations.json, sizes.json and the manifest, then removes stale shards, reject files, temp leftovers
    and the staging area. With ``left_out``, the vocabulary's ``excluded`` gets the predicates the units counted
    in the sources it leaves out (``left_out``: their summed counts, keyed (source, predicate))."""

    def __init__(self, out: str, config: dict, inputs: list[dict], counts_left_out: bool = False) -> None:
        self.out, self.config, self.inputs, self.counts_left_out = out, config, inputs, counts_left_out

    def process(self, _, shards, stats, reject_files, vocab, cuts=(), joins=(), left_out=None) -> Iterator[dict]:
        counts = {group: count for group, count, _ in reject_files}
        stats = dict(stats)
        if self.counts_left_out:
            left = Counter(left_out or {})
            stats["units_left_out_counted"] = left.pop(UNITS_COUNTED, 0)
            predicates: Counter[str] = Counter()
            for (_, predicate), n in left.items():
                predicates[predicate] += n
            vocab = vocab.with_left_out(predicates)
        manifest = build_manifest(self.config, self.inputs, list(shards), stats, counts, vocab, list(cuts),
                                  list(joins))
        staging = Staging(self.out)
        staging.publish([s["name"] for s in shards] + [name for _, _, name in reject_files])
        atomic_write(join(self.out, RELATIONS), vocab.dumps())
        sizes = {sizes_name(split): split_sizes(manifest, split) for split in SPLITS}
        sizes = {name: counts for name, counts in sizes.items() if counts}  # a split without shards has no folder
        for name, counts in sorted(sizes.items()):
            atomic_write(join(self.out, name), dumps(counts))
        atomic_write(join(self.out, MANIFEST), dumps(manifest))
        keep = {s["name"] for s in shards} | {name for _, _, name in reject_files} | set(sizes)
        removed = remove_stale(self.out, keep, SHARD_SET_OUTPUTS)
        if removed:
            log.info("removed %d files an earlier run left: %s", len(removed), removed[:5])
        staging.clear()
        yield manifest


def input_fingerprints(cfg: BuildConfig) -> list[dict]:
    """Size and a content fingerprint of every input file (images excepted), URLs redacted."""
    items: list[tuple[str, str]] = []
    if cfg.vg:
        fs, root = url_fs(cfg.vg)
        paths = [root] if fs.isfile(root) else sorted(fs.glob(f"{root.rstrip('/')}/*.json*"))
        items += [("vg", fs.unstrip_protocol(path) if "://" in cfg.vg else path) for path in paths]
    items += [("gqa", url) for url in cfg.gqa]
    if cfg.records:
        items.append(("records", join(cfg.records, INGEST_MANIFEST)))
    for role, url in (("relations", cfg.vocab.relations), ("relation_aliases", cfg.relation_aliases),
                      ("object_aliases", cfg.object_aliases), ("exclude_coco_ids", cfg.exclude_coco_ids),
                      ("exclude_image_ids", cfg.exclude_image_ids)):
        if url:
            items.append((role, url))
    out = []
    for role, url in items:
        info = fingerprint(url)
        out.append({"role": role, "url": redact(url), "size": info.get("size"),
                    "fingerprint": info.get("fingerprint")})
    return out


def summarise(manifest: dict) -> str:
    t = manifest["totals"]
    lines = [
        f"images read {t['images_read']}, samples {t['samples']}, images rejected {t['images_rejected']}",
        f"relations read {t['relations_read']} = MRC triplets {t['triplets']} + relation rejects "
        f"{t['relation_rejects']} + in rejected images {t['relations_in_rejected_images']}",
        f"VSG captions {t['vsg_captions']}, relation vocabulary {manifest['relations']['size']}",
    ]
    for split, info in manifest["splits"].items():
        lines.append(f"{split}: {info['samples']} samples in {len(info['shards'])} shards, {info['bytes']} bytes")
    if manifest["rejects"]:
        lines.append("rejects: " + ", ".join(f"{k} {v}" for k, v in manifest["rejects"].items()))
    for cut in manifest.get("cuts", []):
        lines.append(f"CUT INPUT (accepted): {cut['file']}: {cut['elements_read']} entries read, broke off at byte "
                     f"{cut['byte_offset']}: {cut['error']}")
    return "\n".join(lines)

