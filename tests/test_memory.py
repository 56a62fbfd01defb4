"""Freed memory given back to the system between a worker's work items (``pipelines/memory.py``)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

# A fresh process: blocks of 4 MB freed in the middle of the heap, as a worker's scan leaves them (small buffers
# allocated between them pin the heap, so free() alone cannot shrink it).
FRAGMENTED_HEAP = """
import json
import numpy as np
from sgverbalise.pipelines.memory import release_free_memory

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

first = np.ones(16 << 20, np.uint8)
del first  # glibc: larger blocks now come from the heap, not from mappings of their own
blocks, pins = [], []
for _ in range(40):
    blocks.append(np.ones(4 << 20, np.uint8))
    pins.append(bytearray(1 << 16))
del blocks
before = rss()
released = release_free_memory()
print(json.dumps([released, before, rss()]))
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc_trim")
def test_free_heap_pages_go_back_to_the_system():
    out = subprocess.run([sys.executable, "-c", FRAGMENTED_HEAP], capture_output=True, text=True, check=True)
    released, before, after = json.loads(out.stdout)
    assert released is True
    assert before - after > 120 << 20  # most of the 160 MB freed in the middle of the heap
