"""Shared fixtures: the real VG/GQA excerpts in ../shared/data (skipped with a reason when absent)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import fsspec
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SGV_SHARED_DATA", REPO.parent / "shared" / "data"))


def _shared(sub: str) -> Path:
    path = SHARED_DATA / sub
    if not path.exists():
        pytest.skip(f"real data excerpt {path} is absent (set SGV_SHARED_DATA to its folder to run this test)")
    return path


@pytest.fixture
def vg_sample() -> Path:
    """Folder with real Visual Genome excerpts (v1.2 and v1.4 files, first 100 images)."""
    return _shared("vg-sample")


@pytest.fixture
def gqa_sample() -> Path:
    """Folder with a real GQA train_sceneGraphs.json excerpt (first 100 images)."""
    return _shared("gqa-sample")


@pytest.fixture
def mem_root():
    """A fresh memory:// folder, removed afterwards (the memory store is process-wide)."""
    root = f"memory://sgv-test-{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    path = root[len("memory://"):]
    if fs.exists(path):
        fs.rm(path, recursive=True)


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module of tiny models: fastest so, and it leaves the other core to the rest."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
