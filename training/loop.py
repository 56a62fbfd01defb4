"""The training loop: AdamW with warm-up and decay, grad accumulation and clipping, DDP, checkpoints, metrics.

``train(cfg)`` runs ``cfg.train.steps`` optimizer steps of ``cfg.model`` on ``cfg.data``'s mixed batches and
returns a summary. One optimizer step takes ``grad_accum`` batches (each of one type, as the data schedule
draws them). Under ``torchrun`` (``WORLD_SIZE`` > 1) every process joins a process group (gloo on CPU, nccl on
CUDA), wraps the model in ``DistributedDataParallel`` (``find_unused_parameters``: each batch type uses a
subset of the parameters) and reads its own shards (``build_loader(rank, world_size)``); every rank draws the
same schedule of batch types, so the same losses run everywhere.

Per step, rank 0 appends to ``{out}/metrics.jsonl``: step, batch type, every loss (averaged over ranks and
micro-batches), lr, grad norm, samples/s (all ranks), the data-wait share of the step time; every
``log_every`` steps also the loader's counters (skipped samples and shards, filtered samples, since this
process started). TensorBoard scalars go to ``{out}/tb`` when ``torch.utils.tensorboard`` is importable.
At the end every rank writes ``{out}/ranks/rank{R:05d}.json`` (its step, samples read, loader counters and a
SHA-256 of its parameters and buffers: the ranks of a run must agree); with ``data.keep_keys`` every rank
also logs the sample keys of each step to ``{out}/ranks/keys-rank{R:05d}.jsonl``.

Resume (``train.resume``) reloads the latest checkpoint: weights, optimizer, step, each rank's random states
and the data position. The data stream is a deterministic function of ``(data.seed, epoch)`` (see
``training.data.streams``), so the position is ``(epoch, batches consumed in that epoch)``: the resumed loader
starts that epoch again and discards the consumed batches (they are rebuilt, which costs their loading time,
but no state of the stream needs saving). The loader never touches the training random state (every fetch
runs under ``torch.random.fork_rng``; the DataLoader otherwise draws its base seed from it at each epoch), so
after a resume on CPU the losses equal those of an uninterrupted run bit for bit. The learning rate is a pure
function of the step (``training.schedule``): the scheduler's state is the step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from sgverbalise.schemas.layout import relations_for
from sgverbalise.storage import redact
from sgverbalise.training import checkpoint as ckpt
from sgverbalise.training.config import ConfigError, RunConfig
from sgverbalise.training.data.sources import SourceConfig, load_relations
from sgverbalise.training.data.streams import build_loader, stream_seed
from sgverbalise.training.data.tokenizer import load_tokenizer
from sgverbalise.training.models import RelationVLM, build_model
from sgverbalise.training.schedule import lr_at

log = logging.getLogger(__name__)

METRICS_NAME = "metrics.jsonl"
CONFIG_YAML = "config.yaml"
RANKS_DIR = "ranks"
COUNTER_TOTALS = ("samples", "samples_skipped", "shards_skipped", "samples_filtered", "batches")
COLLAPSED_COS = 0.95  # mean pairwise cosine of the ITC image features above which they count as collapsed
MIN_ITM_SEPARATION = 0.05  # mean p(match) gap between ITM positives and negatives below which ITM is stuck


@dataclass
class TrainState:
    """Where a run is: optimizer steps done, the data position and the samples seen by all ranks."""

    step: int = 0
    epoch: int = 0  # loader epoch of the next batch
    batch_in_epoch: int = 0  # batches of that epoch already consumed
    samples: int = 0

    def to_dict(self) -> dict[str, int]:
        """Plain values (for trainer_state.json)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainState:
        """The state of a trainer_state.json (other keys ignored)."""
        return cls(**{f.name: int(values[f.name]) for f in dataclasses.fields(cls) if f.name in values})


@dataclass
class Dist:
    """This process's place in the run and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    @property
    def main(self) -> bool:
        """Rank 0: writes metrics, checkpoints and the progress bar."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (no-op in a single process)."""
        if self.world_size > 1:
            dist.barrier()

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean of ``values`` over ranks."""
        if self.world_size > 1:
            values = values.clone()
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
            values /= self.world_size
        return values


def init_distributed(device: str = "auto") -> Dist:
    """Join the process group when ``WORLD_SIZE`` > 1 (gloo on CPU, nccl on CUDA) and pick the device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    owns = False
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        owns = True
    return Dist(rank, world_size, local_rank, dev, owns)


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast (``bf16``, or ``auto`` on a CUDA device that supports it), else nothing."""
    use_bf16 = precision == "bf16" or (
        precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()
    )
    if use_bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ------------------------------------------------------------------------------------------------ set-up


def relations_url(cfg: RunConfig) -> str | None:
    """relations.json for the MRC head: ``train.relations``, else beside the first MRC source's shards."""
    if cfg.train.relations:
        return cfg.train.relations
    sources = (cfg.data.sources.get("mrc") if cfg.data else None) or []
    return source_relations_url(sources[0]) if sources else None


def mrc_relations(cfg: RunConfig, url: str) -> list[str]:
    """The MRC head's relations (from ``url``), after checking that every MRC source that has a relations.json
    has the same: the relation ids of its samples index that file. ConfigError names the first that differs."""
    head = load_relations(url)
    for source in (cfg.data.sources.get("mrc") if cfg.data else None) or []:
        other = source_relations_url(source)
        if other == url:
            continue
        try:
            relations = load_relations(other, **source.storage_options)
        except FileNotFoundError:  # shards outside a shard-set folder: nothing to compare
            continue
        if relations != head:
            raise ConfigError(
                f"MRC source {source.label}: its relations.json ({redact(other)}, {len(relations)} relations) is not "
                f"the MRC head's ({redact(url)}, {len(head)}): its relation ids would mean other relations. Build the "
                "shard sets with one vocabulary (build-shards --relations FILE), or train on one of them")
    return head


def source_relations_url(source: SourceConfig) -> str:
    """The relations.json of a scene-graph source's shard set (the layout contract's ``relations_for``)."""
    spec = source.urls if isinstance(source.urls, str) else source.urls[0]
    return relations_for(spec, source.split, **source.storage_options)


def checkpoint_vocab_size(folder: str) -> int:
    """``vocab_size`` of a local Hugging Face model folder (``AutoConfig``, never a download); ConfigError when
    the folder has no readable config with one."""
    from transformers import AutoConfig

    try:
        return int(AutoConfig.from_pretrained(folder, local_files_only=True).vocab_size)
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise ConfigError(f"model.text.init_path: {folder} gives no vocab_size ({exc})") from exc


def align_model_config(cfg: RunConfig, tokenizer: Any) -> RunConfig:
    """The config with the text model's special token ids and vocabulary (when not initialised from a
    checkpoint) following the tokenizer, and ``num_relations`` following relations.json."""
    model = cfg.model
    text = dataclasses.replace(
        model.text,
        pad_token_id=tokenizer.pad_token_id,
        cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id,
        mask_token_id=tokenizer.mask_token_id,
    )
    if model.text.init_path is None:
        text.vocab_size = len(tokenizer)
    else:  # the checkpoint's vocabulary, whatever the config (or its tiny preset) says
        text.vocab_size = checkpoint_vocab_size(model.text.init_path)
        if len(tokenizer) > text.vocab_size:
            raise ConfigError(f"tokenizer of {len(tokenizer)} tokens, text model {model.text.init_path} of "
                              f"{text.vocab_size}")
    model = dataclasses.replace(model, text=text)
    url = relations_url(cfg) if model.use_mrc else None
    if url is not None:
        model = dataclasses.replace(model, num_relations=len(mrc_relations(cfg, url)))
    return dataclasses.replace(cfg, model=model)


def build_optimizer(model: RelationVLM, cfg: RunConfig) -> torch.optim.AdamW:
    """AdamW over the model's decay / no-decay groups."""
    t = cfg.train
    return torch.optim.AdamW(model.param_groups(t.weight_decay), lr=t.lr, betas=cfg.betas, eps=t.eps)


def seed_everything(seed: int) -> None:
    """Seed torch, Python and NumPy."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


# ------------------------------------------------------------------------------------------------ data


def batch_stream(loader: Any, state: TrainState) -> Iterator[dict]:
    """Batches epoch after epoch from ``state``'s position (consumed batches of that epoch are discarded);
    ``state.epoch`` / ``state.batch_in_epoch`` follow every batch handed out."""
    skip = state.batch_in_epoch
    while True:
        loader.set_epoch(state.epoch)
        seen = 0
        for batch in loader:
            seen += 1
            if seen <= skip:
                continue
            state.batch_in_epoch = seen
            yield batch
        if seen == 0:
            raise RuntimeError(f"epoch {state.epoch} of the data yielded no batch")
        skip = 0
        state.epoch += 1
        state.batch_in_epoch = 0


def next_batch(stream: Iterator[dict]) -> dict:
    """The next batch, fetched without touching the training random state."""
    with torch.random.fork_rng(devices=[]):
        return next(stream)


def to_device(batch: dict, device: torch.device) -> dict:
    """The batch's tensors on ``device``."""
    if device.type == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def batch_samples(batch: dict) -> int:
    """Images in a batch."""
    return int(batch["image"].shape[0])


# ------------------------------------------------------------------------------------------------ metrics


class MetricsLog:
    """metrics.jsonl (appended, one row per step) and, when available, TensorBoard scalars (rank 0)."""

    def __init__(self, out: Path, resume_step: int | None, tensorboard: bool) -> None:
        self.path = out / METRICS_NAME
        if resume_step is not None and self.path.exists():
            keep = [line for line in self.path.read_text().splitlines() if _row_step(line) <= resume_step]
            self.path.write_text("".join(line + "\n" for line in keep))
        elif resume_step is None:
            self.path.write_text("")
        self.file = self.path.open("a", encoding="utf-8")
        self.tb = _summary_writer(out / "tb") if tensorboard else None

    def write(self, row: dict[str, Any]) -> None:
        """One step's row."""
        self.file.write(json.dumps(row, sort_keys=True) + "\n")
        self.file.flush()
        if self.tb is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.tb.add_scalar(key if "/" in key else f"train/{key}", value, row["step"])
            for key, value in row.get("loader", {}).items():
                self.tb.add_scalar(f"loader/{key}", value, row["step"])

    def close(self) -> None:
        """Flush and close."""
        self.file.close()
        if self.tb is not None:
            self.tb.close()


def _row_step(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return -1


def _summary_writer(folder: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.info("tensorboard is not installed: metrics go to %s only", METRICS_NAME)
        return None
    return SummaryWriter(log_dir=str(folder))


def _progress(cfg: RunConfig, start: int, main: bool) -> Any:
    from tqdm.auto import tqdm

    shown = main and cfg.train.progress and sys.stderr.isatty()  # no carriage returns in a log file
    return tqdm(total=cfg.train.steps, initial=start, disable=not shown, unit="step")


# ------------------------------------------------------------------------------------------------ steps


@dataclass
class StepResult:
    """What one optimizer step measured."""

    kind: str
    losses: dict[str, float]
    grad_norm: float
    samples: int
    seconds: float
    wait: float
    skipped: bool
    keys: list[str] = dataclasses.field(default_factory=list)
    diagnostics: dict[str, float] = dataclasses.field(default_factory=dict)  # the model's, see RelationVLM


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    stream: Iterator[dict],
    cfg: RunConfig,
    step: int,
    world: Dist,
) -> StepResult:
    """One optimizer step over ``grad_accum`` batches; a non-finite gradient norm skips the update."""
    t = cfg.train
    lr = lr_at(step, t.lr, t.steps, t.warmup, t.schedule, t.min_lr)
    for group in optimizer.param_groups:
        group["lr"] = lr
    alpha = None
    if t.alpha_warmup > 0:
        alpha = cfg.model.distill_alpha * min(1.0, step / t.alpha_warmup)
    start = time.perf_counter()
    wait, samples, kinds, keys = 0.0, 0, [], []
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    health: dict[str, list[torch.Tensor]] = {}
    inner = model.module if isinstance(model, DistributedDataParallel) else model
    for _ in range(t.grad_accum):
        fetched = time.perf_counter()
        batch = next_batch(stream)
        wait += time.perf_counter() - fetched
        kinds.append(batch["type"])
        keys += batch.pop("keys", [])
        samples += batch_samples(batch)
        batch = to_device(batch, world.device)
        with autocast_for(t.precision, world.device):
            out = model(batch, alpha=alpha)
        (out["loss"] / t.grad_accum).backward()
        for name, value in out.items():
            sums[name] = sums.get(name, 0.0) + value.detach().float()
            counts[name] = counts.get(name, 0) + 1
        for name, value in getattr(inner, "diagnostics", {}).items():
            health.setdefault(name, []).append(value.detach().float())
    params = [p for p in model.parameters() if p.requires_grad]
    norm = torch.nn.utils.clip_grad_norm_(params, t.clip if t.clip is not None else float("inf"))
    skipped = not bool(torch.isfinite(norm))
    if not skipped:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    names = sorted(sums)
    means = world.mean(torch.stack([sums[n] / counts[n] for n in names]))
    kind = kinds[0] if len(set(kinds)) == 1 else "+".join(kinds)
    diagnostics: dict[str, float] = {}
    if health:  # every rank runs the same batch types, so the same names (averaged over ranks as the losses)
        kept = sorted(health)
        values = world.mean(torch.stack([torch.stack(health[n]).mean() for n in kept]))
        diagnostics = dict(zip(kept, values.tolist(), strict=True))
    return StepResult(
        kind=kind,
        losses=dict(zip(names, means.tolist(), strict=True)),
        grad_norm=float(norm),
        samples=samples * world.world_size,
        seconds=time.perf_counter() - start,
        wait=wait,
        skipped=skipped,
        keys=keys,
        diagnostics=diagnostics,
    )


def step_row(state: TrainState, result: StepResult, lr: float) -> dict[str, Any]:
    """The metrics row of a step."""
    return {
        "step": state.step,
        "epoch": state.epoch,
        "type": result.kind,
        **{name: round(value, 6) for name, value in result.losses.items()},
        **{name: round(value, 6) for name, value in result.diagnostics.items()},
        "lr": lr,
        "grad_norm": round(result.grad_norm, 6),
        "samples_per_s": round(result.samples / max(result.seconds, 1e-9), 3),
        "data_wait": round(result.wait / max(result.seconds, 1e-9), 4),
        "step_s": round(result.seconds, 5),
        **({"skipped_update": True} if result.skipped else {}),
    }


def health_warnings(rows: list[dict[str, Any]]) -> list[str]:
    """Warnings a user can act on from recent metrics rows: collapsed ITC image features (``feature_cos``),
    ITM that does not separate its positives from its negatives (``itm_separation``)."""
    found = []
    cos = [r["feature_cos"] for r in rows if "feature_cos" in r]
    if cos and sum(cos) / len(cos) > COLLAPSED_COS:
        found.append(
            f"features collapsed: the ITC image features of a batch have mean pairwise cosine "
            f"{sum(cos) / len(cos):.3f} (> {COLLAPSED_COS}) over the last {len(cos)} steps; every image looks "
            "the same to the model (check image normalisation, initialisation, learning rate, temperature)"
        )
    sep = [r["itm_separation"] for r in rows if "itm_separation" in r]
    if sep and sum(sep) / len(sep) < MIN_ITM_SEPARATION:
        found.append(
            f"ITM does not separate: mean p(match) of its positives exceeds that of its negatives by "
            f"{sum(sep) / len(sep):.3f} (< {MIN_ITM_SEPARATION}) over the last {len(sep)} steps; ITM sits at "
            "its prior (see model.fusion.cross_attention_scale)"
        )
    return found


# ------------------------------------------------------------------------------------------------ checkpoints


def save(
    cfg: RunConfig,
    world: Dist,
    model: RelationVLM,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    tokenizer: Any,
) -> Path:
    """A checkpoint of ``state.step`` (rank 0 writes the model and optimizer, every rank its RNG), pruned."""
    t, out = cfg.train, Path(cfg.train.out)
    position = dataclasses.replace(state)
    if cfg.data.epoch_batches and position.batch_in_epoch >= cfg.data.epoch_batches:
        position.epoch, position.batch_in_epoch = position.epoch + 1, 0
    folder = ckpt.begin(out, state.step) if world.main else ckpt.temp_dir(out, state.step)
    world.barrier()
    ckpt.write_rng(folder, world.rank)
    if world.main:
        meta = {
            **position.to_dict(),
            "world_size": world.world_size,
            "lr": lr_at(state.step, t.lr, t.steps, t.warmup, t.schedule, t.min_lr),
            "schedule": {
                "name": t.schedule, "lr": t.lr, "min_lr": t.min_lr, "warmup": t.warmup, "steps": t.steps
            },
            "milestone": ckpt.is_milestone(state.step, t.milestones, t.milestone_every),
            "time": time.time(),
        }
        ckpt.write_main(folder, model, optimizer, meta, tokenizer)
    world.barrier()
    final = out / ckpt.step_name(state.step)
    if world.main:
        final = ckpt.commit(folder, state.step)
        ckpt.prune(out, t.keep_last, t.milestones, t.milestone_every)
    world.barrier()
    return final


def resume_from(cfg: RunConfig, world: Dist, model: RelationVLM, optimizer: torch.optim.Optimizer) -> tuple:
    """(state, folder) of the latest checkpoint, loaded into model and optimizer; (None, None) if none."""
    folder = ckpt.latest(cfg.train.out)
    if folder is None:
        log.warning("resume: no checkpoint in %s, starting from step 0", cfg.train.out)
        return None, None
    meta = ckpt.load_checkpoint(folder, model, optimizer, map_location=world.device, restore_random=False)
    if meta.get("world_size", world.world_size) != world.world_size:
        log.warning("resume: %s was written by %s ranks, this run has %s (random states are not restored)",
                    folder, meta.get("world_size"), world.world_size)
    log.info("resuming from %s (step %s)", folder, meta["step"])
    return TrainState.from_dict(meta), folder


# ------------------------------------------------------------------------------------------------ train


def train(cfg: RunConfig) -> dict[str, Any]:
    """Train as ``cfg`` says; returns a summary (steps, samples, last losses, checkpoint, timings)."""
    if cfg.data is None:
        raise ConfigError("training needs a data section")
    t = cfg.train
    world = init_distributed(t.device)
    try:
        return _run(cfg, world)
    finally:
        if world.owns_group:
            dist.destroy_process_group()


def _run(cfg: RunConfig, world: Dist) -> dict[str, Any]:
    t, out = cfg.train, Path(cfg.train.out)
    if t.threads:
        torch.set_num_threads(t.threads)
    if not cfg.data.tokenizer:
        raise ConfigError("data.tokenizer (a tokenizer folder, see `sgv train-tokenizer`) is not set")
    tokenizer = load_tokenizer(cfg.data.tokenizer)
    cfg = align_model_config(cfg, tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    if world.main:
        (out / CONFIG_YAML).write_text(cfg.to_yaml(), encoding="utf-8")
    seed_everything(t.seed)
    model = build_model(cfg.model).to(world.device).train()
    optimizer = build_optimizer(model, cfg)
    state, resumed = TrainState(), None
    if t.resume:
        loaded, resumed = resume_from(cfg, world, model, optimizer)
        state = loaded or state
    wrapped: torch.nn.Module = model
    if world.world_size > 1:
        ids = [world.local_rank] if world.device.type == "cuda" else None
        wrapped = DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)
    pin = world.device.type == "cuda"
    loader = build_loader(cfg.data, tokenizer, world.rank, world.world_size, pin_memory=pin)
    metrics = MetricsLog(out, state.step if resumed else None, t.tensorboard) if world.main else None
    keys_log = _keys_log(out, world.rank) if cfg.data.keep_keys else None
    seed_everything(stream_seed(t.seed, "train", world.rank))
    if resumed is not None:
        ckpt.load_rng(resumed, world.rank)
    stream = batch_stream(loader, state)
    bar = _progress(cfg, state.step, world.main)
    first_step, started, last, final, local_samples = state.step, time.perf_counter(), None, None, 0
    history: list[dict[str, Any]] = []
    recent: list[dict[str, Any]] = []  # the last log_every rows, for the health check
    warnings: list[str] = []
    try:
        while state.step < t.steps:
            result = train_step(wrapped, optimizer, stream, cfg, state.step, world)
            lr = optimizer.param_groups[0]["lr"]
            state.step += 1
            state.samples += result.samples
            local_samples += result.samples // world.world_size
            row = step_row(state, result, lr)
            if state.step % t.log_every == 0 or state.step == t.steps:
                _add_counters(row, loader, world)
            history.append({"step": state.step, "type": result.kind, **result.losses})
            recent = [*recent[-(t.log_every - 1):], row] if t.log_every > 1 else [row]
            if state.step == t.health_check_step:
                found = health_warnings(recent)
                for message in found:
                    if world.main:
                        log.warning("step %d: %s", state.step, message)
                if found:
                    row["warnings"] = found
                warnings += found
            last = row
            if keys_log is not None:
                entry = {"step": state.step, "type": result.kind, "keys": result.keys}
                keys_log.write(json.dumps(entry) + "\n")
            if world.main:
                metrics.write(row)
                bar.update(1)
                bar.set_postfix(loss=f"{result.losses['loss']:.4f}", sps=f"{row['samples_per_s']:.0f}",
                                wait=f"{100 * row['data_wait']:.0f}%", refresh=False)
            if state.step % t.ckpt_every == 0 or state.step == t.steps:
                final = save(cfg, world, model, optimizer, state, tokenizer)
            if t.stop_after is not None and state.step >= t.stop_after:
                break
    finally:
        bar.close()
        for handle in (metrics, keys_log):
            if handle is not None:
                handle.close()
    summary = {
        "out": str(out),
        "step": state.step,
        "steps_run": state.step - first_step,
        "epoch": state.epoch,
        "samples": state.samples,
        "seconds": round(time.perf_counter() - started, 3),
        "resumed_from": str(resumed) if resumed else None,
        "checkpoint": str(final) if final else None,
        "last": last,
        "history": history,
        "warnings": warnings,
        "counters": loader.counters(),
        "world_size": world.world_size,
        "model": cfg.model.name,
    }
    _write_rank_summary(out, world, model, summary, local_samples)
    return summary


def _add_counters(row: dict[str, Any], loader: Any, world: Dist) -> None:
    """The loader's totals into a metrics row, and a log line (rank 0)."""
    counters = loader.counters()
    row["loader"] = {k: counters.get(k, 0) for k in COUNTER_TOTALS}
    if world.main:
        log.info(
            "step %d %s loss %.4f lr %.3g %.1f samples/s data wait %.0f%% loader %s",
            row["step"], row["type"], row["loss"], row["lr"], row["samples_per_s"], 100 * row["data_wait"],
            row["loader"],
        )


def _keys_log(out: Path, rank: int) -> Any:
    folder = out / RANKS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return (folder / f"keys-rank{rank:05d}.jsonl").open("a", encoding="utf-8")


def parameter_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter and buffer, by name (ranks of a run must agree)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _write_rank_summary(out: Path, world: Dist, model: torch.nn.Module, summary: dict, samples: int) -> None:
    """``{out}/ranks/rank{R}.json``: this rank's step, samples read, counters and parameter digest."""
    folder = out / RANKS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    doc = {
        "rank": world.rank,
        "world_size": world.world_size,
        "step": summary["step"],
        "samples_read": samples,
        "counters": summary["counters"],
        "parameters_sha256": parameter_digest(model),
    }
    (folder / f"rank{world.rank:05d}.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
