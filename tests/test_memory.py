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
import os

import numpy as np
from sgverbalise.pipelines.memory import release_free_memory

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

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


def test_each_scan_and_the_plan_give_their_memory_back(tmp_path, monkeypatch, vg_sample, gqa_sample):
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.testing.util import assert_that, is_not_empty

    from sgverbalise.pipelines import units as units_module
    from sgverbalise.pipelines.options import BuildConfig

    calls: list[str] = []
    monkeypatch.setattr(units_module, "release_free_memory", lambda: calls.append("trim") or True)
    cfg = BuildConfig(out=str(tmp_path / "out"), vg=str(vg_sample),
                      gqa=(str(gqa_sample / "train_sceneGraphs.json"),), images_per_unit=60)
    files = sum(len(inp.files) for inp in units_module.job_inputs(cfg))
    # in_memory: the DoFns run in this process, where the patch is
    with beam.Pipeline(options=PipelineOptions(["--direct_running_mode=in_memory"])) as p:
        assert_that((p | units_module.PlanUnits(cfg))[0], is_not_empty())
    assert files >= 3 and len(calls) == files + 1  # one per file scanned, one after the plan
