"""The shard job's unit of work: plan units from the inputs, count predicates, then let each unit read its part
of the input and write its own train shard(s).

Stream at each point (only small things cross the runner):
  ScanFiles     -> per input file, the staging file of its Scan (element boundaries, VG image ids) and its cut
  PlanUnits     -> unit descriptors (UnitRef: the staging file of the unit's byte ranges and ids), cuts, how VG
                   was joined
  Predicates    -> (source, predicate) counts per unit, summed: the vocabulary (a side input)
  Units         -> per unit: the infos of the shards it wrote (train and val); its reject file's name and counts
                   (its rejects go to that file in the staging area); counts
With ``--records``, a unit is one Parquet file of ``sgv ingest`` (its read rejects and counts come from ingest).
"""

from __future__ import annotations

import gc
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.metrics import Metrics

from sgverbalise.errors import InputFileError
from sgverbalise.normalise import NormaliseConfig, Normaliser
from sgverbalise.pipelines.ingested import RecordsUnit, read_records_unit
from sgverbalise.pipelines.memory import release_free_memory
from sgverbalise.pipelines.options import BuildConfig
from sgverbalise.pipelines.progress import progress
from sgverbalise.pipelines.publish import Staging, rejects_to_file
from sgverbalise.pipelines.transforms import (
    CUTS,
    LEFT_OUT,
    NAMESPACE,
    REJECTS,
    STATS,
    UNITS_COUNTED,
    MakeSampleFn,
    RecordsCounter,
    largest_first,
    left_out_sources,
    loaded_members,
    predicate_counts,
    sum_counters,
    vocabulary_from_counts,
)
from sgverbalise.readers import vg
from sgverbalise.readers.units import (
    InputFiles,
    Unit,
    plan,
    read_predicates,
    read_unit,
    scan_file,
    scan_from_bytes,
    scan_to_bytes,
    unit_from_bytes,
    unit_to_bytes,
)
from sgverbalise.rejects import reject
from sgverbalise.schemas.layout import INPUT_SCAN, SPLITS, UNIT_PLAN, unit_shard_pattern
from sgverbalise.shards import ShardWriter
from sgverbalise.storage import atomic_write, join, read_bytes

JOINS = "joins"
NO_BYTE_LIMIT = 1 << 62
YOUNG_COLLECTION_EVERY = 20_000  # net container allocations between young collections (Python's default: 700)


class _FewerCollections:
    """A context in which the process's garbage collector runs young collections every ``YOUNG_COLLECTION_EVERY``
    allocations; the thresholds before are back once the last context open (in any thread) has ended. A unit makes
    and drops millions of small dicts and lists, none in a cycle: with the defaults, collections took about 13% of
    its CPU (3.8 of 29 s on the 20k-image bench corpus, most in full collections walking every object of the
    imported modules), with this threshold 0.1 s."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open = 0
        self.saved: tuple[int, ...] = ()

    def __enter__(self) -> None:
        with self.lock:
            if not self.open:
                self.saved = gc.get_threshold()
                gc.set_threshold(YOUNG_COLLECTION_EVERY, *self.saved[1:])
            self.open += 1

    def __exit__(self, *_) -> None:
        with self.lock:
            self.open -= 1
            if not self.open:
                gc.set_threshold(*self.saved)


fewer_collections = _FewerCollections()


def job_inputs(cfg: BuildConfig) -> list[InputFiles]:
    """The inputs of the config in unit order: VG (all its files), then each GQA file."""
    inputs = []
    if cfg.vg:
        inputs.append(InputFiles("vg", tuple(vg.resolve_vg_files(cfg.vg).items())))
    inputs += [InputFiles("gqa", (("gqa", url),)) for url in cfg.gqa]
    return inputs


@dataclass(frozen=True)
class UnitRef:
    """A unit as it crosses the runner: its index and the staging file that holds it (a few bytes instead of its
    groups' ranges and ids, which the runner would otherwise keep in memory for the whole run)."""

    index: int
    url: str

    def load(self) -> Unit:
        return unit_from_bytes(read_bytes(self.url))


def loaded(unit):
    """The unit a UnitRef stands for; any other unit (a RecordsUnit) as it is."""
    return unit.load() if isinstance(unit, UnitRef) else unit


class ScanFileFn(beam.DoFn):
    """Scans one input file into the staging area; yields its key, the scan's staging file and its cut."""

    def __init__(self, out: str) -> None:
        self.out = out

    def process(self, element: tuple[int, InputFiles, str, str]) -> Iterator:
        index, inp, role, url = element
        found = scan_file(inp, role, url)
        scan_url = Staging(self.out).url(INPUT_SCAN.format(index=index))
        atomic_write(scan_url, scan_to_bytes(found))
        cut = found.cut
        del found
        release_free_memory()  # the scan's blocks, kept by the allocator otherwise
        progress().add("files_scanned")
        yield (inp.source, url), (scan_url, cut)


class PlanFn(beam.DoFn):
    """The plan from all scans; a cut file fails the run unless partial inputs are allowed (then its cut, one
    reject and its counts). Each unit is written to the staging area; its UnitRef is yielded."""

    def __init__(self, cfg: BuildConfig, inputs: list[InputFiles]) -> None:
        self.cfg, self.inputs = cfg, inputs

    def process(self, _, scans) -> Iterator:
        cfg = self.cfg
        loaded_scans = {key: scan_from_bytes(read_bytes(scan_url), cut) for key, (scan_url, cut) in scans}
        result = plan(self.inputs, loaded_scans, cfg.images_per_unit, cfg.limit, cfg.allow_partial_inputs)
        del loaded_scans
        for source, cut in result.cuts:
            Metrics.counter(NAMESPACE, "input_files_cut").inc()
            yield beam.pvalue.TaggedOutput(CUTS, cut.cut(source))
            yield beam.pvalue.TaggedOutput(REJECTS, reject(source, None, "malformed_record",
                                                           f"rest of the file unreadable: {cut}"))
            yield beam.pvalue.TaggedOutput(STATS, ("images_read", 1))
            yield beam.pvalue.TaggedOutput(STATS, ("images_rejected", 1))
        for join_note in result.joins:
            yield beam.pvalue.TaggedOutput(JOINS, join_note)
        yield beam.pvalue.TaggedOutput(STATS, ("units_planned", len(result.units)))  # checked at the end
        staging = Staging(cfg.out)
        refs = []
        for unit in dealing_order(result.units):
            url = staging.url(UNIT_PLAN.format(unit=unit.index))
            atomic_write(url, unit_to_bytes(unit))
            refs.append(UnitRef(unit.index, url))
        del result
        release_free_memory()  # every scan's ids were loaded: the plan's memory grows with the corpus
        yield from refs


def unit_bytes(unit: Unit) -> int:
    """The input bytes a unit reads: what its work is roughly proportional to."""
    return int(sum(int((t[:, 1] - t[:, 0])[t[:, 0] >= 0].sum()) for t in unit.spans.values()))


def dealing_order(units: list[Unit], workers: int = 2) -> list[Unit]:
    """The units largest first in rounds of ``workers``, every other round reversed (1 2, 4 3, 5 6, ...): a runner
    that deals a stage's elements round-robin in arrival order (DirectRunner) then gives each worker a similar
    share of the bytes. Only the speed depends on this order, never the output."""
    ordered = sorted(units, key=lambda u: (-unit_bytes(u), u.index))
    rounds = [ordered[i:i + workers] for i in range(0, len(ordered), workers)]
    return [u for k, r in enumerate(rounds) for u in (r if k % 2 == 0 else r[::-1])]


class PlanUnits(beam.PTransform):
    """Scans every input file (in parallel, one element per file) and plans the units: returns the units
    (spread over the workers), rejects, stats, cuts and the joins of VG's files."""

    def __init__(self, cfg: BuildConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def expand(self, pbegin):
        inputs = job_inputs(self.cfg)
        # largest first: a runner that deals elements round-robin (DirectRunner) spreads the long scans
        files = [(k, inp, role, url) for k, ((inp, role), url) in
                 enumerate(largest_first(((inp, role), url) for inp in inputs for role, url in inp.files))]
        scans = (pbegin | "Files" >> beam.Create(files) | "SpreadFiles" >> beam.Reshuffle()
                 | "Scan" >> beam.ParDo(ScanFileFn(self.cfg.out)))
        planned = (pbegin | "Once" >> beam.Create([None])
                   | "Plan" >> beam.ParDo(PlanFn(self.cfg, inputs), scans=beam.pvalue.AsList(scans))
                   .with_outputs(REJECTS, STATS, CUTS, JOINS, main="units"))
        units = planned.units | "SpreadUnits" >> SpreadUnits()
        return units, planned[REJECTS], planned[STATS], planned[CUTS], planned[JOINS]


def _unit_items(unit: Unit, allow_partial: bool, cuts: list | None = None) -> Iterator:
    """``read_unit``; with ``allow_partial``, an element that is not JSON becomes one reject (and a cut in
    ``cuts``) and the unit goes on with the next."""
    on_error = (lambda exc: _element_error(unit, exc, cuts)) if allow_partial else None
    yield from read_unit(unit, on_error=on_error)


def _element_error(unit: Unit, exc: InputFileError, cuts: list | None) -> tuple[None, list[dict]]:
    if cuts is not None:
        cuts.append(exc.cut(unit.source))
    return None, [reject(unit.source, None, "malformed_record", f"entry unreadable: {exc}")]


def count_vg_entries(fn: RecordsCounter, unit: Unit) -> None:
    """The entries of VG's files a unit read (with an image id) and joined into groups: equal by construction,
    counted for the manifest's check that every entry read reached a group."""
    if unit.source == "vg":
        entries = sum(int((table[:, 0] >= 0).sum()) for table in unit.spans.values())
        entries -= sum(1 for image_id in unit.ids if image_id is None)
        fn.count("vg_entries_read", entries)
        fn.count("vg_entries_joined", entries)
        progress().add("vg_entries_read", entries)


def unit_records(fn: RecordsCounter, unit: Unit, allow_partial: bool) -> Iterator:
    """The outputs of reading one unit, counted: its records (main), read rejects and cuts (tagged)."""
    cuts: list[dict] = []
    for item in _unit_items(unit, allow_partial, cuts):
        yield from fn.emit(item)
    for cut in cuts:
        Metrics.counter(NAMESPACE, "input_files_cut").inc()
        yield beam.pvalue.TaggedOutput(CUTS, cut)
    count_vg_entries(fn, unit)


class SpreadUnits(beam.PTransform):
    """Units over the workers: a grouping by unit index (every key its own group, in arrival order), which
    DirectRunner deals to its workers round-robin; other runners spread the groups as they do any grouping."""

    def expand(self, units):
        return (units | "ByIndex" >> beam.Map(lambda u: (u.index, u)) | "Group" >> beam.GroupByKey()
                | "Units" >> beam.FlatMapTuple(lambda _, found: found))


class PredicatesFn(beam.DoFn):
    """The (source, normalised predicate) counts of one unit (the vocabulary's pre-pass): the raw predicates of
    its records (``read_predicates``: each element parsed, the records not assembled) are counted and each
    distinct one normalised once. The sources in ``skip`` (those left out of the vocabulary) are not read: their
    units count their predicates while they make their samples (``UnitFn``), for the vocabulary's ``excluded``."""

    def __init__(self, norm: NormaliseConfig, allow_partial: bool, skip: frozenset[str] = frozenset()) -> None:
        self.norm, self.allow_partial, self.skip = norm, allow_partial, skip

    def setup(self) -> None:
        self.normaliser = Normaliser(self.norm)

    def process(self, unit) -> Iterator[Counter]:
        unit = loaded(unit)
        if isinstance(unit, RecordsUnit) or unit.source not in self.skip:
            with fewer_collections:
                counts = Counter({key: n for key, n in self._counts(unit).items() if key[0] not in self.skip})
        else:
            counts = Counter()
        counts[UNITS_COUNTED] = 1  # the units the vocabulary saw, checked against the plan at the end
        yield counts

    def _counts(self, unit) -> Counter:
        raw: Counter[tuple[str, str]] = Counter()
        if isinstance(unit, RecordsUnit):
            found: Iterable = ((r["source"], [rel.get("predicate_raw") or "" for rel in r["relations"]])
                               for r in read_records_unit(unit))
        else:  # with partial inputs, an element that is not JSON counts nothing (the unit's pass rejects it)
            on_error = (lambda _: None) if self.allow_partial else None
            found = ((unit.source, predicates) for predicates in read_predicates(unit, on_error))
        for source, predicates in found:
            progress().add("vocabulary_images_read")
            if predicates is not None:
                raw.update((source, predicate) for predicate in predicates)
        counts: Counter[tuple[str, str]] = Counter()
        for (source, predicate), n in raw.items():
            if norm := self.normaliser.predicate(predicate):
                counts[(source, norm)] += n
        return counts


def vocabulary_and_units(counts: Counter, cfg: BuildConfig) -> Iterator:
    """The vocabulary from the summed predicate counts, and on STATS the number of units they came from."""
    counts = Counter(counts)
    yield beam.pvalue.TaggedOutput(STATS, ("units_counted", counts.pop(UNITS_COUNTED, 0)))
    yield vocabulary_from_counts(counts, cfg)


class Vocabulary(beam.PTransform):
    """The relation vocabulary from the units' predicate counts (a one-element PCollection), and the number of
    units counted (a stat: a lost unit's counts would change the vocabulary without a trace, so the run's end
    checks it against the plan)."""

    def __init__(self, cfg: BuildConfig, norm: NormaliseConfig) -> None:
        super().__init__()
        self.cfg, self.norm = cfg, norm

    def expand(self, units):
        return (units
                | "CountPredicates" >> beam.ParDo(PredicatesFn(self.norm, self.cfg.allow_partial_inputs,
                                                              left_out_sources(self.cfg)))
                | "AllCounts" >> beam.CombineGlobally(sum_counters)
                | "Vocabulary" >> beam.FlatMap(vocabulary_and_units, self.cfg).with_outputs(STATS, main="vocab"))


class UnitFn(RecordsCounter, MakeSampleFn):
    """One unit: reads its records, normalises them, makes the samples (images included) and writes them, in input
    order, to its own shards of each split (``{split}/shard-UNIT-PART.tar``, in the staging area) and its rejects
    to its own sorted file there; yields the shard infos, with the reject file's name and counts, counts and cuts
    as tagged outputs. Nothing of a sample, and no reject, crosses the runner. With ``left_out`` (the sources left
    out of a vocabulary the job counts), also the unit's predicate counts of those sources, as the vocabulary's
    pre-pass would have counted them (every record read), on LEFT_OUT: one Counter per unit."""

    def __init__(self, cfg: BuildConfig, norm: NormaliseConfig, exclude_coco: frozenset[str],
                 exclude_ids: frozenset[str], left_out: frozenset[str] = frozenset()) -> None:
        MakeSampleFn.__init__(self, cfg, exclude_coco, exclude_ids)
        self.norm, self.allow_partial, self.left_out = norm, cfg.allow_partial_inputs, left_out

    def setup(self) -> None:
        self.normaliser = Normaliser(self.norm)

    def process(self, unit, vocab) -> Iterator:
        with fewer_collections:
            yield from rejects_to_file(self._unit(loaded(unit), vocab), self.cfg.out, unit.index)

    def _unit(self, unit, vocab) -> Iterator:
        cfg = self.cfg
        self._left_out_counts: Counter[tuple[str, str]] = Counter()
        staging = Staging(cfg.out).root  # the shards wait there until the run's last step publishes them
        writers = {split: ShardWriter(join(staging.replace("%", "%%"), unit_shard_pattern(split, unit.index)),
                                      cfg.samples_per_shard, cfg.max_shard_bytes or NO_BYTE_LIMIT,
                                      post=lambda _: progress().add("shards_written"), relative_to=staging)
                   for split in SPLITS}
        try:
            if isinstance(unit, RecordsUnit):
                for record in read_records_unit(unit):
                    progress().add("records_read")
                    yield from self._write(self._make(record, vocab), writers)
            else:
                for output in unit_records(self, unit, self.allow_partial):
                    if isinstance(output, beam.pvalue.TaggedOutput):
                        yield output
                    else:
                        yield from self._write(self._make(output, vocab), writers)
            yield from self._write(self._flush(), writers)
            infos = [info for split in SPLITS for info in writers[split].close()]
            self.count("units_done")
            if self.left_out:  # every unit says it counted, with or without such predicates
                yield beam.pvalue.TaggedOutput(LEFT_OUT, self._left_out_counts + Counter({UNITS_COUNTED: 1}))
        except BaseException:
            for writer in writers.values():
                writer.abort()
            raise
        for info in infos:
            Metrics.counter(NAMESPACE, "shards_written").inc()
            yield info

    def _make(self, record: dict, vocab) -> Iterator:
        record = self.normaliser.record(record)
        if record["source"] in self.left_out:
            self._left_out_counts.update(predicate_counts(record))
        return MakeSampleFn.process(self, record, vocab)

    def _write(self, outputs: Iterable, writers: dict[str, ShardWriter]) -> Iterator:
        """The tagged outputs of making samples passed on; each sample written to its split's shard."""
        for output in outputs:
            if isinstance(output, beam.pvalue.TaggedOutput):
                yield output
            else:
                split, key, members = output
                writers[split].write(key, loaded_members(members))
