"""Reused shared-memory buffers for the pixels a DataLoader worker hands to the main process.

A worker's batch images travel in shared memory. Collating them into a fresh shared-memory tensor per batch
(``default_collate`` in a worker) costs more than the copy itself: the new segment is allocated and zeroed by
the kernel and every one of its pages faults in when the pixels are written (about 0.1 ms per 224 px image
against 0.005 ms for the copy into memory already mapped). ``PixelRing`` keeps a few segments per worker and
stacks each batch into a free one.

A segment starts with a ``HEADER``-byte header whose first byte says whether the main process still holds the
batch. The batch's image is a ``RingPixels``; pickled for the main process (torch's reducers pass the segment
by file descriptor, no copy) it becomes a plain uint8 tensor there, whose memory is the segment's. When the
last tensor (or view) over that memory goes away in the main process, a finalizer clears the busy byte and the
worker may fill the segment again. A copy made in between (``pin_memory``, ``clone``) does not hold the
segment. When every segment is busy and the ring has ``limit`` of them, the batch goes to a fresh segment of
its own, as ``default_collate`` does, so a consumer that keeps batches (``list(loader)``) gets correct ones.
Pixels of at most ``inline_bytes`` are stacked in ordinary memory: the stream pickles such small tensors inline
(``training.data.streams.inline_small``), cheaper for the main process than any shared memory.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import default_collate

HEADER = 64  # bytes before the pixels (keeps them 64-byte aligned); byte 0: busy
DEFAULT_SLOTS = 6  # prefetch_factor (2) batches queued + one being built + those the consumer holds, with room


class RingPixels:
    """A batch's uint8 pixels in a segment of a ``PixelRing``; unpickled, a tensor (see the module docstring)."""

    def __init__(self, segment: torch.Tensor, shape: tuple[int, ...]) -> None:
        self.segment, self.shape = segment, shape

    def __reduce__(self) -> tuple:
        return _receive, (self.segment, self.shape)


def _pixels(segment: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    return segment[HEADER : HEADER + math.prod(shape)].view(shape)


def _release(busy: np.ndarray) -> None:
    busy[0] = 0


def _receive(segment: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """The pixels of a segment received from a worker, which gets the segment back once they are gone."""
    holder = _pixels(segment, shape).numpy()  # a new array: the tensors below keep it alive, and only them
    weakref.finalize(holder, _release, segment[:1].numpy())
    return torch.from_numpy(holder)


class PixelRing:
    """Up to ``limit`` shared-memory segments a worker stacks its batches' pixels into (see the module
    docstring)."""

    def __init__(self, limit: int = DEFAULT_SLOTS, inline_bytes: int = 0) -> None:
        self.limit, self.inline_bytes = limit, inline_bytes
        self.segments: list[torch.Tensor] = []
        self.flags: list[np.ndarray] = []  # byte 0 of each segment, as a NumPy view (cheap to read)
        self.fresh = 0  # batches that found no free segment and got a fresh one

    def _free(self, nbytes: int) -> int | None:
        """Index of a free segment of at least ``nbytes`` (a free but smaller one is replaced), else None."""
        small = None
        for i, flag in enumerate(self.flags):
            if flag[0] == 0:
                if self.segments[i].numel() - HEADER >= nbytes:
                    return i
                small = i
        if small is None and len(self.segments) >= self.limit:
            return None
        segment = torch.empty(HEADER + nbytes, dtype=torch.uint8).share_memory_()
        segment[:HEADER] = 0
        if small is None:
            self.segments.append(segment)
            self.flags.append(segment[:1].numpy())
            return len(self.segments) - 1
        self.segments[small], self.flags[small] = segment, segment[:1].numpy()
        return small

    def stack(self, pixels: Sequence[torch.Tensor]) -> RingPixels | torch.Tensor:
        """The uint8 pixels [N, 3, H, W] in a free segment, marked busy; a fresh shared tensor when none is free;
        an ordinary one when they are small (``inline_bytes``)."""
        shape = (len(pixels), *pixels[0].shape)
        nbytes = math.prod(shape) * pixels[0].element_size()
        if nbytes <= self.inline_bytes:
            return torch.stack(list(pixels))
        index = self._free(nbytes) if pixels[0].dtype == torch.uint8 else None
        if index is None:
            self.fresh += 1
            return default_collate(list(pixels))
        segment = self.segments[index]
        torch.stack(list(pixels), out=_pixels(segment, shape))
        self.flags[index][0] = 1
        return RingPixels(segment, shape)
