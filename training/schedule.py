"""Learning-rate schedules as pure functions of the step (linear warm-up, then cosine, linear or constant).

``lr_at(step, ...)`` is the learning rate of optimizer step ``step`` (0-based): during the first ``warmup``
steps it rises linearly from ``base_lr / warmup`` to ``base_lr``; afterwards it follows ``schedule`` from
``base_lr`` at step ``warmup`` down to ``min_lr`` at step ``total`` (cosine, linear) or stays at ``base_lr``
(constant). Steps past ``total`` keep ``min_lr``.
"""

from __future__ import annotations

import math
from collections.abc import Callable


def warmup_lr(step: int, base_lr: float, warmup: int) -> float:
    """Linear warm-up: ``base_lr * (step + 1) / warmup``."""
    return base_lr * (step + 1) / warmup


def cosine_decay(progress: float, base_lr: float, min_lr: float) -> float:
    """Half a cosine from ``base_lr`` (progress 0) to ``min_lr`` (progress 1)."""
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def linear_decay(progress: float, base_lr: float, min_lr: float) -> float:
    """A straight line from ``base_lr`` (progress 0) to ``min_lr`` (progress 1)."""
    return base_lr + (min_lr - base_lr) * progress


def constant(progress: float, base_lr: float, min_lr: float) -> float:
    """``base_lr`` whatever the progress."""
    return base_lr


SCHEDULES: dict[str, Callable[[float, float, float], float]] = {
    "cosine": cosine_decay,
    "linear": linear_decay,
    "constant": constant,
}


def lr_at(
    step: int, base_lr: float, total: int, warmup: int = 0, schedule: str = "cosine", min_lr: float = 0.0
) -> float:
    """The learning rate of optimizer step ``step`` (see the module docstring)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; known: {sorted(SCHEDULES)}")
    if step < warmup:
        return warmup_lr(step, base_lr, warmup)
    span = max(total - warmup, 1)
    progress = min(max(step - warmup, 0) / span, 1.0)
    return SCHEDULES[schedule](progress, base_lr, min_lr)
