"""The steps of the shard job as Beam transforms: thin wrappers around the ``sgverbalise`` domain code.

Stream at each point (per image unless said otherwise):
  ReadSceneGraphs  -> canonical records (+ rejects of malformed entries)
  Normalise        -> records with normalised names, attributes, predicates
  BuildVocabulary  -> one RelationVocab (a side input), from corpus counts or a given relations.json
  MakeSamples      -> (split, key, members) with members {"jpg", "json", "txt"}; rejects; stats
                      (an image passed through travels as an ImageRef, read again by WriteShards: image
                      bytes never go through the runner's shuffle)
  WriteShards      -> one shard-info dict per written tar
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
from sgverbalise.normalise import NormaliseConfig, Normaliser
from sgverbalise.pipelines.options import BuildConfig
from sgverbalise.pipelines.progress import progress
from sgverbalise.pipelines.publish import IncompleteRunError
from sgverbalise.readers import READERS, iter_list, vg
from sgverbalise.rejects import reject
from sgverbalise.sample import build_sample, sample_json, sample_key
from sgverbalise.schemas.layout import shard_name
from sgverbalise.shards import sample_size, write_shard
from sgverbalise.storage import join, redact, url_fs
from sgverbalise.triplets import extract
from sgverbalise.verbalise import verbalise
from sgverbalise.vocab import RelationVocab, vocabulary_sources

log = logging.getLogger(__name__)
NAMESPACE = "sgverbalise"
REJECTS = "rejects"
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


class ReadSourceFn(RecordsCounter):
    """Streams one input (a GQA file, or VG's scene_graphs.json) into per-image canonical records."""

    def __init__(self, limit: int | None, allow_partial: bool = False) -> None:
        self.limit, self.allow_partial = limit, allow_partial

    def process(self, element: tuple[str, str]) -> Iterator:
        source, url = element
        images = Metrics.counter(NAMESPACE, f"{source}_images_read")
        every = Metrics.counter(NAMESPACE, "images_read")
        try:
            for n, item in enumerate(READERS[source](url, limit=self.limit), start=1):
                images.inc()
                every.inc()
                yield from self.emit(item)
                if n % PROGRESS_EVERY == 0:
                    log.info("read %d %s images from %s", n, source, redact(url))
        except InputFileError as exc:
            yield from self.broken(source, exc)


class ReadVGPartFn(RecordsCounter):
    """Streams one file of VG's split layout (objects, relationships, attributes, regions or image data) into
    ``((image id, occurrence), (role, entry))`` pairs, joined by image id downstream. The occurrence numbers
    a second entry of the same image in the same file, which joins the second entries of the other files.
    ``limit`` keeps the first ``limit`` images of each file (the same images when the files are aligned, as in
    the official releases)."""

    def __init__(self, files: dict[str, str], limit: int | None, allow_partial: bool = False) -> None:
        self.files, self.limit, self.allow_partial = files, limit, allow_partial

    def process(self, element: tuple[str, str]) -> Iterator:
        role, url = element
        seen: Counter[str] = Counter()
        try:
            for entry in iter_list(url):
                image_id = vg.image_key(entry)
                if image_id is None:  # no usable image id: a reject of its own
                    yield from self.emit(vg.assemble_vg(None, {role: entry}, self.files))
                    continue
                if self.limit is not None and image_id not in seen and len(seen) >= self.limit:
                    break
                occurrence = seen[image_id]
                seen[image_id] += 1
                self.count("vg_entries_read")
                progress().add("vg_entries_read")
                yield (image_id, occurrence), (role, entry)
                if len(seen) % PROGRESS_EVERY == 0 and occurrence == 0:
                    log.info("read %d images from %s", len(seen), redact(url))
        except InputFileError as exc:
            yield from self.broken("vg", exc)


class AssembleVGFn(RecordsCounter):
    """One VG image's record from its joined file entries."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files

    def process(self, element: tuple[tuple[str, int], Iterable[tuple[str, Any]]]) -> Iterator:
        (image_id, _), parts = element
        group = dict(parts)  # one entry per file by construction of the key
        Metrics.counter(NAMESPACE, "vg_images_read").inc()
        Metrics.counter(NAMESPACE, "images_read").inc()
        self.count("vg_entries_joined", len(group))
        yield from self.emit(vg.assemble_vg(image_id, group, self.files))


def largest_first(files: dict[str, str]) -> list[tuple[str, str]]:
    """``(role, url)`` of the files, largest first (ties by role): the longest reads start first, and runners
    that deal a stage's elements round-robin to their workers (DirectRunner) do not give all large files to one."""
    def size(url: str) -> int:
        fs, path = url_fs(url)
        return fs.size(path) or 0

    sizes = {role: size(url) for role, url in files.items()}
    return sorted(files.items(), key=lambda item: (-sizes[item[0]], item[0]))


class ReadSceneGraphs(beam.PTransform):
    """All inputs of the config as PCollections of records, rejects, counts and cuts, spread over workers.

    GQA files (and VG's single scene_graphs.json) are each streamed into records. VG's split layout is read
    file by file in parallel and joined by image id in the pipeline (a GroupByKey)."""

    def __init__(self, cfg: BuildConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def expand(self, pbegin):
        cfg = self.cfg
        vg_files = vg.resolve_vg_files(cfg.vg) if cfg.vg else {}
        split = "scene_graphs" not in vg_files
        inputs = ([("vg", cfg.vg)] if cfg.vg and not split else []) + [("gqa", url) for url in cfg.gqa]
        outputs = []
        if inputs:
            read = (
                pbegin
                | "Inputs" >> beam.Create(inputs)
                | "Stream" >> beam.ParDo(ReadSourceFn(cfg.limit, cfg.allow_partial_inputs)).with_outputs(
                    REJECTS, STATS, CUTS, main="records")
            )
            outputs.append((read.records | "Spread" >> beam.Reshuffle(), read[REJECTS], read[STATS], read[CUTS]))
        if vg_files and split:
            parts = (
                pbegin
                | "VGFiles" >> beam.Create(largest_first(vg_files))
                | "StreamVG" >> beam.ParDo(ReadVGPartFn(vg_files, cfg.limit, cfg.allow_partial_inputs)).with_outputs(
                    REJECTS, STATS, CUTS, main="parts")
            )
            joined = (
                parts.parts
                | "JoinVG" >> beam.GroupByKey()
                | "AssembleVG" >> beam.ParDo(AssembleVGFn(vg_files)).with_outputs(REJECTS, STATS, main="records")
            )
            outputs += [(joined.records, joined[REJECTS], joined[STATS], None),
                        (None, parts[REJECTS], parts[STATS], parts[CUTS])]
        return tuple(
            [o[i] for o in outputs if o[i] is not None] | f"All{name}" >> beam.Flatten()
            for i, name in enumerate(("Records", "Rejects", "Stats", "Cuts"))
        )


class NormaliseFn(beam.DoFn):
    def __init__(self, cfg: NormaliseConfig) -> None:
        self.cfg = cfg

    def setup(self) -> None:
        self.normaliser = Normaliser(self.cfg)  # alias tables and spaCy are loaded once per worker

    def process(self, record: dict) -> Iterator[dict]:
        yield self.normaliser.record(record)


def predicate_counts(record: dict) -> Counter[tuple[str, str]]:
    """(source, normalised predicate) counts of one record."""
    return Counter((record["source"], rel["predicate"]) for rel in record["relations"] if rel["predicate"])


def sum_counters(counters: Iterable[Counter]) -> Counter:
    total: Counter = Counter()
    for counter in counters:
        total.update(counter)
    return total


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


class BuildVocabulary(beam.PTransform):
    """The relation vocabulary as a one-element PCollection (use as a singleton side input)."""

    def __init__(self, cfg: BuildConfig, given: RelationVocab | None) -> None:
        super().__init__()
        self.cfg, self.given = cfg, given

    def expand(self, records):
        if self.given is not None:
            return records.pipeline | "GivenVocabulary" >> beam.Create([self.given])
        cfg = self.cfg
        return (
            records
            | "Predicates" >> beam.Map(predicate_counts)  # one Counter per image, not one element per relation
            | "AllCounts" >> beam.CombineGlobally(sum_counters)
            | "Vocabulary" >> beam.Map(vocabulary_from_counts, cfg)
        )


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


def _size(element: tuple[str, str, dict[str, bytes | ImageRef]]) -> tuple[str, tuple[str, int]]:
    split, key, members = element
    sizes = {ext: m.nbytes if isinstance(m, ImageRef) else len(m) for ext, m in members.items()}
    return split, (key, sample_size(key, sizes))


def loaded_members(members: dict[str, bytes | ImageRef]) -> dict[str, bytes]:
    """A sample's members with every ImageRef read back."""
    return {ext: m.load() if isinstance(m, ImageRef) else m for ext, m in members.items()}


def _loaded(samples: Iterable[tuple[str, dict[str, bytes | ImageRef]]]) -> Iterator[tuple[str, dict[str, bytes]]]:
    """The samples with every ImageRef read back (one sample's images in memory at a time)."""
    for key, members in samples:
        yield key, loaded_members(members)


def shard_plan(split_sizes: tuple[str, Iterable[tuple[str, int]]], samples_per_shard: int,
               max_shard_bytes: int | None) -> tuple[str, tuple[dict[str, int], Counter[int]]]:
    """(split, (shard index of each key, samples planned per shard index))."""
    split, sizes = split_sizes
    assignment = layout.plan_shards(sizes, samples_per_shard, max_shard_bytes)
    return split, (assignment, Counter(assignment.values()))


class WriteShardFn(beam.DoFn):
    """Writes one shard's samples, sorted by key, atomically under its final name, after checking that the
    group holds exactly the samples its plan gave it (a runner that drops elements fails the job here)."""

    def __init__(self, out: str) -> None:
        self.out = out

    def process(self, element: tuple[tuple[str, int], Iterable[tuple[str, dict]]], plan: dict) -> Iterator[dict]:
        (split, index), samples = element
        name = shard_name(split, index)
        ordered = sorted(samples, key=lambda s: s[0])
        planned, distinct = plan[split][1][index], len({key for key, _ in ordered})
        if len(ordered) != planned or distinct != planned:
            raise IncompleteRunError(
                f"{name}: {len(ordered)} samples ({distinct} distinct) reached the shard, "
                f"{planned} were planned: the runner lost or repeated elements; nothing was written under this "
                "name and no manifest will be: run the job again")
        info = write_shard(join(self.out, name), _loaded(ordered))
        Metrics.counter(NAMESPACE, "shards_written").inc()
        progress().add("shards_written")
        yield dict(info, name=name)


class WriteShards(beam.PTransform):
    """Plans shards per split from the samples' keys and sizes, then writes them; yields shard infos."""

    def __init__(self, cfg: BuildConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def expand(self, samples):
        cfg = self.cfg
        plans = (
            samples
            | "Sizes" >> beam.Map(_size)
            | "BySplit" >> beam.GroupByKey()
            | "Plan" >> beam.Map(shard_plan, cfg.samples_per_shard, cfg.max_shard_bytes)
        )
        return (
            samples
            | "ToShard" >> beam.Map(lambda s, plan: ((s[0], plan[s[0]][0][s[1]]), (s[1], s[2])),
                                    plan=beam.pvalue.AsDict(plans))
            | "GroupShards" >> beam.GroupByKey()
            | "Write" >> beam.ParDo(WriteShardFn(cfg.out), plan=beam.pvalue.AsDict(plans))
        )
