"""Streaming readers of the source datasets: each yields ``(record | None, rejects)`` per image entry."""

from __future__ import annotations

from sgverbalise.readers._json import iter_list
from sgverbalise.readers.gqa import iter_gqa
from sgverbalise.readers.vg import iter_vg

READERS = {"vg": iter_vg, "gqa": iter_gqa}

__all__ = ["READERS", "iter_gqa", "iter_list", "iter_vg"]
