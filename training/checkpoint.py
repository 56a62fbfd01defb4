"""Checkpoints of a run: ``{out}/step-{N:08d}/`` folders, written atomically, pruned to last K + milestones.

One checkpoint folder holds::

    config.json, model.safetensors  the model (``save_pretrained``: weights, momentum copies, queues)
    tokenizer/                      the tokenizer the run trains with (evaluation reads it from here)
    optimizer.pt                    ``optimizer.state_dict()`` (tensors and plain values only)
    trainer_state.json              step, data position (epoch, batch in epoch), samples, schedule, world size
    rng-rank{R:05d}.pt              each rank's torch / CUDA / Python / NumPy random states (tensors, ints)

Nothing is pickled as an arbitrary object: the ``.pt`` files are read back with ``torch.load(...,
weights_only=True)``. A checkpoint is written into ``.tmp-step-{N:08d}/`` and renamed into place once
complete, so a folder named ``step-*`` is always whole; ``latest`` ignores anything else. In a multi-process
run rank 0 creates and commits the folder, every rank writes its own RNG file in between (``training.loop``
puts barriers around the three phases).
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model

from sgverbalise.training.models.vlm import CONFIG_NAME, WEIGHTS_NAME

STEP_DIR = re.compile(r"^step-(\d+)$")
STATE_NAME = "trainer_state.json"
OPTIMIZER_NAME = "optimizer.pt"
TOKENIZER_DIR = "tokenizer"
_TMP_PREFIX = ".tmp-"


def step_name(step: int) -> str:
    """The folder name of the checkpoint of ``step``."""
    return f"step-{step:08d}"


def rng_name(rank: int) -> str:
    """The RNG file of ``rank``."""
    return f"rng-rank{rank:05d}.pt"


def list_checkpoints(out: str | Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` of the complete checkpoints in ``out``, by step."""
    root = Path(out)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = STEP_DIR.match(child.name)
        if match and child.is_dir() and (child / STATE_NAME).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest(out: str | Path) -> Path | None:
    """The checkpoint with the highest step in ``out``, or None."""
    found = list_checkpoints(out)
    return found[-1][1] if found else None


# ------------------------------------------------------------------------------------------------ RNG state


def capture_rng() -> dict[str, Any]:
    """This process's random states as tensors and plain values (``torch.load(weights_only=True)``-safe)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Set the random states saved by ``capture_rng``."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


# --------------------------------------------------------------------------------------------------- saving


def begin(out: str | Path, step: int) -> Path:
    """Create the temporary folder of ``step``'s checkpoint (rank 0; a stale one is removed first)."""
    tmp = temp_dir(out, step)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def temp_dir(out: str | Path, step: int) -> Path:
    """The temporary folder ``begin`` made (for the other ranks)."""
    return Path(out) / (_TMP_PREFIX + step_name(step))


def write_rng(folder: Path, rank: int) -> None:
    """This rank's random states into the checkpoint folder."""
    torch.save(capture_rng(), folder / rng_name(rank))


def write_main(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    tokenizer: Any = None,
) -> None:
    """Model, tokenizer, optimizer and trainer state into the checkpoint folder (rank 0)."""
    model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder / TOKENIZER_DIR))
    torch.save(optimizer.state_dict(), folder / OPTIMIZER_NAME)
    text = json.dumps(state, indent=2, sort_keys=True) + "\n"
    (folder / STATE_NAME).write_text(text, encoding="utf-8")


def commit(folder: Path, step: int) -> Path:
    """Rename the complete temporary folder to ``step-{N:08d}`` (replacing an older one of the same step)."""
    final = folder.parent / step_name(step)
    if final.exists():
        shutil.rmtree(final)
    folder.rename(final)
    return final


def save_checkpoint(
    out: str | Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    tokenizer: Any = None,
) -> Path:
    """A whole checkpoint of a single-process run (see ``training.loop`` for the multi-process order)."""
    folder = begin(out, step)
    write_rng(folder, 0)
    write_main(folder, model, optimizer, state, tokenizer)
    return commit(folder, step)


def is_milestone(step: int, milestones: list[int], milestone_every: int = 0) -> bool:
    """Whether ``step``'s checkpoint is kept whatever ``keep_last`` says."""
    return step in milestones or (milestone_every > 0 and step % milestone_every == 0)


def prune(
    out: str | Path, keep_last: int, milestones: list[int] = (), milestone_every: int = 0
) -> list[Path]:
    """Remove checkpoints other than the last ``keep_last`` and the milestones, and stale temporary folders;
    returns the removed folders."""
    found = list_checkpoints(out)
    keep = {step for step, _ in found[-keep_last:]}
    removed = []
    for step, folder in found:
        if step not in keep and not is_milestone(step, list(milestones), milestone_every):
            shutil.rmtree(folder)
            removed.append(folder)
    for stale in Path(out).glob(_TMP_PREFIX + "step-*"):
        shutil.rmtree(stale, ignore_errors=True)
        removed.append(stale)
    return removed


# -------------------------------------------------------------------------------------------------- loading


def read_state(folder: str | Path) -> dict[str, Any]:
    """The trainer state of a checkpoint."""
    return json.loads((Path(folder) / STATE_NAME).read_text(encoding="utf-8"))


def load_checkpoint(
    folder: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    rank: int = 0,
    map_location: str | torch.device = "cpu",
    restore_random: bool = True,
) -> dict[str, Any]:
    """Load weights (strict), optimizer and this rank's RNG states from a checkpoint; returns its trainer
    state. A missing RNG file (another world size) leaves the random states as they are."""
    folder = Path(folder)
    saved = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    current = model.config.to_dict()
    if saved != current:
        differ = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        raise ValueError(f"checkpoint {folder} is of another model config (differs in {differ})")
    load_model(model, str(folder / WEIGHTS_NAME), strict=True, device=str(map_location))
    if optimizer is not None:
        saved_state = torch.load(folder / OPTIMIZER_NAME, map_location=map_location, weights_only=True)
        optimizer.load_state_dict(saved_state)
    if restore_random:
        load_rng(folder, rank)
    return read_state(folder)


def load_rng(folder: str | Path, rank: int = 0) -> bool:
    """Restore this rank's random states from a checkpoint; False when it has no file for ``rank``."""
    rng_file = Path(folder) / rng_name(rank)
    if not rng_file.is_file():
        return False
    restore_rng(torch.load(rng_file, weights_only=True))
    return True
