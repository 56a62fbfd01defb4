"""The steps of the shard job that are not about units: thin Beam wrappers around the ``sgverbalise`` domain code.

  RecordsCounter -> counts reader items (records, read rejects; a cut file fails the run or becomes a cut)
  vocabulary_from_counts -> one RelationVocab from (source, predicate) counts
  MakeSampleFn   -> (split, key, members) with members {"jpg", "json", "txt"}; rejects; stats
                    (an image passed through travels as an ImageRef, read again when its shard is written:
                    image bytes never go through the runner's shuffle)
The units that use them are in ``pipelines/units.py``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import fsspec
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from sgverbalise import layout
from sgverbalise.errors import InputFileError
from sgverbalise.images import ImageError, ImageRef, LoadedImage, candidate_urls, prepare_image, read_first
from sgverbalise.pipelines.options import BuildConfig
from sgverbalise.pipelines.progress import progress
from sgverbalise.rejects import reject
from sgverbalise.sample import build_sample, sample_json, sample_key
from sgverbalise.storage import url_fs
from sgverbalise.triplets import extract
from sgverbalise.verbalise import verbalise
from sgverbalise.vocab import RelationVocab, vocabulary_sources

log = logging.getLogger(__name__)
NAMESPACE = "sgverbalise"
REJECTS = "rejects"
REJECT_FILES = "reject_files"  # a unit's rejects as a staging file: {"file": URL, "counts": {kind/reason: n}}
STATS = "stats"
CUTS = "cuts"  # the input files that broke off, read as far as they go (--allow-partial-inputs)
PROGRESS_EVERY = 10_000


def _windowed(output: Any) -> Any:
    """An output of ``process`` as ``finish_bundle`` must emit it (in the global window)."""
    if isinstance(output, beam.pvalue.TaggedOutput):
        return beam.pvalue.TaggedOutput(output.tag, WindowedValue(output.value, MIN_TIMESTAMP, [GlobalWindow()]))
    return WindowedValue(output, MIN_TIMESTAMP, [GlobalWindow()])


class CountingDoFn(beam.DoFn):
    """A DoFn that sums named counts over a bundle and emits them once, at its end, on the STATS output
    (one element per name and bundle rather than per image: the manifest's totals are built from them)."""

    def start_bundle(self) -> None:
        self._counts: Counter[str] = Counter()

    def count(self, name: str, value: int = 1) -> None:
        self._counts[name] += value

    def finish_bundle(self) -> Iterator:
        for name, value in sorted(self._counts.items()):
            yield _windowed(beam.pvalue.TaggedOutput(STATS, (name, value)))
        self._counts.clear()


class RecordsCounter(CountingDoFn):
    """Counts and emits reader items ``(record | None, rejects)``; a file that breaks off fails the run, or with
    ``allow_partial`` becomes a cut and a reject."""

    allow_partial = False

    def emit(self, item: tuple[dict | None, list[dict]]) -> Iterator:
        record, rejects = item
        self.count("images_read")
        progress().add("images_read")
        for r in rejects:
            if r["kind"] == "relation":
                self.count("relations_read")
            yield beam.pvalue.TaggedOutput(REJECTS, r)
        if record is None:
            self.count("images_rejected")
        else:
            self.count("relations_read", len(record["relations"]))
            yield record

    def broken(self, source: str, exc: InputFileError) -> Iterator:
        """A cut or corrupt file: the run fails (the exception goes on) unless partial inputs are allowed; then its
        cut (on CUTS, for the manifest) and one reject (the entries before the break have been emitted)."""
        if not self.allow_partial:
            raise exc
        log.warning("input cut, accepted (--allow-partial-inputs): %s", exc)
        Metrics.counter(NAMESPACE, "input_files_cut").inc()
        self.count("images_read")
        self.count("images_rejected")
        yield beam.pvalue.TaggedOutput(CUTS, exc.cut(source))
        detail = f"rest of the file unreadable: {exc}"
        yield beam.pvalue.TaggedOutput(REJECTS, reject(source, None, "malformed_record", detail))


def largest_first(items: Iterable[tuple[Any, str]]) -> list[tuple[Any, str]]:
    """``(anything, url)`` pairs, largest file first (ties by URL): the longest reads start first, and runners
    that deal a stage's elements round-robin to their workers (DirectRunner) do not give all large files to one."""
    def size(url: str) -> int:
        fs, path = url_fs(url)
        return fs.size(path) or 0

    found = [(item, size(item[1])) for item in items]
    return [item for item, n in sorted(found, key=lambda pair: (-pair[1], pair[0][1]))]


def predicate_counts(record: dict) -> Counter[tuple[str, str]]:
    """(source, normalised predicate) counts of one record."""
    return Counter((record["source"], rel["predicate"]) for rel in record["relations"] if rel["predicate"])


def sum_counters(counters: Iterable[Counter]) -> Counter:
    total: Counter = Counter()
    for counter in counters:
        total.update(counter)
    return total


UNITS_COUNTED = ("", "units")  # the key of a unit's predicate counts that counts the unit itself
LEFT_OUT = "left_out"  # a unit's predicate counts of the sources left out of the vocabulary


def left_out_sources(cfg: BuildConfig) -> frozenset[str]:
    """The given sources whose predicates do not make the vocabulary (only its ``excluded`` counts)."""
    given = (["vg"] if cfg.vg else []) + (["gqa"] if cfg.gqa else []) + list(cfg.record_sources)
    return frozenset(given) - set(vocabulary_sources(cfg.vocab.sources, cfg.vocab.mode, given))


def vocabulary_from_counts(counts: dict[tuple[str, str], int], cfg: BuildConfig) -> RelationVocab:
    """The vocabulary from (source, predicate) counts; predicates only of the sources left out are ``excluded``."""
    given = (["vg"] if cfg.vg else []) + (["gqa"] if cfg.gqa else []) + list(cfg.record_sources)
    sources = vocabulary_sources(cfg.vocab.sources, cfg.vocab.mode, given)
    chosen, others = Counter(), Counter()
    for (source, predicate), n in counts.items():
        (chosen if source in sources else others)[predicate] += n
    excluded = {p: n for p, n in others.items() if p not in chosen}
    return RelationVocab.from_counts(chosen, mode=cfg.vocab.mode, top_k=cfg.vocab.top_k,
                                     min_count=cfg.vocab.min_count, sources=sources, excluded=excluded)


def read_id_list(url: str | None) -> frozenset[str]:
    """Ids from a file, one per line (``#`` comments and blank lines ignored)."""
    if not url:
        return frozenset()
    with fsspec.open(url, "rt", encoding="utf-8") as f:
        return frozenset(item for line in f if (item := line.split("#", 1)[0].strip()))


IMAGE_BATCH = 32  # records whose images are prepared one after another before their graphs are


class MakeSampleFn(CountingDoFn):
    """Exclusion, image, extraction, VSG and the sample's members of each record.

    Records with an image wait in a batch of ``IMAGE_BATCH``: the batch's images are read and prepared one
    after another, then its graphs are made. Interleaving the JPEG codec with the graph work evicts the codec's
    tables and code from the CPU caches between images, which made each image about 8% slower (583 against
    537 us for a pass-through check). Outputs do not depend on how records are batched (the batch is flushed
    at the end of each bundle)."""

    def __init__(self, cfg: BuildConfig, exclude_coco: frozenset[str], exclude_ids: frozenset[str]) -> None:
        self.cfg, self.exclude_coco, self.exclude_ids = cfg, exclude_coco, exclude_ids

    def start_bundle(self) -> None:
        super().start_bundle()
        self._waiting: list[tuple[dict, tuple[str, ...]]] = []  # records with their image roots
        self._vocab: RelationVocab | None = None

    def _image_reject(self, record: dict, reason: str, detail: str) -> Iterator:
        count = len(record["relations"])
        self.count("images_rejected")
        self.count("relations_in_rejected_images", count)
        yield beam.pvalue.TaggedOutput(REJECTS, dict(reject(record["source"], record["image_id"], reason, detail),
                                                     relations=count))

    def _roots(self, source: str) -> tuple[str, ...]:
        if source == "vg":
            return self.cfg.vg_images
        return (self.cfg.gqa_images,) if self.cfg.gqa_images else ()

    def process(self, record: dict, vocab: RelationVocab) -> Iterator:
        source, image_id = record["source"], record["image_id"]
        coco = record.get("coco_id")
        if (coco is not None and str(coco) in self.exclude_coco) or image_id in self.exclude_ids \
                or sample_key(source, image_id) in self.exclude_ids:
            yield from self._image_reject(record, "excluded_eval", f"coco_id={coco}")
        elif not (roots := self._roots(source)):
            yield from self._sample(record, None, vocab)
        else:
            self._waiting.append((record, roots))
            self._vocab = vocab
            if len(self._waiting) >= IMAGE_BATCH:
                yield from self._flush()

    def finish_bundle(self) -> Iterator:
        for output in self._flush():
            yield _windowed(output)
        yield from super().finish_bundle()

    def _flush(self) -> Iterator:
        """The outputs of the waiting records: their images first, then their samples."""
        waiting, self._waiting = self._waiting, []
        images = [self._image(record, roots) for record, roots in waiting]
        for (record, _), image in zip(waiting, images, strict=True):
            yield from self._sample(record, image, self._vocab)

    def _image(self, record: dict, roots: tuple[str, ...]) -> tuple[str, bytes, LoadedImage] | ImageError:
        """The record's image (its URL, bytes and prepared form) under ``roots``, or why it cannot be used."""
        path = record.get("image_path") or f"{record['image_id']}.jpg"
        try:
            url, data = read_first(candidate_urls(roots, path))
            return url, data, prepare_image(data, url, self.cfg.image)
        except ImageError as exc:
            return exc

    def _sample(self, record: dict, image: tuple[str, bytes, LoadedImage] | ImageError | None,
                vocab: RelationVocab) -> Iterator:
        """The outputs of one record; ``image`` is None when its source has no image roots."""
        source, image_id = record["source"], record["image_id"]
        key = sample_key(source, image_id)
        members: dict[str, bytes | ImageRef] = {}
        width, height, scale = record.get("width"), record.get("height"), 1.0
        if isinstance(image, ImageError):
            Metrics.counter(NAMESPACE, image.reason).inc()
            yield from self._image_reject(record, image.reason, str(image))
            return
        if image is not None:
            url, data, loaded = image
            # boxes are in the annotation's pixels: map them onto the image as it is written
            scale = loaded.width / width if width else loaded.scale
            width, height = loaded.width, loaded.height
            members["jpg"] = ImageRef.of(url, data) if loaded.passed_through else loaded.data
        elif not (width and height):
            yield from self._image_reject(record, "malformed_record", "image size unknown: give image_data.json "
                                          "or the images")
            return
        extraction = extract(record, vocab)
        for r in extraction.rejects:
            yield beam.pvalue.TaggedOutput(REJECTS, r)
        if not extraction.has_graph:
            self.count("images_rejected")
            return
        vsg = verbalise(extraction.triplets, self.cfg.vsg, source, image_id)
        sample = build_sample(record, extraction, vsg, width=width, height=height, scale=scale)
        members["json"] = sample_json(sample)
        if vsg:
            members["txt"] = vsg[0].encode()
        Metrics.counter(NAMESPACE, "samples").inc()
        progress().add("samples")
        self.count("samples")
        self.count("triplets", len(sample["triplets"]))
        self.count("vsg_captions", len(vsg))
        yield layout.split_of(key, self.cfg.val_fraction), key, members


def loaded_members(members: dict[str, bytes | ImageRef]) -> dict[str, bytes]:
    """A sample's members with every ImageRef read back."""
    return {ext: m.load() if isinstance(m, ImageRef) else m for ext, m in members.items()}
