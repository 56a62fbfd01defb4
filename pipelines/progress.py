"""Progress of a long run as it goes: a log line from each worker every few seconds with what that worker has
done so far (input files scanned, images read by the vocabulary's pre-pass, VG file entries and images read by
the units, samples made, shards written, then the last step's reject lines merged and files published, ...).
VG's file entries are counted when a unit has read all of its images; shards when each is written (to the
staging area).

The runner reports Beam's metric counters only when the run has ended (DirectRunner's ``pipeline.run()``
returns then), so the driver cannot show them during the run; each worker process logs its own counts instead.
The counts are this process's since it started (a worker of several stages sums them all). Cheap: one lock and
a clock read per count. ``SGV_PROGRESS_SECONDS`` sets the interval (default 10 s; 0 or less: off); workers read
it from their environment, which DirectRunner's worker processes inherit.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter

log = logging.getLogger(__name__)
# Beam's workers log WARNING and above (--default_sdk_harness_log_level=WARNING): this logger's lines pass anyway
log.setLevel(logging.INFO)
ENV = "SGV_PROGRESS_SECONDS"
DEFAULT_SECONDS = 10.0
ORDER = ("files_scanned", "vocabulary_images_read", "vg_entries_read", "images_read", "records_read", "samples",
         "shards_written", "records_written", "rejects_merged", "files_published")
LABELS = {"files_scanned": "input files scanned", "vocabulary_images_read": "images read for the vocabulary",
          "vg_entries_read": "VG file entries read", "images_read": "images read",
          "records_read": "records read (--records)", "samples": "samples", "shards_written": "shards written",
          "records_written": "record files written", "rejects_merged": "reject lines merged",
          "files_published": "files published"}


def interval() -> float:
    try:
        return float(os.environ.get(ENV, DEFAULT_SECONDS))
    except ValueError:
        return DEFAULT_SECONDS


class Progress:
    """Counts of one process, logged at most every ``seconds`` (and only when they changed)."""

    def __init__(self, seconds: float | None = None) -> None:
        self.seconds = interval() if seconds is None else seconds
        self.counts: Counter[str] = Counter()
        self.start = time.monotonic()
        self.next = self.start + self.seconds
        self.lock = threading.Lock()
        self.logged: dict[str, int] = {}

    def add(self, name: str, n: int = 1) -> None:
        if self.seconds <= 0:
            return
        with self.lock:
            self.counts[name] += n
            now = time.monotonic()
            if now < self.next:
                return
            self.next = now + self.seconds
            if dict(self.counts) == self.logged:
                return
            self.logged = dict(self.counts)
        log.info("progress: %s (worker %d, %.0f s)", line(self.logged), os.getpid(), now - self.start)


def line(counts: dict[str, int]) -> str:
    names = [n for n in ORDER if n in counts] + sorted(n for n in counts if n not in ORDER)
    return ", ".join(f"{LABELS.get(n, n)} {counts[n]}" for n in names)


_PROCESS: Progress | None = None


def progress() -> Progress:
    """This process's Progress (one per worker process, shared by its DoFns)."""
    global _PROCESS
    if _PROCESS is None:
        _PROCESS = Progress()
    return _PROCESS
