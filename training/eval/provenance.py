"""Provenance of a result: what was scored, how, with what (recorded in ``results.json``'s ``meta``).

Data files with their SHA-256, the VSR split folder, the VALSE validity threshold, the VSR decision threshold,
the retrieval protocol (k per suite, caption normalisation), the text length, how ``--limit`` sampled, the
model and checkpoint, and the versions of Python and of the libraries that compute the scores.
"""

from __future__ import annotations

import platform
from importlib import metadata

from .retrieval import K_TEST, MAX_WORDS
from .sampling import describe
from .scorefiles import sha256
from .scorer_base import MAX_TEXT_LEN

LIBRARIES = ("torch", "transformers", "numpy", "tokenizers", "pillow", "sgverbalise")


def versions() -> dict[str, str]:
    """Python and library versions (``absent`` for a library that is not installed)."""
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def hashed(files: list[str]) -> dict[str, str]:
    """url -> sha256 of each file (``unreadable: <reason>`` when it cannot be read)."""
    out = {}
    for url in files:
        try:
            out[url] = sha256(url)
        except OSError as err:
            out[url] = f"unreadable: {err}"
    return out


def eval_meta(cfg, results: dict[str, dict], checkpoint: str = "", model: str = "", **extra) -> dict:
    """The ``meta`` of ``results.json`` for a run of ``cfg`` (an ``EvalConfig``)."""
    files = [f for res in results.values() for f in res.get("files", [])]
    return {
        "checkpoint": checkpoint,
        "model": model,
        "suites": list(cfg.suites),
        "data": cfg.data,
        "data_files": hashed(files),
        "vsr_split": cfg.read.vsr_split,
        "valse_min_votes": cfg.read.valse_min_votes,
        "vsr_threshold": cfg.vsr_threshold,
        "max_text_len": MAX_TEXT_LEN,
        "retrieval": {
            "k_test": {s: cfg.k_for(s) for s in K_TEST},
            "pre_caption": cfg.pre_caption,
            "max_words": MAX_WORDS,
        },
        "examples": describe(cfg.limit, cfg.limit_seed),
        "bootstrap": cfg.bootstrap,
        "versions": versions(),
        **extra,
    }


def scores_meta(source: str, files: list[str], model: str | None, vsr_threshold: float, bootstrap: int) -> dict:
    """The provenance of tables recomputed from score files."""
    return {
        "from_scores": source,
        "companion_model": model,
        "score_files": hashed(files),
        "vsr_threshold": vsr_threshold,
        "bootstrap": bootstrap,
        "versions": versions(),
    }
