"""The trainer's data: a webdataset stream per (batch type, source), mixed into batches of one type each.

One stream, as stages (``build_stream``)::

    ResampledShards (training: shards drawn with replacement, seeded per rank and worker)
      or SimpleShardList -> split_by_node (rank, world size) -> split_by_worker      # one pass (validation)
    -> tar_samples        raw samples {"__key__", "__url__", ext: bytes}; bad shards counted, logged, skipped
    -> shuffle            a buffer of raw samples
    -> examples           decoded, cropped, per-type examples; bad samples counted, logged, skipped
    -> batched            collated into a batch of ``training.batches``' contract (tokenised in the worker)

``MixedBatches`` (an IterableDataset) draws the type and source of each batch from one schedule seeded by
``(seed, epoch)`` alone: a type with probability proportional to its ratio, then a source of that type with
probability proportional to its weight. Every rank and every DataLoader worker draws the same schedule; worker
``w`` of ``W`` builds the batches ``i`` with ``i % W == w`` and the DataLoader returns them in order, so step
``i`` has the same batch type on every rank (DDP then runs the same losses everywhere). With resampled streams
an epoch is ``epoch_batches`` batches per rank; in one-pass mode an exhausted stream leaves its worker's
draw and the epoch ends when all are exhausted (or at ``epoch_batches``).

A worker hands a batch to the main process with its images in shared memory (stacked by the collation into a
segment of the worker's ``PixelRing``, reused once the main process has let go of the batch it held: a fresh
segment per batch costs more than the copy) and its small tensors pickled inline (``inline_small``,
``INLINE_BYTES``): each shared-memory tensor costs the main process a fixed price, which made up most of the
data wait of small models.

Counters (``MixedLoader.counters()``): per ``{type}/{source}/``: ``samples`` (read from shards), ``skipped``
(undecodable samples), ``filtered`` (samples with nothing for the type), ``shard_errors``, ``batches``; and
the totals ``samples``, ``samples_skipped``, ``shards_skipped``, ``samples_filtered``, ``batches``. More than
``max_consecutive_errors`` failures in a row without one good sample is a configuration error and raises.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import random
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from itertools import islice
from typing import Any

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from sgverbalise.training.batches import BATCH_TYPES
from sgverbalise.training.data.examples import BUILDERS, COLLATE, Context
from sgverbalise.training.data.pixelring import PixelRing
from sgverbalise.training.data.sources import SourceConfig, expand_urls, tar_samples
from sgverbalise.training.data.tokenizer import load_tokenizer
from sgverbalise.training.data.transforms import ImageTransform

log = logging.getLogger(__name__)

# (batch sizes, sampling ratios) of the paper, captions : entities : MRC : VSG
PRESETS: dict[str, tuple[dict[str, int], dict[str, float]]] = {
    "realbef": (
        {"caption": 512, "entity": 0, "mrc": 128, "vsg": 128},
        {"caption": 2.0, "entity": 0.0, "mrc": 1.0, "vsg": 1.0},
    ),
    "rexvlm": (
        {"caption": 1024, "entity": 1024, "mrc": 256, "vsg": 128},
        {"caption": 2.0, "entity": 1.5, "mrc": 1.0, "vsg": 1.0},
    ),
}
# text lengths in tokens: captions as ALBEF; VSG as the paper's appendix (16 triplets in 112 tokens)
MAX_TEXT_LEN: dict[str, int] = {"caption": 40, "vsg": 112, "entity": 16, "mrc": 16}
# horizontal flip per batch type (see training.data.transforms for the policy)
FLIP: dict[str, bool] = {"caption": True, "vsg": False, "entity": False, "mrc": False}
_LOG_FIRST = 10  # errors logged one by one per stream and kind, then every 1000th
# A tensor a worker hands over goes through shared memory, and the main process pays a fixed price per tensor
# (~0.3-0.5 ms: a file descriptor to fetch from the worker, an mmap); a small one is cheaper pickled inline, as
# a NumPy array that the main process turns back into a tensor without a copy.
INLINE_BYTES = 256 * 1024


def _realbef_sizes() -> dict[str, int]:
    return dict(PRESETS["realbef"][0])


def _realbef_ratios() -> dict[str, float]:
    return dict(PRESETS["realbef"][1])


@dataclass
class DataConfig:
    """Everything the data side needs. Batch sizes count images (an MRC/entity batch holds several
    triplets/entities per image). Ratios of 0 switch a type off. ``jpeg_draft``: decode JPEGs at a reduced
    scale when the crop is at least twice the output side (``training.data.transforms``)."""

    sources: dict[str, list[SourceConfig]] = field(default_factory=dict)
    batch_sizes: dict[str, int] = field(default_factory=_realbef_sizes)
    ratios: dict[str, float] = field(default_factory=_realbef_ratios)
    image_size: int = 224
    max_text_len: dict[str, int] = field(default_factory=lambda: dict(MAX_TEXT_LEN))
    pad_to_max: bool = False
    train: bool = True
    crop_scale: tuple[float, float] = (0.5, 1.0)
    flip: dict[str, bool] = field(default_factory=lambda: dict(FLIP))
    min_visible: float = 0.5
    crop_attempts: int = 5
    jpeg_draft: bool = True
    entities_per_image: int = 4
    relations_per_image: int = 2
    entity_attributes: bool = False
    resampled: bool = True
    epoch_batches: int | None = None
    num_workers: int = 4
    shuffle_buffer: int = 1000
    shuffle_initial: int = 100
    seed: int = 0
    tokenizer: str | None = None
    keep_keys: bool = False
    max_consecutive_errors: int = 1000
    # Relation foils as extra ITM negatives: caption and VSG batches carry foil_ids / foil_mask / has_foil
    # (training.batches), a web sample's .json "foil" or a VSG caption with one triplet made false.
    foils: bool = False

    def __post_init__(self) -> None:
        self.max_text_len = {**MAX_TEXT_LEN, **self.max_text_len}  # given entries override the defaults
        self.flip = {**FLIP, **self.flip}
        self.sources = {
            kind: [SourceConfig.from_value(s) for s in (v if isinstance(v, list) else [v])]
            for kind, v in self.sources.items()
        }
        self.crop_scale = tuple(self.crop_scale)
        unknown = (set(self.sources) | set(self.ratios) | set(self.batch_sizes)) - set(BATCH_TYPES)
        if unknown:
            raise ValueError(f"unknown batch types {sorted(unknown)}; known: {BATCH_TYPES}")
        if not self.active_types():
            raise ValueError("no batch type has a positive ratio")
        for kind in self.active_types():
            if self.batch_sizes.get(kind, 0) < 1:
                raise ValueError(
                    f"batch type {kind} has ratio {self.ratios[kind]} but batch size "
                    f"{self.batch_sizes.get(kind, 0)}"
                )
            if not self.sources.get(kind):
                raise ValueError(f"batch type {kind} has ratio {self.ratios[kind]} but no sources")
        if self.flip.get("mrc") and self.train:
            raise ValueError("flip for mrc batches is not supported: relation ids cannot follow a mirror")
        if self.resampled and self.epoch_batches is None:
            raise ValueError("resampled streams are endless: set epoch_batches")

    def active_types(self) -> list[str]:
        """The batch types with a positive ratio, in ``BATCH_TYPES`` order."""
        return [k for k in BATCH_TYPES if self.ratios.get(k, 0) > 0]

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> DataConfig:
        """A config with the batch sizes and ratios of ``PRESETS[name]`` (realbef, rexvlm)."""
        sizes, ratios = PRESETS[name]
        return cls(**{"batch_sizes": dict(sizes), "ratios": dict(ratios), **overrides})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DataConfig:
        """A config from plain values (e.g. YAML), with an optional ``preset`` name; unknown keys raise."""
        values = dict(values)
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known - {"preset"}
        if unknown:
            raise ValueError(f"unknown data options {sorted(unknown)}")
        name = values.pop("preset", None)
        return cls.preset(name, **values) if name else cls(**values)


def stream_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (stable across processes and Python runs)."""
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "big") >> 1


def dist_info(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """(rank, world size): the arguments, else env RANK/WORLD_SIZE, else torch.distributed, else (0, 1)."""
    if rank is not None and world_size is not None:
        return rank, world_size
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _worker_info() -> tuple[int, int]:
    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


class ErrorLog:
    """Counts and logs the failures of one stream; raises after too many in a row."""

    def __init__(self, counters: Counter, prefix: str, limit: int) -> None:
        self.counters, self.prefix, self.limit = counters, prefix, limit
        self.in_a_row = 0

    def _failed(self, what: str, message: str) -> None:
        self.counters[self.prefix + what] += 1
        self.in_a_row += 1
        n = self.counters[self.prefix + what]
        if n <= _LOG_FIRST or n % 1000 == 0:
            log.warning("%s%s #%d: %s", self.prefix, what, n, message)
        if self.in_a_row > self.limit:
            raise RuntimeError(
                f"{self.prefix}: {self.in_a_row} failures in a row without a usable sample (last: {message})"
            )

    def shard_error(self, exn: BaseException) -> bool:
        """Handler for ``tar_samples``: count, log, go on with the next shard."""
        self._failed("shard_errors", f"{type(exn).__name__}: {exn}")
        return True

    def skipped(self, key: str, exn: BaseException) -> None:
        """A sample that could not be decoded."""
        self._failed("skipped", f"sample {key!r}: {type(exn).__name__}: {exn}")

    def filtered(self, key: str) -> None:
        """A sample with nothing for this type."""
        self._failed("filtered", f"sample {key!r} has nothing for this batch type")

    def ok(self) -> None:
        self.in_a_row = 0


def examples(src: Iterable[dict], ctx: Context, errors: ErrorLog, seed: int) -> Iterator[dict]:
    """Stage: raw samples to per-type examples; every sample gets its own seeded ``random.Random`` (so a sample's
    crop does not depend on how many draws the one before it made)."""
    seeds = random.Random(seed)
    build = BUILDERS[ctx.kind]
    for sample in src:
        errors.counters[errors.prefix + "samples"] += 1
        rng = random.Random(seeds.getrandbits(63))
        key = sample.get("__key__", "?")
        try:
            example = build(sample, ctx, rng)
        except Exception as exn:
            errors.skipped(key, exn)
            continue
        if example is None:
            errors.filtered(key)
            continue
        errors.ok()
        yield example


def split_by_node(src: Iterable[dict], rank: int, world_size: int) -> Iterator[dict]:
    """Stage: every ``world_size``-th shard, from ``rank``."""
    yield from islice(src, rank, None, world_size)


def _no_worker_seed() -> int:
    return 0  # the stream seed already holds rank and worker


def make_context(
    cfg: DataConfig, kind: str, source: SourceConfig, tokenizer: Any, ring: PixelRing | None = None
) -> Context:
    """The builders' context of one stream."""
    transform = ImageTransform(
        size=cfg.image_size,
        train=cfg.train,
        flip=cfg.train and cfg.flip.get(kind, False),
        scale=cfg.crop_scale,
        min_visible=cfg.min_visible,
        draft=cfg.jpeg_draft,
    )
    return Context(
        kind=kind,
        source=source.label,
        transform=transform,
        tokenizer=tokenizer,
        max_text_len=cfg.max_text_len[kind],
        pad_to_max=cfg.pad_to_max,
        entities_per_image=cfg.entities_per_image,
        relations_per_image=cfg.relations_per_image,
        entity_attributes=cfg.entity_attributes,
        crop_attempts=cfg.crop_attempts,
        keep_keys=cfg.keep_keys,
        foils=cfg.foils,
        ring=ring,
    )


def build_stream(
    cfg: DataConfig,
    kind: str,
    source: SourceConfig,
    urls: list[str],
    tokenizer: Any,
    counters: Counter,
    *,
    epoch: int = 0,
    rank: int = 0,
    world_size: int = 1,
    stream_index: int = 0,
    ring: PixelRing | None = None,
) -> wds.DataPipeline:
    """The batches of one (type, source) for this rank and DataLoader worker (see the module docstring);
    ``ring``: the worker's shared-memory buffers for the batches' pixels."""
    worker, _ = _worker_info()
    shared = stream_seed(cfg.seed, epoch, kind, stream_index)  # the same on every rank and worker
    local = stream_seed(shared, rank, worker)
    ctx = make_context(cfg, kind, source, tokenizer, ring)
    errors = ErrorLog(counters, f"{kind}/{source.label}/", cfg.max_consecutive_errors)
    stages: list[Any] = []
    if cfg.resampled:
        stages.append(wds.ResampledShards(urls, seed=local, worker_seed=_no_worker_seed, deterministic=True))
    else:
        stages += [
            wds.SimpleShardList(urls, seed=shared if cfg.train else None),
            functools.partial(split_by_node, rank=rank, world_size=world_size),
            wds.split_by_worker,
        ]
    # {"url": shard URL}: this rank's and worker's shards
    stages.append(functools.partial(tar_samples, handler=errors.shard_error, **source.storage_options))
    # raw samples {"__key__", "__url__", "jpg"/"json"/"txt": bytes}
    if cfg.shuffle_buffer > 1:
        stages.append(
            wds.shuffle(
                cfg.shuffle_buffer,
                min(cfg.shuffle_initial, cfg.shuffle_buffer),
                rng=random.Random(stream_seed(local, "shuffle")),
            )
        )
    stages.append(functools.partial(examples, ctx=ctx, errors=errors, seed=stream_seed(local, "examples")))
    # examples {"image": uint8 [3, H, W], texts, boxes, ...}
    stages.append(
        wds.batched(
            cfg.batch_sizes[kind],
            collation_fn=functools.partial(COLLATE[kind], ctx=ctx),
            partial=not cfg.resampled,
        )
    )
    # batches of training.batches' contract
    return wds.DataPipeline(*stages)


@dataclass(frozen=True)
class StreamPlan:
    """One (type, source) stream and its probability in the schedule."""

    kind: str
    source: SourceConfig
    urls: list[str]
    probability: float


def plan_streams(cfg: DataConfig) -> list[StreamPlan]:
    """The streams of the active types: P = ratio share of the type x weight share of the source."""
    total = sum(cfg.ratios[k] for k in cfg.active_types())
    plans = []
    for kind in cfg.active_types():
        weights = sum(s.weight for s in cfg.sources[kind])
        labels = [s.label for s in cfg.sources[kind]]
        if len(set(labels)) < len(labels):
            raise ValueError(f"sources of {kind} need distinct names (counters are kept by name): {labels}")
        for source in cfg.sources[kind]:
            urls = expand_urls(source.urls, split=source.split, **source.storage_options)
            plans.append(StreamPlan(kind, source, urls, cfg.ratios[kind] / total * source.weight / weights))
    return plans


def draw(rng: random.Random, plans: list[StreamPlan], available: list[int]) -> int:
    """Index of the next stream among ``available``, with probability proportional to its ``probability``."""
    total = sum(plans[i].probability for i in available)
    r = rng.random() * total
    for i in available:
        r -= plans[i].probability
        if r < 0:
            return i
    return available[-1]


class MixedBatches(IterableDataset):
    """Batches of one type each, drawn by ratio (see the module docstring). Each batch also carries
    ``"_counters"`` (this worker's cumulative counters) and ``"_worker"``, which ``MixedLoader`` removes."""

    def __init__(
        self, cfg: DataConfig, tokenizer: Any = None, rank: int | None = None, world_size: int | None = None
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(_need(cfg.tokenizer))
        self.rank, self.world_size = dist_info(rank, world_size)
        self.plans = plan_streams(cfg)
        self.epoch = 0
        self.counters: Counter = Counter()

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next iteration uses (seeds the schedule, shard draws, shuffles and crops)."""
        self.epoch = epoch

    def __len__(self) -> int:
        if self.cfg.epoch_batches is None:
            raise TypeError("one-pass streams without epoch_batches have no known length")
        return self.cfg.epoch_batches

    def __iter__(self) -> Iterator[dict]:
        worker, num_workers = _worker_info()
        counters = self.counters = Counter()
        ring = PixelRing(inline_bytes=INLINE_BYTES) if get_worker_info() is not None else None
        schedule = random.Random(stream_seed(self.cfg.seed, self.epoch, "schedule"))
        streams: dict[int, Iterator[dict]] = {}
        available = list(range(len(self.plans)))
        index = 0
        while available and (self.cfg.epoch_batches is None or index < self.cfg.epoch_batches):
            choice = draw(schedule, self.plans, available)
            index += 1
            if (index - 1) % num_workers != worker:
                continue
            batch = None
            while batch is None and available:
                if choice not in streams:
                    streams[choice] = iter(self._stream(choice, counters, ring))
                batch = next(streams[choice], None)
                if batch is None:
                    available.remove(choice)
                    if available:
                        choice = draw(schedule, self.plans, available)
            if batch is None:
                return
            plan = self.plans[choice]
            counters[f"{plan.kind}/{plan.source.label}/batches"] += 1
            batch["_counters"] = dict(counters)
            batch["_worker"] = worker
            yield inline_small(batch) if get_worker_info() is not None else batch

    def _stream(self, choice: int, counters: Counter, ring: PixelRing | None) -> wds.DataPipeline:
        plan = self.plans[choice]
        return build_stream(
            self.cfg,
            plan.kind,
            plan.source,
            plan.urls,
            self.tokenizer,
            counters,
            epoch=self.epoch,
            rank=self.rank,
            world_size=self.world_size,
            stream_index=choice,
            ring=ring,
        )


def inline_small(batch: dict) -> dict:
    """The batch with its tensors of at most ``INLINE_BYTES`` as NumPy arrays (pickled inline by a worker)."""
    return {
        k: v.numpy() if isinstance(v, torch.Tensor) and v.nbytes <= INLINE_BYTES else v for k, v in batch.items()
    }


def as_tensors(batch: dict) -> dict:
    """The batch with its NumPy arrays as tensors again (sharing their memory)."""
    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in batch.items()}


def _as_is(batch: dict) -> dict:
    return batch  # the workers' batches are complete: no default_convert (it would undo ``inline_small``)


def _need(path: str | None) -> str:
    if not path:
        raise ValueError("DataConfig.tokenizer (a local folder) is not set and no tokenizer was given")
    return path


def summarise(counters: dict[str, int]) -> dict[str, int]:
    """The counters with totals over streams: samples_skipped, shards_skipped, samples_filtered, batches,
    samples."""
    out = dict(sorted(counters.items()))
    for total, what in (
        ("samples_skipped", "skipped"),
        ("shards_skipped", "shard_errors"),
        ("samples_filtered", "filtered"),
        ("batches", "batches"),
        ("samples", "samples"),
    ):
        out[total] = sum(v for k, v in counters.items() if k.endswith("/" + what))
    return out


class MixedLoader:
    """A DataLoader over ``MixedBatches`` that strips and aggregates the workers' counters.

    Each iteration is one epoch, seeded by ``epoch``, which then advances by one (``set_epoch`` to resume)."""

    def __init__(
        self,
        dataset: MixedBatches,
        num_workers: int = 0,
        pin_memory: bool = False,
        prefetch_factor: int | None = None,
        multiprocessing_context: Any = None,
    ) -> None:
        self.dataset = dataset
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.prefetch_factor = prefetch_factor
        self.multiprocessing_context = multiprocessing_context
        self.epoch = 0
        self._done: Counter = Counter()
        self._current: dict[int, dict[str, int]] = {}

    def set_epoch(self, epoch: int) -> None:
        """The epoch of the next iteration."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[dict]:
        for part in self._current.values():
            self._done.update(part)
        self._current = {}
        self.dataset.set_epoch(self.epoch)
        self.epoch += 1
        if self.num_workers > 0:
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        loader = DataLoader(
            self.dataset,
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            prefetch_factor=self.prefetch_factor if self.num_workers > 0 else None,
            multiprocessing_context=self.multiprocessing_context if self.num_workers > 0 else None,
            collate_fn=_as_is,
        )
        for batch in loader:
            self._current[int(batch.pop("_worker"))] = batch.pop("_counters")
            yield as_tensors(batch)

    def counters(self) -> dict[str, int]:
        """Cumulative counters over all epochs and workers so far, with totals (see ``summarise``)."""
        total = Counter(self._done)
        for part in self._current.values():
            total.update(part)
        return summarise(total)


def build_loader(
    cfg: DataConfig,
    tokenizer: Any = None,
    rank: int | None = None,
    world_size: int | None = None,
    pin_memory: bool = False,
) -> MixedLoader:
    """The loader of mixed batches for this rank, with ``cfg.num_workers`` DataLoader workers."""
    return MixedLoader(
        MixedBatches(cfg, tokenizer, rank, world_size), num_workers=cfg.num_workers, pin_memory=pin_memory
    )
